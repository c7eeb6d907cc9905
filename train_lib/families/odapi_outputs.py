"""The OD API exporter's eight serving outputs from a family's detections and the
rows they were chosen among (retinanet_serving.py: one row per anchor;
faster_rcnn_serving.py: one per proposal).

Model Garden's NMS does not say which row a detection came from; it keeps a row's
decoded box for the detection's class and that class's score, so the row is the
one whose box and score for that class are nearest (equal: distance 0) to the
detection's. `serving_outputs` finds it and gives the OD API's names:

- detection_boxes, detection_scores, detection_classes, num_detections: the
  detection generator's, unchanged;
- raw_detection_boxes [B, R, 4], raw_detection_scores [B, R, num_classes + 1]:
  the family's raw outputs (column 0 of the scores the background), with zero
  rows appended up to `num_rows` where it asks for more rows than the model has;
- detection_anchor_indices [B, N] (int32): the row each detection comes from; 0
  in padding rows (past num_detections);
- detection_multiclass_scores [B, N, num_classes + 1]: that row of
  raw_detection_scores; zeros in padding rows.
"""

from __future__ import annotations

import tensorflow as tf


def serving_outputs(results: dict, raw_boxes: tf.Tensor, raw_scores: tf.Tensor,
                    row_boxes: tf.Tensor, row_class_scores: tf.Tensor, first_class: int,
                    num_rows: int | None = None) -> dict:
    """The eight outputs of the module docstring.

    `results`: the detection generator's detection_boxes [B, N, 4],
    detection_scores [B, N], detection_classes [B, N] (label-map ids 1..C in valid
    rows) and num_detections [B]. `raw_boxes` [B, R, 4] and `raw_scores`
    [B, R, C + 1]: the raw outputs, float32. `row_boxes` [B, R, C or 1, 4] and
    `row_class_scores` [B, R, columns]: what the NMS chose among, float32: each
    row's box per class (1: one box for every class) and score per class, class c
    in column c - `first_class` (0 when column 0 is the background, 1 when there is
    no background column). `num_rows`: how many rows the raw outputs have (None:
    R); more than R appends zero rows, which no detection comes from."""
    detection_boxes = tf.cast(results["detection_boxes"], tf.float32)
    detection_scores = tf.cast(results["detection_scores"], tf.float32)
    classes = tf.cast(results["detection_classes"], tf.int32)  # 1..C in valid rows
    valid = (tf.range(tf.shape(detection_scores)[1])[tf.newaxis]
             < tf.cast(results["num_detections"], tf.int32)[:, tf.newaxis])  # [B, N]
    column = tf.maximum(classes - first_class, 0)  # the detection's class's column
    # Each detection's class score and box at every row: [B, N, R] and
    # [B, N or 1, R, 4] (one box for all classes: broadcast over the detections).
    class_scores = tf.gather(tf.transpose(row_class_scores, [0, 2, 1]), column,
                             batch_dims=1)
    class_boxes = tf.transpose(row_boxes, [0, 2, 1, 3])  # [B, C or 1, R, 4]
    if row_boxes.shape[2] != 1:
        class_boxes = tf.gather(class_boxes, column, batch_dims=1)
    distance = tf.abs(class_scores - detection_scores[:, :, tf.newaxis])
    for i in range(4):  # one coordinate at a time: [B, N, R], not [B, N, R, 4]
        distance += tf.abs(detection_boxes[:, :, tf.newaxis, i] - class_boxes[:, :, :, i])
    indices = tf.where(valid, tf.argmin(distance, axis=-1, output_type=tf.int32), 0)
    multiclass = tf.gather(raw_scores, indices, batch_dims=1) * tf.cast(valid, tf.float32)[
        :, :, tf.newaxis]
    missing = 0 if num_rows is None else num_rows - raw_scores.shape[1]
    if missing > 0:
        raw_boxes = tf.pad(raw_boxes, [[0, 0], [0, missing], [0, 0]])
        raw_scores = tf.pad(raw_scores, [[0, 0], [0, missing], [0, 0]])
    return {
        "detection_boxes": results["detection_boxes"],
        "detection_scores": results["detection_scores"],
        "detection_classes": results["detection_classes"],
        "num_detections": results["num_detections"],
        "raw_detection_boxes": raw_boxes,
        "raw_detection_scores": raw_scores,
        "detection_anchor_indices": indices,
        "detection_multiclass_scores": multiclass,
    }
