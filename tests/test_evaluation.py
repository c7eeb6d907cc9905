"""Evaluation of checkpoints: COCO metrics, continuous evaluation of a run, the best
checkpoint, and clear errors for a checkpoint of another model or missing inputs."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_trainer, write_records_with_a_non_example
from train_lib.config import ConfigError
from train_lib.data import shapes_dataset
from train_lib.evaluation import continuous as evaluation
from train_lib.evaluation import eval_files
from train_lib.evaluation.coco_metrics import METRIC_KEYS
from train_lib.evaluation.continuous import EvalError, continuous_eval, evaluate_checkpoint

CLASS_NAMES = ("square", "circle", "triangle")
# COCO's area ranges (pixels of the original image) of APs, APm, APl.
AREA_RANGES = {"APs": (0, 32**2), "APm": (32**2, 96**2), "APl": (96**2, 1e10)}


def _copy_checkpoint(run_dir: str, step: int, target: str) -> None:
    """Copies ckpt-<step> as TensorFlow writes one: data first, then the index, renamed
    into place at once."""
    os.makedirs(target, exist_ok=True)
    index, *data = eval_files.checkpoint_files(os.path.join(run_dir, f"ckpt-{step}"))
    for path in data:
        shutil.copy(path, target)
    shutil.copy(index, os.path.join(target, "index.tmp"))
    os.replace(os.path.join(target, "index.tmp"), os.path.join(target, os.path.basename(index)))


def _scalars(event_dir: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the TensorBoard event files in event_dir."""
    out: dict[str, dict[int, float]] = {}
    for name in os.listdir(event_dir):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(event_dir, name)):
            for value in event.summary.value:
                if value.tag.endswith("/images"):  # pictures, not scalars
                    continue
                out.setdefault(value.tag, {})[event.step] = float(
                    tf.make_ndarray(value.tensor))
    return out


def test_evaluate_checkpoint_gives_the_coco_metrics(trained_run, trained_config,
                                                  tiny_dataset):
    metrics = evaluate_checkpoint(os.path.join(trained_run["model_dir"], "ckpt-4"),
                                  trained_config)
    assert set(METRIC_KEYS) <= set(metrics)
    areas = [float((b[2] - b[0]) * e["height"] * (b[3] - b[1]) * e["width"])
             for e in shapes_dataset.read_examples(tiny_dataset["val_pattern"])
             for b in e["boxes"]]
    for key in METRIC_KEYS:
        low, high = AREA_RANGES.get(key, (0, 1e10))
        if any(low <= a <= high for a in areas):
            assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
        else:  # no ground truth of that size: COCO has nothing to measure
            assert metrics[key] == -1.0, (key, metrics[key])
    assert metrics["APl"] == -1.0  # 64-px images hold no object larger than 96 x 96
    per_class = {k for k in metrics if k.startswith("AP/")}
    assert per_class and per_class <= {f"AP/{name}" for name in CLASS_NAMES}
    assert all(0.0 <= metrics[k] <= 1.0 for k in per_class)
    assert metrics["AR100"] > 0.0  # with score threshold 0 some box overlaps an object


def test_eval_sampling_is_the_flag_else_the_evaluated_readers():
    """--sample_1_of_n_eval_examples when given, else the reader's
    sample_1_of_n_examples (0 read as 1): eval_input_reader's, or train_input_reader's
    when evaluating on the training data."""
    from train_lib.config import PipelineConfig
    from train_lib.evaluation import eval_sampling

    config = PipelineConfig()
    assert eval_sampling(config) == 1
    config.eval_input_reader.sample_1_of_n_examples = 3
    assert eval_sampling(config) == 3
    assert eval_sampling(config, 2) == 2  # the flag overrides the reader
    assert eval_sampling(config, on_train_data=True) == 1  # the train reader's
    config.train_input_reader.sample_1_of_n_examples = 0
    assert eval_sampling(config, on_train_data=True) == 1
    config.eval_input_reader.sample_1_of_n_examples = 0
    assert eval_sampling(config) == 1
    with pytest.raises(ValueError):
        eval_sampling(config, 0)


def test_eval_record_that_is_not_an_example_is_named(trained_run, trained_config,
                                                    tiny_dataset, tmp_path):
    """An eval record that is not a tf.train.Example, in bytes that are not UTF-8
    (TensorFlow raises UnicodeDecodeError for it, not an OpError): one EvalError that
    names the file and the record."""
    bad = str(tmp_path / "val-not-an-example.tfrecord")
    write_records_with_a_non_example(tiny_dataset["val_pattern"], bad, 3)
    trained_config.eval_input_reader.input_path = [bad]
    with pytest.raises(EvalError) as info:
        evaluate_checkpoint(os.path.join(trained_run["model_dir"], "ckpt-4"), trained_config)
    assert f"{bad} record 2" in str(info.value)
    assert "not a tf.train.Example" in str(info.value)


def test_continuous_eval_of_a_finished_run(trained_run, trained_config, tmp_path):
    run_dir, out = trained_run["model_dir"], str(tmp_path / "eval_out")
    logs: list[str] = []
    start = time.monotonic()
    result = continuous_eval(trained_config, run_dir, out, eval_timeout=600,
                             poll_seconds=0.5, log=logs.append)
    elapsed = time.monotonic() - start
    assert result.stop_reason == "finished" and elapsed < 180, (result, elapsed)
    assert result.evaluated == [2, 4] and result.skipped == []
    assert any("evaluation done" in line for line in logs)

    records = evaluation.read_eval_records(out)
    assert [(r["step"], r["split"], r["num_images"]) for r in records] == [
        (2, "eval", 8), (4, "eval", 8)]
    assert records[1]["checkpoint"] == os.path.join(run_dir, "ckpt-4")
    assert all(r["wall_time"] > 0 and r["metrics"] == result.metrics[r["step"]]
               for r in records)

    scalars = _scalars(os.path.join(out, "eval"))
    assert {"DetectionBoxes_Precision/mAP", "DetectionBoxes_Precision/mAP@.50IOU",
            "DetectionBoxes_Precision/mAP@.75IOU", "DetectionBoxes_Precision/mAP (small)",
            "DetectionBoxes_Precision/mAP (medium)", "DetectionBoxes_Precision/mAP (large)",
            "DetectionBoxes_Recall/AR@1", "DetectionBoxes_Recall/AR@10",
            "DetectionBoxes_Recall/AR@100"} <= set(scalars)
    assert any(tag.startswith("DetectionBoxes_PerformanceByCategory/mAP/") for tag in scalars)
    for record in records:
        assert scalars["DetectionBoxes_Precision/mAP"][record["step"]] == pytest.approx(
            record["metrics"]["AP"])
        assert scalars["DetectionBoxes_Recall/AR@100"][record["step"]] == pytest.approx(
            record["metrics"]["AR100"])

    # best/: the step with the highest AP (the earlier one on a tie), a usable checkpoint.
    aps = [(r["metrics"]["AP"], -r["step"]) for r in records]
    best_step = -max(aps)[1]
    best_dir = os.path.join(out, "best")
    assert result.best_step == best_step
    assert tf.train.latest_checkpoint(best_dir) == os.path.join(best_dir, f"ckpt-{best_step}")
    with open(os.path.join(best_dir, "metrics.json")) as f:
        best = json.load(f)
    assert best["step"] == best_step and best["metric"] == "AP"
    assert best["metrics"] == result.metrics[best_step]
    with open(os.path.join(best_dir, f"ckpt-{best_step}.index"), "rb") as f:
        copied = f.read()
    with open(os.path.join(run_dir, f"ckpt-{best_step}.index"), "rb") as f:
        assert copied == f.read()
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temporary files left

    # Started again: nothing is evaluated twice, and it ends at once.
    again = continuous_eval(trained_config, run_dir, out, eval_timeout=600, log=logs.append)
    assert again.stop_reason == "finished" and again.evaluated == []
    assert len(evaluation.read_eval_records(out)) == 2
    assert again.best_step == best_step
    # ... and says what the final checkpoint scored, from eval_metrics.jsonl.
    final = [line for line in logs if line.startswith("ckpt-4, the final checkpoint, as "
                                                      "evaluated at ")]
    assert len(final) == 1, logs
    assert f"AP={result.metrics[4]['AP']:.4f}, AP50={result.metrics[4]['AP50']:.4f}" in final[0]
    assert logs[logs.index(final[0]) + 1].startswith("AP per class: square=")


def _write_state(directory: str, steps: list[int]) -> None:
    """The `checkpoint` state file as a trainer commits it (atomically, newest last)."""
    lines = [f'model_checkpoint_path: "ckpt-{steps[-1]}"']
    lines += [f'all_model_checkpoint_paths: "ckpt-{s}"' for s in steps]
    with open(os.path.join(directory, "checkpoint.tmp"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(os.path.join(directory, "checkpoint.tmp"), os.path.join(directory, "checkpoint"))


def test_continuous_eval_follows_checkpoints_as_they_appear(trained_run, trained_config,
                                                            tmp_path):
    run_dir = trained_run["model_dir"]
    live, out = str(tmp_path / "live"), str(tmp_path / "eval_out")
    _copy_checkpoint(run_dir, 2, live)
    _write_state(live, [2])
    shutil.copy(os.path.join(run_dir, "pipeline.yaml"), live)  # num_steps: 4
    logs: list[str] = []
    results = []
    thread = threading.Thread(target=lambda: results.append(continuous_eval(
        trained_config, live, out, eval_timeout=600, poll_seconds=0.2, log=logs.append)))
    thread.start()
    deadline = time.monotonic() + 180
    while not any("waiting for a new checkpoint" in line for line in logs):
        assert thread.is_alive() and time.monotonic() < deadline, logs
        time.sleep(0.2)
    assert [r["step"] for r in evaluation.read_eval_records(out)] == [2]
    # The trainer's final save: its files first; until the state file names it, it may
    # still be being written and is left alone.
    _copy_checkpoint(run_dir, 4, live)
    time.sleep(1.5)
    assert [r["step"] for r in evaluation.read_eval_records(out)] == [2]
    assert thread.is_alive()
    _write_state(live, [2, 4])
    thread.join(timeout=180)
    assert not thread.is_alive()
    assert results[0].stop_reason == "finished" and results[0].evaluated == [2, 4]
    waiting = [line for line in logs if "waiting for a new checkpoint" in line]
    assert waiting == [f"waiting for a new checkpoint in {live} (timeout in 600 s)"]


def test_gone_and_invalid_checkpoints_are_skipped(trained_run, trained_config, tmp_path,
                                                  monkeypatch):
    run_dir = trained_run["model_dir"]
    ckpts, out = str(tmp_path / "ckpts"), str(tmp_path / "eval_out")
    for step in (2, 4):
        _copy_checkpoint(run_dir, step, ckpts)
    shutil.copy(os.path.join(run_dir, "pipeline.yaml"), ckpts)
    data = eval_files.checkpoint_files(os.path.join(ckpts, "ckpt-2"))[1]
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    # ckpt-3 is listed, then rotated away before its turn.
    real_steps = evaluation.checkpoint_steps
    monkeypatch.setattr(evaluation, "checkpoint_steps",
                        lambda d: sorted(set(real_steps(d)) | {3}))
    logs: list[str] = []
    result = continuous_eval(trained_config, ckpts, out, eval_timeout=600, poll_seconds=0.2,
                             log=logs.append)
    assert result.evaluated == [4] and result.skipped == [2, 3]
    assert result.stop_reason == "finished"
    assert any(line.startswith("skipping ckpt-2: invalid checkpoint") for line in logs), logs
    assert any(line.startswith("skipping ckpt-3: it was removed") for line in logs), logs
    assert [r["step"] for r in evaluation.read_eval_records(out)] == [4]


def test_waiting_for_a_first_checkpoint_ends_at_the_timeout(trained_run, trained_config,
                                                           tmp_path):
    """A run that started (pipeline.yaml written) but has not saved yet is waited for."""
    started = tmp_path / "not_yet"
    started.mkdir()
    shutil.copy(os.path.join(trained_run["model_dir"], "pipeline.yaml"), started)
    logs: list[str] = []
    start = time.monotonic()
    result = continuous_eval(trained_config, str(started), str(tmp_path / "out"),
                             eval_timeout=1, poll_seconds=0.2, log=logs.append)
    assert 1.0 <= time.monotonic() - start < 10
    assert result.stop_reason == "timeout" and result.evaluated == []
    assert f"waiting for a new checkpoint in {started} (timeout in 1 s)" in logs
    assert "timeout" in logs[-1] and str(started) in logs[-1]


@pytest.mark.parametrize("kind", ["missing", "empty", "foreign"])
def test_checkpoint_dir_that_is_no_training_run_fails_at_once(trained_config, tmp_path, kind):
    """A typo or the wrong directory: one EvalError naming it, no waiting."""
    checkpoint_dir = tmp_path / "runs" / "shapes"
    if kind != "missing":
        checkpoint_dir.mkdir(parents=True)
    if kind == "foreign":
        (checkpoint_dir / "notes.txt").write_text("not a model_dir")
    start = time.monotonic()
    with pytest.raises(EvalError) as err:
        continuous_eval(trained_config, str(checkpoint_dir), str(tmp_path / "out"),
                        eval_timeout=600, poll_seconds=0.2)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert message.startswith(f"--checkpoint_dir {checkpoint_dir} ")
    assert ("does not exist" if kind == "missing" else "holds nothing of a training run") \
        in message
    assert "give the --model_dir of a training run" in message


def test_checkpoint_of_another_model_is_a_clear_error(trained_run, trained_config, tmp_path):
    run_dir = trained_run["model_dir"]
    files, _ = evaluation.eval_inputs(trained_config)
    four = {1: "square", 2: "circle", 3: "triangle", 4: "star"}

    # The run's pipeline.yaml records another num_classes.
    trained_config.model.num_classes = 4
    with pytest.raises(EvalError) as err:
        evaluate_checkpoint(os.path.join(run_dir, "ckpt-4"), trained_config, files, four)
    message = str(err.value)
    assert f"{run_dir}/ckpt-4 does not fit the config's model" in message
    assert "model.num_classes" in message
    assert f"--pipeline_config_path={run_dir}/pipeline.yaml" in message

    # Without a pipeline.yaml beside it, the weights themselves tell.
    bare = str(tmp_path / "bare")
    _copy_checkpoint(run_dir, 4, bare)
    with pytest.raises(EvalError, match=f"{bare}/ckpt-4 does not fit the config's model "
                                        r"\(.*incompatible.*shape"):
        evaluate_checkpoint(os.path.join(bare, "ckpt-4"), trained_config, files, four)

    # A smaller head: every variable of the model is found, but the checkpoint has more.
    trained_config.model.num_classes = 3
    trained_config.model.head.num_convs = 0
    with pytest.raises(EvalError, match=r"holds \d+ model variables, the config's model \d+"):
        evaluate_checkpoint(os.path.join(bare, "ckpt-4"), trained_config)


def test_missing_eval_inputs_are_a_clear_error(trained_config, tmp_path):
    trained_config.eval_input_reader.input_path = ["/nowhere/val-*.tfrecord"]
    with pytest.raises(ConfigError, match=r"eval_input_reader.input_path.*/nowhere/val-\*"):
        continuous_eval(trained_config, str(tmp_path), str(tmp_path / "out"), eval_timeout=0)


def test_eval_files_is_kept_across_restarts(tmp_path):
    model_dir, source = str(tmp_path / "eval"), tmp_path / "run"
    source.mkdir()
    os.makedirs(model_dir)
    for step in (2, 4, 6):
        (source / f"ckpt-{step}.index").write_bytes(f"index {step}".encode())
        (source / f"ckpt-{step}.data-00000-of-00001").write_bytes(f"data {step}".encode())

    def update(step: int, ap: float) -> bool:
        return eval_files.update_best(model_dir, str(source / f"ckpt-{step}"), step,
                                           {"AP": ap, "AR100": 0.5}, "AP")

    assert update(2, 0.10)
    assert not update(4, 0.05) and not update(4, 0.10)  # worse, and a tie, keep ckpt-2
    assert eval_files.read_best(model_dir)["step"] == 2
    assert update(6, float(np.float32(0.2)))
    best = os.path.join(model_dir, "best")
    assert sorted(os.listdir(best)) == ["checkpoint", "ckpt-6.data-00000-of-00001",
                                        "ckpt-6.index", "metrics.json"]
    assert tf.train.latest_checkpoint(best) == os.path.join(best, "ckpt-6")
    # A crash between moving best/ aside and renaming the new copy in: recovered.
    os.replace(best, os.path.join(model_dir, ".best-old-12345"))
    record = eval_files.read_best(model_dir)
    assert record["step"] == 6 and record["metrics"]["AP"] == pytest.approx(0.2)
    assert sorted(os.listdir(model_dir)) == ["best"]


def test_cli_missing_eval_files(trained_run, tmp_path):
    proc = run_trainer(f"--pipeline_config_path={trained_run['model_dir']}/pipeline.yaml",
                       f"--checkpoint_dir={trained_run['model_dir']}",
                       f"--model_dir={tmp_path / 'out'}",
                       "--params_override=eval_input_reader.input_path=/nowhere/v-*.tfrecord")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "eval_input_reader.input_path" in errors[0], proc.stderr


@pytest.mark.slow
def test_cli_evaluates_a_finished_run_and_ends_by_itself(trained_run, tmp_path):
    """Without --sample_1_of_n_eval_examples, eval_input_reader.sample_1_of_n_examples
    picks the examples (3: the 1st, 4th and 7th of the 8)."""
    out = tmp_path / "out"
    start = time.monotonic()
    proc = run_trainer(f"--pipeline_config_path={trained_run['model_dir']}/pipeline.yaml",
                       f"--checkpoint_dir={trained_run['model_dir']}", f"--model_dir={out}",
                       "--eval_timeout=600",
                       "--params_override=eval_input_reader.sample_1_of_n_examples=3",
                       timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - start < 300
    assert "evaluation done" in proc.stderr
    assert [(r["step"], r["num_images"]) for r in evaluation.read_eval_records(str(out))] == [
        (2, 3), (4, 3)]
    assert os.listdir(out / "eval")
    assert tf.train.latest_checkpoint(str(out / "best")) is not None


@pytest.mark.slow
def test_cli_waits_for_checkpoints_and_ends_at_the_timeout(trained_run, tmp_path):
    started = tmp_path / "started"  # training began (pipeline.yaml) but saved nothing yet
    started.mkdir()
    shutil.copy(os.path.join(trained_run["model_dir"], "pipeline.yaml"), started)
    proc = run_trainer(f"--pipeline_config_path={trained_run['model_dir']}/pipeline.yaml",
                       f"--checkpoint_dir={started}", f"--model_dir={tmp_path / 'out'}",
                       "--eval_timeout=2", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"waiting for a new checkpoint in {started} (timeout in 2 s)" in proc.stderr
    assert "(timeout; raise --eval_timeout to wait longer)" in proc.stderr


@pytest.mark.slow
def test_cli_checkpoint_dir_that_does_not_exist_is_one_error_line(trained_run, tmp_path):
    missing = tmp_path / "runs" / "shapse"
    proc = run_trainer(f"--pipeline_config_path={trained_run['model_dir']}/pipeline.yaml",
                       f"--checkpoint_dir={missing}", f"--model_dir={missing}",
                       "--eval_timeout=600", timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: --checkpoint_dir {missing} does not exist; give the "
                      "--model_dir of a training run (model_main_tf2.py "
                      "--pipeline_config_path=... --model_dir=<dir> trains one)"], proc.stderr
    assert not missing.exists()  # nothing created on the way
