"""Where an evaluation's results go: `MetricsRecorder`, for continuous and
in-training evaluation alike.

    log                      one line of metrics, one of AP per class by its label-map
                             name (`metrics_lines`), then COCO's printed summary
    <model_dir>/<split>/     TensorBoard scalars, named as the OD API names them
                             (`summary_name`), and a few eval images with detections
    eval_metrics.jsonl       one line per evaluation: step, checkpoint, split,
                             metrics, wall_time, seconds, num_images
    best/                    the best checkpoint by eval_config.metric_for_best
                             (eval_files.py; eval split only)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from train_lib.config import PipelineConfig
from train_lib.evaluation import eval_files
from train_lib.evaluation.coco_metrics import METRIC_KEYS, PER_CLASS_PREFIX

if TYPE_CHECKING:
    from train_lib.evaluation.evaluator import Evaluator

# Our metric keys -> the OD API's TensorBoard scalar names.
SUMMARY_NAMES = {
    "AP": "DetectionBoxes_Precision/mAP",
    "AP50": "DetectionBoxes_Precision/mAP@.50IOU",
    "AP75": "DetectionBoxes_Precision/mAP@.75IOU",
    "APs": "DetectionBoxes_Precision/mAP (small)",
    "APm": "DetectionBoxes_Precision/mAP (medium)",
    "APl": "DetectionBoxes_Precision/mAP (large)",
    "AR1": "DetectionBoxes_Recall/AR@1",
    "AR10": "DetectionBoxes_Recall/AR@10",
    "AR100": "DetectionBoxes_Recall/AR@100",
}
PER_CLASS_SUMMARY_PREFIX = "DetectionBoxes_PerformanceByCategory/mAP/"


def summary_name(key: str) -> str:
    """The OD API's TensorBoard name of a metric key (`AP`, `AP/<class>`, ...)."""
    if key.startswith(PER_CLASS_PREFIX):
        return PER_CLASS_SUMMARY_PREFIX + key[len(PER_CLASS_PREFIX):]
    return SUMMARY_NAMES.get(key, f"DetectionBoxes/{key}")


def metrics_lines(metrics: dict[str, float]) -> list[str]:
    """The log lines of a set of metrics: "AP=..., AP50=..., ..." (METRIC_KEYS), and
    "AP per class: <name>=..., ..." when the metrics hold AP/<class name>."""
    lines = [", ".join(f"{k}={metrics[k]:.4f}" for k in METRIC_KEYS if k in metrics)]
    per_class = [(k[len(PER_CLASS_PREFIX):], v) for k, v in metrics.items()
                 if k.startswith(PER_CLASS_PREFIX)]
    if per_class:
        lines.append("AP per class: " + ", ".join(f"{name}={value:.4f}"
                                                  for name, value in per_class))
    return lines


class MetricsRecorder:
    """Where an evaluation's results go, for continuous and in-training evaluation
    alike: a log line and COCO's summary, TensorBoard scalars under
    `<model_dir>/<split>`, a line in eval_metrics.jsonl, and (eval split only) the
    best checkpoint by eval_config.metric_for_best copied to `<model_dir>/best/`."""

    def __init__(self, config: PipelineConfig, model_dir: str, split: str,
                 log: Callable[[str], None]):
        self.config, self.model_dir, self.split, self._log = config, model_dir, split, log
        self._writer = None

    def record(self, step: int, metrics: dict[str, float], evaluator: Evaluator,
               seconds: float, prefix: str | None, copy_from: str | None = None) -> None:
        """`prefix`: the checkpoint evaluated (None: weights not saved at this step,
        so no best copy); `copy_from`: where to copy its files from (default prefix)."""
        headline, *per_class = metrics_lines(metrics)
        self._log(f"evaluated step {step} on {evaluator.num_images} images in {seconds:.1f} s: "
                  + headline)
        for line in [*per_class, *evaluator.summary.splitlines()]:
            self._log(line)
        self._write_summaries(step, metrics, evaluator.pictures)
        record = {"step": step, "checkpoint": prefix and os.path.abspath(prefix),
                  "split": self.split, "metrics": metrics, "wall_time": time.time(),
                  "seconds": round(seconds, 3), "num_images": evaluator.num_images}
        eval_files.append_eval_record(self.model_dir, record)
        if self.split == "eval" and prefix is not None:
            metric = self.config.eval_config.metric_for_best
            if eval_files.update_best(self.model_dir, copy_from or prefix, step, metrics,
                                      metric, checkpoint=os.path.abspath(prefix)):
                self._log(f"new best checkpoint: ckpt-{step} ({metric}={metrics[metric]:.4f}),"
                          f" copied to {os.path.join(self.model_dir, eval_files.BEST_DIR)}")

    def _write_summaries(self, step: int, metrics: dict[str, float], pictures: list) -> None:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.model_dir, self.split))
        with self._writer.as_default(step=step):
            for key, value in metrics.items():
                tf.summary.scalar(summary_name(key), value)
            if pictures:
                tf.summary.image("eval/images", np.stack(pictures), max_outputs=len(pictures))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

