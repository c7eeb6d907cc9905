r"""Lists a model_dir's checkpoints, explains their count and reports anomalies.

    python scripts/inspect_checkpoints.py --model_dir=runs/shapes \
        [--pipeline_config_path=...] [--checkpoint_every_n=N --checkpoint_max_to_keep=K \
        --num_train_steps=S] [--json] [--plot=timeline.png]

Read only. Exit codes: 0 (also when anomalies are found or there is no
checkpoint), 1 when model_dir does not exist or a flag is wrong (one `error:` line).
Logs: warnings from any library; --verbosity=1 (-v 1) adds TensorFlow's INFO lines.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

from train_lib import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "The training run's model_dir to inspect.")
flags.DEFINE_string("pipeline_config_path", None,
                    "Pipeline config for num_steps (default: model_dir/pipeline.yaml).")
flags.DEFINE_integer("checkpoint_every_n", None,
                     "The run's --checkpoint_every_n (default: from checkpoints.jsonl).")
flags.DEFINE_integer("checkpoint_max_to_keep", None,
                     "The run's --checkpoint_max_to_keep (default: from checkpoints.jsonl).")
flags.DEFINE_alias("max_to_keep", "checkpoint_max_to_keep")
flags.DEFINE_integer("num_train_steps", None,
                     "The run's total steps (default: train_config.num_steps of the config).")
flags.DEFINE_boolean("json", False, "Print one JSON object instead of the report.")
flags.DEFINE_string("plot", None,
                    "Also draw the run's timeline into this PNG: loss and learning rate over "
                    "steps, every save, final save, signal/error save and removal marked, "
                    "the checkpoints present at the end highlighted.")

for _name in ("checkpoint_every_n", "checkpoint_max_to_keep", "num_train_steps"):
    flags.register_validator(_name, lambda n: n is None or n >= 1,
                             f"--{_name} must be at least 1")

def run() -> int:
    """Inspects --model_dir and prints the report; returns the exit code."""
    model_dir = FLAGS.model_dir
    if not model_dir:
        return cli.fail("--model_dir is required: the training run's directory")
    if not os.path.isdir(model_dir):  # checked before the slow TensorFlow import
        what = "is not a directory" if os.path.exists(model_dir) else "does not exist"
        return cli.fail(f"--model_dir {model_dir} {what}")
    if FLAGS.plot:
        from train_lib.output_paths import check_output_file

        check_output_file("--plot", FLAGS.plot)

    from train_lib.report.format import format_report, report_json
    from train_lib.report.inspect import inspect_model_dir

    report = inspect_model_dir(
        model_dir, every_n=FLAGS.checkpoint_every_n,
        max_to_keep=FLAGS.checkpoint_max_to_keep, num_steps=FLAGS.num_train_steps,
        pipeline_config_path=FLAGS.pipeline_config_path)
    if FLAGS.json:
        print(json.dumps(report_json(report), indent=1))
    else:
        print(format_report(report))
    if FLAGS.plot:
        from train_lib.output_paths import make_parent
        from train_lib.report.timeline import plot_timeline

        try:
            make_parent(FLAGS.plot)
            plot_timeline(model_dir, FLAGS.plot)
        except OSError as err:
            return cli.fail(f"cannot write --plot {FLAGS.plot}: {err.strerror}")
        print(f"timeline written to {FLAGS.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    app.run(cli.main(run, verbose=False))
