"""Class-aware NMS without loops, for the TFLite model: the post-processing of the
SavedModel (Model Garden's `v2` detection generator) in ops TFLite has as builtins.

Model Garden's NMS runs in `tf.while_loop`s; a `.tflite` with WHILE ops runs, but
TFLite's int8 calibrator crashes inside them (a segmentation fault in the
calibrator's min/max logging of a WHILE body, TF 2.20). This NMS is unrolled over
the classes instead (num_classes is fixed), one builtin NON_MAX_SUPPRESSION_V4 per
class, with the generator's rules:

- per class, the `pre_nms_top_k` highest-scoring boxes;
- boxes whose score is not above `score_threshold` are dropped;
- greedy NMS at `iou_threshold`, at most `max_detections` kept per class;
- over the classes, the `max_detections` highest scores, highest first; rows past
  `num_detections` are zeros.

Where two boxes of a class overlap by exactly `iou_threshold`, or two detections
have the same score, the two may decide differently; tests compare them on images.
"""

from __future__ import annotations

import tensorflow as tf


def class_aware_nms(boxes: tf.Tensor, scores: tf.Tensor, pre_nms_top_k: int,
                    score_threshold: float, iou_threshold: float,
                    max_detections: int) -> dict[str, tf.Tensor]:
    """NMS of one image's decoded detections.

    Args:
      boxes: [N, 4] float32 ymin, xmin, ymax, xmax (any unit).
      scores: [N, num_classes] float32; column i is label map id i + 1.
      pre_nms_top_k, score_threshold, iou_threshold, max_detections: as
        `model.post_processing`.

    Returns:
      detection_boxes [1, max_detections, 4], detection_scores [1, max_detections],
      detection_classes [1, max_detections] (int32 label map ids, 0 past the
      detections) and num_detections [1] (int32).
    """
    num_anchors, num_classes = scores.shape
    top_k = min(int(num_anchors), pre_nms_top_k)
    kept_boxes, kept_scores, kept_classes = [], [], []
    for i in range(num_classes):
        class_scores, order = tf.math.top_k(scores[:, i], k=top_k, sorted=True)
        class_boxes = tf.gather(boxes, order)
        selected, valid = tf.raw_ops.NonMaxSuppressionV4(
            boxes=class_boxes, scores=class_scores, max_output_size=max_detections,
            iou_threshold=iou_threshold, score_threshold=score_threshold,
            pad_to_max_output_size=True)
        is_kept = tf.range(max_detections) < valid
        kept_scores.append(tf.where(is_kept, tf.gather(class_scores, selected), 0.0))
        kept_boxes.append(tf.where(is_kept[:, tf.newaxis], tf.gather(class_boxes, selected),
                                   0.0))
        kept_classes.append(tf.where(is_kept, i + 1, 0))
    all_scores = tf.concat(kept_scores, axis=0)
    best_scores, best = tf.math.top_k(all_scores, k=max_detections, sorted=True)
    return {
        "detection_boxes": tf.gather(tf.concat(kept_boxes, axis=0), best)[tf.newaxis],
        "detection_scores": best_scores[tf.newaxis],
        "detection_classes": tf.gather(tf.concat(kept_classes, axis=0), best)[tf.newaxis],
        "num_detections": tf.reduce_sum(tf.cast(best_scores > 0.0, tf.int32))[tf.newaxis],
    }
