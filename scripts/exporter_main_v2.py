r"""Exports a trained checkpoint as a SavedModel, as the OD API's exporter_main_v2.py.

    python scripts/exporter_main_v2.py --input_type=image_tensor \
        --trained_checkpoint_dir=runs/shapes --output_directory=exported/shapes

writes exported/shapes/saved_model (signature serving_default: input_tensor uint8
[1, H, W, 3] -> detection_boxes (normalised), detection_scores, detection_classes,
num_detections), exported/shapes/checkpoint/, pipeline.yaml and label_map.pbtxt.
See train_lib/export/saved_model.py. Exit codes: 0 exported, 1 error (one `error:` line).
Logs: this repository's lines only (and any library's errors); --verbosity=1
(-v 1) adds the warnings, INFO and debug lines of TensorFlow, Model Garden and tf_keras.
"""

from __future__ import annotations

from absl import app, flags, logging

from train_lib import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("input_type", "image_tensor",
                    "Type of the SavedModel's input; only image_tensor (uint8 [1, H, W, 3]) "
                    "is supported.")
flags.DEFINE_string("pipeline_config_path", None,
                    "The pipeline config (YAML) of the trained model (default: "
                    "<trained_checkpoint_dir>/pipeline.yaml, which the trainer writes).")
flags.DEFINE_string("trained_checkpoint_dir", None,
                    "The training model_dir: its newest checkpoint is exported.")
flags.DEFINE_string("checkpoint_path", None,
                    "Export this checkpoint (a prefix such as runs/shapes/ckpt-3000) instead "
                    "of the newest one of --trained_checkpoint_dir.")
flags.DEFINE_string("output_directory", None,
                    "Where saved_model/, checkpoint/, pipeline.yaml and label_map.pbtxt go.")


def run() -> int:
    """Resolves the flags, exports, and maps the outcome to an exit code."""
    from train_lib.output_paths import check_output_directory

    if not FLAGS.output_directory:
        return cli.fail("--output_directory is required: where the SavedModel goes")
    check_output_directory("--output_directory", FLAGS.output_directory)  # before any loading

    from train_lib.config import ONLY_TRAINING_READS, load_config
    from train_lib.export.run_config import run_config_path

    if FLAGS.input_type != "image_tensor":
        return cli.fail(f"--input_type={FLAGS.input_type!r} is not supported; only "
                        "image_tensor (uint8 images [1, H, W, 3]) is")
    config_path = run_config_path(FLAGS.trained_checkpoint_dir, FLAGS.pipeline_config_path)
    config = load_config(config_path, unused_keys=ONLY_TRAINING_READS)

    from train_lib.export.saved_model import export_saved_model, find_checkpoint

    prefix = find_checkpoint(FLAGS.trained_checkpoint_dir, FLAGS.checkpoint_path)
    logging.info("exporting %s with the config %s", prefix, config_path)
    path = export_saved_model(config, prefix, FLAGS.output_directory, FLAGS.input_type)
    logging.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    app.run(cli.main(run, library_warnings=False))
