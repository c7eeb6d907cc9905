r"""Exports a trained checkpoint as a TFLite model for a phone or a Raspberry Pi.

    python scripts/export_tflite.py --trained_checkpoint_dir=runs/shapes \
        --output_directory=exported/shapes_tflite --quantization=int8

writes exported/shapes_tflite/model.tflite (post-processing inside, TFLite builtin
ops only; input [1, height, width, 3] at the model's size, float32 pixels for
none/float16, uint8 for int8; outputs detection_boxes, detection_classes,
detection_scores, num_detections, in this order), model.json (input size and
dtype, normalisation, output order, quantisation, class names) and
label_map.pbtxt. --quantization=int8 calibrates on --num_calibration_images
images of the config's train_input_reader. See train_lib/export/tflite.py; run it
with scripts/detect.py --tflite=... or score it with model_main_tf2.py
--checkpoint_dir=<output_directory>/model.tflite.
Exit codes: 0 exported, 1 error (one `error:` line).
Logs: this repository's lines only (and any library's errors); --verbosity=1
(-v 1) adds the lines of TensorFlow, the TFLite converter and Model Garden.
"""

from __future__ import annotations

import os

from absl import app, flags, logging

from train_lib import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("pipeline_config_path", None,
                    "The pipeline config (YAML) of the trained model (default: "
                    "<trained_checkpoint_dir>/pipeline.yaml, which the trainer writes).")
flags.DEFINE_string("trained_checkpoint_dir", None,
                    "The training model_dir: its newest checkpoint is exported.")
flags.DEFINE_string("checkpoint_path", None,
                    "Export this checkpoint (a prefix such as runs/shapes/ckpt-3000) instead "
                    "of the newest one of --trained_checkpoint_dir.")
flags.DEFINE_string("output_directory", None,
                    "Where model.tflite, model.json and label_map.pbtxt go.")
flags.DEFINE_enum("quantization", "none", ["none", "float16", "int8"],
                  "none: float32 weights; float16: float16 weights (half the file); int8: "
                  "int8 weights and activations, calibrated on training images, uint8 input.")
flags.DEFINE_integer("num_calibration_images", 100,
                     "With --quantization=int8: how many training images (the first of "
                     "train_input_reader's files) calibrate the activations.", lower_bound=1)
flags.DEFINE_boolean("overwrite", False,
                     "Replace the files of an --output_directory that is not empty.")


def run() -> int:
    """Resolves the flags, exports, and maps the outcome to an exit code."""
    from train_lib.output_paths import check_output_directory

    if not FLAGS.output_directory:
        return cli.fail("--output_directory is required: where model.tflite goes")
    check_output_directory("--output_directory", FLAGS.output_directory)  # before any loading

    from train_lib.config import ONLY_TRAINING_READS, load_config
    from train_lib.export.run_config import run_config_path

    config_path = run_config_path(FLAGS.trained_checkpoint_dir, FLAGS.pipeline_config_path)
    config = load_config(config_path, unused_keys=ONLY_TRAINING_READS)

    from train_lib.export.tflite import check_architecture, check_output_directory

    check_architecture(config)  # before the checkpoint is read
    check_output_directory(FLAGS.output_directory, FLAGS.overwrite)

    from train_lib.export.saved_model import find_checkpoint
    from train_lib.export.tflite import export_tflite

    prefix = find_checkpoint(FLAGS.trained_checkpoint_dir, FLAGS.checkpoint_path)
    logging.info("exporting %s (%s) with the config %s", prefix, FLAGS.quantization,
                 config_path)
    path = export_tflite(config, prefix, FLAGS.output_directory, FLAGS.quantization,
                         FLAGS.num_calibration_images, FLAGS.overwrite)
    logging.info("wrote %s (%.2f MB)", path, os.path.getsize(path) / 1e6)
    return 0


if __name__ == "__main__":
    app.run(cli.main(run, library_warnings=False))
