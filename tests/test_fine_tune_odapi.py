"""A TF2 checkpoint of the TF Object Detection API as fine_tune_checkpoint: its
backbone loads into ours, and our backbone then computes the OD API's feature maps.

The fixture (tests/fixtures/odapi/ssd_mobilenet_v2_keras/, written by
scripts/odapi_fixtures/make_odapi_fixtures.py with the real OD API) holds the OD
API's own SSD MobileNetV2 (depth_multiplier 0.35, 128 px, random weights) as its
exporter writes a zoo ckpt-0, an image and the OD API's tensors on that image."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import REPO, ckpt_steps, make_tiny_config, use_mobilenet
from official.vision.modeling.layers import nn_blocks

from train_lib.config import PipelineConfig
from train_lib.families import build_model
from train_lib.training import fine_tune
from train_lib.training.trainer import TrainError, train

FIXTURE = os.path.join(REPO, "tests", "fixtures", "odapi", "ssd_mobilenet_v2_keras")
CHECKPOINT = os.path.join(FIXTURE, "checkpoint", "ckpt-0")
BACKBONE_VARIABLES = 260  # 52 convolutions' kernels, 52 batch norms' four variables
# Our MobileNetV2 endpoints and the Keras layers of the OD API's backbone that end the
# same blocks; "expansion" is block 14's expansion, the OD API's SSD stride-16 map.
LEVELS = {"2": "block_2_add", "3": "block_5_add", "4": "block_12_add",
          "5": "block_16_project_BN", "6": "out_relu", "expansion": "block_13_expand_relu"}
TOLERANCE = 1e-4


def _model(width: float = 0.35, scale_last_layer: bool = True, backbone: str = "mobilenet"):
    config = PipelineConfig()
    config.model.num_classes = 3
    config.model.input_size = [128, 128]
    config.model.backbone.type = backbone
    config.model.backbone.model_id = "MobileNetV2" if backbone == "mobilenet" else "50"
    config.model.backbone.width_multiplier = width
    config.model.backbone.scale_last_layer = scale_last_layer
    config.model.fpn.num_filters = 32
    config.model.head.num_convs, config.model.head.num_filters = 1, 32
    return build_model(config.model)


def _features(model) -> dict[str, np.ndarray]:
    """Our backbone's endpoints on the fixture's image, preprocessed as the OD API's
    MobileNet feature extractors do (x / 127.5 - 1), and block 14's expansion."""
    image = tf.io.decode_png(tf.io.read_file(os.path.join(FIXTURE, "image.png")))
    inputs = tf.cast(image, tf.float32)[None] * (2.0 / 255.0) - 1.0
    backbone = model.backbone
    outputs = {level: value.numpy() for level, value in backbone(inputs, training=False).items()}
    before = tf_keras.Model(backbone.inputs,
                            backbone.get_layer("block_group_invertedbottleneck_13").output)
    block = [layer for layer in backbone.layers
             if isinstance(layer, nn_blocks.InvertedBottleneckBlock)][13]  # block 14
    expanded = block._norm0(block._conv0(before(inputs, training=False)), training=False)
    outputs["expansion"] = block._activation_layer(expanded).numpy()
    return outputs


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(os.path.join(FIXTURE, "features.npz")) as arrays:
        return {key: arrays[key] for key in arrays.files}


def test_the_fixture_is_the_odapi_extractor_on_its_image(reference):
    image = tf.io.decode_png(tf.io.read_file(os.path.join(FIXTURE, "image.png"))).numpy()
    np.testing.assert_allclose(reference["preprocessed"][0], image / 127.5 - 1.0, atol=1e-6)
    # ssd_mobilenet_v2_keras's first two maps are these backbone layers as they are.
    maps = reference["feature_map_0"], reference["feature_map_1"]
    np.testing.assert_array_equal(maps[0], reference["layer/block_13_expand_relu"])
    np.testing.assert_array_equal(maps[1], reference["layer/out_relu"])


def test_our_backbone_computes_the_odapi_feature_maps(reference):
    model = _model()
    fresh = _features(model)
    loaded = fine_tune.apply(model, CHECKPOINT, "detection")
    assert loaded.count == len(model.backbone.variables) == BACKBONE_VARIABLES
    ours = _features(model)
    for level, layer in LEVELS.items():
        theirs = reference[f"layer/{layer}"]
        assert ours[level].shape == theirs.shape, level
        assert _relative(fresh[level], theirs) > 0.1, level  # random weights differ
        assert _relative(ours[level], theirs) <= TOLERANCE, (level, layer)


def test_the_report_lists_every_variable_loaded_or_fresh_and_why():
    model = _model()
    loaded = fine_tune.apply(model, CHECKPOINT, "detection")
    assert loaded.line.startswith(
        f"fine-tune: {BACKBONE_VARIABLES} of {BACKBONE_VARIABLES} backbone variables from "
        f"an OD API checkpoint {CHECKPOINT} (detection); FPN and head fresh (")
    report = json.loads(json.dumps(loaded.report))  # what write_report writes
    names = {row["variable"] for row in report["loaded"]} | {
        row["variable"] for row in report["fresh"]}
    assert len(report["loaded"]) == BACKBONE_VARIABLES
    assert names == {v.name for v in model.variables}
    assert {row["odapi_layer"] for row in report["loaded"]} >= {
        "Conv1/kernel", "block_16_project_BN/moving_variance", "Conv_1_bn/gamma"}
    assert all(row["reason"].startswith(("FPN:", "head:")) for row in report["fresh"])
    stored = {name for name, _ in tf.train.list_variables(CHECKPOINT)}
    unused = {row["checkpoint_key"] for row in report["unused"]}
    assert unused | {row["checkpoint_key"] for row in report["loaded"]} == stored - {
        "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert any("_box_predictor" in key for key in unused)


def test_a_classification_checkpoint_loads_the_same_backbone(tmp_path):
    """The OD API's `classification` reads a checkpoint whose root holds the Keras
    backbone as `feature_extractor`; this one holds the fixture's backbone so."""
    reader = tf.train.load_checkpoint(CHECKPOINT)
    prefix = "model/_feature_extractor/classification_backbone/"
    layers: dict[str, dict[str, tf.Variable]] = {}
    for name in reader.get_variable_to_shape_map():
        if name.startswith(prefix):
            layer, attribute = name[len(prefix):].split("/")[:2]
            layers.setdefault(layer, {})[attribute] = tf.Variable(reader.get_tensor(name))
    tree = tf.train.Checkpoint(**{k: tf.train.Checkpoint(**v) for k, v in layers.items()})
    path = tf.train.Checkpoint(feature_extractor=tree).write(str(tmp_path / "classification"))
    from_detection, from_classification = _model(), _model()
    fine_tune.apply(from_detection, CHECKPOINT, "detection")
    loaded = fine_tune.apply(from_classification, path, "backbone")
    assert loaded.count == BACKBONE_VARIABLES
    assert "FPN and head fresh (fine_tune_checkpoint_type backbone" in loaded.line
    for a, b in zip(from_detection.backbone.variables, from_classification.backbone.variables,
                    strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("width, scale_last_layer, first", [
    (0.5, True, "layer_with_weights-10/kernel"),  # block_1_project: 16 channels, not 8
    (0.35, False, "layer_with_weights-102/kernel"),  # Conv_1: Model Garden keeps 1280
])
def test_another_width_is_refused_naming_the_first_variable_and_loads_nothing(
        width, scale_last_layer, first):
    model = _model(width, scale_last_layer)
    before = [v.numpy() for v in model.variables]
    with pytest.raises(TrainError) as err:
        fine_tune.apply(model, CHECKPOINT, "detection")
    message = str(err.value)
    assert message.startswith(f"train_config.fine_tune_checkpoint {CHECKPOINT} does not fit")
    assert f"the first variable whose shape differs is model/_feature_extractor/" \
           f"classification_backbone/{first}" in message
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables,
                                                            strict=True))


def test_another_backbone_type_is_refused():
    with pytest.raises(TrainError, match="load into a MobileNetV2 backbone .* ResNet"):
        fine_tune.apply(_model(1.0, False, backbone="resnet"), CHECKPOINT, "backbone")


@pytest.mark.slow
def test_a_run_fine_tunes_from_the_odapi_checkpoint(tiny_dataset, tmp_path):
    config = use_mobilenet(make_tiny_config(tiny_dataset, num_steps=3))
    config.model.backbone.scale_last_layer = True
    config.train_config.fine_tune_checkpoint = os.path.dirname(CHECKPOINT)
    config.train_config.fine_tune_checkpoint_type = "detection"
    model_dir, lines = str(tmp_path / "run"), []
    result = train(config, model_dir, record_summaries=False, log=lines.append)
    assert result.step == 3 and ckpt_steps(model_dir) == [3]
    assert any(ln.startswith(f"fine-tune: {BACKBONE_VARIABLES} of {BACKBONE_VARIABLES} "
                             "backbone variables from an OD API checkpoint") for ln in lines)
    # a YAML config keeps Model Garden's statistics: the run says the weights want others
    warnings = [ln for ln in lines if ln.startswith("WARNING: train_config.fine_tune_")]
    assert len(warnings) == 1 and "mean [127.5, 127.5, 127.5]" in warnings[0]
    with open(os.path.join(model_dir, fine_tune.REPORT_FILE)) as f:
        report = json.load(f)
    assert len(report["loaded"]) == BACKBONE_VARIABLES and report["warnings"] == warnings

    config.model.backbone.width_multiplier = 0.5  # another width than the checkpoint's
    bad_dir = str(tmp_path / "bad")
    with pytest.raises(TrainError, match="the first variable whose shape differs"):
        train(config, bad_dir, record_summaries=False, log=lines.append)
    assert not os.path.exists(bad_dir)
