"""fine_tune_checkpoint_type full from an OD API checkpoint: its weight-shared box
predictor loads into our head, which then computes its outputs: with
share_prediction_tower: true into model.head.share_prediction_tower, with false into
Model Garden's two towers (model.head.tower_conv_bias: false); detection leaves the
head fresh, as the OD API's.

The fixtures (tests/fixtures/odapi/<extractor>/, made with the real OD API by
scripts/odapi_fixtures/make_odapi_fixtures.py: ssd_mobilenet_v2_fpn_keras from the
published FPN-lite 320x320 config at depth_multiplier 0.35, one separable tower;
ssd_mobilenet_v1_fpn_keras from the published MobileNet v1 FPN 640x640 config at
depth_multiplier 0.5, two plain towers; 128 px, 3 classes, predictor depth 32, 4
layers before the predictors) hold the OD API's variables (names and shapes,
seeded_weights' values) and, on one image, its box predictor's outputs
(`box_encodings` [1, N, 4], `class_predictions_with_background` [1, N, 4], levels
3-7, each level's locations row by row, each location's 6 anchors in the OD API's
order) and its `anchors` (normalized corners). The OD API orders a
location's anchors aspect ratio by aspect ratio (each at its 2 scales), Model Garden
scale by scale: the load permutes the predictors' output channels, so that our k-th
anchor's outputs are the OD API's for the anchor that is our k-th."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_tiny_config
from test_fine_tune_odapi_resnet import _checkpoint, _reference
from test_odapi_fpn import _manifest
from test_odapi_fpn_lite import FIXTURES, _mapped_model

from train_lib import families
from train_lib.families.anchors import batch_anchors
from train_lib.training import fine_tune, odapi_checkpoint
from train_lib.training.odapi_checkpoint import box_predictor
from train_lib.training.trainer import TrainError, train

TOLERANCE = 1e-4
NUM_SCALES, ASPECT_RATIOS = 2, [1.0, 2.0, 0.5]  # the fixtures' anchor generator
ANCHORS = NUM_SCALES * len(ASPECT_RATIOS)
NAME = "ssd_mobilenet_v2_fpn_keras"  # one separable tower
TWO_TOWERS = "ssd_mobilenet_v1_fpn_keras"


class Fixture:
    """What a fixture's mapped model has: its variables by part, its head's kind, the
    first tower convolution's kernel (its name, in the checkpoint and ours) and the
    class predictor's kernel weight."""

    def __init__(self, name, backbone, fpn, head, shared, tower_kernel, ours, class_kernel):
        self.name, self.backbone, self.fpn, self.head = name, backbone, fpn, head
        self.shared, self.tower_kernel, self.ours = shared, tower_kernel, ours
        self.class_kernel = class_kernel


FIXTURE = {
    # HEAD: 4 separable tower convs (8), 5 levels x 4 norms x 4 (80), the box and class
    # predictors' depthwise and pointwise kernels and bias (6).
    NAME: Fixture(NAME, 260, 30, 94, True, ("PredictionTower/0/pointwise_kernel",
                                            [1, 1, 44, 32], [1, 1, 44, 16]),
                  "tower-conv_0/pointwise_kernel", ("pointwise_kernel", [1, 1, 32, 24],
                                                    [1, 1, 32, 36])),
    # HEAD: 2 towers x (4 convs + 5 levels x 4 norms x 4) (168), 2 predictors x 2 (4).
    TWO_TOWERS: Fixture(TWO_TOWERS, 135, 26, 172, False, (
        "BoxPredictionTower/0/kernel", [3, 3, 128, 32], [3, 3, 128, 16]),
        "boxnet-conv_0/kernel", ("kernel", [3, 3, 32, 24], [3, 3, 32, 36])),
}
FIXTURES_BY_NAME = pytest.mark.parametrize("fixture", [FIXTURE[NAME], FIXTURE[TWO_TOWERS]],
                                           ids=[NAME, TWO_TOWERS])
PREDICTOR = "model/_box_predictor/"


def _text(name: str = NAME) -> str:
    with open(os.path.join(FIXTURES, name, "pipeline.config")) as f:
        return f.read()


def _model(num_classes: int | None = None, num_filters: int | None = None,
           name: str = NAME):
    """The mapped fixture config's model (the OD API's FPN; for NAME
    share_prediction_tower, separable; for TWO_TOWERS Model Garden's two towers,
    tower_conv_bias false), optionally with another num_classes or head depth."""
    _, model = _mapped_model(_text(name))
    assert model.head.share_prediction_tower is FIXTURE[name].shared
    assert model.fpn.type == "odapi" and not model.head.tower_conv_bias
    assert (model.anchor.num_scales, model.anchor.aspect_ratios) == (NUM_SCALES, ASPECT_RATIOS)
    if num_classes is not None:
        model.num_classes = num_classes
    if num_filters is not None:
        model.head.num_filters = num_filters
    return families.build_model(model)


def _head_outputs(net, reference) -> tuple[np.ndarray, np.ndarray]:
    """Our head's box and class outputs on the fixture's image, as the OD API flattens
    them: [1, N, 4] and [1, N, num_classes + 1], levels in order, each level's
    [B, H, W, A x width] row by row, a location's anchors in our order."""
    features = net.decoder(net.backbone(tf.constant(reference["preprocessed"]),
                                        training=False), training=False)
    scores, boxes, _ = net.head(features, training=False)
    levels = sorted(scores, key=int)
    width = scores[levels[0]].shape[-1] // ANCHORS
    return (np.concatenate([boxes[lv].numpy().reshape(1, -1, 4) for lv in levels], 1),
            np.concatenate([scores[lv].numpy().reshape(1, -1, width) for lv in levels], 1))


def _in_our_order(theirs: np.ndarray) -> np.ndarray:
    """The OD API's per-anchor rows [..., N, k] in our anchor order at each location."""
    return box_predictor.rows_in_our_order(theirs, NUM_SCALES, len(ASPECT_RATIOS))


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    return {name: _checkpoint(name, tmp_path_factory.mktemp(name)) for name in FIXTURE}


@pytest.fixture(scope="module")
def prefix(checkpoints) -> str:
    return checkpoints[NAME]


@FIXTURES_BY_NAME
def test_the_anchor_orders_differ_and_the_permutation_maps_one_onto_the_other(fixture):
    """Our anchors (Model Garden's generator, the mapped config) are the OD API's
    (the fixture's, normalized), each location's in the order anchor_order gives:
    the same boxes, another order."""
    reference = _reference(fixture.name)
    net = _model(name=fixture.name)
    ours = batch_anchors(net, tf.zeros([1, 128, 128, 3]))
    flat = np.concatenate([ours[lv].numpy().reshape(-1, 4) for lv in sorted(ours, key=int)])
    theirs = reference["anchors"]
    assert flat.shape == theirs.shape == (ANCHORS * (16 ** 2 + 8 ** 2 + 4 ** 2 + 2 ** 2 + 1), 4)
    assert np.abs(flat / 128.0 - _in_our_order(theirs)).max() < 1e-5
    assert np.abs(flat / 128.0 - theirs).max() > 0.1  # the orders differ
    assert box_predictor.anchor_order(2, 3) == [0, 2, 4, 1, 3, 5]
    assert box_predictor.anchor_order(1, 3) == [0, 1, 2]  # one scale: the same order


@FIXTURES_BY_NAME
def test_full_loads_the_box_predictor_and_our_head_computes_its_outputs(fixture,
                                                                        checkpoints):
    """After a full fine-tune, our head's outputs are the OD API's (its box_encodings
    and class_predictions_with_background, anchors in our order) to 1e-4 of the
    largest; before it (fresh) they differ. The line and report say what loaded."""
    reference = _reference(fixture.name)
    prefix = checkpoints[fixture.name]
    BACKBONE, FPN, HEAD = fixture.backbone, fixture.fpn, fixture.head
    net = _model(name=fixture.name)
    theirs_boxes = _in_our_order(reference["box_encodings"])
    theirs_classes = _in_our_order(reference["class_predictions_with_background"])
    boxes, classes = _head_outputs(net, reference)
    assert _relative(boxes, theirs_boxes) > 0.5 and _relative(classes, theirs_classes) > 0.5
    result = fine_tune.apply(net, prefix, "full")
    boxes, classes = _head_outputs(net, reference)
    assert boxes.shape == theirs_boxes.shape and classes.shape == theirs_classes.shape
    assert _relative(boxes, theirs_boxes) <= TOLERANCE
    assert _relative(classes, theirs_classes) <= TOLERANCE
    # Without the permutation our outputs are the OD API's in its own order: they differ.
    assert _relative(boxes, reference["box_encodings"]) > 0.5

    assert result.line == (
        f"fine-tune: {BACKBONE} of {BACKBONE} backbone variables and {FPN} of {FPN} FPN "
        f"variables, and {HEAD} of {HEAD} head variables (the OD API's box predictor) from "
        f"an OD API checkpoint {prefix} (full)")
    assert result.count == len(net.variables) == BACKBONE + FPN + HEAD
    report = result.report
    assert report["fresh"] == []
    head = [row for row in report["loaded"] if row["part"] == "head"]
    assert len(head) == HEAD and all(row["checkpoint_key"].startswith(PREDICTOR)
                                     for row in head)
    permuted = sorted(row["odapi_layer"] for row in head if "output_channels" in row)
    kernel = fixture.class_kernel[0]
    assert permuted == ["BoxPredictor/bias", f"BoxPredictor/{kernel}",
                        "ClassPredictor/bias", f"ClassPredictor/{kernel}"]
    assert not any(row["checkpoint_key"].startswith(PREDICTOR) for row in report["unused"])


@FIXTURES_BY_NAME
def test_detection_leaves_the_head_fresh_as_the_odapi(fixture, checkpoints):
    """detection (the OD API's detection): the backbone and FPN load, the head keeps
    its fresh values, and the line, the rows and the unused keys say why."""
    prefix = checkpoints[fixture.name]
    BACKBONE, FPN, HEAD = fixture.backbone, fixture.fpn, fixture.head
    net = _model(name=fixture.name)
    before = [v.numpy() for v in net.head.variables]
    result = fine_tune.apply(net, prefix, "detection")
    for variable, value in zip(net.head.variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert result.line == (
        f"fine-tune: {BACKBONE} of {BACKBONE} backbone variables and {FPN} of {FPN} FPN "
        f"variables from an OD API checkpoint {prefix} (detection); head fresh "
        "(fine_tune_checkpoint_type detection loads the backbone and FPN only, as the OD "
        "API's detection; full loads the box predictor too)")
    fresh = result.report["fresh"]
    assert len(fresh) == HEAD and all(row["reason"].startswith(
        "head: fine_tune_checkpoint_type detection loads the backbone and FPN only")
        for row in fresh)
    unused = [row for row in result.report["unused"]
              if row["checkpoint_key"].startswith(PREDICTOR)]
    assert len(unused) == HEAD and all(
        row["reason"] == "the OD API's box predictor: fine_tune_checkpoint_type detection "
                         "does not load it (full does)" for row in unused)


@FIXTURES_BY_NAME
def test_full_with_another_num_classes_leaves_the_class_predictor_fresh(fixture,
                                                                        checkpoints):
    """5 classes where the checkpoint has 3: the towers and the box predictor load
    (our box outputs are the OD API's), the class predictor keeps its fresh values
    (the OD API's full would fail), and the line and its rows say why."""
    reference = _reference(fixture.name)
    prefix, HEAD = checkpoints[fixture.name], fixture.head
    net = _model(num_classes=5, name=fixture.name)
    before = [v.numpy() for v in net.head._classifier.variables]
    result = fine_tune.apply(net, prefix, "full")
    for variable, value in zip(net.head._classifier.variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)
    boxes, _ = _head_outputs(net, reference)
    assert _relative(boxes, _in_our_order(reference["box_encodings"])) <= TOLERANCE
    classifier = len(net.head._classifier.variables)
    weight, theirs, ours = fixture.class_kernel
    why = (f"the checkpoint's class predictor {PREDICTOR}_prediction_heads/"
           f"class_predictions_with_background/_class_predictor_layers/0/{weight}/"
           f".ATTRIBUTES/VARIABLE_VALUE has shape {theirs}, ours {ours}: "
           "another model.num_classes (the OD API's full would fail here)")
    assert result.line.endswith(
        f"and {HEAD - classifier} of {HEAD} head variables (the OD API's box predictor) "
        f"from an OD API checkpoint {prefix} (full); its class predictor fresh ({why})")
    assert result.report["fresh"] == [
        {"variable": v.name, "reason": f"head: its class predictor starts fresh: {why}"}
        for v in net.head._classifier.variables]
    unused = [row for row in result.report["unused"]
              if row["checkpoint_key"].startswith(PREDICTOR)]
    assert len(unused) == classifier and all(
        row["reason"] == "the OD API's class predictor: another model.num_classes (the OD "
                         "API's full would fail here)"
        for row in unused)


def test_a_class_predictor_without_a_background_column_is_said_so():
    """The OD API's EfficientDet configs (add_background_class: false) have num_classes
    logits per anchor where ours have num_classes + 1: the same classes, so the reason
    is not another num_classes."""
    from train_lib.training.odapi_checkpoint.box_predictor import class_unfit_reason

    key = "model/_box_predictor/x/kernel"
    no_background = class_unfit_reason(key, [3, 3, 64, 9 * 90], [3, 3, 64, 9 * 91], anchors=9)
    assert no_background.endswith(
        ": 90 logits per anchor where ours has 91: no background column (the OD API's "
        "add_background_class: false, as its EfficientDet configs'), or one class fewer "
        "than model.num_classes")
    other = class_unfit_reason(key, [3, 3, 64, 9 * 4], [3, 3, 64, 9 * 6], anchors=9)
    assert other == (f"the checkpoint's class predictor {key} has shape [3, 3, 64, 36], ours "
                     "[3, 3, 64, 54]: another model.num_classes (the OD API's full would "
                     "fail here)")


@FIXTURES_BY_NAME
def test_a_head_of_another_depth_is_refused_naming_the_first_variable(fixture, checkpoints):
    """model.head.num_filters 16 where the checkpoint's predictor is 32 deep: one
    TrainError naming the (box) tower's first kernel, nothing loaded."""
    prefix = checkpoints[fixture.name]
    net = _model(num_filters=16, name=fixture.name)
    before = [v.numpy() for v in net.variables]
    with pytest.raises(TrainError) as err:
        fine_tune.apply(net, prefix, "full")
    message = str(err.value)
    tower_kernel, theirs, ours = fixture.tower_kernel
    assert message.startswith(
        f"train_config.fine_tune_checkpoint {prefix} does not fit this model's head "
        f"(model.head.share_prediction_tower: {str(fixture.shared).lower()}): the first "
        f"variable whose shape differs is {PREDICTOR}_head_scope_conv_layers/{tower_kernel}/"
        f".ATTRIBUTES/VARIABLE_VALUE (the OD API's box predictor layer {tower_kernel}; "
        f"our {fixture.ours}): {theirs} in the checkpoint, {ours} in this model.")
    assert "\n" not in message
    for variable, value in zip(net.variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)


@pytest.mark.parametrize("name", [NAME, TWO_TOWERS])
def test_a_head_of_the_other_towers_is_refused_under_full(name, checkpoints):
    """One tower where the checkpoint's predictor has two, or two where it has one,
    computes another function: full (which asks for the head) is one TrainError naming
    the key to set; detection leaves the head fresh, as it always does."""
    _, model = _mapped_model(_text(name))
    theirs = model.head.share_prediction_tower
    model.head.share_prediction_tower = not theirs
    net = families.build_model(model)
    with pytest.raises(TrainError) as err:
        odapi_checkpoint.plan(net, checkpoints[name], "full")
    message = str(err.value)
    assert message.startswith(f"train_config.fine_tune_checkpoint {checkpoints[name]} does "
                              "not fit this model's head under fine_tune_checkpoint_type full: "
                              "the checkpoint's box predictor has "), message
    setting = f"model.head.share_prediction_tower: {str(theirs).lower()}" + (
        "" if theirs else " and model.head.tower_conv_bias: false")
    assert message.endswith(f"; set {setting} to load it, or fine_tune_checkpoint_type: "
                            "detection to start the head fresh")
    ours_part = message.rsplit(", this model's head ", 1)[1]
    assert ours_part.startswith("one tower shared" if not theirs else "a box tower and")
    plan = odapi_checkpoint.plan(net, checkpoints[name], "detection")
    assert not any(m.part == "head" for m in plan.mapped)
    assert plan.summary().endswith("; head fresh (ours compute other functions than the OD "
                                   "API's box predictor)")


def test_model_gardens_tower_biases_are_refused_naming_the_first(checkpoints):
    """Model Garden's two towers with biases (tower_conv_bias: true) where the OD API's
    have none: one TrainError naming the first bias and the key to set."""
    _, model = _mapped_model(_text(TWO_TOWERS))
    model.head.tower_conv_bias = True
    with pytest.raises(TrainError) as err:
        odapi_checkpoint.plan(families.build_model(model), checkpoints[TWO_TOWERS], "full")
    message = str(err.value)
    assert (f"it has no {PREDICTOR}_head_scope_conv_layers/BoxPredictionTower/0/bias/"
            ".ATTRIBUTES/VARIABLE_VALUE (the OD API's box predictor layer "
            "BoxPredictionTower/0/bias; our boxnet-conv_0/bias, shape [32])") in message
    assert "model.head.tower_conv_bias" in message


def test_a_checkpoint_tower_with_more_convolutions_is_refused(checkpoints):
    """One convolution fewer than the checkpoint's towers: ours would compute another
    function with the rest, so full refuses, naming the first weight left over."""
    _, model = _mapped_model(_text(TWO_TOWERS))
    model.head.num_convs -= 1
    last = model.head.num_convs  # the index of the checkpoint's last tower convolution
    with pytest.raises(TrainError) as err:
        odapi_checkpoint.plan(families.build_model(model), checkpoints[TWO_TOWERS], "full")
    message = str(err.value)
    assert "the checkpoint's box predictor has" in message and \
        "no layer of ours computes with" in message, message
    assert "model.head.num_convs" in message and "\n" not in message
    first = message.split("the first ", 1)[1].split(";", 1)[0]
    assert first.startswith(PREDICTOR) and first in dict(tf.train.list_variables(
        checkpoints[TWO_TOWERS]))
    assert f"/{last}/" in first or f"/{3 * last + 1}/" in first, first


def test_a_bigger_tower_is_refused_when_the_class_predictor_does_not_fit_too(checkpoints):
    """Another num_classes (the class predictor would start fresh) does not hide a
    tower convolution the checkpoint has and ours lacks: still refused."""
    _, model = _mapped_model(_text(TWO_TOWERS))
    model.head.num_convs -= 1
    model.num_classes += 2
    with pytest.raises(TrainError) as err:
        odapi_checkpoint.plan(families.build_model(model), checkpoints[TWO_TOWERS], "full")
    assert "no layer of ours computes with" in str(err.value)


def test_checkpoint_tower_biases_ours_lack_are_refused(checkpoints):
    """The checkpoint's towers with biases (force_use_bias) where ours have none
    (tower_conv_bias: false): refused, naming a bias and the key to set."""
    _, model = _mapped_model(_text(TWO_TOWERS))
    assert model.head.tower_conv_bias is False
    shapes = dict(tf.train.list_variables(checkpoints[TWO_TOWERS]))
    kernel = f"{PREDICTOR}_head_scope_conv_layers/BoxPredictionTower/0/kernel/" \
             ".ATTRIBUTES/VARIABLE_VALUE"
    bias = kernel.replace("/kernel/", "/bias/")
    shapes[bias] = shapes[kernel][-1:]
    with pytest.raises(TrainError) as err:
        odapi_checkpoint.plan_shapes(families.build_model(model), shapes, "ckpt-0", "full")
    message = str(err.value)
    assert f"the first {bias};" in message and "model.head.tower_conv_bias: true" in message


@pytest.mark.slow
def test_a_run_fine_tunes_the_head_from_the_odapi_checkpoint(tiny_dataset, tmp_path, prefix):
    BACKBONE, FPN, HEAD = 260, 30, 94
    """train() with full: the line, the report in model_dir; a head of another depth is
    one TrainError and writes nothing."""
    config = make_tiny_config(tiny_dataset, num_steps=2)
    _, config.model = _mapped_model(_text())
    config.train_config.fine_tune_checkpoint = prefix
    config.train_config.fine_tune_checkpoint_type = "full"
    model_dir, lines = str(tmp_path / "run"), []
    assert train(config, model_dir, record_summaries=False, log=lines.append).step == 2
    assert any(ln.startswith(f"fine-tune: {BACKBONE} of {BACKBONE} backbone variables and "
                             f"{FPN} of {FPN} FPN variables, and {HEAD} of {HEAD} head "
                             "variables (the OD API's box predictor)") for ln in lines)
    with open(os.path.join(model_dir, fine_tune.REPORT_FILE)) as f:
        report = json.load(f)
    assert report["fine_tune_checkpoint_type"] == "full" and report["fresh"] == []
    assert sum(row["part"] == "head" for row in report["loaded"]) == HEAD
    config.model.head.num_filters = 16
    bad_dir = str(tmp_path / "bad")
    with pytest.raises(TrainError, match="does not fit this model's head"):
        train(config, bad_dir, record_summaries=False, log=lines.append)
    assert not os.path.exists(bad_dir)


def test_the_separable_shared_tower_model_is_checkpointed(tmp_path):
    """The mapped FPN-lite model (a separable shared-tower head, whose predictors' L2
    arguments it drops) writes a checkpoint and reads it back: its tracked arguments
    are new dicts, not ones changed in place (which tf.train.Checkpoint refuses)."""
    net = _model()
    prefix = tf.train.Checkpoint(model=net).write(str(tmp_path / "ckpt"))
    other = _model()
    tf.train.Checkpoint(model=other).read(prefix).assert_existing_objects_matched()
    for a, b in zip(net.variables, other.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("name, depth", [(NAME, 128), (TWO_TOWERS, 256),
                                         ("ssd_resnet50_v1_fpn_keras", 256)])
def test_a_full_fine_tune_from_the_published_checkpoint_maps_every_predictor_variable(
        name, depth):
    """A zoo ckpt-0 of the published config (its names and shapes: 90 classes) onto
    the mapped full-width model: with num_classes 90 every variable of its box
    predictor has its place in our head, with its shape; with 3 all but the class
    predictor's, which the line says starts fresh."""
    text = re.sub(r"depth_multiplier: [0-9.]+", "depth_multiplier: 1.0",
                  re.sub(r"min_depth: \d+", "min_depth: 16", _text(name), count=1), count=1)
    text = text.replace("depth: 32\n", f"depth: {depth}\n", 1)
    shapes = dict(_manifest(name)["published"]["variables"])
    predictor = {key for key in shapes if key.startswith(PREDICTOR)}
    for num_classes in (90, 3):
        _, model = _mapped_model(text)
        model.num_classes, model.input_size = num_classes, [128, 128]
        net = families.build_model(model)
        plan = odapi_checkpoint.plan_shapes(net, shapes, "ckpt-0", "full")
        head = [m for m in plan.mapped if m.part == "head"]
        for m in head:
            assert list(shapes[m.key]) == m.variable.shape.as_list(), m.key
        classifier = len(net.head._classifier.variables)
        if num_classes == 90:
            assert {m.key for m in head} == predictor
            assert len(head) == len(net.head.variables)
            assert plan.summary().endswith("head variables (the OD API's box predictor) from "
                                           "an OD API checkpoint ckpt-0 (full)")
        else:
            assert len(head) == len(predictor) - classifier == len(net.head.variables) - \
                classifier
            assert "(full); its class predictor fresh (the checkpoint's class predictor " \
                in plan.summary()
