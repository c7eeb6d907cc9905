"""The parts of a detector and their variables: what `model.initializers` draws
(initializers.py) and `model.loss.l2_weight_decay_by_part` weighs (regularizers.py),
part by part. The part names of each architecture are
initializer_schema.ARCHITECTURE_PARTS; every variable is in one part:

- both: backbone: `net.backbone`; fpn: `net.decoder`.
- RetinaNet: predictors: the head's class and box predictors (`_classifier`,
  `_box_regressor`); head: the rest of the head (its towers).
- Faster R-CNN: rpn_head: `net.rpn_head`, its convolutions and its score and box
  predictors alike (the OD API draws them all from one initializer);
  detection_predictors: the detection head's class and box predictors
  (`_classifier`, `_box_regressor`); detection_head: the rest of the detection head
  (its convolutions and fully connected layers).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.vision.modeling import maskrcnn_model

__all__ = ["KERNELS", "kernel_kind", "kernels_by_part", "variables_by_part"]

# Kernel variables by their own name; the others are biases and norms.
KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def kernel_kind(variable: tf.Variable) -> str:
    """The variable's own name: 'kernel' of '.../conv2d/kernel:0'."""
    return variable.name.rsplit("/", 1)[-1].split(":")[0]


def variables_by_part(net: tf_keras.Model) -> dict[str, list[tf.Variable]]:
    """Every variable of each part of `net`, a RetinaNet or a Faster R-CNN (the module
    docstring), in the parts' own order (initializer_schema.ARCHITECTURE_PARTS)."""
    parts = {"backbone": net.backbone.weights,
             "fpn": net.decoder.weights if net.decoder is not None else []}
    if isinstance(net, maskrcnn_model.MaskRCNNModel):
        heads = net.detection_head  # one per stage (cascade); each its own predictors
        predictors = [v for head in heads
                      for v in (*head._classifier.weights, *head._box_regressor.weights)]
        taken = {id(v) for v in predictors}
        parts |= {
            "rpn_head": net.rpn_head.weights,
            "detection_head": [v for head in heads for v in head.weights
                               if id(v) not in taken],
            "detection_predictors": predictors,
        }
    else:
        head = net.head
        predictors = [*head._classifier.weights, *head._box_regressor.weights]
        taken = {id(v) for v in predictors}
        parts |= {
            "head": [v for v in head.weights if id(v) not in taken],
            "predictors": predictors,
        }
    return parts


def kernels_by_part(net: tf_keras.Model) -> dict[str, list[tf.Variable]]:
    """The kernel variables (KERNELS) of each part of `net`, as `variables_by_part`."""
    return {part: [v for v in variables if kernel_kind(v) in KERNELS]
            for part, variables in variables_by_part(net).items()}
