"""COCO metrics on hand-built cases whose values are known (pure: no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from train_lib.evaluation.coco_metrics import METRIC_KEYS, CocoEvaluator, boxes_to_original, to_xywh

LABELS = {1: "square", 2: "circle", 3: "triangle"}
NONE4 = np.zeros((0, 4))
NONE = np.zeros((0,))


def _evaluate(images: list[tuple]) -> dict[str, float]:
    """images: (id, height, width, gt_boxes, gt_classes, det_boxes, det_scores, det_classes)."""
    coco = CocoEvaluator(LABELS)
    for image_id, h, w, gt, gt_cls, det, scores, det_cls in images:
        coco.add_image(image_id, h, w, np.array(gt, float).reshape(-1, 4), np.array(gt_cls),
                       None, np.array(det, float).reshape(-1, 4), np.array(scores),
                       np.array(det_cls))
    return coco.evaluate()


def test_perfect_detections_give_ap_one():
    gt_a = [[10, 10, 50, 60], [60, 100, 90, 180]]
    gt_b = [[5, 5, 40, 40]]
    metrics = _evaluate([
        (1, 100, 200, gt_a, [1, 2], gt_a, [0.9, 0.8], [1, 2]),
        (2, 64, 64, gt_b, [1], gt_b, [0.7], [1]),
    ])
    for key in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100"):
        assert metrics[key] == pytest.approx(1.0), key
    assert metrics["AP/square"] == pytest.approx(1.0)
    assert metrics["AP/circle"] == pytest.approx(1.0)
    assert "AP/triangle" not in metrics  # no triangle in the ground truth
    assert set(METRIC_KEYS) <= set(metrics)


def test_no_detections_at_all_give_zero_not_a_crash():
    metrics = _evaluate([(1, 100, 200, [[10, 10, 50, 60]], [1], NONE4, NONE, NONE)])
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert metrics[key] == 0.0, key
    assert metrics["AP/square"] == 0.0


def test_one_of_two_objects_found():
    # Two squares, one detected perfectly, nothing for the other: precision 1.0 up to
    # recall 0.5, nothing beyond. COCO interpolates precision at 101 recall points
    # 0.00, 0.01, ..., 1.00; the 51 points 0.00..0.50 get 1.0, the 50 above get 0,
    # so AP50 = 51/101 = 0.50495..., not exactly 0.5. The box is exact, so every IoU
    # threshold gives the same: AP = AP75 = 51/101. Recall is 1 of 2: AR100 = 0.5.
    metrics = _evaluate([(7, 100, 200, [[10, 10, 50, 60], [60, 100, 90, 180]], [1, 1],
                          [[10, 10, 50, 60]], [0.9], [1])])
    assert metrics["AP50"] == pytest.approx(51 / 101)
    assert metrics["AP"] == pytest.approx(51 / 101)
    assert metrics["AR100"] == pytest.approx(0.5)
    assert metrics["AP/square"] == pytest.approx(51 / 101)


def test_per_class_ap_by_label_map_name():
    # Squares found, the circle missed, a triangle detected where there is none.
    metrics = _evaluate([(1, 100, 100, [[10, 10, 40, 40], [50, 50, 90, 90]], [1, 2],
                          [[10, 10, 40, 40], [0, 0, 20, 20]], [0.9, 0.8], [1, 3])])
    assert metrics["AP/square"] == pytest.approx(1.0)
    assert metrics["AP/circle"] == 0.0
    assert "AP/triangle" not in metrics  # no ground truth: COCO's -1 entries are left out
    assert metrics["AP"] == pytest.approx(0.5)  # mean over the classes with ground truth


def test_add_batch_maps_detections_back_to_original_pixels():
    # A 100 x 200 image resized into a 64 x 64 input: scale 64/200 = 0.32 on both axes.
    height, width, scale = 100, 200, 0.32
    gt_pixels = np.array([[10, 20, 50, 80], [60, 100, 95, 190]], np.float64)
    gt_normalised = gt_pixels / [height, width, height, width]
    padding = np.zeros((2, 4))
    info = {
        "source_id": np.array([42]),
        "original_size": np.array([[height, width]], np.int32),
        "image_scale": np.array([[scale, scale]], np.float32),
        "groundtruth_boxes": np.concatenate([gt_normalised, padding])[np.newaxis],
        "groundtruth_classes": np.array([[1, 2, -1, -1]]),
        "groundtruth_is_crowd": np.zeros((1, 4), np.int64),
        "num_groundtruths": np.array([2]),
    }
    det_model = gt_pixels * scale  # model-input pixels
    # A third row past num_detections: were it counted, it would be a false positive
    # scoring above everything and AP would drop below 1.
    junk = np.array([[0, 0, 10, 10]])
    detections = {
        "detection_boxes": np.concatenate([det_model, junk])[np.newaxis],
        "detection_scores": np.array([[0.8, 0.7, 0.99]]),
        "detection_classes": np.array([[1, 2, 1]]),
        "num_detections": np.array([2]),
    }
    coco = CocoEvaluator(LABELS)
    coco.add_batch(info, detections)
    metrics = coco.evaluate()
    assert coco.num_images == 1
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["AP/square"] == pytest.approx(1.0)
    assert metrics["AP/circle"] == pytest.approx(1.0)


def test_box_conversions():
    boxes = boxes_to_original(np.array([[8, 16, 32, 64], [-5, 50, 40, 80]]),
                              np.array([0.5, 0.25]), np.array([60, 300]))
    # (ymin, xmin, ymax, xmax) / (0.5, 0.25, 0.5, 0.25), clipped to 60 x 300.
    np.testing.assert_allclose(boxes, [[16, 64, 60, 256], [0, 200, 60, 300]])
    np.testing.assert_allclose(to_xywh([[10, 20, 50, 80]]), [[20, 10, 60, 40]])


def test_repeated_source_ids_are_ignored_and_reported():
    coco = CocoEvaluator(LABELS)
    box = np.array([[10.0, 10, 50, 50]])
    assert coco.add_image(3, 64, 64, box, np.array([1]), None, box, np.array([0.9]),
                          np.array([1]))
    assert not coco.add_image(3, 64, 64, box, np.array([2]), None, NONE4, NONE, NONE)
    assert coco.duplicate_ids == [3]
    assert coco.evaluate()["AP"] == pytest.approx(1.0)  # the repeat's missed circle is ignored


def test_pycocotools_prints_are_captured(capsys):
    coco = CocoEvaluator(LABELS)
    box = np.array([[10.0, 10, 50, 50]])
    coco.add_image(1, 64, 64, box, np.array([1]), None, box, np.array([0.9]), np.array([1]))
    coco.evaluate()
    assert capsys.readouterr().out == ""
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" \
        in coco.summary
    with pytest.raises(ValueError, match="no images"):
        CocoEvaluator(LABELS).evaluate()
