"""COCO box metrics with pycocotools, in this driver's box conventions. No TensorFlow.

`CocoEvaluator` collects ground truth and detections image by image, then runs
`COCOeval(iouType="bbox")` once:

- ground truth: one COCO image per source id (width/height = the original
  image), annotations with bbox [x, y, w, h] in ORIGINAL pixels, area = w * h,
  iscrowd, category_id = the label map id; categories from the label map.
- detections: boxes in model-input pixels (ymin, xmin, ymax, xmax) are divided
  by `image_scale` and clipped to the original image; only the first
  `num_detections` rows count.

`evaluate()` returns METRIC_KEYS (COCOeval's `stats[0:9]`; -1.0 where COCO has
nothing to measure, e.g. APl without large ground-truth objects, as COCO and the
OD API report it) and `AP/<class name>` per class that has ground truth.
pycocotools' prints are captured into `summary`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
PER_CLASS_PREFIX = "AP/"


def boxes_to_original(boxes: np.ndarray, image_scale: np.ndarray,
                      original_size: np.ndarray) -> np.ndarray:
    """Boxes [N, 4] (ymin, xmin, ymax, xmax) in model-input pixels -> original pixels.

    `image_scale` is (y, x) model-input pixels per original pixel; `original_size`
    is (height, width). The result is clipped to the original image.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    sy, sx = (float(s) for s in np.asarray(image_scale).reshape(2))
    height, width = (float(s) for s in np.asarray(original_size).reshape(2))
    out = boxes / np.array([sy, sx, sy, sx])
    return np.clip(out, 0.0, np.array([height, width, height, width]))


def to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Boxes [N, 4] ymin, xmin, ymax, xmax -> COCO [N, 4] x, y, width, height."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1],
                     boxes[:, 2] - boxes[:, 0]], axis=1)


class CocoEvaluator:
    """Accumulates images, then computes COCO box metrics for `label_map` {id: name}."""

    def __init__(self, label_map: Mapping[int, str]):
        self.label_map = dict(label_map)
        self.summary = ""  # pycocotools' printed summary of the last evaluate()
        self.duplicate_ids: list[int] = []  # source ids seen twice; the repeats are ignored
        self._images: list[dict] = []
        self._image_ids: set[int] = set()
        self._groundtruth: list[dict] = []
        self._detections: list[dict] = []

    @property
    def num_images(self) -> int:
        return len(self._images)

    def add_image(self, image_id: int, height: int, width: int,
                  gt_boxes: np.ndarray, gt_classes: np.ndarray, gt_is_crowd: np.ndarray | None,
                  det_boxes: np.ndarray, det_scores: np.ndarray,
                  det_classes: np.ndarray) -> bool:
        """Adds one image; all boxes ymin, xmin, ymax, xmax in ORIGINAL pixels.

        Returns False (and records the id in `duplicate_ids`) if `image_id` was added
        before: COCO keys everything by image id, so a repeat would merge two images.
        """
        image_id = int(image_id)
        if image_id in self._image_ids:
            self.duplicate_ids.append(image_id)
            return False
        self._image_ids.add(image_id)
        self._images.append({"id": image_id, "height": int(height), "width": int(width)})
        crowd = (np.zeros(len(gt_classes), np.int64) if gt_is_crowd is None
                 else np.asarray(gt_is_crowd).reshape(-1))
        for box, cls, is_crowd in zip(to_xywh(gt_boxes), np.asarray(gt_classes).reshape(-1),
                                      crowd, strict=True):
            self._groundtruth.append({
                "id": len(self._groundtruth) + 1,  # COCOeval treats id 0 as "no match"
                "image_id": image_id, "category_id": int(cls),
                "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                "iscrowd": int(bool(is_crowd)),
            })
        for box, score, cls in zip(to_xywh(det_boxes), np.asarray(det_scores).reshape(-1),
                                   np.asarray(det_classes).reshape(-1), strict=True):
            self._detections.append({
                "id": len(self._detections) + 1, "image_id": image_id,
                "category_id": int(cls), "score": float(score),
                "bbox": [float(v) for v in box], "area": float(box[2] * box[3]), "iscrowd": 0,
            })
        return True

    def add_batch(self, info: Mapping[str, np.ndarray],
                  detections: Mapping[str, np.ndarray]) -> None:
        """Adds a batch in the eval pipeline's and the model's conventions.

        `info`: source_id [B], original_size [B, 2], image_scale [B, 2],
        groundtruth_boxes [B, M, 4] (normalised), groundtruth_classes [B, M],
        groundtruth_is_crowd [B, M], num_groundtruths [B]. `detections`:
        detection_boxes [B, N, 4] (model-input pixels), detection_scores [B, N],
        detection_classes [B, N] (label map ids), num_detections [B].
        """
        for b in range(len(info["source_id"])):
            height, width = (int(v) for v in info["original_size"][b])
            n_gt = int(info["num_groundtruths"][b])
            gt = np.asarray(info["groundtruth_boxes"][b][:n_gt], np.float64)
            gt = gt * np.array([height, width, height, width])
            n_det = int(detections["num_detections"][b])
            boxes = boxes_to_original(detections["detection_boxes"][b][:n_det],
                                      info["image_scale"][b], info["original_size"][b])
            self.add_image(
                int(info["source_id"][b]), height, width, gt,
                info["groundtruth_classes"][b][:n_gt], info["groundtruth_is_crowd"][b][:n_gt],
                boxes, detections["detection_scores"][b][:n_det],
                detections["detection_classes"][b][:n_det])

    def evaluate(self) -> dict[str, float]:
        """Runs COCOeval over everything added; returns METRIC_KEYS and `AP/<name>`.

        Raises ValueError if no image was added. With no detections at all the
        metrics are 0.0 (-1.0 where there is no ground truth to measure).
        """
        if not self._images:
            raise ValueError("no images to evaluate")
        categories = [{"id": int(i), "name": str(n)} for i, n in sorted(self.label_map.items())]
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = _coco({"images": self._images, "annotations": self._groundtruth,
                             "categories": categories})
            # Built like the ground truth rather than with loadRes, which fails on [].
            coco_dt = _coco({"images": self._images, "annotations": self._detections,
                             "categories": categories})
            coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
            coco_eval.evaluate()
            coco_eval.accumulate()
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            coco_eval.summarize()
        self.summary = summary.getvalue()
        metrics = {key: float(value) for key, value in zip(METRIC_KEYS, coco_eval.stats[:9],
                                                            strict=True)}
        metrics.update(_per_class_ap(coco_eval, self.label_map))
        return metrics


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _per_class_ap(coco_eval: COCOeval, label_map: Mapping[int, str]) -> dict[str, float]:
    """AP per class over IoU 0.5:0.95 and recall, area all, maxDets 100; classes without
    ground truth (all entries -1) are left out."""
    precision = coco_eval.eval["precision"]  # [IoU, recall, class, area, maxDets]
    area_all = list(coco_eval.params.areaRngLbl).index("all")
    max_100 = list(coco_eval.params.maxDets).index(100)
    out = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        values = precision[:, :, k, area_all, max_100]
        values = values[values > -1]
        if values.size:
            out[f"{PER_CLASS_PREFIX}{label_map[cat_id]}"] = float(values.mean())
    return out
