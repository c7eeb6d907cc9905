"""The detector family contract: what a family module provides.

A family is a module (`retinanet.py`, `faster_rcnn.py`) that satisfies `Family`, a
`typing.Protocol` a module can implement (PEP 544: its functions stand for the
protocol's methods without `self`); a family the TFLite exporter converts
satisfies `TFLiteFamily` too. tests/test_families.py checks each module in
`FAMILIES` against them: every name present, every function with the protocol's
parameters. The package's `__init__` dispatches to them; docs/architecture.md
says where a new family goes.

`POST_PROCESSING_SCOPE` is the name scope of the ops a family runs after the
network in `decoded_detections` (anchors, box decoding): TFLite's int8 export
keeps the tensors in it float.
"""

from __future__ import annotations

from typing import Protocol

import tensorflow as tf
import tf_keras

from train_lib.config import ModelConfig

POST_PROCESSING_SCOPE = "post_processing"


class Family(Protocol):
    """What every family module defines (module docstring of train_lib.families
    for what the functions return)."""

    NAME: str  # the model.architecture value that selects it
    LOSS_KEYS: tuple[str, ...]  # the loss terms of a training step, total_loss last
    CHECKPOINT_MARK: str  # a variable name only this family's checkpoints hold

    def build_model(self, model: ModelConfig, precision: str = "float32") -> tf_keras.Model:
        """The Keras model, its variables created."""

    def is_model(self, model) -> bool:
        """Whether a built model is this family's."""

    def input_targets(self, model: ModelConfig, max_boxes: int):
        """The function of a training batch's (keys, boxes, classes, num_boxes) to its
        labels."""

    def loss_normalizers(self, labels: dict) -> dict[str, tf.Tensor]:
        """Per-replica counts the training step sums over replicas before the losses."""

    def train_outputs(self, model, images: tf.Tensor, labels: dict) -> dict:
        """The training forward pass."""

    def compute_losses(self, model: ModelConfig, outputs: dict, labels: dict,
                       normalizers: dict[str, tf.Tensor], regularization: tf.Tensor,
                       num_replicas: int = 1) -> dict[str, tf.Tensor]:
        """This replica's share of each term of LOSS_KEYS."""

    def detect(self, model, images: tf.Tensor, image_shape: tf.Tensor) -> dict:
        """detection_boxes, detection_scores, detection_classes, num_detections."""

    def backbone_target(self, backbone) -> tf.train.Checkpoint:
        """The backbone's place in this family's checkpoints."""

    def detection_target(self, model) -> tuple[dict, tf.train.Checkpoint, list]:
        """What a detection fine-tune loads: (parts by name, their place in this
        family's checkpoints, the variables of those parts left out)."""


class TFLiteFamily(Family, Protocol):
    """A family whose model the TFLite exporter converts (TFLITE_ARCHITECTURES)."""

    def decoded_detections(self, model, images: tf.Tensor,
                           image_shape: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Every anchor's box and class scores before NMS, the decoding in the name
        scope POST_PROCESSING_SCOPE."""
