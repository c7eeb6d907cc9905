"""The OD API's EfficientDet checkpoints (`ssd_efficientnet-b0_bifpn_keras`): what
differs between its Keras EfficientNet and Model Garden's, measured, and fine_tune
loading them exactly.

The fixture (tests/fixtures/odapi/ssd_efficientnet-b0_bifpn_keras/, written by
scripts/odapi_fixtures/make_odapi_fixtures.py with the real OD API) holds the OD API's
model built from the published ssd_efficientdet_d0_512x512 config at 256 px with 3
classes (B0 at full width): the checkpoint's names and shapes (the test writes it with
seeded_weights' values), an image and the Keras EfficientNet's tensors at the ends of
our levels 2-5 (its BiFPN reads 3-5).

Measured here: the Keras EfficientNet's 128 layers with weights up to level 5 (the
checkpoint's model/_feature_extractor/_efficientnet/) map one to one, in order and
shape, onto Model Garden's EfficientNet-B0; with them, Model Garden's EfficientNet
built with swish inside squeeze-excitation computes the OD API's levels exactly, and
with ReLU there (Model Garden's default) about 1% apart. So fine_tune loads them into
`model.backbone.se_activation: swish` (what the OD API mapper sets for EfficientDet),
checked on the OD API's own feature maps, and refuses ReLU naming the key. B0's
levels end its block groups, so `efficientnet_endpoints` odapi (what the mapper sets
too) and model_garden compute the same levels (for B1:
test_fine_tune_odapi_efficientdet_b1.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import REPO, write_odapi_fixture_config
from official.vision.modeling.backbones import efficientnet
from official.vision.modeling.layers import nn_blocks
from test_fine_tune_odapi_resnet import _checkpoint, _manifest, _reference

from train_lib.config import PipelineConfig, load_config
from train_lib.families import build_model
from train_lib.training import fine_tune, odapi_checkpoint
from train_lib.training.trainer import TrainError

NAME = "ssd_efficientnet-b0_bifpn_keras"
FIXTURE = os.path.join(REPO, "tests", "fixtures", "odapi", NAME)
BACKBONE = "model/_feature_extractor/_efficientnet/"  # the Keras EfficientNet to level 5
LAYERS_TO_LEVEL_5 = 128
TOLERANCE = 1e-4


def _garden_layers(backbone) -> list:
    """Model Garden's EfficientNet's layers with weights in the Keras EfficientNet's
    order: stem conv and norm; per block expand conv and norm (if any), depthwise
    conv and norm, squeeze-excitation reduce and expand, project conv and norm; the
    head's 1x1 conv and norm (the Keras model's `top`)."""
    layers = []
    for layer in backbone.layers:
        if isinstance(layer, nn_blocks.InvertedBottleneckBlock):
            if layer._expand_ratio > 1:
                layers += [layer._conv0, layer._norm0]
            se = layer._squeeze_excitation
            layers += [layer._conv1, layer._norm1, se._se_reduce, se._se_expand,
                       layer._conv2, layer._norm2]
        elif layer.weights:
            layers.append(layer)
    return layers


def _garden_efficientnet(se_inner_activation: str):
    return efficientnet.EfficientNet(
        model_id="b0", se_ratio=0.25, activation="swish", norm_epsilon=0.001,
        se_inner_activation=se_inner_activation,
        input_specs=tf_keras.layers.InputSpec(shape=[None, 256, 256, 3]))


def _load_by_order(backbone, prefix: str) -> int:
    """Assigns the checkpoint's layer_with_weights-<i> to the i-th of our layers up to
    level 5; returns how many variables it assigned."""
    reader = tf.train.load_checkpoint(prefix)
    count = 0
    for i, layer in enumerate(_garden_layers(backbone)[:LAYERS_TO_LEVEL_5]):
        for variable in layer.weights:
            attribute = variable.name.split("/")[-1].split(":")[0]
            value = reader.get_tensor(f"{BACKBONE}layer_with_weights-{i}/{attribute}"
                                      "/.ATTRIBUTES/VARIABLE_VALUE")
            variable.assign(value)
            count += 1
    return count


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("name", [NAME, "ssd_efficientnet-b1_bifpn_keras"])
def test_the_fixture_is_the_odapi_extractor_on_its_image(name):
    """B0's and B1's fixtures (the OD API's levels at B0's block names, so the same
    shapes at 256 px)."""
    reference = _reference(name)
    fixture = os.path.join(REPO, "tests", "fixtures", "odapi", name)
    image = tf.io.decode_png(tf.io.read_file(os.path.join(fixture, "image.png"))).numpy()
    # EfficientDet's preprocessing: ImageNet's mean and standard deviation on [0, 1].
    expected = (image / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(reference["preprocessed"][0], expected, atol=1e-5)
    assert [reference[f"level_{n}"].shape[1:] for n in range(2, 6)] == [
        (64, 64, 24), (32, 32, 40), (16, 16, 112), (8, 8, 320)]


def test_the_keras_efficientnet_maps_one_to_one_onto_model_gardens():
    """The published config's checkpoint (names and shapes): its 128 layers with
    weights up to level 5 have the shapes of Model Garden's EfficientNet-B0's first 128,
    and the Keras model's top conv and norm (under classification_backbone/, which the
    OD API never runs) those of Model Garden's head; the last is the classifier."""
    shapes = dict(map(tuple, _manifest(NAME)["published"]["variables"]))
    ours = _garden_layers(_garden_efficientnet("swish"))
    assert len(ours) == LAYERS_TO_LEVEL_5 + 2
    top = "model/_feature_extractor/classification_backbone/"
    for i, layer in enumerate(ours):
        root = BACKBONE if i < LAYERS_TO_LEVEL_5 else top
        for variable in layer.weights:
            attribute = variable.name.split("/")[-1].split(":")[0]
            key = f"{root}layer_with_weights-{i}/{attribute}/.ATTRIBUTES/VARIABLE_VALUE"
            assert shapes[key] == variable.shape.as_list(), key
    assert shapes[f"{top}layer_with_weights-130/kernel/.ATTRIBUTES/VARIABLE_VALUE"] == [
        1280, 1000]


def test_swish_inside_squeeze_excitation_is_the_one_difference(tmp_path):
    reference = _reference(NAME)
    prefix = _checkpoint(NAME, tmp_path)
    stored = sum(name.startswith(BACKBONE) for name, _ in tf.train.list_variables(prefix))
    assert stored == 304
    differences = {}
    for se in ("swish", "relu"):
        backbone = _garden_efficientnet(se)
        fresh = backbone(tf.constant(reference["preprocessed"]), training=False)
        assert _load_by_order(backbone, prefix) == stored  # every variable up to level 5
        levels = backbone(tf.constant(reference["preprocessed"]), training=False)
        for level in "2345":
            theirs = reference[f"level_{level}"]
            assert _relative(fresh[level].numpy(), theirs) > 0.1, level
        differences[se] = max(_relative(levels[level].numpy(), reference[f"level_{level}"])
                              for level in "2345")
    assert differences["swish"] <= TOLERANCE
    assert differences["relu"] > 1e-3  # measured 0.008-0.014 per level


def _our_efficientdet(se_activation: str, endpoints: str = "model_garden"):
    config = PipelineConfig()
    model = config.model
    model.num_classes = 3
    model.input_size = [256, 256]
    model.backbone.type, model.backbone.model_id = "efficientnet", "b0"
    model.backbone.se_activation = se_activation
    model.backbone.efficientnet_endpoints = endpoints
    model.norm.activation, model.norm.norm_epsilon = "swish", 0.001
    model.fpn.num_filters = 32
    model.head.num_convs, model.head.num_filters = 1, 32
    return build_model(model)


def _levels(backbone, reference: dict) -> dict[str, float]:
    """Our backbone's levels 2-5 on the fixture's preprocessed image: each level's
    largest difference from the OD API's, relative to the OD API's largest value."""
    ours = backbone(tf.constant(reference["preprocessed"]), training=False)
    return {level: _relative(ours[level].numpy(), reference[f"level_{level}"])
            for level in "2345"}


def test_the_mapped_pipeline_config_loads_the_checkpoint_exactly(tmp_path):
    """The fixture's pipeline.config (the published D0 config at 256 px), mapped and
    built as a run would, its fine_tune_checkpoint naming the OD API's checkpoint:
    se_activation swish; the checkpoint's 304 variables up to level 5 load, and the
    backbone's levels 2-5 are the OD API extractor's."""
    prefix = _checkpoint(NAME, tmp_path)
    config = load_config(write_odapi_fixture_config(
        NAME, tmp_path, {'"PATH_TO_BE_CONFIGURED/ckpt-0"': f'"{prefix}"'}))
    backbone = config.model.backbone
    assert (backbone.type, backbone.se_activation, backbone.efficientnet_endpoints) == (
        "efficientnet", "swish", "odapi")
    model = build_model(config.model)
    assert model.backbone._se_inner_activation == "swish"
    assert len(model.backbone.variables) == 304  # up to level 5, as the OD API's
    assert sorted(model.backbone.output_specs) == ["2", "3", "4", "5"]  # what the FPN reads
    reference = _reference(NAME)
    assert min(_levels(model.backbone, reference).values()) > 0.1  # fresh: far apart
    assert config.train_config.fine_tune_checkpoint_type == "backbone"  # classification
    result = fine_tune.apply(model, config.train_config.fine_tune_checkpoint,
                             config.train_config.fine_tune_checkpoint_type)
    assert result.count == 304
    differences = _levels(model.backbone, reference)
    assert max(differences.values()) <= TOLERANCE, differences


@pytest.mark.parametrize("kind", ["detection", "backbone"])
def test_an_efficientdet_checkpoint_loads_and_reports_what_stays_fresh(kind, tmp_path):
    model = _our_efficientdet("swish")
    prefix = _checkpoint(NAME, tmp_path)
    result = fine_tune.apply(model, prefix, kind)
    assert result.count == 304
    assert max(_levels(model.backbone, _reference(NAME)).values()) <= TOLERANCE
    line = result.line
    assert line.startswith(f"fine-tune: 304 of 309 backbone variables from an OD API "
                           f"checkpoint {prefix} ({kind})")
    assert "the other 5 (EfficientNet's last 1x1 convolution and norm" in line
    assert "\n" not in line
    report = result.report
    assert report["checkpoint_backbone"] == BACKBONE
    loaded = report["loaded"]
    assert len(loaded) == 304
    assert (loaded[0]["checkpoint_key"], loaded[0]["odapi_layer"]) == (
        f"{BACKBONE}layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE", "stem_conv2d/kernel")
    assert loaded[-1]["odapi_layer"] == "stack_6/block_0/project_bn/moving_variance"
    assert {entry["odapi_layer"].rsplit("/", 1)[0] for entry in loaded} >= {
        "stack_1/block_1/expand_conv2d", "stack_1/block_1/se_reduce_conv2d",
        "stack_0/block_0/se_expand_conv2d"}
    fresh = {entry["reason"].split(":")[0] for entry in report["fresh"]}
    assert fresh == {"backbone", "FPN", "head"}
    assert sum(entry["reason"].startswith("backbone:") for entry in report["fresh"]) == 5
    unused = [entry["reason"] for entry in report["unused"]
              if entry["checkpoint_key"].startswith("model/_feature_extractor/")]
    if kind == "detection":
        assert "BiFPN (Model Garden has none)" in line
        assert unused.count("the OD API's BiFPN: Model Garden has no BiFPN, our FPN starts "
                            "fresh") == 228
        assert sum(why.startswith("the OD API's EfficientNet after level 5") for why in
                   unused) == 7


def test_for_b0_both_endpoints_compute_the_same_levels(tmp_path):
    """B0's OD API levels end their block groups: efficientnet_endpoints odapi reads
    Model Garden's own endpoint tensors and leaves out only the last 1x1 convolution
    and norm (5 variables, which no FPN reads); with the checkpoint both compute the
    same levels, bit for bit."""
    prefix = _checkpoint(NAME, tmp_path)
    levels = {}
    for endpoints in ("model_garden", "odapi"):
        model = _our_efficientdet("swish", endpoints)
        assert fine_tune.apply(model, prefix, "detection").count == 304
        assert len(model.backbone.variables) == {"model_garden": 309, "odapi": 304}[endpoints]
        levels[endpoints] = model.backbone(
            tf.constant(_reference(NAME)["preprocessed"]), training=False)
    for level in "2345":
        assert np.array_equal(levels["odapi"][level], levels["model_garden"][level]), level


def test_an_efficientdet_checkpoint_into_relu_is_refused_naming_the_key(tmp_path):
    model = _our_efficientdet("relu")
    assert model.backbone._se_inner_activation == "relu"  # what makes it refused
    before = [v.numpy() for v in model.variables]
    prefix = _checkpoint(NAME, tmp_path)
    with pytest.raises(TrainError) as err:
        fine_tune.apply(model, prefix, "detection")
    message = str(err.value)
    assert message.startswith(f"{odapi_checkpoint.KEY} {prefix} is an OD API checkpoint")
    assert "squeeze-excitation with 'relu' (model.backbone.se_activation)" in message
    assert message.endswith("set model.backbone.se_activation: swish")
    assert "\n" not in message
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables,
                                                            strict=True))


def test_an_efficientdet_checkpoint_into_another_backbone_names_the_first_variable(tmp_path):
    """Into a MobileNetV2 (x0.35: Conv1 of 16 filters), the first layer of the Keras
    EfficientNet (32 filters) already differs."""
    config = PipelineConfig()
    config.model.num_classes, config.model.input_size = 3, [128, 128]
    config.model.backbone.model_id, config.model.backbone.width_multiplier = "MobileNetV2", 0.35
    prefix = _checkpoint(NAME, tmp_path)
    with pytest.raises(TrainError, match=(
            f"the first variable whose shape differs is {BACKBONE}layer_with_weights-0/kernel"
            r"/\.ATTRIBUTES/VARIABLE_VALUE \(the OD API's Keras layer Conv1/kernel\): "
            r"\[3, 3, 3, 32\] in the checkpoint, \[3, 3, 3, 16\] in this model")):
        fine_tune.apply(build_model(config.model), prefix, "detection")
