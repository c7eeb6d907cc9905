"""train() in process: it learns, follows the checkpoint cadence, resumes, fails clearly."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ckpt_steps, make_tiny_config
from train_lib.checkpointing import CheckpointError, read_events, verify_checkpoint
from train_lib.checkpointing.policy import StopReason
from train_lib.config import ConfigError
from train_lib.training.run_options import RunOptions
from train_lib.training.trainer import TrainError, train


def test_a_few_steps_lower_the_loss(tiny_dataset, tmp_path):
    config = make_tiny_config(tiny_dataset, num_steps=60, log_every_n=5)
    result = train(config, str(tmp_path / "run"), checkpoint_every_n=1000,
                   record_summaries=False)
    losses = [loss for _, loss in result.loss_history]
    assert result.stop_reason is StopReason.FINISHED and result.step == 60
    assert len(losses) == 12
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.7 * losses[0], losses


def test_train_takes_run_options_or_their_fields_not_both(tiny_config, tmp_path):
    model_dir = tmp_path / "run"
    with pytest.raises(TypeError, match="not both: checkpoint_every_n"):
        train(tiny_config, str(model_dir), RunOptions(), checkpoint_every_n=2)
    with pytest.raises(TypeError, match="checkpoint_evry_n"):
        train(tiny_config, str(model_dir), checkpoint_evry_n=2)
    assert not model_dir.exists()


def test_cadence_rotation_final_save_resume_and_event_log(tiny_dataset, tmp_path):
    model_dir = str(tmp_path / "run")
    config = make_tiny_config(tiny_dataset, num_steps=7, steps_per_loop=2)
    result = train(config, model_dir, checkpoint_every_n=3, max_to_keep=2)
    # Saves at 3 and 6 (interval) and 7 (end); two kept.
    assert result.step == 7
    assert ckpt_steps(model_dir) == [6, 7]
    assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir, "ckpt-7")
    assert os.path.exists(os.path.join(model_dir, "pipeline.yaml"))

    again = train(config, model_dir, RunOptions(checkpoint_every_n=3, max_to_keep=2))
    assert again.stop_reason is StopReason.ALREADY_FINISHED and again.step == 7
    assert ckpt_steps(model_dir) == [6, 7]

    more = train(config, model_dir, num_train_steps=10, checkpoint_every_n=3, max_to_keep=2)
    assert more.start_step == 7 and more.step == 10
    assert ckpt_steps(model_dir) == [9, 10]
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "ckpt-10"))
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 10

    # The checkpoint event log explains the three runs: each save with its reason,
    # each removal.
    with open(os.path.join(model_dir, "checkpoints.jsonl")) as f:
        events = [json.loads(line) for line in f]
    saved = [(e["step"], e["reason"]) for e in events if e["event"] == "saved"]
    removed = [e["step"] for e in events if e["event"] == "removed"]
    assert saved == [(3, "interval"), (6, "interval"), (7, "end"), (9, "interval"),
                     (10, "end")]
    assert removed == [3, 6, 7]


def test_same_seed_same_weights(trained_run, tiny_dataset, tmp_path):
    """The same config trains to the same weights, whatever the checkpoint cadence and
    whether its records are decoded once in memory: trained_run (the same 4 steps,
    saved every 2, its records in the decoded cache) and a run saved once that decodes
    each image as it reads it."""
    model_dir = str(tmp_path / "b")
    config = make_tiny_config(tiny_dataset, num_steps=4)
    config.train_input_reader.decoded_cache_mb = 0
    lines: list[str] = []
    train(config, model_dir, checkpoint_every_n=100, record_summaries=False, log=lines.append)
    assert not any(line.startswith("input cache") for line in lines), lines
    assert any(line.startswith("input cache: 48 training records of 2 files decoded in memory")
               for line in trained_run["log"]), trained_run["log"]
    weights = []
    for run_dir in (trained_run["model_dir"], model_dir):
        reader = tf.train.load_checkpoint(os.path.join(run_dir, "ckpt-4"))
        names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith("model/"))
        weights.append([reader.get_tensor(n) for n in names])
    assert len(weights[0]) > 50
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))


def test_structural_config_change_on_resume_is_refused(trained_run, trained_config, tmp_path):
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run["model_dir"], model_dir)
    changed = trained_config
    changed.train_config.num_steps = 6
    changed.model.head.num_filters = 16
    with pytest.raises(ConfigError, match="model.head.num_filters"):
        train(changed, model_dir, checkpoint_every_n=100)
    assert ckpt_steps(model_dir) == [2, 4]


def test_label_outside_label_map_names_the_file(tiny_dataset, tmp_path):
    config = make_tiny_config(tiny_dataset, num_steps=3)
    # The data has ids 1..3; claim only 2 classes with a matching label map.
    label_map = tmp_path / "two.pbtxt"
    label_map.write_text("item { id: 1 name: 'square' }\nitem { id: 2 name: 'circle' }\n")
    config.model.num_classes = 2
    config.train_input_reader.label_map_path = str(label_map)
    with pytest.raises(TrainError, match=r"tfrecord record \d+ .*label id is outside the label "
                                         r"map \(ids 1..2\).*label_outside_label_map"):
        train(config, str(tmp_path / "run"), checkpoint_every_n=100)


def test_corrupt_tfrecord_names_the_file(tiny_dataset, tmp_path):
    src = sorted(tf.io.gfile.glob(tiny_dataset["train_pattern"]))[0]
    data = open(src, "rb").read()
    bad = tmp_path / "bad-00000-of-00001.tfrecord"
    bad.write_bytes(data[:2000] + b"\x00" * 64 + data[2064:])
    config = make_tiny_config(tiny_dataset, num_steps=3)
    config.train_input_reader.input_path = [str(bad)]
    with pytest.raises(TrainError, match=f"{bad}.*corrupt"):
        train(config, str(tmp_path / "run"), checkpoint_every_n=100)


def test_async_checkpoints_follow_the_same_contract(tiny_dataset, tmp_path):
    model_dir = str(tmp_path / "run")
    train(make_tiny_config(tiny_dataset, num_steps=5), model_dir, checkpoint_every_n=2,
          max_to_keep=2, async_checkpoint=True, record_summaries=False)
    assert ckpt_steps(model_dir) == [4, 5]
    assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir, "ckpt-5")
    saved = [e for e in read_events(model_dir) if e["event"] == "saved"]
    assert [(e["step"], e["reason"], e["async"]) for e in saved] == [
        (2, "interval", True), (4, "interval", True), (5, "end", True)]
    assert verify_checkpoint(os.path.join(model_dir, "ckpt-5")) is None


def test_a_failing_save_keeps_the_earlier_checkpoints(tiny_dataset, tmp_path, monkeypatch):
    model_dir = str(tmp_path / "run")
    real_write = tf.train.Checkpoint.write

    def write(self, file_prefix, options=None):
        if file_prefix.endswith("ckpt-4"):
            with open(file_prefix + ".index", "wb") as f:
                f.write(b"partial")  # what a full disk leaves behind
            raise OSError(28, "No space left on device")
        return real_write(self, file_prefix, options=options)

    monkeypatch.setattr(tf.train.Checkpoint, "write", write)
    with pytest.raises(CheckpointError) as err:
        train(make_tiny_config(tiny_dataset, num_steps=6), model_dir, checkpoint_every_n=2,
              record_summaries=False)
    assert "ckpt-2" in str(err.value) and "intact" in str(err.value)
    assert ckpt_steps(model_dir) == [2]
    assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir, "ckpt-2")
    assert verify_checkpoint(os.path.join(model_dir, "ckpt-2")) is None


def test_in_training_evaluation_records_metrics_and_best(tiny_dataset, tmp_path):
    from train_lib.evaluation import eval_files
    from train_lib.report.timeline import read_scalars

    model_dir = str(tmp_path / "run")
    config = make_tiny_config(tiny_dataset, num_steps=4)
    config.eval_config.eval_every_n = 2
    config.eval_input_reader.sample_1_of_n_examples = 2  # images 0, 2, 4, 6 of the 8
    config.model.post_processing.score_threshold = 0.0  # an untrained model's detections
    lines: list[str] = []
    train(config, model_dir, checkpoint_every_n=4, record_summaries=False, log=lines.append)
    records = eval_files.read_eval_records(model_dir)
    assert [(r["step"], r["split"], r["num_images"]) for r in records] == [
        (2, "eval", 4), (4, "eval", 4)]
    assert records[0]["checkpoint"] is None  # step 2 was not saved: no best copy from it
    assert records[1]["checkpoint"] == os.path.abspath(os.path.join(model_dir, "ckpt-4"))
    assert all(0.0 <= r["metrics"]["AP50"] <= 1.0 for r in records)
    scalars = read_scalars(os.path.join(model_dir, "eval"), ("DetectionBoxes_Precision/mAP",))
    assert [step for step, _ in scalars["DetectionBoxes_Precision/mAP"]] == [2, 4]
    best = eval_files.read_best(model_dir)
    assert best is not None and best["step"] == 4
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "best")) is not None
    assert sum(line.startswith("evaluated step ") for line in lines) == 2
    pictures = []  # eval images with their detections drawn, one summary per evaluation
    for path in tf.io.gfile.glob(os.path.join(model_dir, "eval", "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            pictures += [(event.step, tf.make_ndarray(v.tensor)) for v in event.summary.value
                         if v.tag == "eval/images"]
    assert [step for step, _ in pictures] == [2, 4]
    assert len(pictures[0][1]) == 2 + config.eval_config.num_visualizations  # w, h, PNGs


def test_input_pipeline_changed_between_runs_resumes_from_the_saved_position(trained_run,
                                                                             trained_config,
                                                                             tmp_path):
    """Another shuffle buffer, batch size and augmentation on resume: the run goes on
    from the saved (epoch, example), the changes are logged, no traceback."""
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run["model_dir"], model_dir)  # 4 steps of batch 4
    position = tf.train.load_checkpoint(os.path.join(model_dir, "ckpt-4")).get_tensor(
        "input_position/.ATTRIBUTES/VARIABLE_VALUE")
    assert position.tolist() == [0, 16]  # 4 steps of 4 examples
    config = trained_config
    assert config.train_input_reader.shuffle_buffer_size == 16
    config.train_input_reader.shuffle_buffer_size = 3
    config.train_config.batch_size = 8
    config.train_config.augmentation.scale_min = 0.9
    lines: list[str] = []
    result = train(config, model_dir, num_train_steps=9, checkpoint_every_n=5,
                   record_summaries=False, log=lines.append)
    assert result.start_step == 4 and result.step == 9
    changes = [line for line in lines if line.startswith("config change on resume")]
    assert any("train_input_reader.shuffle_buffer_size (was 16, now 3)" in line
               for line in changes), changes
    assert any("train_config.augmentation.scale_min" in line for line in changes), changes
    assert "input position: skipping the 16 examples before the position in epoch 0 " \
           "(read, not decoded)" in lines
    # 5 more steps of 8 examples: 16 + 40 = 56 examples, 8 into epoch 1 (48 a epoch).
    assert tf.train.load_checkpoint(os.path.join(model_dir, "ckpt-9")).get_tensor(
        "input_position/.ATTRIBUTES/VARIABLE_VALUE").tolist() == [1, 8]


def test_corrupt_eval_file_in_training_evaluation_is_a_user_error(tiny_dataset, tmp_path):
    """In-training evaluation hitting a corrupt eval file: the step is saved, then one
    UserError names the file (the CLI prints it as the error: line)."""
    from train_lib.errors import UserError

    bad = tmp_path / "val-bad.tfrecord"
    bad.write_bytes(b"\x07" * 64)  # not a TFRecord
    model_dir = str(tmp_path / "run")
    config = make_tiny_config(tiny_dataset, num_steps=4)
    config.eval_config.eval_every_n = 2
    config.eval_input_reader.input_path = [str(bad)]
    with pytest.raises(UserError) as err:
        train(config, model_dir, checkpoint_every_n=2, record_summaries=False)
    assert str(bad) in str(err.value)
    assert ckpt_steps(model_dir) == [2]


def test_a_finished_run_ends_by_evaluating_with_ap_per_class_in_the_log(tiny_dataset,
                                                                        tmp_path):
    """eval_config.eval_at_end: a 10-step run (no eval_every_n, no interval save) is
    evaluated at its end, after the final save; the log has AP, AP50 and AP per class
    by label-map name; the record and best/ point at the final checkpoint."""
    from train_lib.evaluation import eval_files

    model_dir = str(tmp_path / "run")
    config = make_tiny_config(tiny_dataset, num_steps=10)
    config.eval_config.eval_at_end = True
    config.model.post_processing.score_threshold = 0.0  # an untrained model's detections
    lines: list[str] = []
    train(config, model_dir, checkpoint_every_n=1000, record_summaries=False,
          log=lines.append)
    headline = [line for line in lines if line.startswith("evaluated step ")]
    assert len(headline) == 1 and headline[0].startswith("evaluated step 10 on 8 images")
    assert re.search(r": AP=\d\.\d{4}, AP50=\d\.\d{4}, AP75=", headline[0]), headline
    per_class = lines[lines.index(headline[0]) + 1]
    assert re.fullmatch(r"AP per class: square=-?\d\.\d{4}, circle=-?\d\.\d{4}, "
                        r"triangle=-?\d\.\d{4}", per_class), per_class
    assert lines.index(headline[0]) > lines.index(
        next(line for line in lines if line.startswith("saved ckpt-10 (end)")))
    records = eval_files.read_eval_records(model_dir)
    assert [(r["step"], r["checkpoint"]) for r in records] == [
        (10, os.path.abspath(os.path.join(model_dir, "ckpt-10")))]
    assert eval_files.read_best(model_dir)["step"] == 10


def test_final_evaluation_needs_an_eval_split_and_may_be_turned_off(tiny_dataset):
    from train_lib.training import in_training_eval

    config = make_tiny_config(tiny_dataset)
    config.eval_config.eval_at_end = True
    assert in_training_eval.plan(config) == (0, True)
    config.eval_config.eval_every_n = 5
    config.eval_config.eval_at_end = False
    assert in_training_eval.plan(config) == (5, False)
    config.eval_config.eval_at_end = True
    config.eval_input_reader.input_path = []
    assert in_training_eval.plan(config) == (5, False)


def test_a_failed_start_in_an_existing_model_dir_leaves_its_files_as_they_were(
        tiny_dataset, trained_run, tmp_path):
    """A fine-tune checkpoint that does not fit stops the run before its first step: an
    existing model_dir keeps its own files, byte for byte, and gets no pipeline.yaml
    or fine-tune report of the failed run (the run had written pipeline.yaml first)."""
    from train_lib.errors import UserError
    from train_lib.training import fine_tune, workdir

    assert fine_tune.REPORT_FILE in workdir.START_FILES
    config = make_tiny_config(tiny_dataset)
    config.model.fpn.num_filters = 48  # the trained run's FPN has 32
    config.train_config.fine_tune_checkpoint = os.path.join(trained_run["model_dir"], "ckpt-4")
    config.train_config.fine_tune_checkpoint_type = "detection"
    for earlier in ({"notes.txt": b"earlier files\n"},
                    {"notes.txt": b"x", "pipeline.yaml": b"# an earlier record\n"}):
        model_dir = tmp_path / f"run{len(earlier)}"
        model_dir.mkdir()
        for name, content in earlier.items():
            (model_dir / name).write_bytes(content)
        with pytest.raises(UserError, match="does not fit"):
            train(config, str(model_dir), num_train_steps=1, record_summaries=False)
        assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == earlier
