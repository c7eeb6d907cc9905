"""The OD API's Keras ResNet v1 checkpoints as fine_tune_checkpoint: they load into
model.backbone.resnet_variant: keras_v1, which then computes the OD API's feature maps.

The fixtures (tests/fixtures/odapi/<extractor>/, written by
scripts/odapi_fixtures/make_odapi_fixtures.py with the real OD API) hold, per
extractor, the OD API's model built from the published config (reduced: 3 classes, a
small input; SSD at depth_multiplier 0.125), an image and the OD API's backbone
tensors on it. The SSD ResNet-50's checkpoint is committed; the others (a Faster
R-CNN's ResNet is full width) are its names and shapes (variables.json), and the
test writes the checkpoint with seeded_weights' values, which the fixture script
checked are the values the OD API's own checkpoint holds."""

from __future__ import annotations

import functools
import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import REPO, make_tiny_config
from official.vision.modeling.layers import nn_blocks

from scripts.odapi_fixtures import seeded_weights
from train_lib.config import PipelineConfig
from train_lib.families import build_model, keras_resnet
from train_lib.training import fine_tune, odapi_checkpoint
from train_lib.training.trainer import TrainError, train

FIXTURES = os.path.join(REPO, "tests", "fixtures", "odapi")
TOLERANCE = 1e-4
BACKBONE_VARIABLES = {50: 265, 101: 520, 152: 775}  # 53/104/155 convs' kernels, 4 per BN
SLOW_DEPTHS = {101: pytest.mark.slow, 152: pytest.mark.slow}


def _fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


def _reference(name: str) -> dict[str, np.ndarray]:
    with np.load(os.path.join(_fixture(name), "features.npz")) as arrays:
        return {key: arrays[key] for key in arrays.files}


def _manifest(name: str) -> dict:
    with open(os.path.join(_fixture(name), "variables.json")) as f:
        return json.load(f)


def _checkpoint(name: str, directory) -> str:
    """The fixture's OD API checkpoint: committed, or written from its names and
    shapes with seeded_weights' values (what the OD API's own checkpoint holds)."""
    committed = os.path.join(_fixture(name), "checkpoint", "ckpt-0")
    if os.path.exists(committed + ".index"):
        return committed
    tree: dict = {}
    for key, shape in _manifest(name)["checkpoint"]:
        if not key.startswith("model/"):
            continue
        *path, attribute = key[:-len(seeded_weights.VALUE_SUFFIX)].split("/")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[attribute] = tf.Variable(seeded_weights.value(key, shape))
    return _write_tree(tree, os.path.join(str(directory), "ckpt-0"))


def _write_tree(tree: dict, prefix: str) -> str:
    def build(node):
        return tf.train.Checkpoint(**{k: build(v) if isinstance(v, dict) else v
                                      for k, v in node.items()})
    return tf.train.Checkpoint(**{k: build(v) for k, v in tree.items()}).write(prefix)


def _model(depth: int = 50, width: float = 0.125, architecture: str = "retinanet",
            variant: str = "keras_v1", size: int = 160, conv_hyperparams: bool | None = None,
            odapi_fpn: tuple[int, int, int] | None = None):
    """Our detector with the OD API extractor's backbone: with the published
    conv_hyperparams (ReLU6, epsilon 0.001; SSD's), else the Keras ResNet's defaults
    (ReLU, 1e-5; Faster R-CNN's without FPN). `odapi_fpn` (min_level, max_level, the
    FPN's depth) makes its FPN the OD API's (model.fpn.type: odapi), else Model
    Garden's (levels 3..5, 32 filters)."""
    config = PipelineConfig()
    model = config.model
    model.architecture = architecture
    model.num_classes = 3
    model.input_size = [size, size]
    model.backbone.type, model.backbone.model_id = "resnet", str(depth)
    model.backbone.width_multiplier = width
    model.backbone.resnet_variant = variant
    if conv_hyperparams if conv_hyperparams is not None else architecture == "retinanet":
        model.norm.activation, model.norm.norm_epsilon = "relu6", 0.001
    else:
        model.norm.activation, model.norm.norm_epsilon = "relu", 1e-5
    if architecture == "retinanet":
        model.head.num_convs, model.head.num_filters = 1, 32
    model.fpn.num_filters = 32
    if odapi_fpn is not None:
        model.min_level, model.max_level, model.fpn.num_filters = odapi_fpn
        model.fpn.type = "odapi"
    return build_model(model)


@functools.cache
def _keras_resnet(depth: int) -> keras_resnet.KerasResNetV1:
    """A full-width keras_v1 ResNet, built once per depth: the tests that take it only
    read its layers' names and shapes (plan_shapes changes no variable)."""
    return keras_resnet.KerasResNetV1(depth)


@pytest.fixture(scope="module", autouse=True)
def _free_keras_resnets():
    """The cached ResNets go when this file's tests end."""
    yield
    _keras_resnet.cache_clear()


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def _levels(model, inputs: np.ndarray) -> dict[str, np.ndarray]:
    return {level: value.numpy() for level, value in
            model.backbone(tf.constant(inputs), training=False).items()}


def fpn_errors(model, reference: dict[str, np.ndarray]) -> dict[int, float]:
    """Our FPN's maps on the fixture's preprocessed image against the OD API's
    (`feature_map_<i>`, min_level up): {level: max relative difference}."""
    levels = model.decoder(model.backbone(tf.constant(reference["preprocessed"]),
                                          training=False), training=False)
    errors = {}
    for i, level in enumerate(sorted(levels, key=int)):
        theirs = reference[f"feature_map_{i}"]
        assert levels[level].shape == theirs.shape, level
        errors[int(level)] = _relative(levels[level].numpy(), theirs)
    assert f"feature_map_{len(levels)}" not in reference  # every map the OD API makes
    return errors


def assert_odapi_fpn_loaded(loaded, model, count: int) -> None:
    """The line and the report of a detection fine-tune into model.fpn.type odapi:
    each of our FPN variables (`count`) loaded from the OD API's FPN, none left
    behind in the checkpoint."""
    assert len(model.decoder.variables) == count
    assert f" and {count} of {count} FPN variables from an OD API checkpoint " in loaded.line
    assert "FPN fresh" not in loaded.line and "FPN and head fresh" not in loaded.line
    report = json.loads(json.dumps(loaded.report))
    fpn = [row for row in report["loaded"] if row["part"] == "fpn"]
    assert {row["variable"] for row in fpn} == {v.name for v in model.decoder.variables}
    assert all("fpn_features_generator/" in row["checkpoint_key"]
               or "coarse_feature_layers/" in row["checkpoint_key"] for row in fpn)
    assert not any(row["reason"].startswith("FPN") for row in report["fresh"])
    assert not any("fpn_features_generator/" in row["checkpoint_key"]
                   or "coarse_feature_layers/" in row["checkpoint_key"]
                   for row in report["unused"])


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_keras_v1_numbers_its_layers_as_the_keras_application(depth):
    """The order of layer_with_weights-<i> in the OD API's checkpoints is the Keras
    application's; ours builds the same layers, by name, with the same shapes."""
    application = {50: tf_keras.applications.ResNet50, 101: tf_keras.applications.ResNet101,
                   152: tf_keras.applications.ResNet152}[depth](weights=None,
                                                                 include_top=False)
    theirs = [layer for layer in application.layers if layer.weights]
    ours = _keras_resnet(depth)
    assert [layer.name for layer in theirs] == keras_resnet.keras_layer_order(depth)
    for layer in theirs:  # the application's convolutions also have a bias
        assert [w.shape for w in ours.get_layer(layer.name).weights] == [
            w.shape for w in layer.weights if "bias" not in w.name or "bn" in layer.name]


SSD_50 = "ssd_resnet50_v1_fpn_keras"


def test_the_fixture_is_the_odapi_extractor_on_its_image():
    reference = _reference(SSD_50)
    image = tf.io.decode_png(tf.io.read_file(os.path.join(_fixture(SSD_50), "image.png")))
    # The OD API's ResNet extractors subtract the ImageNet channel means, nothing else.
    np.testing.assert_allclose(reference["preprocessed"][0],
                               image.numpy() - [123.68, 116.779, 103.939], atol=1e-4)
    assert [reference[f"level_{n}"].shape[1] for n in range(2, 6)] == [40, 20, 10, 5]


def test_ssd_resnet50_backbone_and_fpn_compute_the_odapi_feature_maps():
    """With model.fpn.type odapi (levels 3..7 at the fixture's depth 32), a detection
    checkpoint loads the backbone and the FPN: ours then computes the OD API's levels
    and its five feature maps."""
    reference = _reference(SSD_50)
    model = _model(odapi_fpn=(3, 7, 32))
    fresh = _levels(model, reference["preprocessed"])
    fresh_fpn = fpn_errors(model, reference)
    loaded = fine_tune.apply(model, _checkpoint(SSD_50, None), "detection")
    assert loaded.count == len(model.backbone.variables) + 26 == BACKBONE_VARIABLES[50] + 26
    assert loaded.line.endswith("(detection); head fresh (ours compute other functions than "
                                "the OD API's box predictor)")
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


def _model_garden_layers(backbone) -> dict[str, object]:
    """Model Garden's ResNet's layers by the Keras names of the layers with the
    same variables (its blocks: _shortcut/_norm0, _conv1/_norm1, ...)."""
    stem = [layer for layer in backbone.layers if layer.weights][:2]
    layers = {"conv1_conv": stem[0], "conv1_bn": stem[1]}
    blocks = [layer for layer in backbone.layers if isinstance(layer, nn_blocks.BottleneckBlock)]
    names = iter(name[:-len("_1_conv")] for name in keras_resnet.keras_layer_order(50)
                 if name.endswith("_1_conv"))
    for block, name in zip(blocks, names, strict=True):
        if block._use_projection:
            layers[name + "_0_conv"], layers[name + "_0_bn"] = block._shortcut, block._norm0
        for i in (1, 2, 3):
            layers[f"{name}_{i}_conv"] = getattr(block, f"_conv{i}")
            layers[f"{name}_{i}_bn"] = getattr(block, f"_norm{i}")
    return layers


def test_model_gardens_resnet_with_the_same_weights_computes_another_function():
    """Why keras_v1 exists: Model Garden's ResNet holds the same variables, but strides
    in the 3x3 convolution and pads its stem otherwise, so it is refused."""
    reference = _reference(SSD_50)
    ours, garden = _model(), _model(variant="model_garden")
    fine_tune.apply(ours, _checkpoint(SSD_50, None), "detection")
    theirs = _model_garden_layers(garden.backbone)
    for name in keras_resnet.keras_layer_order(50):
        for a, b in zip(ours.backbone.get_layer(name).weights, theirs[name].weights,
                        strict=True):
            b.assign(a)
    levels = _levels(garden, reference["preprocessed"])
    for level in "2345":
        assert _relative(levels[level], reference[f"level_{level}"]) > 0.1, level
    with pytest.raises(TrainError, match="resnet_variant: keras_v1"):
        fine_tune.apply(garden, _checkpoint(SSD_50, None), "detection")


def test_the_report_says_what_loaded_and_why_the_rest_is_fresh():
    model = _model()
    prefix = _checkpoint(SSD_50, None)
    loaded = fine_tune.apply(model, prefix, "detection")
    assert loaded.line == (
        f"fine-tune: 265 of 265 backbone variables from an OD API checkpoint {prefix} "
        "(detection); FPN and head fresh (ours compute other functions than the OD API's "
        "SSD feature maps and box predictor)")
    report = json.loads(json.dumps(loaded.report))
    assert {row["variable"] for row in report["loaded"] + report["fresh"]} == {
        v.name for v in model.variables}
    assert {row["odapi_layer"] for row in report["loaded"]} >= {
        "conv1_conv/kernel", "conv2_block1_0_bn/moving_mean", "conv5_block3_3_bn/gamma"}
    stored = {name for name, _ in tf.train.list_variables(prefix)}
    unused = {row["checkpoint_key"] for row in report["unused"]}
    assert unused | {row["checkpoint_key"] for row in report["loaded"]} == stored - {
        "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.mark.parametrize("depth", [50, pytest.param(101, marks=pytest.mark.slow),
                                   pytest.param(152, marks=pytest.mark.slow)])
def test_faster_rcnn_resnet_backbone_computes_the_odapi_features(depth, tmp_path):
    """The OD API's Faster R-CNN runs conv1..conv4 for its RPN (our level 4) and conv5
    in its box classifier (our level 5, run here on the whole level-4 map)."""
    name = f"faster_rcnn_resnet{depth}_keras"
    reference = _reference(name)
    model = _model(depth, 1.0, "faster_rcnn", size=96)
    loaded = fine_tune.apply(model, _checkpoint(name, tmp_path), "detection")
    assert loaded.count == len(model.backbone.variables) == BACKBONE_VARIABLES[depth]
    assert "level 5 is the OD API's box-classifier stage (conv5)" in loaded.line
    assert "fresh (ours compute other functions than the OD API's RPN and box predictor)" \
        in loaded.line
    ours = _levels(model, reference["preprocessed"])
    for level, key in (("4", "level_4"), ("5", "box_classifier")):
        assert ours[level].shape == reference[key].shape, level
        assert _relative(ours[level], reference[key]) <= TOLERANCE, level
    conv5 = [row for row in loaded.report["loaded"] if row["odapi_layer"].startswith("conv5")]
    assert conv5 and all(odapi_checkpoint.BOX_CLASSIFIER_BACKBONE in row["checkpoint_key"]
                         for row in conv5)


def test_faster_rcnn_resnet50_fpn_backbone_and_fpn_compute_the_odapi_feature_maps(tmp_path):
    """faster_rcnn_resnet50_fpn_keras keeps its whole ResNet (with its conv_hyperparams:
    ReLU6, epsilon 0.001) in the proposal model, and its FPN (levels 2..6, depth 256)
    beside it; its box classifier is two layers. With model.fpn.type odapi (what the
    mapper makes of its config) both load, and ours computes its five feature maps."""
    name = "faster_rcnn_resnet50_fpn_keras"
    reference = _reference(name)
    model = _model(50, 1.0, "faster_rcnn", size=128, conv_hyperparams=True,
                   odapi_fpn=(2, 6, 256))
    fresh_fpn = fpn_errors(model, reference)
    loaded = fine_tune.apply(model, _checkpoint(name, tmp_path), "detection")
    assert loaded.count == BACKBONE_VARIABLES[50] + 28
    assert "; head fresh (ours compute other functions than the OD API's RPN and box " \
        "classifier)" in loaded.line
    assert_odapi_fpn_loaded(loaded, model, 28)
    ours = _levels(model, reference["preprocessed"])
    for level in "2345":
        assert _relative(ours[level], reference[f"level_{level}"]) <= TOLERANCE, level
    errors = fpn_errors(model, reference)
    assert sorted(errors) == [2, 3, 4, 5, 6]
    assert all(error > 0.1 for error in fresh_fpn.values()), fresh_fpn
    assert all(error <= TOLERANCE for error in errors.values()), errors


@pytest.mark.slow
@pytest.mark.parametrize("depth", [101, 152])
def test_ssd_resnet_101_152_backbones_compute_the_odapi_feature_maps(depth, tmp_path):
    name = f"ssd_resnet{depth}_v1_fpn_keras"
    reference = _reference(name)
    model = _model(depth)
    assert fine_tune.apply(model, _checkpoint(name, tmp_path), "detection").count == \
        BACKBONE_VARIABLES[depth]
    ours = _levels(model, reference["preprocessed"])
    for level in "2345":
        assert _relative(ours[level], reference[f"level_{level}"]) <= TOLERANCE, level


@pytest.mark.parametrize("name", [f"{family}{depth}{tail}" for depth in (50, 101, 152)
                                  for family, tail in (("ssd_resnet", "_v1_fpn_keras"),
                                                       ("faster_rcnn_resnet", "_keras"))]
                         + ["faster_rcnn_resnet50_fpn_keras"])
def test_the_published_configs_checkpoints_map_entirely(name):
    """A zoo ckpt-0 of each published config (its names and shapes, as the OD API's
    model of that config saves them) fills every variable of a full-width keras_v1
    backbone, and every backbone layer of the checkpoint has its place."""
    depth = int(name.split("resnet")[1].split("_")[0])
    published = _manifest(name)["published"]
    shapes = {key: shape for key, shape in published["variables"]}
    backbone = _keras_resnet(depth)
    model = types.SimpleNamespace(backbone=backbone, variables=backbone.variables)
    result = odapi_checkpoint.plan_shapes(model, shapes, "ckpt-0", "detection")
    assert len(result.mapped) == len(backbone.variables) == BACKBONE_VARIABLES[depth]
    backbone_keys = {key for key in shapes if "layer_with_weights-" in key and key.startswith((
        odapi_checkpoint.DETECTION_BACKBONE, odapi_checkpoint.PROPOSAL_BACKBONE,
        odapi_checkpoint.BOX_CLASSIFIER_BACKBONE)) and not (
        name.endswith("_fpn_keras") and name.startswith("faster_rcnn")
        and key.startswith(odapi_checkpoint.BOX_CLASSIFIER_BACKBONE))}
    assert {m.key for m in result.mapped} == backbone_keys


@pytest.mark.parametrize("checkpoint, depth, width, first", [
    # ResNet-101's fourth stage has 23 blocks: its 7th stands where ResNet-50's conv5 starts
    ("ssd_resnet101_v1_fpn_keras", 50, 0.125, "layer_with_weights-86/kernel"),
    ("ssd_resnet50_v1_fpn_keras", 50, 0.25, "layer_with_weights-0/kernel"),
    ("ssd_mobilenet_v2_keras", 50, 0.125, "layer_with_weights-0/kernel"),
])
def test_another_extractor_depth_or_width_is_refused_naming_the_first_variable(
        checkpoint, depth, width, first, tmp_path):
    model = _model(depth, width)
    before = [v.numpy() for v in model.variables]
    prefix = _checkpoint(checkpoint, tmp_path)
    with pytest.raises(TrainError) as err:
        fine_tune.apply(model, prefix, "detection")
    message = str(err.value)
    assert message.startswith(f"train_config.fine_tune_checkpoint {prefix} does not fit")
    assert ("the first variable whose shape differs is model/_feature_extractor/"
            f"classification_backbone/{first}") in message
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables,
                                                            strict=True))


def test_a_faster_rcnn_checkpoint_of_another_depth_is_refused_naming_a_layer():
    """ResNet-101's first 86 layers and its conv5 have ResNet-50's shapes: what does
    not fit is the 87th layer of its proposal model, which ResNet-50 does not have."""
    shapes = {key: shape for key, shape in
              _manifest("faster_rcnn_resnet101_keras")["published"]["variables"]}
    backbone = _keras_resnet(50)
    model = types.SimpleNamespace(backbone=backbone, variables=backbone.variables)
    with pytest.raises(TrainError, match=(
            "_feature_extractor_for_proposal_features/ has 188 layers with weights, this "
            "model.backbone 86 there, so model/_feature_extractor_for_proposal_features/"
            "layer_with_weights-86 has no place in it")):
        odapi_checkpoint.plan_shapes(model, shapes, "ckpt-0", "detection")


def test_a_keras_application_classification_checkpoint_loads_with_its_biases_folded(tmp_path):
    """tf_keras' ResNet50 (its convolutions have biases) saved as the OD API's
    classification checkpoint (`feature_extractor`): each bias goes into its batch
    norm's moving mean, and our backbone computes the application's function (on an
    input whose stem output has an odd size, where the application's zero-padded max
    pool and the OD API's 'same' one agree)."""
    application = tf_keras.applications.ResNet50(weights=None, include_top=False,
                                                 input_shape=(98, 98, 3))
    rng = np.random.default_rng(5)
    for variable in application.variables:
        key = variable.name
        value = seeded_weights.value(key.split(":")[0], variable.shape.as_list())
        if "bias" in key and "_bn" not in key:
            value = rng.normal(0.0, 0.5, variable.shape).astype(np.float32)
        variable.assign(value)
    prefix = tf.train.Checkpoint(feature_extractor=application).write(
        str(tmp_path / "classification"))
    backbone = keras_resnet.KerasResNetV1(50, norm_epsilon=1.001e-5)  # the application's
    model = types.SimpleNamespace(backbone=backbone, variables=backbone.variables)
    loaded = fine_tune.apply(model, prefix, "backbone")
    assert loaded.count == BACKBONE_VARIABLES[50]
    assert "53 convolution biases folded into batch-norm moving means" in loaded.line
    inputs = rng.normal(0.0, 50.0, (1, 98, 98, 3)).astype(np.float32)
    ours = _levels(model, inputs)
    probe = tf_keras.Model(application.inputs, [application.get_layer(name).output for name in (
        "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out")])
    for level, theirs in zip("2345", probe(inputs, training=False), strict=True):
        assert _relative(ours[level], theirs.numpy()) <= TOLERANCE, level


def test_a_keras_weights_file_loads_as_its_classification_checkpoint(tmp_path):
    application = tf_keras.applications.ResNet50(weights=None, include_top=False)
    for variable in application.variables:
        variable.assign(seeded_weights.value(variable.name.split(":")[0],
                                             variable.shape.as_list()))
    path = str(tmp_path / "resnet50_weights.h5")
    application.save_weights(path)
    prefix = tf.train.Checkpoint(feature_extractor=application).write(str(tmp_path / "c"))
    from_file, from_checkpoint = (keras_resnet.KerasResNetV1(50) for _ in range(2))
    loaded = fine_tune.apply(types.SimpleNamespace(
        backbone=from_file, variables=from_file.variables), fine_tune.resolve_checkpoint(path),
        "backbone")
    assert loaded.count == BACKBONE_VARIABLES[50] and path in loaded.line
    fine_tune.apply(types.SimpleNamespace(backbone=from_checkpoint,
                                          variables=from_checkpoint.variables),
                    prefix, "backbone")
    for a, b in zip(from_file.variables, from_checkpoint.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(from_file.variables[0].numpy(),
                              keras_resnet.KerasResNetV1(50).variables[0].numpy())
    with pytest.raises(TrainError, match="use fine_tune_checkpoint_type: backbone"):
        fine_tune.apply(types.SimpleNamespace(backbone=from_file,
                                              variables=from_file.variables), path, "detection")


@pytest.mark.slow
def test_a_run_fine_tunes_from_the_odapi_resnet_checkpoint(tiny_dataset, tmp_path):
    config = make_tiny_config(tiny_dataset, num_steps=2)
    config.model.backbone.type, config.model.backbone.model_id = "resnet", "50"
    config.model.backbone.width_multiplier = 0.125
    config.model.backbone.resnet_variant = "keras_v1"
    config.train_config.fine_tune_checkpoint = os.path.join(_fixture(SSD_50), "checkpoint")
    config.train_config.fine_tune_checkpoint_type = "detection"
    model_dir, lines = str(tmp_path / "run"), []
    result = train(config, model_dir, record_summaries=False, log=lines.append)
    assert result.step == 2
    assert any(ln.startswith("fine-tune: 265 of 265 backbone variables from an OD API "
                             "checkpoint") for ln in lines)
    with open(os.path.join(model_dir, fine_tune.REPORT_FILE)) as f:
        assert len(json.load(f)["loaded"]) == 265

    config.model.backbone.model_id = "101"  # another depth than the checkpoint's
    bad_dir = str(tmp_path / "bad")
    with pytest.raises(TrainError, match="the first variable whose shape differs"):
        train(config, bad_dir, record_summaries=False, log=lines.append)
    assert not os.path.exists(bad_dir)

    # The OD API's FPN (levels 3..5 of the checkpoint's 3..7, at its depth 32) loads too.
    config.model.backbone.model_id, config.model.fpn.type = "50", "odapi"
    fpn_dir, lines = str(tmp_path / "fpn"), []
    assert train(config, fpn_dir, record_summaries=False, log=lines.append).step == 2
    assert any(ln.startswith("fine-tune: 265 of 265 backbone variables and 16 of 16 FPN "
                             "variables from an OD API checkpoint") for ln in lines)
    with open(os.path.join(fpn_dir, fine_tune.REPORT_FILE)) as f:
        report = json.load(f)
    assert sum(row["part"] == "fpn" for row in report["loaded"]) == 16
    assert sum("coarse_feature_layers/" in row["checkpoint_key"]
               for row in report["unused"]) == 10  # levels 6 and 7, which ours has not
    config.model.fpn.num_filters = 16  # another FPN depth than the checkpoint's
    with pytest.raises(TrainError, match="does not fit this model's FPN"):
        train(config, bad_dir, record_summaries=False, log=lines.append)
    assert not os.path.exists(bad_dir)
