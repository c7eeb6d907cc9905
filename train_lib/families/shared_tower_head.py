"""A RetinaNet head whose class and box predictions share one tower.

Model Garden's `RetinaNetHead` runs two towers of `num_convs` convolutions per
level, one for the class predictor and one for the box predictor. The OD API's
weight-shared box predictor with `share_prediction_tower: true` (the published
SSD MobileNetV2 FPN-lite configs) runs one: each level's feature map goes through
the tower once and both predictors read its output. `SharedTowerRetinaNetHead`
is Model Garden's head with that change: the tower's convolutions are shared
across levels (as in both), each level keeps its own batch norms (as in both),
the class and box predictors are Model Garden's, shared across levels. With
`tower_conv_bias=False` (what model.head.tower_conv_bias null or false gives it) the
tower's convolutions have no bias (each feeds a batch norm), as the OD API's: its
parameters are then the OD API predictor's, one for one. With separable convolutions its
L2 loss is on the OD API's kernels too: the tower's depthwise ones only.

Its outputs are those of `RetinaNetHead` (scores, boxes, attributes by level), so
the model, the losses, the decoding and the exports are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf
import tf_keras

from train_lib.families.tower_bias_head import TowerBiasRetinaNetHead

__all__ = ["SharedTowerRetinaNetHead"]


@tf_keras.utils.register_keras_serializable(package="train_lib")
class SharedTowerRetinaNetHead(TowerBiasRetinaNetHead):
    """`TowerBiasRetinaNetHead` (same arguments) with one tower for both predictors.

    Without attribute heads and with `share_level_convs` (Model Garden's default):
    both are what the OD API's weight-shared predictor does. Its variables are the
    tower's `num_convs` convolutions (`_tower_convs`), their batch norms per level
    (`_tower_norms`), the class predictor (`_classifier`) and the box predictor
    (`_box_regressor`)."""

    # The parts whose shapes do not follow the number of classes (what a detection
    # fine-tune keeps; the class predictor starts fresh).
    CLASS_INDEPENDENT_PARTS = ("_tower_convs", "_tower_norms", "_box_regressor")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._config_dict["attribute_heads"] or not self._config_dict["share_level_convs"]:
            raise ValueError("SharedTowerRetinaNetHead takes no attribute_heads and shares "
                             "its convolutions across levels (share_level_convs=True)")
        if self._config_dict["use_separable_conv"]:
            # The L2 loss where the OD API's separable predictor has it: on the tower's
            # depthwise kernels, not its pointwise ones, and nowhere in the class and box
            # predictors (Keras' SeparableConv2D ignores the kernel_regularizer the OD
            # API passes it). Model Garden's separable head regularises the predictors'
            # kernels and none of the tower's.
            self._conv_kwargs["depthwise_regularizer"] = self._config_dict["kernel_regularizer"]
            # New dicts, not pop(): Keras tracks these attributes, and a tracked dict
            # changed by pop() can no longer be checkpointed.
            for name in ("_classifier_kwargs", "_box_regressor_kwargs"):
                setattr(self, name, {key: value for key, value in getattr(self, name).items()
                                     if key not in ("depthwise_regularizer",
                                                    "pointwise_regularizer")})

    def build(self, input_shape) -> None:
        """Creates the tower (with each level's norms), the class and the box predictor."""
        separable = self._config_dict["use_separable_conv"]
        conv_op = tf_keras.layers.SeparableConv2D if separable else tf_keras.layers.Conv2D
        bn_op = (tf_keras.layers.experimental.SyncBatchNormalization
                 if self._config_dict["use_sync_bn"] else tf_keras.layers.BatchNormalization)
        # Model Garden's tower builder: convs shared across levels, norms per level.
        self._tower_convs, self._tower_norms, self._classifier = self._build_prediction_tower(
            "tower", "scores", conv_op, bn_op, self._classifier_kwargs)
        self._box_regressor = conv_op(name="boxes", **self._box_regressor_kwargs)
        tf_keras.layers.Layer.build(self, input_shape)  # not RetinaNetHead's: no 2nd tower

    def call(self, features: Mapping[str, tf.Tensor]):
        """As `RetinaNetHead.call`: (scores, boxes, {}) by level, each level's features
        through the tower once, both predictors on its output."""
        scores, boxes = {}, {}
        levels = range(self._config_dict["min_level"], self._config_dict["max_level"] + 1)
        for i, level in enumerate(levels):
            tower = self._apply_prediction_tower(features[str(level)], self._tower_convs,
                                                 self._tower_norms[i])
            scores[str(level)] = self._classifier(tower)
            boxes[str(level)] = self._box_regressor(tower)
        return scores, boxes, {}
