"""COCO box metrics of an exported `.tflite` model on the eval split.

`model_main_tf2.py --checkpoint_dir=<dir>/model.tflite` (evaluation mode given a
.tflite file instead of a training model_dir) calls `evaluate_tflite_file`: the
file once, on the same images, ground truth and COCO metrics (pycocotools) as a
checkpoint's evaluation, so a user sees what the conversion and the quantisation
cost. The eval pipeline prepares each image (inputs.preprocess_for_model); its
pixels, before normalisation, are the model's input, as tflite_runtime.letterbox
gives them on a device. The result is logged and appended to
`<model_dir>/tflite_metrics.jsonl` (model, quantization, split, metrics,
num_images, seconds, wall_time).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from train_lib.config import PipelineConfig
from train_lib.data import input_errors, inputs
from train_lib.evaluation import label_maps
from train_lib.evaluation.coco_metrics import CocoEvaluator
from train_lib.evaluation.evaluator import EvalError, eval_inputs, eval_sampling
from train_lib.evaluation.recording import metrics_lines
from train_lib.export.tflite_runtime import OUTPUT_NAMES, TFLiteDetector, read_metadata

TFLITE_METRICS_FILE = "tflite_metrics.jsonl"


def eval_pixels(config: PipelineConfig, files: list[str], sample_1_of_n: int = 1):
    """(pixels float32 [B, height, width, 3] 0..255, info) batches of the eval pipeline:
    its images before normalisation, i.e. the .tflite model's input."""
    for images, info in inputs.build_eval_dataset(config, files, sample_1_of_n):
        yield (inputs.denormalize(images.numpy(), config.model),
               {k: v.numpy() for k, v in info.items()})


def evaluate_tflite(model_path: str, config: PipelineConfig, files: list[str],
                    label_map: dict[int, str], sample_1_of_n: int = 1,
                    num_threads: int | None = None) -> tuple[dict[str, float], int, str]:
    """(COCO metrics, images evaluated, COCO's summary) of the .tflite at `model_path`
    on `files` (every `sample_1_of_n`-th example), the images prepared at the model's
    input size. Raises EvalError (bad eval data, no examples) or TFLiteModelError."""
    detector = TFLiteDetector(model_path, num_threads=num_threads)
    config = copy.deepcopy(config)
    config.model.input_size = list(detector.input_size)
    size = np.array(detector.input_size * 2, np.float32)
    coco = CocoEvaluator(label_map)
    try:
        for pixels, info in eval_pixels(config, files, sample_1_of_n):
            info.pop("data_counts")
            outs = [detector.run(image) for image in pixels]
            detections = {name: np.stack([o[name] for o in outs]) for name in OUTPUT_NAMES}
            detections["detection_boxes"] = detections["detection_boxes"] * size
            coco.add_batch(info, detections)
    except (tf.errors.OpError, UnicodeDecodeError) as err:  # see explain_input_error
        explained = input_errors.explain_input_error(err, files, config.eval_input_reader,
                                                     config.model.num_classes)
        if explained is not None:
            raise EvalError(f"{explained[0]} eval data: {explained[1]}") from None
        if isinstance(err, UnicodeDecodeError):
            raise
        raise EvalError(f"bad eval data in {', '.join(files)}: "
                        f"{err.message.splitlines()[0]}") from None
    if coco.num_images == 0:
        raise EvalError(f"the eval set has no examples ({', '.join(files)})")
    metrics = coco.evaluate()
    return metrics, coco.num_images, coco.summary


def evaluate_tflite_file(model_path: str, config: PipelineConfig, model_dir: str,
                         sample_1_of_n: int | None = None, eval_on_train_data: bool = False,
                         log: Callable[[str], None] = logging.info) -> dict[str, float]:
    """Evaluation mode for a .tflite file: evaluates it once on the eval split (the
    train split with `eval_on_train_data`; every `eval_sampling(config, sample_1_of_n,
    eval_on_train_data)`-th example), logs the metrics and appends them to
    <model_dir>/tflite_metrics.jsonl; returns them. The eval label map must name
    classes of model.json's label map (label_maps.py), else ConfigError."""
    if not os.path.isfile(model_path):
        raise EvalError(f"--checkpoint_dir {model_path} is not a file: give the "
                        "model.tflite that scripts/export_tflite.py wrote")
    files, label_map = eval_inputs(config, eval_on_train_data,
                                   label_maps.classes_of_tflite(model_path), log)
    split = "train" if eval_on_train_data else "eval"
    start = time.time()
    metrics, num_images, summary = evaluate_tflite(
        model_path, config, files, label_map,
        eval_sampling(config, sample_1_of_n, eval_on_train_data))
    seconds = time.time() - start
    quantization = read_metadata(model_path).get("quantization", "?")
    headline, *per_class = metrics_lines(metrics)
    log(f"{model_path} ({quantization}) on {num_images} {split} images: {headline}")
    for line in per_class:
        log(line)
    log(summary.rstrip())
    os.makedirs(model_dir, exist_ok=True)
    record = {"model": os.path.abspath(model_path), "quantization": quantization,
              "split": split, "metrics": metrics, "num_images": num_images,
              "seconds": round(seconds, 3), "wall_time": time.time()}
    with open(os.path.join(model_dir, TFLITE_METRICS_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return metrics
