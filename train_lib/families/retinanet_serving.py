"""RetinaNet's detections with the OD API's other serving outputs beside them,
from one forward pass (the SavedModel export's signature, export/saved_model.py).

`serving_detections(model, images, image_shape)` returns `detect`'s four outputs
(the same backbone, FPN, head, anchors and Model Garden detection generator, so
the same values) and, as the OD API's exported SSD models name them:

- raw_detection_boxes [B, A, 4]: every anchor's decoded box before NMS, in
  model-input pixels, clipped to `image_shape` (Model Garden's decoding);
- raw_detection_scores [B, A, num_classes + 1]: every anchor's sigmoid class
  scores; column 0 is the background, column i the label map's id i;
- detection_anchor_indices [B, N] (int32): the row of the raw outputs each
  detection comes from; 0 in padding rows (past num_detections);
- detection_multiclass_scores [B, N, num_classes + 1]: that row of
  raw_detection_scores; zeros in padding rows.

Rows of the raw outputs are Model Garden's anchor order: level by level from
min_level, then row, column and anchor of a location. The anchor a detection
comes from is found as odapi_outputs.py says, which builds the eight outputs.
"""

from __future__ import annotations

import tensorflow as tf

from train_lib.families.anchors import batch_anchors
from train_lib.families.odapi_outputs import serving_outputs


def serving_detections(model, images: tf.Tensor, image_shape: tf.Tensor) -> dict:
    """See the module docstring. `image_shape` [B, 2]: the image's own area inside
    the padded input, as for `detect`."""
    features = model.backbone(images, training=False)
    if model.decoder:
        features = model.decoder(features, training=False)
    raw_scores, raw_boxes, _ = model.head(features, training=False)
    batch = tf.shape(images)[0]
    anchors = batch_anchors(model, images)
    generator = type(model.detection_generator).from_config(
        {**model.detection_generator.get_config(), "return_decoded": True})
    results = generator(raw_boxes, raw_scores, anchors, image_shape)

    columns = model.head.get_config()["num_classes"]  # the background's included
    levels = sorted(raw_scores, key=int)
    scores = tf.sigmoid(tf.cast(tf.concat(
        [tf.reshape(raw_scores[level], [batch, -1, columns]) for level in levels], axis=1),
        tf.float32))
    boxes = tf.cast(results["decoded_boxes"][:, :, 0, :], tf.float32)  # class-agnostic

    return serving_outputs(results, boxes, scores, row_boxes=boxes[:, :, tf.newaxis, :],
                           row_class_scores=scores, first_class=0)
