"""The data contract: every record checked as it is read, negatives train, bad
records named by file, record, source id and rule, or skipped and counted."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests import records
from tests.conftest import ckpt_steps, make_tiny_config, run_trainer
from train_lib.config import ConfigError, dump_config, load_config
from train_lib.data import data_check, example_checks, input_errors, inputs
from train_lib.training.failures import TrainError
from train_lib.training.trainer import train

FAULTS = records.faulty_records()


def _good(count: int, start: int = 0) -> list[bytes]:
    return [records.example(records.encode(seed=start + i), source_id=500 + start + i)
            for i in range(count)]


def _plain_config(tiny_dataset, path: str, **train_overrides):
    """A tiny config reading `path`, with no augmentation and no shuffling, so a
    batch's images are the records' images in file order."""
    config = make_tiny_config(tiny_dataset, **train_overrides)
    config.train_input_reader.input_path = [path]
    config.train_input_reader.shuffle_buffer_size = 1
    aug = config.train_config.augmentation
    aug.random_horizontal_flip, aug.scale_min, aug.scale_max = False, 1.0, 1.0
    return config


def _first_error(config, path: str) -> str:
    """The explained error of a train stream over `path` (error policy)."""
    iterator = iter(inputs.build_train_dataset(config, [path], batch_size=2))
    with pytest.raises(tf.errors.OpError) as err:
        for _ in range(4):
            next(iterator)
    explained = input_errors.explain_input_error(err.value, [path], config.train_input_reader,
                                           config.model.num_classes)
    assert explained is not None
    return explained[1]


def test_each_rule_names_the_file_the_record_the_source_id_and_what_to_do(tiny_dataset,
                                                                             tmp_path):
    seen = set()
    for rule, bad in FAULTS.items():
        path = records.write(str(tmp_path / f"{rule}.tfrecord"), _good(1) + [bad] + _good(2, 1))
        message = _first_error(_plain_config(tiny_dataset, path), path)
        source_id = tf.train.Example.FromString(bad).features.feature[
            "image/source_id"].bytes_list.value[0].decode()
        assert message.startswith(f"{path} record 1 (image/source_id '{source_id}'): "), message
        assert message.endswith(f"(rule {rule})"), message
        seen.add(rule)
    assert seen == {r.name for r in example_checks.RULES[1:]}
    pixel = _first_error(_plain_config(tiny_dataset, str(tmp_path / "pixel_coordinates.tfrecord")),
                         str(tmp_path / "pixel_coordinates.tfrecord"))
    assert "look like pixel coordinates (largest coordinate 48)" in pixel
    assert "divide ymin and ymax by the image height" in pixel


def test_an_image_damaged_inside_is_found_by_its_record(tiny_dataset, tmp_path):
    damaged = records.example(records.damaged_inside(records.encode()), source_id=77)
    path = records.write(str(tmp_path / "damaged.tfrecord"), _good(3) + [damaged])
    message = _first_error(_plain_config(tiny_dataset, path), path)
    assert message.startswith(f"{path} record 3 (image/source_id '77'): the record cannot be "
                              "parsed or its image decoded (jpeg::Uncompress failed")


def test_tidying_clips_drops_zero_area_boxes_and_keeps_at_most_max_boxes():
    jpeg = records.encode()
    hair = records.example(jpeg, boxes=[(-0.004, 0.1, 1.006, 0.5), (0.3, 0.3, 0.3, 0.6),
                                        (0.2, 0.2, 0.6, 0.6)])
    many = records.example(jpeg, boxes=[(0.1, 0.1, 0.5, 0.5)] * 300)
    check = tf.function(lambda r: example_checks.decode_and_check(r, 3, 100))
    index = example_checks.COUNTER_INDEX
    data = check(tf.constant(hair))
    assert int(data["rule"]) == 0
    np.testing.assert_allclose(data["groundtruth_boxes"].numpy(),
                               [[0.0, 0.1, 1.0, 0.5], [0.2, 0.2, 0.6, 0.6]], atol=1e-6)
    counts = data["counts"].numpy()
    assert counts[index["boxes_clipped"]] == 1 and counts[index["zero_area_boxes_dropped"]] == 1
    data = check(tf.constant(many))
    assert data["groundtruth_boxes"].shape == (100, 4)
    assert data["counts"].numpy()[index["boxes_over_max_dropped"]] == 200


def test_skip_policy_gives_the_batches_of_the_file_without_the_bad_records(tiny_dataset,
                                                                          tmp_path):
    """One bad record in ten: the same images as the clean file, the same batches run
    to run (also augmented and shuffled), the skip counted by rule, and a stream
    resumed at a batch's position continues exactly; a multi-replica stream (whose
    offset counts examples) too."""
    good = _good(9)
    clean = records.write(str(tmp_path / "clean.tfrecord"), good)
    dirty = records.write(str(tmp_path / "dirty.tfrecord"),
                          good[:4] + [FAULTS["inverted_box"]] + good[4:])

    def images(config, path, count=3, **kwargs):
        iterator = iter(inputs.build_train_dataset(config, [path], 3, **kwargs))
        return [next(iterator) for _ in range(count)]

    config = _plain_config(tiny_dataset, dirty)
    config.train_input_reader.bad_example_policy = "skip"
    got, expected = images(config, dirty), images(config, clean)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    counts = dict(zip(example_checks.COUNTERS, got[-1][3].numpy(), strict=True))
    assert counts["inverted_box"] == 1 and counts["examples"] == 10

    config = make_tiny_config(tiny_dataset)
    config.train_input_reader.bad_example_policy = "skip"
    config.train_input_reader.shuffle_buffer_size = 4
    first, again = images(config, dirty, 6), images(config, dirty, 6)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    position = inputs.InputPosition(*(int(v) for v in first[2][2].numpy()))
    resumed = images(config, dirty, 3, start=position)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first[3:], resumed, strict=True))

    context = tf.distribute.InputContext(1, 0, 1)
    whole = images(config, dirty, 6, input_context=context)
    skipped = images(config, dirty, 3, input_context=context,
                     start=inputs.InputPosition(0, 3 * 3))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(whole[3:], skipped, strict=True))


def test_negatives_grayscale_rgba_png_jpeg_and_300_boxes_train_and_evaluate(tiny_dataset,
                                                                           tmp_path):
    """Images without boxes, a grayscale PNG, an RGBA PNG, JPEGs and a record of 300
    boxes train (losses finite), are evaluated with COCO, and drawn for TensorBoard;
    the boxes beyond max_number_of_boxes are counted in the log and data_report.json;
    a bad eval record under the skip policy is dropped and counted."""
    jpeg = records.encode()
    mixed = [
        records.example(records.encode(seed=1), boxes=[], source_id=1),
        records.example(records.encode("PNG", "L", seed=2), source_id=2),
        records.example(records.encode("PNG", "RGBA", seed=3), source_id=3),
        records.example(jpeg, boxes=[(0.1, 0.1, 0.5, 0.5)] * 300, source_id=4),
        records.example(records.encode(seed=5), boxes=[], source_id=5),
        *_good(3, 6),
    ]
    path = records.write(str(tmp_path / "mixed.tfrecord"), mixed)
    bad_eval = records.write(str(tmp_path / "bad_eval.tfrecord"), [FAULTS["inverted_box"]])
    config = _plain_config(tiny_dataset, path, num_steps=2, log_every_n=2, summary_every_n=2)
    config.eval_input_reader.input_path = [path, bad_eval]
    config.eval_input_reader.bad_example_policy = "skip"
    config.eval_config.eval_every_n = 2
    lines: list[str] = []
    model_dir = str(tmp_path / "run")
    result = train(config, model_dir, checkpoint_every_n=2, log=lines.append)
    assert result.step == 2 and np.isfinite(result.final_losses["total_loss"])
    assert any(line.startswith("data: 200 boxes beyond max_number_of_boxes (100) dropped")
               for line in lines), lines
    assert ("eval data: 1 example skipped (inverted_box 1); 200 boxes beyond "
            "max_number_of_boxes (100) dropped (of 9 examples read)") in lines, lines
    with open(os.path.join(model_dir, "data_report.json")) as f:
        report = json.load(f)
    assert report["tidied"]["boxes_over_max_dropped"] == 200
    assert report["examples_read"] == 8 and not any(report["skipped"].values())
    with open(os.path.join(model_dir, "eval_metrics.jsonl")) as f:
        evaluation = json.loads(f.readline())
    assert evaluation["step"] == 2 and evaluation["num_images"] == 8


def test_bad_data_stops_at_step_0_and_leaves_no_new_model_dir(tiny_dataset, tmp_path):
    path = records.write(str(tmp_path / "bad.tfrecord"),
                         _good(2) + [FAULTS["pixel_coordinates"]] + _good(5, 2))
    model_dir = tmp_path / "new_run"
    with pytest.raises(TrainError, match=rf"bad training data at step 0: {path} record 2 "
                       r"\(image/source_id '107'\): box coordinates go beyond 1"):
        train(_plain_config(tiny_dataset, path), str(model_dir), checkpoint_every_n=2)
    assert not model_dir.exists()


def test_bad_data_on_resume_changes_no_checkpoint(trained_run, tiny_dataset, tmp_path):
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run["model_dir"], model_dir)
    before = {name: open(os.path.join(model_dir, name), "rb").read()
              for name in os.listdir(model_dir) if name.startswith("ckpt-")}
    path = records.write(str(tmp_path / "bad.tfrecord"), [FAULTS["inverted_box"]] + _good(7))
    config = _plain_config(tiny_dataset, path, num_steps=8)
    config.model.post_processing.score_threshold = 0.0
    with pytest.raises(TrainError, match="inverted_box"):
        train(config, model_dir, checkpoint_every_n=2, record_summaries=False)
    after = {name: open(os.path.join(model_dir, name), "rb").read()
             for name in os.listdir(model_dir) if name.startswith("ckpt-")}
    assert after == before and ckpt_steps(model_dir) == [2, 4]


def test_check_data_reports_each_problem_once_and_nothing_on_good_data(tiny_dataset,
                                                                       tmp_path):
    damaged = records.example(records.damaged_inside(records.encode()), source_id=111)
    path = records.write(str(tmp_path / "bad.tfrecord"),
                         _good(2) + list(FAULTS.values()) + [damaged] + _good(2, 2))
    report = data_check.check_files("train_input_reader", [path], 3, 100)
    assert {rule: p.count for rule, p in report.problems.items()} == {
        **{rule: 1 for rule in FAULTS}, "undecodable": 1}
    assert report.records == len(FAULTS) + 5 and report.images == 4
    assert report.problems["inverted_box"].examples[0][:3] == (path, 10, "109")
    good_files = sorted(tf.io.gfile.glob(tiny_dataset["train_pattern"]))
    good = data_check.check_files("train_input_reader", good_files, 3, 100)
    assert good.num_problems == 0 and good.records == good.images == 48
    assert sum(good.boxes_per_class.values()) == sum(good.boxes_per_image) > 48
    text = data_check.format_report([report, good], {1: "square", 2: "circle", 3: "triangle"},
                                    1.0)
    assert "problem inverted_box: 1 record" in text and "boxes per class: square (1)" in text


@pytest.mark.slow
def test_check_data_script_and_trainer_on_bad_data_print_one_error_line(tiny_dataset,
                                                                        tmp_path):
    path = records.write(str(tmp_path / "bad.tfrecord"),
                         _good(3) + [FAULTS["box_outside_image"]] + _good(4, 3))
    config = _plain_config(tiny_dataset, path)
    config_path = str(tmp_path / "bad.yaml")
    dump_config(config, config_path)
    check = run_trainer(f"--pipeline_config_path={config_path}",
                        script="scripts/check_data.py")
    assert check.returncode == 1, check.stderr
    assert "problem box_outside_image: 1 record" in check.stdout
    assert f"{path} record 3 (image/source_id '108')" in check.stdout

    model_dir = tmp_path / "run"
    trained = run_trainer(f"--pipeline_config_path={config_path}", f"--model_dir={model_dir}")
    assert trained.returncode == 1
    errors = [ln for ln in trained.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in trained.stderr, trained.stderr
    assert f"{path} record 3 (image/source_id '108'): a box coordinate is outside [0, 1]" in (
        errors[0])
    assert not model_dir.exists()


def test_a_config_with_binary_bytes_names_the_file_and_position(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(b"model:\n  num_classes: 3\n  input_size: [64,\x00 64]\n")
    with pytest.raises(ConfigError, match=rf"{path}:3:19: byte 0x00 is not text"):
        load_config(str(path))
    path.write_bytes(b"model:\n  \xff\xfe num_classes: 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:2:3: byte 0xff is not UTF-8 text"):
        load_config(str(path))


def test_data_counts_are_the_runs_totals_across_a_resume(trained_run, tmp_path):
    """A resumed run continues the counts its checkpoint holds (batch 4: 6 steps are
    24 examples read, 16 of them before the resume at step 4)."""
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run["model_dir"], model_dir)

    def examples_read(step: int) -> int:
        counts = tf.train.load_checkpoint(os.path.join(model_dir, f"ckpt-{step}")).get_tensor(
            "data_counts/.ATTRIBUTES/VARIABLE_VALUE")
        return int(counts[example_checks.COUNTER_INDEX["examples"]])

    assert examples_read(4) == 16
    config = make_tiny_config_like(trained_run, num_steps=6)
    train(config, model_dir, checkpoint_every_n=2, record_summaries=False)
    assert examples_read(6) == 24
    with open(os.path.join(model_dir, "data_report.json")) as f:
        assert json.load(f)["examples_read"] == 24


def make_tiny_config_like(trained_run, **train_overrides):
    import copy

    config = copy.deepcopy(trained_run["config"])
    for key, value in train_overrides.items():
        setattr(config.train_config, key, value)
    return config
