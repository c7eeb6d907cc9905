"""The OD API's Keras MobileNet v1 checkpoints (`ssd_mobilenet_v1_fpn_keras`) as
fine_tune_checkpoint: they load into Model Garden's MobileNetV1 (model.backbone type:
mobilenet, model_id: MobileNetV1), which then computes the OD API's feature maps.

The fixture (tests/fixtures/odapi/ssd_mobilenet_v1_fpn_keras/, written by
scripts/odapi_fixtures/make_odapi_fixtures.py with the real OD API) holds the OD API's
model built from the published ssd_mobilenet_v1_fpn_640x640 config, reduced to
depth_multiplier 0.5, min_depth 8, 128 px, 3 classes: the checkpoint's names and
shapes (the test writes it with seeded_weights' values, which the script checked are
the values the OD API's own checkpoint holds), an image and the OD API's backbone
outputs on it (its classification_backbone: conv_pw_3/5/11/13_relu, our levels 2-5)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import REPO, make_tiny_config, use_mobilenet, write_odapi_fixture_config
from test_fine_tune_odapi_resnet import (
    _checkpoint,
    _manifest,
    _reference,
    assert_odapi_fpn_loaded,
    fpn_errors,
)

from train_lib.config import PipelineConfig, load_config
from train_lib.families import build_model
from train_lib.training import fine_tune, odapi_checkpoint
from train_lib.training.trainer import TrainError, train

NAME = "ssd_mobilenet_v1_fpn_keras"
FIXTURE = os.path.join(REPO, "tests", "fixtures", "odapi", NAME)
PLACEHOLDER = '"PATH_TO_BE_CONFIGURED/mobilenet_v1.ckpt-1"'  # its pipeline.config's checkpoint
BACKBONE_VARIABLES = 135  # 27 convolutions' kernels, 27 batch norms' four variables
# The OD API's depth_multiplier 0.5 scales each layer twice (Keras' alpha, then its
# layer override): a quarter of the published widths, Model Garden's 0.25.
WIDTH = 0.25
TOLERANCE = 1e-4
ODAPI_PREFIX = odapi_checkpoint.DETECTION_BACKBONE + odapi_checkpoint.LAYER


def _model(width: float = WIDTH, model_id: str = "MobileNetV1", size: int = 128,
           odapi_fpn: bool = False):
    """Our detector with the published config's conv_hyperparams (ReLU6, epsilon 0.001);
    `odapi_fpn`: with the OD API's FPN (model.fpn.type: odapi) of the fixture's levels
    3..7 and depth 128, else Model Garden's (levels 3..5, 32 filters)."""
    config = PipelineConfig()
    model = config.model
    model.num_classes = 3
    model.input_size = [size, size]
    model.backbone.type, model.backbone.model_id = "mobilenet", model_id
    model.backbone.width_multiplier = width
    model.norm.activation, model.norm.norm_epsilon = "relu6", 0.001
    model.fpn.num_filters = 32
    model.head.num_convs, model.head.num_filters = 1, 32
    if odapi_fpn:
        model.min_level, model.max_level, model.fpn.num_filters = 3, 7, 128
        model.fpn.type = "odapi"
    return build_model(model)


def _levels(model, inputs: np.ndarray) -> dict[str, np.ndarray]:
    return {level: value.numpy() for level, value in
            model.backbone(tf.constant(inputs), training=False).items()}


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def test_the_fixture_is_the_odapi_extractor_on_its_image():
    reference = _reference(NAME)
    image = tf.io.decode_png(tf.io.read_file(os.path.join(FIXTURE, "image.png"))).numpy()
    np.testing.assert_allclose(reference["preprocessed"][0], image / 127.5 - 1.0, atol=1e-6)
    assert [reference[f"level_{n}"].shape[1:] for n in range(2, 6)] == [
        (32, 32, 32), (16, 16, 64), (8, 8, 128), (4, 4, 256)]


def test_model_gardens_mobilenet_v1_numbers_its_layers_as_the_keras_application():
    """The order of layer_with_weights-<i> in the OD API's checkpoints is Keras'
    MobileNet's; Model Garden's MobileNetV1 has the same layers, with the same shapes,
    in that order."""
    application = tf_keras.applications.MobileNet(weights=None, include_top=False,
                                                  input_shape=(128, 128, 3))
    theirs = [layer for layer in application.layers if layer.weights]
    ours = odapi_checkpoint._keras_layers(_model(1.0).backbone, "ckpt-0")
    assert [name for name, _ in ours] == [layer.name for layer in theirs]
    for (name, layer), keras_layer in zip(ours, theirs, strict=True):
        assert [w.shape for w in layer.weights] == [w.shape for w in keras_layer.weights], name


def test_our_backbone_and_fpn_compute_the_odapi_feature_maps(tmp_path):
    """With model.fpn.type odapi, a detection checkpoint loads the backbone and the
    FPN (26 variables): ours then computes the OD API's levels and its five feature
    maps."""
    reference = _reference(NAME)
    model = _model(odapi_fpn=True)
    fresh = _levels(model, reference["preprocessed"])
    fresh_fpn = fpn_errors(model, reference)
    loaded = fine_tune.apply(model, _checkpoint(NAME, tmp_path), "detection")
    assert loaded.count == len(model.backbone.variables) + 26 == BACKBONE_VARIABLES + 26
    assert_odapi_fpn_loaded(loaded, model, 26)
    ours = _levels(model, reference["preprocessed"])
    for level in "2345":
        theirs = reference[f"level_{level}"]
        assert ours[level].shape == theirs.shape, level
        assert _relative(fresh[level], theirs) > 0.1, level  # random weights differ
        assert _relative(ours[level], theirs) <= TOLERANCE, level
    errors = fpn_errors(model, reference)
    assert sorted(errors) == [3, 4, 5, 6, 7]
    assert all(error > 0.1 for error in fresh_fpn.values()), fresh_fpn
    assert all(error <= TOLERANCE for error in errors.values()), errors


def test_the_report_says_what_loaded_and_why_the_rest_is_fresh(tmp_path):
    model = _model()
    prefix = _checkpoint(NAME, tmp_path)
    loaded = fine_tune.apply(model, prefix, "detection")
    assert loaded.line == (
        f"fine-tune: {BACKBONE_VARIABLES} of {BACKBONE_VARIABLES} backbone variables from an "
        f"OD API checkpoint {prefix} (detection); FPN and head fresh (ours compute other "
        "functions than the OD API's SSD feature maps and box predictor)")
    report = json.loads(json.dumps(loaded.report))
    assert {row["variable"] for row in report["loaded"] + report["fresh"]} == {
        v.name for v in model.variables}
    assert {row["odapi_layer"] for row in report["loaded"]} >= {
        "conv1/kernel", "conv_dw_1/depthwise_kernel", "conv_pw_13_bn/moving_variance"}
    stored = {name for name, _ in tf.train.list_variables(prefix)}
    unused = {row["checkpoint_key"] for row in report["unused"]}
    assert unused | {row["checkpoint_key"] for row in report["loaded"]} == stored - {
        "_CHECKPOINTABLE_OBJECT_GRAPH"}
    reasons = {row["checkpoint_key"]: row["reason"] for row in report["unused"]}
    fpn = [key for key in reasons if "/_fpn_features_generator/" in key]
    assert fpn and all("not our FPN's function" in reasons[key] for key in fpn)


def test_the_published_configs_checkpoint_maps_entirely():
    """A zoo ckpt-0 of the published ssd_mobilenet_v1_fpn_640x640 (its names and shapes
    as the OD API's model of that config saves them) fills every variable of a
    full-width MobileNetV1."""
    shapes = dict(map(tuple, _manifest(NAME)["published"]["variables"]))
    model = _model(1.0)
    result = odapi_checkpoint.plan_shapes(model, shapes, "ckpt-0", "detection")
    assert len(result.mapped) == len(model.backbone.variables) == BACKBONE_VARIABLES


def test_the_fixtures_pipeline_config_maps_to_the_width_that_loads(tmp_path):
    """Our mapping of the fixture's pipeline.config (depth_multiplier 0.5, its
    fine_tune_checkpoint naming the OD API's checkpoint) builds the backbone that
    checkpoint fits: width_multiplier 0.25, and the OD API's FPN (model.fpn.type: odapi)
    at its depth, into which the checkpoint's FPN loads as a detection checkpoint; as
    its classification checkpoint (the config's type), the backbone alone loads."""
    prefix = _checkpoint(NAME, tmp_path)
    config = load_config(write_odapi_fixture_config(NAME, tmp_path, {PLACEHOLDER: f'"{prefix}"'}))
    backbone = config.model.backbone
    assert (backbone.model_id, backbone.width_multiplier) == ("MobileNetV1", WIDTH)
    assert config.model.fpn.type == "odapi"
    assert config.train_config.fine_tune_checkpoint_type == "backbone"  # classification
    model = build_model(config.model)
    loaded = fine_tune.apply(model, config.train_config.fine_tune_checkpoint,
                             config.train_config.fine_tune_checkpoint_type)
    assert loaded.count == BACKBONE_VARIABLES
    assert "FPN variables" not in loaded.line
    loaded = fine_tune.apply(model, config.train_config.fine_tune_checkpoint, "detection")
    assert loaded.count == BACKBONE_VARIABLES + 26
    assert_odapi_fpn_loaded(loaded, model, 26)


@pytest.mark.parametrize("width, model_id, first, shapes", [
    # another depth multiplier: conv1 has 16 filters at 0.5, the checkpoint's 8
    (0.5, "MobileNetV1", "0/kernel", "[3, 3, 3, 8] in the checkpoint, "
                                                       "[3, 3, 3, 16] in this model"),
    # another extractor: MobileNetV2's Conv1 (x0.35: 16 filters), then its expanded_conv
    # depthwise where MobileNet v1 has a batch norm: V2's bn_Conv1 fits conv1_bn, ...
    (0.35, "MobileNetV2", "0/kernel", "[3, 3, 3, 8] in the checkpoint, "
                                                        "[3, 3, 3, 16] in this model"),
])
def test_another_width_or_extractor_is_refused_naming_the_first_variable(
        width, model_id, first, shapes, tmp_path):
    model = _model(width, model_id)
    before = [v.numpy() for v in model.variables]
    prefix = _checkpoint(NAME, tmp_path)
    with pytest.raises(TrainError) as err:
        fine_tune.apply(model, prefix, "detection")
    message = str(err.value)
    assert message.startswith(f"train_config.fine_tune_checkpoint {prefix} does not fit")
    assert f"the first variable whose shape differs is {ODAPI_PREFIX}{first}/" in message
    assert shapes in message and "\n" not in message
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables,
                                                            strict=True))


def test_an_odapi_mobilenet_v2_checkpoint_is_refused_by_a_mobilenet_v1():
    """The OD API's MobileNetV2 (the ssd_mobilenet_v2_keras fixture, x0.35: Conv1 of 16
    filters) into our MobileNetV1: its first layer already differs."""
    prefix = os.path.join(REPO, "tests", "fixtures", "odapi", "ssd_mobilenet_v2_keras",
                          "checkpoint", "ckpt-0")
    model = _model(WIDTH)
    with pytest.raises(TrainError, match=(
            f"the first variable whose shape differs is {ODAPI_PREFIX}0/kernel"
            r"/\.ATTRIBUTES/VARIABLE_VALUE \(the OD API's Keras layer conv1/kernel\): "
            r"\[3, 3, 3, 16\] in the checkpoint, \[3, 3, 3, 8\] in this model")):
        fine_tune.apply(model, prefix, "detection")


@pytest.mark.slow
def test_a_run_fine_tunes_from_the_odapi_mobilenet_v1_checkpoint(tiny_dataset, tmp_path):
    config = use_mobilenet(make_tiny_config(tiny_dataset, num_steps=3), "MobileNetV1", WIDTH)
    config.model.norm.activation, config.model.norm.norm_epsilon = "relu6", 0.001
    config.train_config.fine_tune_checkpoint = _checkpoint(NAME, tmp_path)
    config.train_config.fine_tune_checkpoint_type = "detection"
    model_dir, lines = str(tmp_path / "run"), []
    result = train(config, model_dir, record_summaries=False, log=lines.append)
    assert result.step == 3
    assert any(ln.startswith(f"fine-tune: {BACKBONE_VARIABLES} of {BACKBONE_VARIABLES} "
                             "backbone variables from an OD API checkpoint") for ln in lines)
    with open(os.path.join(model_dir, fine_tune.REPORT_FILE)) as f:
        assert len(json.load(f)["loaded"]) == BACKBONE_VARIABLES


def test_a_depth_multiplier_whose_widths_model_garden_rounds_otherwise_is_noted(
        tmp_path, caplog):
    """At depth_multiplier 0.5 with the published min_depth 16, the OD API's first
    layers have 16 channels where Model Garden's MobileNetV1 at 0.25 has 8: the mapping
    says so (and such a checkpoint is refused naming conv1)."""
    path = write_odapi_fixture_config(NAME, tmp_path, {"min_depth: 8": "min_depth: 16",
                                                       PLACEHOLDER: '""'})
    with caplog.at_level("INFO", logger="absl"):
        assert load_config(path).model.backbone.width_multiplier == WIDTH
    assert ("the OD API's Keras MobileNet v1 has [16, 32, 64, 128, 256] channels at "
            "depth_multiplier 0.5 (min_depth 16), Model Garden's MobileNetV1 [8, 16, 32, 64, "
            "128, 256] at width_multiplier 0.25") in caplog.text


def test_a_keras_application_weights_file_loads_as_its_classification_checkpoint(tmp_path):
    """The OD API's classification checkpoint of this extractor is Keras' MobileNet
    (v1) application; its weights file (as tf_keras' save_weights writes it, the form
    of the published mobilenet_<alpha>_<size>_tf_no_top.h5) loads into our
    MobileNetV1, which then computes the application's conv_pw_3/5/11/13_relu (its
    convolutions have no bias: nothing to fold). alpha 0.25 is our width 0.25."""
    application = tf_keras.applications.MobileNet(weights=None, include_top=False,
                                                  alpha=0.25, input_shape=(128, 128, 3))
    rng = np.random.default_rng(0)
    for variable in application.weights:
        shape = variable.shape.as_list()
        if variable.name.endswith("moving_variance:0"):
            variable.assign(rng.uniform(0.5, 1.5, shape))
        elif variable.name.endswith("gamma:0"):
            variable.assign(rng.uniform(0.5, 1.0, shape))
        else:
            variable.assign(rng.normal(0.0, 0.3, shape))
    path = str(tmp_path / "mobilenet_0_25_128_tf_no_top.h5")
    application.save_weights(path)
    model = _model(WIDTH)
    loaded = fine_tune.apply(model, path, "backbone")
    assert loaded.count == BACKBONE_VARIABLES
    assert "convolution biases folded" not in loaded.line
    probe = tf_keras.Model(application.inputs, [
        application.get_layer(f"conv_pw_{i}_relu").output for i in (3, 5, 11, 13)])
    inputs = _reference(NAME)["preprocessed"]
    ours = _levels(model, inputs)
    for level, theirs in zip("2345", probe(inputs, training=False), strict=True):
        assert _relative(ours[level], theirs.numpy()) <= TOLERANCE, level
