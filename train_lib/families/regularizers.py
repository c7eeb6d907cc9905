"""The L2 loss of each part of a model: `model.loss.l2_weight_decay`, and
`model.loss.l2_weight_decay_by_part` where a part has its own weight.

Model Garden's builders take one regulariser and give it to every layer they
build (its RetinaNet's backbone, FPN and head; its Faster R-CNN's RPN head and
detection head too, the detection head's convolutions, fully connected layers and
class and box layers alike). Which variables carry an L2 loss is each layer's
choice (kernels, not biases or batch norms; not the depthwise kernels of Model
Garden's MobileNets; the shared-tower head's own choice, shared_tower_head.py) and
is left as it is; only the weight differs by part. `model.backbone.regularize_depthwise`
adds the backbone's depthwise kernels (`regularize_depthwise`), as the OD API's Keras
MobileNets regularise theirs.

So a model whose parts all take one weight gets Keras' L2 regulariser of that
weight, as before `l2_weight_decay_by_part` existed (none for 0): the same losses,
bit for bit. Otherwise every layer gets one `PartL2`, and once the model is built,
`assign_parts` gives it each variable's part (parts.variables_by_part), whose
weight it then applies: w / 2 * sum(v**2), the OD API's convention, as tf.nn.l2_loss
and Model Garden's; a part of weight 0 adds no loss.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from train_lib.config import ModelConfig
from train_lib.config.initializer_schema import ARCHITECTURE_PARTS, PARTS
from train_lib.families.parts import variables_by_part

__all__ = ["PartL2", "assign_parts", "l2_regularizer", "regularize_depthwise"]


@tf_keras.utils.register_keras_serializable(package="train_lib")
class PartL2(tf_keras.regularizers.Regularizer):
    """L2 with a weight per variable: `weight` (the model's l2_weight_decay) until
    `set_weights` gives a variable its part's. Weights are the OD API's (halved when
    applied, as Keras' L2 is given them); a variable of weight 0 has no loss (None,
    which Keras leaves out of a layer's losses)."""

    def __init__(self, weight: float):
        self.weight = float(weight)
        self._by_variable: dict = {}

    def set_weights(self, weights: dict) -> None:
        """`weights`: {variable.ref(): its weight}; the variables not in it keep
        `weight`."""
        self._by_variable = dict(weights)

    def __call__(self, x):
        weight = self._by_variable.get(x.ref(), self.weight)
        if not weight:
            return None
        return tf_keras.backend.cast_to_floatx(weight / 2.0) * tf.reduce_sum(tf.square(x))

    def get_config(self) -> dict:
        """The default weight only: the per-variable weights are the built model's
        (`assign_parts` gives them again once a model is built)."""
        return {"weight": self.weight}


def part_l2_weights(model: ModelConfig) -> dict[str, float]:
    """The L2 weight of each part of `model.architecture` (LossConfig.l2_weight)."""
    parts = ARCHITECTURE_PARTS.get(model.architecture, PARTS)
    return {part: model.loss.l2_weight(part) for part in parts}


def l2_regularizer(model: ModelConfig):
    """The regulariser every layer of `model` is built with: when all its parts take
    one weight, Keras' L2 of half that weight (to match tf.nn.l2_loss, as Model
    Garden does), None for 0; else a PartL2 (the module docstring)."""
    weights = set(part_l2_weights(model).values())
    if len(weights) == 1:
        (decay,) = weights
        return tf_keras.regularizers.l2(decay / 2.0) if decay else None
    return PartL2(model.loss.l2_weight_decay)


def assign_parts(net: tf_keras.Model, model: ModelConfig, regularizer) -> None:
    """Gives a PartL2 `regularizer` (`net` was built with it) the weight of each of
    `net`'s variables: its part's. Any other regulariser is left alone."""
    if not isinstance(regularizer, PartL2):
        return
    weights = part_l2_weights(model)
    regularizer.set_weights({v.ref(): weights[part]
                             for part, variables in variables_by_part(net).items()
                             for v in variables})


def regularize_depthwise(net: tf_keras.Model, model: ModelConfig, regularizer) -> int:
    """With `model.backbone.regularize_depthwise`, puts every depthwise kernel of `net`'s
    backbone that carries no L2 loss into the L2 loss, by `regularizer` (the one `net`
    was built with: its part's weight, the backbone's, applies); returns how many.

    Done here, once the variables exist, because Model Garden's MobileNets cannot all
    do it: its MobileNetV2 blocks take a regularize_depthwise flag, but its MobileNetV1
    blocks hand the regulariser to DepthwiseConv2D as `kernel_regularizer`, which that
    layer ignores. The variables and their values are untouched."""
    if not model.backbone.regularize_depthwise or regularizer is None:
        return 0
    added = 0
    for layer in net.backbone.submodules:
        if isinstance(layer, tf_keras.layers.DepthwiseConv2D) and \
                layer.depthwise_regularizer is None:
            layer.add_loss(lambda kernel=layer.depthwise_kernel: regularizer(kernel))
            layer.depthwise_regularizer = regularizer  # what the layer now carries
            added += 1
    return added
