"""model_main_tf2.py in a subprocess: the checkpoints the contract names, and bad input
that gets one clear message, a non-zero exit, no stack trace and an intact model_dir."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf
import yaml

from tests.conftest import ckpt_steps, run_trainer, write_records_with_a_non_example


def _snapshot(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def model_dir_with_history(tmp_path):
    """A model_dir holding files of an earlier run that a failed start must not touch."""
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    (model_dir / "notes.txt").write_text("earlier run\n")
    return model_dir


def _assert_clean_failure(proc, *fragments: str) -> None:
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.slow
def test_cli_trains_with_the_contracts_checkpoints(tiny_config_file, tmp_path):
    model_dir = str(tmp_path / "run")
    args = (f"--pipeline_config_path={tiny_config_file}", f"--model_dir={model_dir}",
            "--num_train_steps=7", "--checkpoint_every_n=3", "--checkpoint_max_to_keep=2")
    proc = run_trainer(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ckpt_steps(model_dir) == [6, 7]
    assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir, "ckpt-7")
    assert "Step 5 per-step time" in proc.stderr
    with open(os.path.join(model_dir, "pipeline.yaml")) as f:
        assert yaml.safe_load(f)["model"]["num_classes"] == 3
    assert os.listdir(os.path.join(model_dir, "train"))  # TensorBoard events

    again = run_trainer(*args)
    assert again.returncode == 0
    assert "already finished" in again.stderr
    assert ckpt_steps(model_dir) == [6, 7]


def test_missing_config_file(model_dir_with_history):
    before = _snapshot(model_dir_with_history)
    proc = run_trainer("--pipeline_config_path=/nonexistent/pipeline.yaml",
                       f"--model_dir={model_dir_with_history}")
    _assert_clean_failure(proc, "/nonexistent/pipeline.yaml")
    assert _snapshot(model_dir_with_history) == before


def test_yaml_syntax_error_names_line_and_column(tmp_path, model_dir_with_history):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  num_classes: 3\n  input_size: [64, 64\ntrain_config: {}\n")
    before = _snapshot(model_dir_with_history)
    proc = run_trainer(f"--pipeline_config_path={bad}", f"--model_dir={model_dir_with_history}")
    _assert_clean_failure(proc, str(bad), "line ")
    assert _snapshot(model_dir_with_history) == before


def test_unknown_key_suggests_the_nearest(tiny_config_file, model_dir_with_history):
    proc = run_trainer(f"--pipeline_config_path={tiny_config_file}",
                       f"--model_dir={model_dir_with_history}",
                       "--params_override=train_config.batch_sise=4")
    _assert_clean_failure(proc, "train_config.batch_sise", "train_config.batch_size")


def test_wrong_type_names_the_key(tiny_config_file, model_dir_with_history):
    proc = run_trainer(f"--pipeline_config_path={tiny_config_file}",
                       f"--model_dir={model_dir_with_history}",
                       "--params_override=train_config.batch_size=eight")
    _assert_clean_failure(proc, "train_config.batch_size")


@pytest.mark.slow
def test_input_path_matching_nothing(tiny_config_file, model_dir_with_history):
    before = _snapshot(model_dir_with_history)
    proc = run_trainer(f"--pipeline_config_path={tiny_config_file}",
                       f"--model_dir={model_dir_with_history}",
                       "--params_override=train_input_reader.input_path=/nowhere/x-*.tfrecord")
    _assert_clean_failure(proc, "train_input_reader.input_path", "/nowhere/x-*.tfrecord")
    assert _snapshot(model_dir_with_history) == before


@pytest.mark.slow
def test_unwritable_model_dir(tiny_config_file, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    proc = run_trainer(f"--pipeline_config_path={tiny_config_file}",
                       f"--model_dir={blocker}/run")
    _assert_clean_failure(proc, f"{blocker}/run")
    assert blocker.read_text() == "not a directory\n"


@pytest.mark.slow
def test_corrupt_tfrecord_via_cli(tiny_dataset, tiny_config_file, tmp_path):
    src = sorted(tf.io.gfile.glob(tiny_dataset["train_pattern"]))[0]
    data = open(src, "rb").read()
    bad = tmp_path / "corrupt.tfrecord"
    bad.write_bytes(data[:1500] + b"\xff" * 32 + data[1532:])
    proc = run_trainer(f"--pipeline_config_path={tiny_config_file}",
                       f"--model_dir={tmp_path / 'run'}",
                       f"--params_override=train_input_reader.input_path={bad}")
    _assert_clean_failure(proc, str(bad), "corrupt")


def test_helpfull_groups_our_flags():
    proc = run_trainer("--helpfull", timeout=120)  # absl's help flags exit 1 after printing
    assert "Traceback" not in proc.stderr
    headers = [line[:-1] for line in proc.stdout.splitlines()
               if line and not line.startswith(" ") and line.endswith(":")]
    ours = ["1. config and output", "2. training", "3. checkpoints",
            "4. evaluation (the OD API's --checkpoint_dir mode)", "5. devices and clusters"]
    first = headers.index("flags") + 1
    assert headers[first:first + 5] == ours  # after "flags", before absl's own groups
    sections = proc.stdout.split("\n\n")
    checkpoints = next(s for s in sections if s.startswith("3. checkpoints:"))
    for flag in ("--checkpoint_every_n", "--checkpoint_max_to_keep", "--max_to_keep",
                 "--keep_checkpoint_every_n_hours", "--[no]async_checkpoint"):
        assert f"  {flag}: " in checkpoints, flag
    evaluation = next(s for s in sections if s.startswith("4. evaluation"))
    assert "  --checkpoint_dir: " in evaluation and "  --eval_timeout: " in evaluation
    devices = next(s for s in sections if s.startswith("5. devices"))
    for flag in ("--strategy", "--num_workers", "--[no]use_tpu", "--tpu_name"):
        assert f"  {flag}: " in devices, flag


@pytest.mark.slow
def test_record_that_is_not_an_example_via_cli(tiny_dataset, tiny_config_file, tmp_path):
    """A TFRecord whose framing is sound but one record is not a tf.train.Example with
    bytes that are not UTF-8: TensorFlow raises UnicodeDecodeError quoting it, not an
    OpError. Training names the file and record, nothing else."""
    bad = tmp_path / "not_an_example.tfrecord"
    write_records_with_a_non_example(tiny_dataset["train_pattern"], str(bad), 2)
    proc = run_trainer(f"--pipeline_config_path={tiny_config_file}",
                       f"--model_dir={tmp_path / 'run'}",
                       f"--params_override=train_input_reader.input_path={bad}")
    _assert_clean_failure(proc, f"{bad} record 1", "not a tf.train.Example")
