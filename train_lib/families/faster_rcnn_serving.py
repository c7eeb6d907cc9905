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
may come from one proposal. The proposal a detection comes from is found as
odapi_outputs.py says (by the proposal's box and score for the detection's
class), which builds the eight outputs.
"""

from __future__ import annotations

import tensorflow as tf

from train_lib.families.anchors import batch_anchors
from train_lib.families.odapi_outputs import serving_outputs


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
    anchors = batch_anchors(model, images)
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

    return serving_outputs(
        results, boxes, scores, row_boxes=decoded_boxes, row_class_scores=decoded_scores,
        first_class=1, num_rows=model.roi_generator.get_config()["test_num_proposals"])
