"""model.head.share_prediction_tower: one tower feeds the class and the box predictor
(the OD API's weight-shared predictor with share_prediction_tower: true).

It has the parameters one tower should have, counted from the config alone; its
predictions read the tower's output; a model with it trains, saves, resumes,
exports, and fine-tunes from its own checkpoints (not from a two-tower one)."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ckpt_steps, make_tiny_config
from train_lib.families import retinanet
from train_lib.families.shared_tower_head import SharedTowerRetinaNetHead
from train_lib.training import fine_tune
from train_lib.training.trainer import TrainError, train


def _shared(config):
    config = copy.deepcopy(config)
    config.model.head.share_prediction_tower = True
    config.model.head.tower_conv_bias = False  # the OD API's, as the mapper sets it
    config.model.head.num_convs = 2
    return config


def _conv_params(inputs: int, outputs: int, separable: bool, bias: bool) -> int:
    kernel = 9 * inputs + inputs * outputs if separable else 9 * inputs * outputs
    return kernel + (outputs if bias else 0)


@pytest.mark.parametrize("separable", [False, True])
def test_one_tower_has_the_parameters_it_should(tiny_config, separable):
    config = _shared(tiny_config)
    model = config.model
    model.head.use_separable_conv = separable
    model.head.num_filters = 24  # unlike the FPN's 32: the first conv changes width
    net = retinanet.build_model(model)
    head = net.head
    assert isinstance(head, SharedTowerRetinaNetHead)

    fpn, width, convs = model.fpn.num_filters, model.head.num_filters, model.head.num_convs
    levels = model.max_level - model.min_level + 1
    anchors = len(model.anchor.aspect_ratios) * model.anchor.num_scales
    tower = sum(_conv_params(fpn if i == 0 else width, width, separable, bias=False)
                for i in range(convs))
    norms = levels * convs * 4 * width  # gamma, beta, moving mean and variance per level
    classes = _conv_params(width, anchors * (model.num_classes + 1), separable, bias=True)
    boxes = _conv_params(width, anchors * 4, separable, bias=True)
    assert head.count_params() == tower + norms + classes + boxes

    # Model Garden's two towers: one more tower and its norms, and both with biases.
    model.head.share_prediction_tower = False
    model.head.tower_conv_bias = True
    two = retinanet.build_model(model).head.count_params()
    assert two - head.count_params() == tower + 2 * convs * width + norms


@pytest.mark.parametrize("separable", [False, True])
def test_the_l2_loss_is_on_the_odapis_kernels(tiny_config, separable):
    """Plain convolutions: every kernel of the head is regularised. Separable ones (the
    OD API's SeparableConv2D layers ignore kernel_regularizer): the tower's depthwise
    kernels only, its pointwise ones and the predictors' not."""
    config = _shared(tiny_config)
    config.model.head.use_separable_conv = separable
    head = retinanet.build_model(config.model).head
    convs = config.model.head.num_convs
    weight = config.model.loss.l2_weight_decay / 2.0
    for conv in head._tower_convs:
        assert len(conv.losses) == 1
        kernel = conv.depthwise_kernel if separable else conv.kernel
        np.testing.assert_allclose(float(conv.losses[0]),
                                   weight * float(tf.reduce_sum(kernel ** 2)), rtol=1e-5)
    predictors = [*head._classifier.losses, *head._box_regressor.losses]
    assert len(predictors) == (0 if separable else 2)
    assert len(head.losses) == convs + len(predictors)


def test_both_predictions_read_the_one_tower(tiny_config):
    net = retinanet.build_model(_shared(tiny_config).model)
    images = tf.random.uniform([2, 64, 64, 3], seed=1)
    features = net.decoder(net.backbone(images, training=False), training=False)
    scores, boxes, attributes = net.head(features, training=False)
    assert attributes == {}
    head = net.head
    for i, level in enumerate(sorted(features, key=int)):
        tower = features[level]
        for conv, norm in zip(head._tower_convs, head._tower_norms[i], strict=True):
            tower = tf.nn.relu6(norm(conv(tower), training=False))
        np.testing.assert_allclose(scores[level], head._classifier(tower), atol=1e-5)
        np.testing.assert_allclose(boxes[level], head._box_regressor(tower), atol=1e-5)


@pytest.fixture(scope="module")
def shared_run(tiny_dataset, tmp_path_factory) -> dict:
    """A shared-tower model trained 4 steps (ckpt-2, ckpt-4), then resumed to 6."""
    config = _shared(make_tiny_config(tiny_dataset, num_steps=4))
    config.model.post_processing.score_threshold = 0.0
    model_dir = str(tmp_path_factory.mktemp("shared") / "run")
    first = train(config, model_dir, checkpoint_every_n=2, record_summaries=False)
    more = train(config, model_dir, num_train_steps=6, checkpoint_every_n=2,
                 record_summaries=False)
    return {"config": config, "model_dir": model_dir, "first": first, "more": more}


def test_it_trains_saves_and_resumes(shared_run):
    first, more = shared_run["first"], shared_run["more"]
    assert first.step == 4 and all(np.isfinite([loss for _, loss in first.loss_history]))
    assert more.start_step == 4 and more.step == 6
    assert ckpt_steps(shared_run["model_dir"]) == [2, 4, 6]
    names = [name for name, _ in tf.train.list_variables(
        os.path.join(shared_run["model_dir"], "ckpt-6"))]
    assert any(n.startswith("model/_head/_tower_convs/") for n in names)
    assert not any("_cls_convs" in n or "_box_convs" in n for n in names)


def test_it_exports_and_the_saved_model_detects(shared_run, tmp_path):
    from train_lib.export.saved_model import export_saved_model

    path = export_saved_model(shared_run["config"],
                              os.path.join(shared_run["model_dir"], "ckpt-6"), str(tmp_path))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    image = tf.cast(tf.random.uniform([1, 64, 64, 3], maxval=255, seed=2), tf.uint8)
    out = serve(input_tensor=image)
    assert out["detection_boxes"].shape[:2] == out["detection_scores"].shape[:2]
    assert int(out["num_detections"][0]) > 0  # score threshold 0: every kept box


def test_a_detection_fine_tune_keeps_the_tower_not_the_classes(shared_run):
    prefix = os.path.join(shared_run["model_dir"], "ckpt-6")
    reference = retinanet.build_model(shared_run["config"].model)
    tf.train.Checkpoint(model=reference).read(prefix).expect_partial()
    config = copy.deepcopy(shared_run["config"])
    config.model.num_classes = 5  # the source has 3
    model = retinanet.build_model(config.model)
    count = fine_tune.apply(model, prefix, "detection").count
    for part in SharedTowerRetinaNetHead.CLASS_INDEPENDENT_PARTS:
        ours = tf.nest.flatten(tf.nest.map_structure(
            lambda layer: layer.variables, getattr(model.head, part)))
        theirs = tf.nest.flatten(tf.nest.map_structure(
            lambda layer: layer.variables, getattr(reference.head, part)))
        assert ours and all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True)), part
    assert count == len(model.variables) - len(model.head._classifier.variables)


def test_a_two_tower_checkpoint_does_not_fit_a_shared_tower(trained_run):
    config = copy.deepcopy(trained_run["config"])
    config.model.head.share_prediction_tower = True  # all else as the checkpoint's model
    model = retinanet.build_model(config.model)
    prefix = os.path.join(trained_run["model_dir"], "ckpt-4")
    with pytest.raises(TrainError, match="does not fit this model's backbone and decoder "
                                         "and head"):
        fine_tune.apply(model, prefix, "detection")
