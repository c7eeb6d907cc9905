"""A fine_tune_checkpoint that cannot start the run: model_main_tf2.py prints one
`error:` line saying what the config expects and what the checkpoint holds, exits
1 without a traceback, and writes nothing to model_dir.

Checkpoints: the OD API's own (tests/fixtures/odapi/ssd_mobilenet_v2_keras, depth
multiplier 0.35; ssd_mobilenet_v1_fpn_keras, written from its manifest), this
trainer's (conftest's trained_run: ResNet-18 x0.25, FPN 32), a TF1 name-based one
written here by tf.compat.v1's Saver, and broken copies."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import (
    REPO,
    make_tiny_config,
    run_trainer,
    use_mobilenet,
    write_odapi_fixture_config,
)
from tests.test_cli import _assert_clean_failure
from tests.test_fine_tune_odapi_resnet import _checkpoint as odapi_fixture_checkpoint
from train_lib.config import dump_config

ODAPI_MODEL = os.path.join(REPO, "tests", "fixtures", "odapi", "ssd_mobilenet_v2_keras")
ODAPI_CHECKPOINT = os.path.join(ODAPI_MODEL, "checkpoint")


def _snapshot(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _tf1_checkpoint(directory) -> str:
    """A TF1 (name-based) checkpoint as the OD API's TF1 zoo holds them."""
    prefix = str(directory / "model.ckpt")
    with tf.Graph().as_default():
        tf.compat.v1.get_variable("FeatureExtractor/MobilenetV2/Conv/weights", [3, 3, 3, 16])
        tf.compat.v1.get_variable("BoxPredictor_0/BoxEncodingPredictor/biases", [12])
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, prefix)
    return prefix


def _truncated(directory, suffix: str) -> str:
    """A copy of the OD API checkpoint whose ckpt-0<suffix> file lost its second half."""
    copy = directory / "truncated"
    shutil.copytree(ODAPI_CHECKPOINT, copy)
    path = copy / f"ckpt-0{suffix}"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(copy)


def _random_files(directory, with_state: bool) -> str:
    rng = np.random.default_rng(0)
    names = ["a.bin", "notes.txt"] + (["checkpoint", "ckpt-0.index"] if with_state else [])
    target = directory / "random"
    target.mkdir()
    for name in names:
        (target / name).write_bytes(rng.bytes(2000))
    return str(target)


# name -> (the checkpoint, made in tmp_path; the fragments of the error line)
UNREADABLE = {
    "tf1_checkpoint": (_tf1_checkpoint, (
        "is a TF1 name-based checkpoint (variables such as "
        "BoxPredictor_0/BoxEncodingPredictor/biases", "TF2 object-based checkpoints only")),
    "truncated_index": (lambda d: _truncated(d, ".index"), (
        "ckpt-0.index is truncated or not a checkpoint index", "copy or download")),
    "truncated_data": (lambda d: _truncated(d, ".data-00000-of-00001"), (
        "cannot be read", "data file is truncated or corrupt")),
    "random_files_with_state_file": (lambda d: _random_files(d, True), (
        "its `checkpoint` file is not a checkpoint state file",)),
    "random_files": (lambda d: _random_files(d, False), (
        "is a directory without a checkpoint state file",)),
}


def _run(config, tmp_path, model_dir, *extra: str):
    path = str(tmp_path / "config.yaml")
    dump_config(config, path)
    return run_trainer(f"--pipeline_config_path={path}", f"--model_dir={model_dir}",
                       "--num_train_steps=1", *extra)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_an_unreadable_checkpoint_is_one_error_and_model_dir_is_untouched(
        case, tiny_dataset, tmp_path):
    make, fragments = UNREADABLE[case]
    config = make_tiny_config(tiny_dataset)
    config.train_config.fine_tune_checkpoint = make(tmp_path)
    config.train_config.fine_tune_checkpoint_type = "detection"
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "notes.txt").write_text("earlier files\n")
    before = _snapshot(model_dir)
    proc = _run(config, tmp_path, str(model_dir))
    _assert_clean_failure(proc, "train_config.fine_tune_checkpoint", *fragments)
    assert _snapshot(model_dir) == before and len(os.listdir(model_dir)) == 1


@pytest.mark.slow
def test_fine_tune_checkpoint_version_v1_in_a_pipeline_config(tiny_dataset, tmp_path):
    config = write_odapi_fixture_config(
        os.path.basename(ODAPI_MODEL), tmp_path, {"fine_tune_checkpoint_version: V2": (
            f'fine_tune_checkpoint: "{ODAPI_CHECKPOINT}/ckpt-0" '
            'fine_tune_checkpoint_type: "detection" fine_tune_checkpoint_version: V1')},
        tiny_dataset["label_map_path"], tiny_dataset["train_pattern"])
    model_dir = tmp_path / "run"
    proc = run_trainer(f"--pipeline_config_path={config}", f"--model_dir={model_dir}")
    _assert_clean_failure(proc, "fine_tune_checkpoint_version", "V1", "only V2")
    assert not model_dir.exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["depth_multiplier", "fpn_width", "extractor",
                                  "odapi_extractor"])
def test_a_checkpoint_of_another_model_names_the_first_variable_that_differs(
        case, tiny_dataset, trained_run, tmp_path):
    config = make_tiny_config(tiny_dataset)
    config.train_config.fine_tune_checkpoint_type = "detection"
    own = os.path.join(trained_run["model_dir"], "ckpt-4")
    if case == "depth_multiplier":  # the OD API's x0.35 MobileNetV2 into an x0.5 one
        use_mobilenet(config, width=0.5)
        config.model.backbone.scale_last_layer = True
        config.train_config.fine_tune_checkpoint = ODAPI_CHECKPOINT
        fragments = ("the first variable whose shape differs is model/_feature_extractor/"
                     "classification_backbone/layer_with_weights-10/kernel",
                     "8] in the checkpoint, [1, 1, ", "16] in this model")
    elif case == "fpn_width":  # this trainer's FPN of 32 filters into one of 48
        config.model.fpn.num_filters = 48
        config.train_config.fine_tune_checkpoint = own
        fragments = ("does not fit this model's backbone and decoder and head",
                     "incompatible tensor with shape",
                     "model.backbone (and, for detection and full, fpn")
    elif case == "odapi_extractor":  # the OD API's MobileNet v1 (x0.5) into a MobileNetV2
        use_mobilenet(config)
        config.train_config.fine_tune_checkpoint = odapi_fixture_checkpoint(
            "ssd_mobilenet_v1_fpn_keras", tmp_path)
        fragments = ("the first variable whose shape differs is model/_feature_extractor/"
                     "classification_backbone/layer_with_weights-0/kernel",
                     "[3, 3, 3, 8] in the checkpoint, [3, 3, 3, 16] in this model")
    else:  # this trainer's ResNet-18 into a MobileNetV1
        use_mobilenet(config, "MobileNetV1")
        config.train_config.fine_tune_checkpoint = own
        fragments = ("does not fit this model's backbone", "incompatible tensor with shape")
    model_dir = tmp_path / "run"
    proc = _run(config, tmp_path, str(model_dir))
    key = f"train_config.fine_tune_checkpoint {config.train_config.fine_tune_checkpoint}"
    _assert_clean_failure(proc, key, *fragments)
    assert not model_dir.exists()
