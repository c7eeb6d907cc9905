"""Faster R-CNN's detections with the OD API's other serving outputs beside them,
from one forward pass (the SavedModel export's signature, export/saved_model.py).

`serving_detections(model, images, image_shape)` runs the model's inference
path layer by layer as Model Garden's `MaskRCNNModel` does (backbone, FPN, RPN
head, anchors, ROI generator, ROI align, detection head, detection generator),
so its four detection outputs are `detect`'s, and adds what the OD API's
exported Faster R-CNN models name (its `_postprocess_box_classifier`):

- raw_detection_boxes [B, K, 4]: every proposal's refined box before NMS (the
  second stage's decoding of its box outputs against the proposal, clipped to
  `image_shape`), in model-input pixels; with a box per class, the box of the
  class it scores highest (background excluded), as the OD API chooses;
- raw_detection_scores [B, K, num_classes + 1]: every proposal's second-stage
  class scores (the detection generator's softmax, or sigmoid), column 0 the
  background, column i the label map's id i;
- detection_anchor_indices [B, N] (int32): the proposal (row of the raw
  outputs) each detection comes from; 0 in padding rows (past num_detections);
- detection_multiclass_scores [B, N, num_classes + 1]: that proposal's row of
  raw_detection_scores; zeros in padding rows.

K is the number of proposals the ROI generator keeps at inference,
model.proposals.test_num_proposals (the OD API's first_stage_max_proposals).
Where the model has fewer anchors than that (a small input), Model Garden's ROI
generator returns one proposal per anchor at most, and the raw outputs' rows
past them are zeros (the OD API's K is first_stage_max_proposals at any input).
As in the OD API, NMS runs per class, so two detections of different classes
may come from one proposal. Model Garden's NMS does not say which proposal a
detection came from; it keeps the proposal's decoded box for the detection's
class and that class's score, so the proposal is the one whose box and score
for that class are nearest (equal: distance 0) to the detection's.
"""

from __future__ import annotations

import tensorflow as tf
from official.vision.ops import anchor


def serving_detections(model, images: tf.Tensor, image_shape: tf.Tensor) -> dict:
    """See the module docstring. `image_shape` [B, 2]: the image's own area inside
    the padded input, as for `detect`. The model has one detection stage (no
    cascade), as families/faster_rcnn.py builds it."""
    config = model.get_config()
    if len(model.detection_head) != 1:
        raise ValueError("serving outputs of a cascade Faster R-CNN are not implemented")
    features = model.backbone(images, training=False)
    if model.decoder:
        features = model.decoder(features, training=False)
    rpn_scores, rpn_boxes = model.rpn_head(features, training=False)
    batch = tf.shape(images)[0]
    anchors = anchor.Anchor(
        min_level=config["min_level"], max_level=config["max_level"],
        num_scales=config["num_scales"], aspect_ratios=config["aspect_ratios"],
        anchor_size=config["anchor_size"], image_size=tuple(images.shape[1:3]),
    ).multilevel_boxes
    anchors = {level: tf.tile(boxes[tf.newaxis], [batch, 1, 1, 1])
               for level, boxes in anchors.items()}
    rois, _ = model.roi_generator(rpn_boxes, rpn_scores, anchors, image_shape,
                                  training=False)
    class_outputs, box_outputs = model.detection_head[0](
        model.roi_aligner(features, rois, training=False), training=False)
    # The box decoding weights the model gives its (first and only) stage.
    arguments = dict(regression_weights=model._cascade_layer_to_weights[0],  # noqa: SLF001
                     bbox_per_class=not config["class_agnostic_bbox_pred"])
    results = model.detection_generator(box_outputs, class_outputs, rois, image_shape,
                                        **arguments)
    generator_config = model.detection_generator.get_config()
    decoder = type(model.detection_generator).from_config(
        {**generator_config, "apply_nms": False})
    decoded = decoder(box_outputs, class_outputs, rois, image_shape, **arguments)
    # [B, K, C or 1, 4] and [B, K, C]: what the NMS chose among (background excluded).
    decoded_boxes = tf.cast(decoded["decoded_boxes"], tf.float32)
    decoded_scores = tf.cast(decoded["decoded_box_scores"], tf.float32)

    logits = tf.cast(class_outputs, tf.float32)
    activation = (tf.sigmoid if generator_config["use_sigmoid_probability"]
                  else lambda x: tf.nn.softmax(x, axis=-1))
    scores = activation(logits)  # [B, K, C + 1], column 0 the background
    if decoded_boxes.shape[2] == 1:
        boxes = decoded_boxes[:, :, 0, :]
    else:  # the box of the class each proposal scores highest, as the OD API's
        best = tf.argmax(logits[:, :, 1:], axis=-1, output_type=tf.int32)
        boxes = tf.gather(decoded_boxes, best[:, :, tf.newaxis], batch_dims=2)[:, :, 0, :]

    detection_boxes = tf.cast(results["detection_boxes"], tf.float32)
    detection_scores = tf.cast(results["detection_scores"], tf.float32)
    classes = tf.cast(results["detection_classes"], tf.int32)  # 1..C in valid rows
    valid = (tf.range(tf.shape(detection_scores)[1])[tf.newaxis]
             < tf.cast(results["num_detections"], tf.int32)[:, tf.newaxis])  # [B, N]
    column = tf.maximum(classes - 1, 0)  # the detection's class among decoded's columns
    # Each detection's class score and box at every proposal: [B, N, K] and
    # [B, N or 1, K, 4] (one box for all classes: broadcast over the detections).
    class_scores = tf.gather(tf.transpose(decoded_scores, [0, 2, 1]), column, batch_dims=1)
    class_boxes = tf.transpose(decoded_boxes, [0, 2, 1, 3])  # [B, C or 1, K, 4]
    if decoded_boxes.shape[2] != 1:
        class_boxes = tf.gather(class_boxes, column, batch_dims=1)
    distance = tf.abs(class_scores - detection_scores[:, :, tf.newaxis])
    for i in range(4):  # one coordinate at a time
        distance += tf.abs(detection_boxes[:, :, tf.newaxis, i] - class_boxes[:, :, :, i])
    indices = tf.where(valid, tf.argmin(distance, axis=-1, output_type=tf.int32), 0)
    multiclass = tf.gather(scores, indices, batch_dims=1) * tf.cast(valid, tf.float32)[
        :, :, tf.newaxis]
    missing = model.roi_generator.get_config()["test_num_proposals"] - rois.shape[1]
    if missing > 0:
        boxes = tf.pad(boxes, [[0, 0], [0, missing], [0, 0]])
        scores = tf.pad(scores, [[0, 0], [0, missing], [0, 0]])
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
