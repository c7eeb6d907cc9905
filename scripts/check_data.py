r"""Checks every training and eval record of a pipeline config against the data contract.

    .venv/bin/python scripts/check_data.py --pipeline_config_path=configs/shapes_retinanet.yaml \
        [--params_override=...] [--json]

Reads each record of train_input_reader and eval_input_reader once (decoding in
parallel) and prints what is there (images, boxes per class, boxes per image,
image sizes) and every problem by rule, with the first few records that show it
(file, record index, image/source_id). The rules are those training applies
(docs/getting_started.md, "2. Check your data"). A progress line on a terminal.

Exit codes: 0 when every record passes (tidied boxes are not problems), 1 when a
record breaks a rule or a flag, the config or a file is wrong (one `error:` line).
"""

from __future__ import annotations

import json
import sys
import time

from absl import app, flags

from train_lib import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("pipeline_config_path", None, "The pipeline config whose data to check.")
flags.DEFINE_string("params_override", "", "Overrides applied after the file, as in training.")
flags.DEFINE_boolean("json", False, "Print one JSON object instead of the report.")


def run() -> int:
    """Checks the config's input files and prints the report; returns the exit code."""
    if not FLAGS.pipeline_config_path:
        return cli.fail("--pipeline_config_path is required: the config whose data to check")

    from train_lib.data import data_check, input_files

    config = data_check.load_config_to_check(FLAGS.pipeline_config_path, FLAGS.params_override)
    splits = []
    for key in ("train_input_reader", "eval_input_reader"):
        reader = getattr(config, key)
        if not reader.input_path and key == "eval_input_reader":
            continue  # a config may train without an eval split
        files = input_files.resolve_input_files(reader, key)
        names = input_files.check_label_map(config, reader, key)
        splits.append((key, files, reader.max_number_of_boxes, names))
    progress = data_check.Progress(sys.stderr, enabled=sys.stderr.isatty() and not FLAGS.json)
    began = time.monotonic()
    reports = [data_check.check_files(key, files, config.model.num_classes, max_boxes,
                                      progress) for key, files, max_boxes, _ in splits]
    progress.clear()
    if FLAGS.json:
        print(json.dumps({r.key: r.to_json() for r in reports}, indent=1))
    else:
        print(data_check.format_report(reports, splits[0][3], time.monotonic() - began))
    return 1 if any(r.num_problems for r in reports) else 0


if __name__ == "__main__":
    app.run(cli.main(run, verbose=False, library_warnings=False))
