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
min_level, then row, column and anchor of a location. The NMS does not say which
anchor a detection came from; it keeps an anchor's decoded box and its score for
the detection's class, so the anchor is the one whose box and class score are
nearest (equal: distance 0) to the detection's.
"""

from __future__ import annotations

import tensorflow as tf
from official.vision.ops import anchor


def serving_detections(model, images: tf.Tensor, image_shape: tf.Tensor) -> dict:
    """See the module docstring. `image_shape` [B, 2]: the image's own area inside
    the padded input, as for `detect`."""
    config = model.get_config()
    features = model.backbone(images, training=False)
    if model.decoder:
        features = model.decoder(features, training=False)
    raw_scores, raw_boxes, _ = model.head(features, training=False)
    batch = tf.shape(images)[0]
    anchors = anchor.Anchor(
        min_level=config["min_level"], max_level=config["max_level"],
        num_scales=config["num_scales"], aspect_ratios=config["aspect_ratios"],
        anchor_size=config["anchor_size"], image_size=tuple(images.shape[1:3]),
    ).multilevel_boxes
    anchors = {level: tf.tile(boxes[tf.newaxis], [batch, 1, 1, 1])
               for level, boxes in anchors.items()}
    generator = type(model.detection_generator).from_config(
        {**model.detection_generator.get_config(), "return_decoded": True})
    results = generator(raw_boxes, raw_scores, anchors, image_shape)

    columns = model.head.get_config()["num_classes"]  # the background's included
    levels = sorted(raw_scores, key=int)
    scores = tf.sigmoid(tf.cast(tf.concat(
        [tf.reshape(raw_scores[level], [batch, -1, columns]) for level in levels], axis=1),
        tf.float32))
    boxes = tf.cast(results["decoded_boxes"][:, :, 0, :], tf.float32)  # class-agnostic

    detection_boxes = tf.cast(results["detection_boxes"], tf.float32)
    detection_scores = tf.cast(results["detection_scores"], tf.float32)
    classes = tf.cast(results["detection_classes"], tf.int32)
    valid = (tf.range(tf.shape(detection_scores)[1])[tf.newaxis]
             < tf.cast(results["num_detections"], tf.int32)[:, tf.newaxis])  # [B, N]
    # Each detection's score for its class at every anchor: [B, N, A].
    class_scores = tf.gather(tf.transpose(scores, [0, 2, 1]), tf.maximum(classes, 0),
                             batch_dims=1)
    distance = tf.abs(class_scores - detection_scores[:, :, tf.newaxis])
    for i in range(4):  # one coordinate at a time: [B, N, A], not [B, N, A, 4]
        distance += tf.abs(detection_boxes[:, :, tf.newaxis, i] - boxes[:, tf.newaxis, :, i])
    indices = tf.where(valid, tf.argmin(distance, axis=-1, output_type=tf.int32), 0)
    multiclass = tf.gather(scores, indices, batch_dims=1) * tf.cast(valid, tf.float32)[
        :, :, tf.newaxis]
    return {
        "detection_boxes": results["detection_boxes"],
        "detection_scores": results["detection_scores"],
        "detection_classes": results["detection_classes"],
        "num_detections": results["num_detections"],
        "raw_detection_boxes": boxes,
        "raw_detection_scores": scores,
        "detection_anchor_indices": indices,
        "detection_multiclass_scores": multiclass,
    }
