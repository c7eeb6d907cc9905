"""Model Garden RetinaNet from our config, its losses, and the learning-rate schedules."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import make_tiny_config
from train_lib.config import TrainConfig
from train_lib.data import inputs
from train_lib.families import build_model, compute_losses
from train_lib.training.optimizer import build_learning_rate, build_optimizer


@pytest.mark.parametrize("backbone_type, model_id, width", [
    ("mobilenet", "MobileNetV2", 0.35),
    ("mobilenet", "MobileNetV3Small", 0.5),
    ("resnet", "18", 0.25),
])
def test_backbones_build_and_give_finite_losses(tiny_dataset, backbone_type, model_id, width):
    config = make_tiny_config(tiny_dataset)
    config.model.backbone.type = backbone_type
    config.model.backbone.model_id = model_id
    config.model.backbone.width_multiplier = width
    model = build_model(config.model)
    images, labels, _, _ = next(iter(inputs.build_train_dataset(
        config, sorted(tf.io.gfile.glob(tiny_dataset["train_pattern"])))))
    outputs = model(images, training=True)
    num_columns = config.model.num_classes + 1  # background + label map ids
    assert outputs["cls_outputs"]["3"].shape == (4, 8, 8, 9 * num_columns)
    assert outputs["box_outputs"]["5"].shape == (4, 2, 2, 9 * 4)
    losses = compute_losses(config.model, outputs, labels,
                            {"num_positives": tf.reduce_sum(labels["box_weights"])},
                            tf.add_n(model.losses))
    assert all(np.isfinite(v.numpy()) and v.numpy() >= 0 for v in losses.values())
    np.testing.assert_allclose(
        losses["total_loss"].numpy(),
        sum(losses[k].numpy() for k in ("classification_loss", "localization_loss",
                                        "regularization_loss")), rtol=1e-5)
    detections = model(images, training=False)
    assert detections["detection_boxes"].shape == (4, 100, 4)


def test_the_loss_normalizer_and_weights(tiny_dataset):
    """model.loss.normalizer divides the summed class and box losses by the matched
    anchors + 1 (Model Garden's), by max(matched anchors, 1) (the OD API's) or by 1;
    class_loss_weight and box_loss_weight multiply them."""
    config = make_tiny_config(tiny_dataset)
    model = build_model(config.model)
    images, labels, _, _ = next(iter(inputs.build_train_dataset(
        config, sorted(tf.io.gfile.glob(tiny_dataset["train_pattern"])))))
    outputs = model(images, training=True)
    positives = tf.reduce_sum(labels["box_weights"])
    n = float(positives)
    assert n > 1

    def losses(normalizer: str, count=positives, class_weight=1.0, box_weight=1.0):
        config.model.loss.normalizer = normalizer
        config.model.loss.class_loss_weight = class_weight
        config.model.loss.box_loss_weight = box_weight
        found = compute_losses(config.model, outputs, labels, {"num_positives": count},
                               tf.constant(0.0))
        return float(found["classification_loss"]), float(found["localization_loss"])

    sums = losses("none")
    np.testing.assert_allclose(losses("positives"), [v / n for v in sums], rtol=1e-5)
    np.testing.assert_allclose(losses("positives_plus_one"), [v / (n + 1) for v in sums],
                               rtol=1e-5)
    # no positive anchor: the OD API divides by 1, not by 0
    np.testing.assert_allclose(losses("positives", tf.constant(0.0)), sums, rtol=1e-5)
    np.testing.assert_allclose(losses("none", class_weight=2.0, box_weight=3.0),
                               [2 * sums[0], 3 * sums[1]], rtol=1e-5)

    # Two replicas of half the batch, each dividing by the global count (what the
    # training step sums over replicas): their losses add up to the whole batch's.
    def half(tree, part):
        if isinstance(tree, dict):
            return {k: half(v, part) for k, v in tree.items()}
        return tree[:2] if part == 0 else tree[2:]

    for normalizer in ("positives_plus_one", "positives", "none"):
        config.model.loss.normalizer = normalizer
        config.model.loss.class_loss_weight = config.model.loss.box_loss_weight = 1.0
        replicas = [compute_losses(config.model, half(outputs, i), half(labels, i),
                                   {"num_positives": positives}, tf.constant(0.0))
                    for i in (0, 1)]
        for key, whole in zip(("classification_loss", "localization_loss"),
                              losses(normalizer), strict=True):
            assert float(replicas[0][key] + replicas[1][key]) == pytest.approx(whole,
                                                                              rel=1e-5)


def _rates(train: TrainConfig, steps: list[int]) -> list[float]:
    schedule = build_learning_rate(train)
    return [float(schedule(s).numpy()) for s in steps]


def test_schedules_with_warmup():
    train = TrainConfig(num_steps=1000)
    lr = train.learning_rate
    lr.base, lr.warmup_steps, lr.warmup_start = 0.1, 100, 0.01

    lr.schedule = "constant"
    np.testing.assert_allclose(_rates(train, [0, 50, 100, 999]), [0.01, 0.055, 0.1, 0.1],
                               rtol=1e-5)
    lr.schedule = "cosine"
    lr.cosine_alpha = 0.0
    np.testing.assert_allclose(_rates(train, [0, 100, 550, 1000]), [0.01, 0.1, 0.05, 0.0],
                               rtol=1e-4, atol=1e-7)
    lr.schedule = "step"
    lr.boundaries, lr.decay_factor = [400, 800], 0.1
    np.testing.assert_allclose(_rates(train, [100, 399, 401, 801]), [0.1, 0.1, 0.01, 0.001],
                               rtol=1e-4)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimizers_take_the_schedule_and_clipping(kind):
    train = TrainConfig(num_steps=10)
    train.optimizer.type = kind
    train.optimizer.gradient_clip_norm = 1.0
    optimizer = build_optimizer(train)
    variable = tf.Variable([0.0, 0.0])
    optimizer.apply_gradients([(tf.constant([300.0, 400.0]), variable)])
    assert int(optimizer.iterations.numpy()) == 1
    moved = np.linalg.norm(variable.numpy())
    # clipped to norm 1 before the step: SGD moves lr * 1; Adam about lr per element
    assert 0 < moved <= 2 * train.learning_rate.base
