"""The TFLite model's loop-free NMS keeps what Model Garden's detection generator
(`v2`, the SavedModel's) keeps, on boxes where NMS has work to do."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from official.vision.modeling.layers import detection_generator

from train_lib.export.tflite_nms import class_aware_nms


def _clustered_boxes(rng: np.random.Generator, num: int) -> np.ndarray:
    """`num` boxes in pixels around 8 centres: many overlap, some do not."""
    centres = rng.uniform(10, 54, size=(8, 2))
    centre = centres[rng.integers(0, 8, size=num)] + rng.normal(0, 2.0, size=(num, 2))
    half = rng.uniform(3, 10, size=(num, 2))
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed,top_k,max_detections", [(0, 100, 20), (1, 400, 50), (2, 30, 5)])
def test_keeps_what_model_gardens_generator_keeps(seed, top_k, max_detections):
    rng = np.random.default_rng(seed)
    num, num_classes = 400, 3
    boxes = _clustered_boxes(rng, num)
    # Distinct scores (no ties), some under the threshold.
    scores = rng.permutation(num * num_classes).reshape(num, num_classes)
    scores = (scores / (num * num_classes)).astype(np.float32)

    ours = class_aware_nms(tf.constant(boxes), tf.constant(scores), top_k, 0.3, 0.5,
                           max_detections)
    ref_boxes, ref_scores, ref_classes, ref_num = detection_generator._generate_detections_v2(
        tf.constant(boxes)[tf.newaxis, :, tf.newaxis, :], tf.constant(scores)[tf.newaxis],
        pre_nms_top_k=top_k, pre_nms_score_threshold=0.3, nms_iou_threshold=0.5,
        max_num_detections=max_detections)

    n = int(ref_num[0])
    assert 0 < n <= max_detections
    assert int(ours["num_detections"][0]) == n
    np.testing.assert_allclose(ours["detection_scores"][0, :n], ref_scores[0, :n], rtol=0,
                               atol=1e-6)
    np.testing.assert_allclose(ours["detection_boxes"][0, :n], ref_boxes[0, :n], rtol=0,
                               atol=1e-4)
    # Model Garden's classes are 0-based here (its generator adds 1 afterwards).
    np.testing.assert_array_equal(ours["detection_classes"][0, :n], ref_classes[0, :n] + 1)
    assert not np.any(ours["detection_scores"][0, n:].numpy())
    assert not np.any(ours["detection_classes"][0, n:].numpy())


def test_a_suppressed_box_is_not_kept_and_other_classes_do_not_suppress():
    boxes = tf.constant([[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30]], tf.float32)
    scores = tf.constant([[0.9, 0.0], [0.8, 0.7], [0.0, 0.6]], tf.float32)
    out = class_aware_nms(boxes, scores, pre_nms_top_k=3, score_threshold=0.05,
                          iou_threshold=0.5, max_detections=4)
    # Box 1 overlaps box 0 (IoU 0.9) in class 1 and is suppressed there, but kept in
    # class 2, where box 0 has no score.
    np.testing.assert_allclose(out["detection_scores"][0], [0.9, 0.7, 0.6, 0.0])
    np.testing.assert_array_equal(out["detection_classes"][0], [1, 2, 2, 0])
    np.testing.assert_allclose(out["detection_boxes"][0, :3],
                               [[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30]])
    assert int(out["num_detections"][0]) == 3
