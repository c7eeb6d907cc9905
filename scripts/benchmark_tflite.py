r"""What does a phone get? The SavedModel against the three TFLite exports of one model.

One command, one machine; prints docs/performance.md's "TFLite" table (markdown)
and, with --json, the figures as JSON on stdout or into a file:

    .venv/bin/python scripts/benchmark_tflite.py --model_dir=runs/shapes \
        [--num_timing_images=50] [--num_calibration_images=100] [--json [tflite.json]]

For the newest checkpoint of --model_dir (with its pipeline.yaml) it exports,
into a temporary directory, the SavedModel (scripts/exporter_main_v2.py's) and
model.tflite with --quantization none, float16 and int8 (export_tflite.py's),
then for each:

- size: the file (the SavedModel: its directory), MB;
- latency: median milliseconds of one call on one image at the model's input
  size, over the first --num_timing_images eval images (after 3 warm-up calls),
  ONE thread: LiteRT's interpreter with num_threads=1; TensorFlow with one
  intra-op and one inter-op thread for the SavedModel;
- AP, AP50: COCO metrics on the eval split (eval_input_reader), as
  `model_main_tf2.py --checkpoint_dir` computes them: for the SavedModel, of the
  checkpoint it holds (the same detections, tests/test_export.py); for a
  .tflite, of the file (--checkpoint_dir=<...>/model.tflite).

Figures are wall clock: on a machine shared with other work they are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from statistics import median

from train_lib import cli

cli.tensorflow_defaults()  # before TensorFlow is imported

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# One thread for TensorFlow too, before it starts: the latencies compare like with like.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

from train_lib.config import load_config  # noqa: E402
from train_lib.errors import UserError, one_line  # noqa: E402
from train_lib.evaluation.continuous import evaluate_checkpoint  # noqa: E402
from train_lib.evaluation.evaluator import eval_inputs  # noqa: E402
from train_lib.evaluation.tflite_eval import eval_pixels, evaluate_tflite  # noqa: E402
from train_lib.export.saved_model import export_saved_model, find_checkpoint  # noqa: E402
from train_lib.export.tflite import QUANTIZATIONS, export_tflite  # noqa: E402
from train_lib.export.tflite_runtime import TFLiteDetector  # noqa: E402

WARMUP = 3
LABELS = {"saved_model": "SavedModel (float32)", "none": "TFLite float32",
          "float16": "TFLite float16", "int8": "TFLite int8"}


def size_mb(path: str) -> float:
    """MB of the file at `path`, or of the files under the directory `path`."""
    if os.path.isfile(path):
        return os.path.getsize(path) / 1e6
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names) / 1e6


def latency_ms(call, images: list[np.ndarray]) -> float:
    """Median milliseconds of `call(image)` over `images`, after WARMUP calls."""
    for image in images[:WARMUP]:
        call(image)
    times = []
    for image in images:
        began = time.perf_counter()
        call(image)
        times.append((time.perf_counter() - began) * 1e3)
    return median(times)


def timing_images(config, files: list[str], count: int) -> list[np.ndarray]:
    """The first `count` eval images at the model's input size (pixels 0..255)."""
    images: list[np.ndarray] = []
    for pixels, _ in eval_pixels(config, files):
        images.extend(pixels)
        if len(images) >= count:
            break
    return images[:count]


def measure(model_dir: str, num_timing_images: int, num_calibration_images: int,
            work_dir: str) -> dict:
    """The table's figures, {"rows": [...], ...}; exports into `work_dir`."""
    config = load_config(os.path.join(model_dir, "pipeline.yaml"))
    prefix = find_checkpoint(trained_checkpoint_dir=model_dir)
    files, label_map = eval_inputs(config)
    images = timing_images(config, files, num_timing_images)
    rows = []

    saved_model = export_saved_model(config, prefix, os.path.join(work_dir, "saved_model"))
    serve = tf.saved_model.load(saved_model).signatures["serving_default"]
    as_uint8 = [tf.constant(np.clip(np.round(i), 0, 255).astype(np.uint8)[np.newaxis])
                for i in images]
    metrics = evaluate_checkpoint(prefix, config, files, label_map)
    rows.append({"model": "saved_model", "size_mb": size_mb(saved_model),
                 "latency_ms": latency_ms(lambda x: serve(input_tensor=x), as_uint8),
                 "AP": metrics["AP"], "AP50": metrics["AP50"]})

    for quantization in QUANTIZATIONS:
        path = export_tflite(config, prefix, os.path.join(work_dir, quantization),
                             quantization, num_calibration_images)
        detector = TFLiteDetector(path, num_threads=1)
        metrics, num_images, _ = evaluate_tflite(path, config, files, label_map)
        rows.append({"model": quantization, "size_mb": size_mb(path),
                     "latency_ms": latency_ms(detector.run, images),
                     "AP": metrics["AP"], "AP50": metrics["AP50"]})
    return {"model_dir": os.path.abspath(model_dir), "checkpoint": prefix,
            "input_size": list(config.model.input_size), "num_eval_images": num_images,
            "num_timing_images": len(images), "num_calibration_images": num_calibration_images,
            "threads": 1, "rows": rows}


def table(results: dict) -> str:
    """README's markdown table of `results`."""
    height, width = results["input_size"]
    lines = [f"| {height}x{width} model | size (MB) | latency (ms, 1 thread) | AP | AP50 |",
             "|---|---:|---:|---:|---:|"]
    for row in results["rows"]:
        lines.append(f"| {LABELS[row['model']]} | {row['size_mb']:.2f} | "
                     f"{row['latency_ms']:.1f} | {row['AP']:.3f} | {row['AP50']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True,
                        help="A trained model_dir (its newest checkpoint and pipeline.yaml).")
    parser.add_argument("--num_timing_images", type=int, default=50)
    parser.add_argument("--num_calibration_images", type=int, default=100)
    parser.add_argument("--json", nargs="?", const="-", default=None,
                        help="Also write the figures as JSON: to stdout, or to this file.")
    args = parser.parse_args()
    try:
        with tempfile.TemporaryDirectory(prefix="benchmark-tflite-") as work_dir:
            results = measure(args.model_dir, args.num_timing_images,
                              args.num_calibration_images, work_dir)
    except UserError as err:
        sys.exit(f"error: {one_line(err)}")
    print(table(results))
    if args.json == "-":
        print(json.dumps(results, indent=2))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
