r"""Trains an object detector from a pipeline config, as the OD API's model_main_tf2.py.

    python model_main_tf2.py --pipeline_config_path=configs/shapes_retinanet.yaml \
        --model_dir=runs/shapes --checkpoint_every_n=1000

With --checkpoint_dir it evaluates instead, as the OD API does: each checkpoint of
checkpoint_dir once, COCO metrics into model_dir (eval/, eval_metrics.jsonl, best/):

    python model_main_tf2.py --pipeline_config_path=configs/shapes_retinanet.yaml \
        --checkpoint_dir=runs/shapes --model_dir=runs/shapes

and given a .tflite file (scripts/export_tflite.py), it scores that model once:

    python model_main_tf2.py --pipeline_config_path=runs/shapes/pipeline.yaml \
        --checkpoint_dir=exported/shapes_int8/model.tflite --model_dir=runs/shapes

This is the only module that reads flags; everything else takes arguments.
Exit codes: 0 done (or already done; evaluation: finished or timed out), 1 error,
130 / 143 stopped by SIGINT / SIGTERM after saving a checkpoint.
Logs: this repository's INFO lines and warnings from any library; --verbosity=1
(-v 1) adds the INFO and debug lines of TensorFlow, Model Garden and tf_keras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from absl import app, flags, logging

from train_lib import cli

if TYPE_CHECKING:
    from train_lib.config import PipelineConfig

FLAGS = flags.FLAGS

# --helpfull lists flags by group, in this order, before absl's own.
CONFIG = "1. config and output"
TRAIN = "2. training"
CKPT = "3. checkpoints"
EVAL = "4. evaluation (the OD API's --checkpoint_dir mode)"
DEVICES = "5. devices and clusters"

flags.DEFINE_string("pipeline_config_path", None, "Path to the pipeline config (YAML).",
                    module_name=CONFIG)
flags.DEFINE_string("model_dir", None,
                    "Directory for checkpoints, summaries and pipeline.yaml.", module_name=CONFIG)
flags.DEFINE_string("params_override", "",
                    "Overrides applied after the config file: a YAML string, or dotted pairs "
                    "such as 'train_config.batch_size=4,model.num_classes=3'.",
                    module_name=CONFIG)
flags.DEFINE_integer("num_train_steps", None,
                     "Number of training steps; overrides train_config.num_steps.",
                     module_name=TRAIN)
flags.DEFINE_boolean("record_summaries", True,
                     "Write TensorBoard summaries (losses, learning rate, throughput, training "
                     "images with boxes) to model_dir/train.", module_name=TRAIN)
flags.DEFINE_boolean("deterministic", False,
                     "Enable TensorFlow op determinism: the same run gives bit-identical "
                     "weights, also across kill and resume.", module_name=TRAIN)
flags.DEFINE_integer("checkpoint_every_n", 1000,
                     "Save a checkpoint at every global step that is a multiple of this.",
                     module_name=CKPT)
flags.DEFINE_integer("checkpoint_max_to_keep", 7,
                     "How many of the newest checkpoints to keep.", module_name=CKPT)
flags.DEFINE_alias("max_to_keep", "checkpoint_max_to_keep", module_name=CKPT)
flags.DEFINE_float("keep_checkpoint_every_n_hours", None,
                   "Also keep, for good, one checkpoint every this many hours of training.",
                   module_name=CKPT)
flags.DEFINE_boolean("async_checkpoint", False,
                     "Write checkpoints in the background (synced before rotation and exit).",
                     module_name=CKPT)
flags.DEFINE_string("checkpoint_dir", None,
                    "Evaluation mode: evaluate each checkpoint of this training model_dir "
                    "once, oldest first, then each new one as it appears; COCO metrics go "
                    "to --model_dir (eval/ TensorBoard scalars, eval_metrics.jsonl, best/). "
                    "Given a .tflite file (scripts/export_tflite.py's model.tflite), "
                    "evaluate that model once (metrics logged and appended to "
                    "--model_dir/tflite_metrics.jsonl). Without it, train.", module_name=EVAL)
flags.DEFINE_integer("eval_timeout", 3600,
                     "Evaluation mode: stop when no new checkpoint came for this many "
                     "seconds (it stops at once after the final checkpoint of a finished "
                     "run).", module_name=EVAL)
flags.DEFINE_integer("sample_1_of_n_eval_examples", None,
                     "Evaluation mode: use every n-th example of the eval data (default: "
                     "the reader's sample_1_of_n_examples, 1 unless the config sets it).",
                     module_name=EVAL)
flags.DEFINE_boolean("eval_on_train_data", False,
                     "Evaluation mode: evaluate on train_input_reader's data instead of "
                     "eval_input_reader's (metrics under model_dir/eval_train).", module_name=EVAL)

flags.DEFINE_enum("strategy", "auto",
                  ["auto", "one_device", "mirrored", "multi_worker_mirrored", "tpu"],
                  "tf.distribute strategy. auto: multi_worker_mirrored when TF_CONFIG lists "
                  "several workers, else mirrored over several visible GPUs, else one device.",
                  module_name=DEVICES)
flags.DEFINE_integer("num_workers", 1,
                     "Number of workers of a multi-worker job (> 1: multi_worker_mirrored); "
                     "checked against TF_CONFIG, which gives each worker's address.",
                     module_name=DEVICES)
flags.DEFINE_boolean("use_tpu", False, "Train on a TPU (the tpu strategy).",
                     module_name=DEVICES)
flags.DEFINE_string("tpu_name", None,
                    "With --use_tpu: the TPU's name or grpc:// address (default: local).",
                    module_name=DEVICES)

flags.register_validator("checkpoint_every_n", lambda n: n >= 1,
                         "--checkpoint_every_n must be at least 1")
flags.register_validator("checkpoint_max_to_keep", lambda n: n >= 1,
                         "--checkpoint_max_to_keep must be at least 1")
flags.register_validator("num_train_steps", lambda n: n is None or n >= 1,
                         "--num_train_steps must be at least 1")
flags.register_validator("keep_checkpoint_every_n_hours", lambda h: h is None or h > 0,
                         "--keep_checkpoint_every_n_hours must be positive")
flags.register_validator("eval_timeout", lambda t: t >= 0,
                         "--eval_timeout must be >= 0 seconds")
flags.register_validator("sample_1_of_n_eval_examples", lambda n: n is None or n >= 1,
                         "--sample_1_of_n_eval_examples must be at least 1")

for _name in ("pipeline_config_path", "model_dir", "params_override", "num_train_steps",
              "record_summaries", "deterministic", "checkpoint_every_n", "checkpoint_max_to_keep",
              "keep_checkpoint_every_n_hours", "async_checkpoint", "checkpoint_dir",
              "eval_timeout", "sample_1_of_n_eval_examples", "eval_on_train_data", "strategy",
              "num_workers", "use_tpu", "tpu_name"):
    flags.declare_key_flag(_name)  # --help lists them too

def run() -> int:
    """Loads the config, trains (or evaluates, with --checkpoint_dir), and maps the
    outcome to an exit code."""
    from train_lib.config import ONLY_TRAINING_READS, load_config

    if not FLAGS.pipeline_config_path:
        return cli.fail("--pipeline_config_path is required (e.g. configs/shapes_retinanet.yaml)")
    if not FLAGS.model_dir:
        if FLAGS.checkpoint_dir:
            return cli.fail("--model_dir is required: where evaluation results go (it may "
                            "be the --checkpoint_dir)")
        return cli.fail("--model_dir is required: where checkpoints and logs go")
    config = load_config(FLAGS.pipeline_config_path, FLAGS.params_override,
                         unused_keys=ONLY_TRAINING_READS if FLAGS.checkpoint_dir else ())
    if FLAGS.checkpoint_dir:
        return run_eval(config)

    from train_lib.training.distribute import build_strategy
    from train_lib.training.run_options import RunOptions
    from train_lib.training.trainer import train

    # First TensorFlow work: a multi-worker strategy must exist before any other.
    strategy = build_strategy(
        FLAGS.strategy,
        num_workers=FLAGS.num_workers if FLAGS["num_workers"].present else None,
        use_tpu=FLAGS.use_tpu,
        tpu_name=FLAGS.tpu_name,
    )
    options = RunOptions(
        num_train_steps=FLAGS.num_train_steps,
        checkpoint_every_n=FLAGS.checkpoint_every_n,
        max_to_keep=FLAGS.checkpoint_max_to_keep,
        keep_checkpoint_every_n_hours=FLAGS.keep_checkpoint_every_n_hours,
        record_summaries=FLAGS.record_summaries,
        async_checkpoint=FLAGS.async_checkpoint,
        deterministic=FLAGS.deterministic,
    )
    result = train(config, FLAGS.model_dir, options, strategy=strategy)
    if result.signal_number is not None:
        return 128 + result.signal_number
    return 0


def run_eval(config: PipelineConfig) -> int:
    """Evaluation mode (--checkpoint_dir): continuous COCO evaluation into --model_dir,
    or one evaluation of a .tflite file."""
    from train_lib.data.input_files import check_label_map, resolve_input_files

    reader_key = "train_input_reader" if FLAGS.eval_on_train_data else "eval_input_reader"
    # before importing TensorFlow: a wrong path fails fast
    resolve_input_files(getattr(config, reader_key), reader_key)
    # (some of the model's classes; their names are checked against training's later)
    check_label_map(config, getattr(config, reader_key), reader_key, subset=True)

    if FLAGS.checkpoint_dir.endswith(".tflite"):
        from train_lib.evaluation.tflite_eval import evaluate_tflite_file

        evaluate_tflite_file(FLAGS.checkpoint_dir, config, FLAGS.model_dir,
                             sample_1_of_n=FLAGS.sample_1_of_n_eval_examples,
                             eval_on_train_data=FLAGS.eval_on_train_data)
        return 0

    from train_lib.evaluation.continuous import continuous_eval

    try:
        continuous_eval(
            config,
            FLAGS.checkpoint_dir,
            FLAGS.model_dir,
            eval_timeout=FLAGS.eval_timeout,
            sample_1_of_n=FLAGS.sample_1_of_n_eval_examples,
            eval_on_train_data=FLAGS.eval_on_train_data,
        )
    except KeyboardInterrupt:
        logging.info("evaluation interrupted")
        return 130
    return 0


if __name__ == "__main__":
    app.run(cli.main(run))
