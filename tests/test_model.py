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
