"""Detector families: the one place that knows which family is running.

A family (one module: `retinanet.py`, `faster_rcnn.py`; the contract it keeps is
`contract.Family`) provides its model from Model Garden, its input targets, its
losses, its detections for evaluation and export, and what a fine-tune loads.
Everything else calls these functions, which dispatch on `model.architecture` (a
ModelConfig) or on the built model:

- `build_model(model, precision)`: the Keras model, its variables created.
- `loss_keys(model)`: the loss terms of a training step, `total_loss` last.
- `input_targets(model, max_boxes)`: the function of a training batch's
  (keys [B, 2], augmented boxes in pixels [B, max_boxes, 4], classes
  [B, max_boxes], num_boxes [B]) to its labels (batch dimension first); rows
  past an example's num_boxes are padding. `keys` are the examples' stateless
  augmentation keys, so targets with a random choice replay exactly on resume.
- `loss_normalizers(model, labels)`: per-replica counts the training step sums
  over replicas before the losses (outside any XLA-compiled part).
- `train_outputs(model_cfg, net, images, labels)`: the training forward pass.
- `compute_losses(model, outputs, labels, normalizers, regularization,
  num_replicas)`: this replica's share of each term of `loss_keys`.
- `detect(net, images, image_shape)`: detection_boxes (model-input pixels),
  detection_scores, detection_classes (label map ids), num_detections.
- `serving_detections(net, images, image_shape)`: `detect`'s outputs and, for
  the families in SERVING_OUTPUTS, the OD API's other serving outputs from the
  same forward pass (raw_detection_boxes, raw_detection_scores,
  detection_anchor_indices, detection_multiclass_scores:
  retinanet_serving.py, faster_rcnn_serving.py); the SavedModel export calls it.
- `decoded_detections(net, images, image_shape)`: every anchor's box and class
  scores before NMS (the TFLite export runs its own loop-free NMS on them), the
  decoding in the name scope POST_PROCESSING_SCOPE; families in
  TFLITE_ARCHITECTURES have it.
- `checkpoint_family(names)`, `backbone_target`, `detection_target`: for
  fine_tune_checkpoint.

`TFLITE_ARCHITECTURES` is the one list of `model.architecture` values whose
model the TFLite exporter (export/tflite.py) converts: post-processing inside the
model with TFLite builtins only. A family joins it once its export is tested.
"""

from __future__ import annotations

from typing import cast

import tensorflow as tf
import tf_keras

from train_lib.config import ModelConfig
from train_lib.families import faster_rcnn, faster_rcnn_serving, retinanet, retinanet_serving
from train_lib.families.contract import POST_PROCESSING_SCOPE, Family, TFLiteFamily

FAMILIES: dict[str, Family] = {family.NAME: family for family in (retinanet, faster_rcnn)}
TFLITE_ARCHITECTURES = ("retinanet",)  # each a TFLiteFamily
# The families whose exported SavedModel has the OD API's raw and per-anchor outputs
# too, by the function that computes them with the detections.
SERVING_OUTPUTS = {"retinanet": retinanet_serving.serving_detections,
                   "faster_rcnn": faster_rcnn_serving.serving_detections}

__all__ = [
    "FAMILIES",
    "POST_PROCESSING_SCOPE",
    "Family",
    "SERVING_OUTPUTS",
    "TFLITE_ARCHITECTURES",
    "architecture_of",
    "backbone_target",
    "build_model",
    "checkpoint_family",
    "compute_losses",
    "decoded_detections",
    "detect",
    "detection_target",
    "input_targets",
    "loss_keys",
    "loss_normalizers",
    "serving_detections",
    "train_outputs",
]


def _family(model: ModelConfig) -> Family:
    return FAMILIES[model.architecture]


def architecture_of(net) -> str:
    """The family name of a built model."""
    for name, family in FAMILIES.items():
        if family.is_model(net):
            return name
    raise TypeError(f"not a model of any family: {type(net).__name__}")


# Without autograph: building calls each layer on symbolic inputs, and autograph
# would source-transform each layer's `call` first (same layers, variables and
# graph, for about 1.5 s of start-up: docs/performance.md, "Start-up").
@tf.autograph.experimental.do_not_convert
def build_model(model: ModelConfig, precision: str = "float32") -> tf_keras.Model:
    return _family(model).build_model(model, precision)


def loss_keys(model: ModelConfig) -> tuple[str, ...]:
    return _family(model).LOSS_KEYS


def input_targets(model: ModelConfig, max_boxes: int):
    return _family(model).input_targets(model, max_boxes)


def loss_normalizers(model: ModelConfig, labels: dict) -> dict[str, tf.Tensor]:
    return _family(model).loss_normalizers(labels)


def train_outputs(model: ModelConfig, net, images: tf.Tensor, labels: dict) -> dict:
    return _family(model).train_outputs(net, images, labels)


def compute_losses(model: ModelConfig, outputs: dict, labels: dict,
                   normalizers: dict[str, tf.Tensor], regularization: tf.Tensor,
                   num_replicas: int = 1) -> dict[str, tf.Tensor]:
    return _family(model).compute_losses(model, outputs, labels, normalizers, regularization,
                                         num_replicas)


def detect(net, images: tf.Tensor, image_shape: tf.Tensor) -> dict:
    return FAMILIES[architecture_of(net)].detect(net, images, image_shape)


def serving_detections(net, images: tf.Tensor, image_shape: tf.Tensor) -> dict:
    """`detect`'s outputs, and the OD API's other serving outputs where the family
    has them (SERVING_OUTPUTS)."""
    architecture = architecture_of(net)
    if architecture in SERVING_OUTPUTS:
        return SERVING_OUTPUTS[architecture](net, images, image_shape)
    return FAMILIES[architecture].detect(net, images, image_shape)


def decoded_detections(net, images: tf.Tensor,
                       image_shape: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    family = cast(TFLiteFamily, FAMILIES[architecture_of(net)])  # in TFLITE_ARCHITECTURES
    return family.decoded_detections(net, images, image_shape)


def checkpoint_family(variable_names) -> str | None:
    """The family whose model wrote a checkpoint of this trainer with these variable
    names, or None (not a detector checkpoint of this trainer)."""
    for name, family in FAMILIES.items():
        if any(n.startswith(family.CHECKPOINT_MARK) for n in variable_names):
            return name
    return None


def backbone_target(architecture: str, backbone) -> tf.train.Checkpoint:
    """Where `backbone` sits in a checkpoint that `architecture`'s model wrote."""
    return FAMILIES[architecture].backbone_target(backbone)


def detection_target(net) -> tuple[dict, tf.train.Checkpoint, list]:
    """(parts by name, their place in the checkpoint, the variables not loaded) of a
    detection fine-tune of `net` (all but the layers that depend on num_classes)."""
    return FAMILIES[architecture_of(net)].detection_target(net)
