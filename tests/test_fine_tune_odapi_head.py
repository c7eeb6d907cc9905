"""fine_tune_checkpoint_type full from an OD API checkpoint: its weight-shared box
predictor (share_prediction_tower: true) loads into model.head.share_prediction_tower,
which then computes its outputs; detection leaves the head fresh, as the OD API's.

The fixture (tests/fixtures/odapi/ssd_mobilenet_v2_fpn_keras/, made with the real OD
API by scripts/odapi_fixtures/make_odapi_fixtures.py from the published FPN-lite
320x320 config at depth_multiplier 0.35, 128 px, 3 classes) holds the OD API's
variables (names and shapes, seeded_weights' values) and, on one image, its box
predictor's outputs (`box_encodings` [1, N, 4], `class_predictions_with_background`
[1, N, 4], levels 3-7, each level's locations row by row, each location's 6 anchors in
the OD API's order) and its `anchors` (normalized corners). The OD API orders a
location's anchors aspect ratio by aspect ratio (each at its 2 scales), Model Garden
scale by scale: the load permutes the predictors' output channels, so that our k-th
anchor's outputs are the OD API's for the anchor that is our k-th."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_tiny_config
from test_fine_tune_odapi_resnet import _checkpoint, _reference
from test_odapi_fpn_lite import FIXTURES, NAME, _mapped_model

from train_lib import families
from train_lib.families.anchors import batch_anchors
from train_lib.training import fine_tune, odapi_checkpoint
from train_lib.training.odapi_checkpoint import box_predictor
from train_lib.training.trainer import TrainError, train

TOLERANCE = 1e-4
NUM_SCALES, ASPECT_RATIOS = 2, [1.0, 2.0, 0.5]  # the fixture's anchor generator
ANCHORS = NUM_SCALES * len(ASPECT_RATIOS)
BACKBONE, FPN, HEAD = 260, 30, 94  # HEAD: 4 separable tower convs (8), 5 levels x 4
# norms x 4 (80), the box and class predictors' depthwise and pointwise kernels and bias
PREDICTOR = "model/_box_predictor/"


def _text() -> str:
    with open(os.path.join(FIXTURES, NAME, "pipeline.config")) as f:
        return f.read()


def _model(num_classes: int | None = None, num_filters: int | None = None):
    """The mapped fixture config's model (share_prediction_tower, separable, the OD
    API's FPN), optionally with another num_classes or head depth."""
    _, model = _mapped_model(_text())
    assert model.head.share_prediction_tower and model.fpn.type == "odapi"
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
    """The OD API's per-anchor rows [..., N, k] reordered so that each location's
    anchors come in our order (box_predictor.anchor_order)."""
    order = box_predictor.anchor_order(NUM_SCALES, len(ASPECT_RATIOS))
    shape = theirs.shape
    grouped = theirs.reshape(*shape[:-2], shape[-2] // ANCHORS, ANCHORS, shape[-1])
    return grouped[..., order, :].reshape(shape)


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> str:
    return _checkpoint(NAME, tmp_path_factory.mktemp("odapi_head"))


def test_the_anchor_orders_differ_and_the_permutation_maps_one_onto_the_other():
    """Our anchors (Model Garden's generator, the mapped config) are the OD API's
    (the fixture's, normalized), each location's in the order anchor_order gives:
    the same boxes, another order."""
    reference = _reference(NAME)
    net = _model()
    ours = batch_anchors(net, tf.zeros([1, 128, 128, 3]))
    flat = np.concatenate([ours[lv].numpy().reshape(-1, 4) for lv in sorted(ours, key=int)])
    theirs = reference["anchors"]
    assert flat.shape == theirs.shape == (ANCHORS * (16 ** 2 + 8 ** 2 + 4 ** 2 + 2 ** 2 + 1), 4)
    assert np.abs(flat / 128.0 - _in_our_order(theirs)).max() < 1e-5
    assert np.abs(flat / 128.0 - theirs).max() > 0.1  # the orders differ
    assert box_predictor.anchor_order(2, 3) == [0, 2, 4, 1, 3, 5]
    assert box_predictor.anchor_order(1, 3) == [0, 1, 2]  # one scale: the same order


def test_full_loads_the_box_predictor_and_our_head_computes_its_outputs(prefix):
    """After a full fine-tune, our head's outputs are the OD API's (its box_encodings
    and class_predictions_with_background, anchors in our order) to 1e-4 of the
    largest; before it (fresh) they differ. The line and report say what loaded."""
    reference = _reference(NAME)
    net = _model()
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
    assert permuted == ["BoxPredictor/bias", "BoxPredictor/pointwise_kernel",
                        "ClassPredictor/bias", "ClassPredictor/pointwise_kernel"]
    assert not any(row["checkpoint_key"].startswith(PREDICTOR) for row in report["unused"])


def test_detection_leaves_the_head_fresh_as_the_odapi(prefix):
    """detection (the OD API's detection): the backbone and FPN load, the head keeps
    its fresh values, and the line, the rows and the unused keys say why."""
    net = _model()
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


def test_full_with_another_num_classes_leaves_the_class_predictor_fresh(prefix):
    """5 classes where the checkpoint has 3: the tower and the box predictor load (our
    box outputs are the OD API's), the class predictor keeps its fresh values (the OD
    API's full would fail), and the line and its rows say why."""
    reference = _reference(NAME)
    net = _model(num_classes=5)
    before = [v.numpy() for v in net.head._classifier.variables]
    result = fine_tune.apply(net, prefix, "full")
    for variable, value in zip(net.head._classifier.variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)
    boxes, _ = _head_outputs(net, reference)
    assert _relative(boxes, _in_our_order(reference["box_encodings"])) <= TOLERANCE
    classifier = len(net.head._classifier.variables)
    why = (f"the checkpoint's class predictor {PREDICTOR}_prediction_heads/"
           "class_predictions_with_background/_class_predictor_layers/0/pointwise_kernel/"
           ".ATTRIBUTES/VARIABLE_VALUE has shape [1, 1, 32, 24], ours [1, 1, 32, 36]: "
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
        row["reason"] == "the OD API's class predictor: another model.num_classes than ours"
        for row in unused)


def test_a_head_of_another_depth_is_refused_naming_the_first_variable(prefix):
    """model.head.num_filters 16 where the checkpoint's predictor is 32 deep: one
    TrainError naming the tower's first pointwise kernel, nothing loaded."""
    net = _model(num_filters=16)
    before = [v.numpy() for v in net.variables]
    with pytest.raises(TrainError) as err:
        fine_tune.apply(net, prefix, "full")
    message = str(err.value)
    assert message.startswith(
        f"train_config.fine_tune_checkpoint {prefix} does not fit this model's head "
        "(model.head.share_prediction_tower: true): the first variable whose shape differs "
        f"is {PREDICTOR}_head_scope_conv_layers/PredictionTower/0/pointwise_kernel/"
        ".ATTRIBUTES/VARIABLE_VALUE (the OD API's box predictor layer "
        "PredictionTower/0/pointwise_kernel; our tower-conv_0/pointwise_kernel): "
        "[1, 1, 44, 32] in the checkpoint, [1, 1, 44, 16] in this model.")
    assert "\n" not in message
    for variable, value in zip(net.variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_a_model_garden_two_tower_head_stays_fresh_under_full(prefix):
    """share_prediction_tower: false (Model Garden's two towers) computes another
    function than the checkpoint's one-tower predictor: full leaves it fresh, saying so."""
    _, model = _mapped_model(_text())
    model.head.share_prediction_tower = False
    net = families.build_model(model)
    plan = odapi_checkpoint.plan(net, prefix, "full")
    assert not any(m.part == "head" for m in plan.mapped)
    assert plan.summary().endswith("; head fresh (ours compute other functions than the OD "
                                   "API's box predictor)")


@pytest.mark.slow
def test_a_run_fine_tunes_the_head_from_the_odapi_checkpoint(tiny_dataset, tmp_path, prefix):
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
