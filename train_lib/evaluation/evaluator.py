"""COCO box metrics of a built model over the eval dataset.

- `Evaluator`: runs a model over the eval dataset and computes COCO metrics
  (coco_metrics.py), keeping a few eval images with their detections drawn; its
  traced inference function is reused across calls (one checkpoint after another,
  or the live model during training).
- `evaluate_model`: the metrics of a model, once.
- `eval_inputs`: the files and label map to evaluate on (checked against the
  training classes: label_maps.py).

Evaluating checkpoints (one, or each of a training run) is continuous.py; where
the results go (log, TensorBoard, eval_metrics.jsonl, best/) is recording.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from train_lib import families
from train_lib.config import PipelineConfig
from train_lib.data import example_checks, input_errors, input_files, inputs
from train_lib.errors import UserError
from train_lib.evaluation import label_maps
from train_lib.evaluation.coco_metrics import CocoEvaluator
from train_lib.report import visualize

DETECTION_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
VISUALIZATION_MIN_SCORE = 0.3  # detections drawn on the eval images in TensorBoard


class EvalError(UserError, RuntimeError):
    """Evaluation cannot go on; the message names the checkpoint or file and what to do."""


def eval_inputs(config: PipelineConfig, on_train_data: bool = False,
                trained: label_maps.TrainedClasses | None = None,
                log: Callable[[str], None] = logging.info
                ) -> tuple[list[str], dict[int, str]]:
    """(files, label map) to evaluate on: eval_input_reader, or train_input_reader with
    `on_train_data`. The label map must name classes the model was trained on
    (`trained`, default the config's training label map; label_maps.py): a subset is
    said in the log. Raises ConfigError when files or label map are missing or wrong."""
    key = "train_input_reader" if on_train_data else "eval_input_reader"
    files = input_files.resolve_input_files(getattr(config, key), key)
    label_map, note = label_maps.checked_eval_label_map(config, on_train_data, trained)
    if note:
        log(note)
    return files, label_map


def eval_sampling(config: PipelineConfig, sample_1_of_n: int | None = None,
                  on_train_data: bool = False) -> int:
    """Every how many examples an evaluation reads: `sample_1_of_n` when given (the flag
    --sample_1_of_n_eval_examples), else the evaluated reader's
    sample_1_of_n_examples (eval_input_reader's, or train_input_reader's with
    `on_train_data`; 0 read as 1), as the OD API's flag overrides its reader's field.
    Raises ValueError for a given value below 1."""
    if sample_1_of_n is not None:
        if sample_1_of_n < 1:
            raise ValueError(f"sample_1_of_n must be >= 1, got {sample_1_of_n}")
        return sample_1_of_n
    key = "train_input_reader" if on_train_data else "eval_input_reader"
    return getattr(config, key).every_nth


class Evaluator:
    """Runs `model` over the eval dataset and computes COCO metrics; the traced
    inference function is reused across calls (e.g. one checkpoint after another)."""

    def __init__(self, model, config: PipelineConfig, files: list[str],
                 label_map: dict[int, str], sample_1_of_n: int = 1,
                 strategy: tf.distribute.Strategy | None = None,
                 log: Callable[[str], None] = logging.info):
        if sample_1_of_n < 1:
            raise ValueError(f"sample_1_of_n must be >= 1, got {sample_1_of_n}")
        self.model, self.config, self.files, self.label_map = model, config, files, label_map
        self.sample_1_of_n = sample_1_of_n
        self.strategy = strategy or tf.distribute.get_strategy()
        self.summary = ""  # COCO's printed summary of the last evaluation
        self.pictures: list = []  # a few eval images with their detections drawn
        self.num_images = 0
        self._log = log
        self._data_said = ""

        def replica_step(images, info):
            # The image's own area inside the padded input: boxes are clipped to it.
            valid = tf.cast(info["original_size"], tf.float32) * info["image_scale"]
            outputs = families.detect(model, images, valid)
            return {k: outputs[k] for k in DETECTION_KEYS}, info

        # autograph=False: plain TF ops and explicit loops; autograph would
        # source-transform the model's layers and NMS first (about 3 s of CPU).
        @tf.function(autograph=False)
        def predict(images, info):
            return self.strategy.run(replica_step, args=(images, info))

        self._predict = predict

    def evaluate(self) -> dict[str, float]:
        """COCO metrics of the model's current weights (coco_metrics.METRIC_KEYS and
        `AP/<class name>`). Raises EvalError on bad eval data or an empty eval set."""
        dataset = inputs.build_eval_dataset(self.config, self.files, self.sample_1_of_n)
        coco = CocoEvaluator(self.label_map)
        local = self.strategy.experimental_local_results
        counts = np.zeros(len(example_checks.COUNTERS), np.int64)
        try:
            self.pictures = []
            for images, info in self.strategy.experimental_distribute_dataset(dataset):
                detections, info = self._predict(images, info)
                for dets, inf in zip(local(detections), local(info), strict=True):
                    inf = {k: v.numpy() for k, v in inf.items()}
                    counts = np.maximum(counts, inf.pop("data_counts").max(axis=0,
                                                                           initial=0))
                    coco.add_batch(inf, {k: v.numpy() for k, v in dets.items()})
                if len(self.pictures) < self.config.eval_config.num_visualizations:
                    self._keep_pictures(local(images)[0].numpy(),
                                        {k: v.numpy() for k, v in local(detections)[0].items()})
        except (tf.errors.OpError, UnicodeDecodeError) as err:  # see explain_input_error
            raise self._data_error(err) from None
        self._report_data(counts)
        if coco.duplicate_ids:
            self._log(f"WARNING: {len(coco.duplicate_ids)} eval images repeat an earlier "
                      f"image/source_id (e.g. {coco.duplicate_ids[0]}) and were ignored; "
                      "COCO needs one id per image")
        if coco.num_images == 0:
            raise EvalError(f"the eval set has no examples ({', '.join(self.files)}, "
                            f"1 of every {self.sample_1_of_n} examples)")
        self.num_images = coco.num_images
        metrics = coco.evaluate()
        self.summary = coco.summary
        return metrics

    def _report_data(self, counts: np.ndarray) -> None:
        """Logs what the data checks did to the eval set (the running counts are
        monotone, so the largest seen are the totals), once per Evaluator."""
        line = example_checks.describe_counts(
            dict(zip(example_checks.COUNTERS, counts.tolist(), strict=True)),
            self.config.eval_input_reader.max_number_of_boxes)
        if line and line != self._data_said:
            self._log(f"eval data: {line} (of {counts[0]} examples read)")
            self._data_said = line

    def _keep_pictures(self, images, detections) -> None:
        """Adds images of this batch, with their detections scoring at least
        VISUALIZATION_MIN_SCORE drawn, to `pictures` (eval_config.num_visualizations)."""
        names = self.label_map
        for i, image in enumerate(images):
            if len(self.pictures) >= self.config.eval_config.num_visualizations:
                return
            shown = detections["detection_scores"][i] >= VISUALIZATION_MIN_SCORE
            pixels = np.clip(inputs.denormalize(image, self.config.model), 0,
                             255).astype(np.uint8)
            self.pictures.append(visualize.draw_boxes(
                pixels, detections["detection_boxes"][i][shown],
                detections["detection_classes"][i][shown], names,
                scores=detections["detection_scores"][i][shown], scale=2))

    def _data_error(self, err: tf.errors.OpError | UnicodeDecodeError) -> Exception:
        explained = input_errors.explain_input_error(err, self.files, self.config.eval_input_reader,
                                               self.config.model.num_classes)
        if explained is not None:
            kind, detail = explained
            return EvalError(f"{kind} eval data: {detail}")
        if isinstance(err, tf.errors.InvalidArgumentError):
            return EvalError(f"bad eval data: {err.message.splitlines()[0]}")
        return err


def evaluate_model(model, config: PipelineConfig, files: list[str], label_map: dict[int, str],
                   sample_1_of_n: int = 1, strategy: tf.distribute.Strategy | None = None
                   ) -> dict[str, float]:
    """COCO box metrics of `model` on `files` (every `sample_1_of_n`-th example):
    AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100 and `AP/<class name>`."""
    return Evaluator(model, config, files, label_map, sample_1_of_n, strategy).evaluate()

