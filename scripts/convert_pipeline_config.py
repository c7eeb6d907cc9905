r"""Writes an OD API pipeline.config as this driver's YAML, for users who keep editing ours.

    python scripts/convert_pipeline_config.py --pipeline_config_path=pipeline.config \
        --output_path=pipeline.yaml

Each approximated key gets a comment saying why. --params_override applies first,
in our keys. Exit codes: 0 written, 1 error (one `error:` line).
"""

from __future__ import annotations

from absl import app, flags, logging

from train_lib import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("pipeline_config_path", None, "The OD API pipeline.config to convert.")
flags.DEFINE_string("output_path", None, "Where the YAML goes.")
flags.DEFINE_string("params_override", "", "Overrides in our keys, applied before writing.")


def run() -> int:
    """Converts and writes; maps the outcome to an exit code."""
    from train_lib.config import load_config, parse_yaml
    from train_lib.config.loading import _looks_like_pbtxt, _read_config_text
    from train_lib.config.odapi import map_pipeline_config
    from train_lib.config.schema import to_dict
    from train_lib.config.yaml_io import to_yaml_text
    from train_lib.output_paths import check_output_file, make_parent

    if not FLAGS.pipeline_config_path or not FLAGS.output_path:
        return cli.fail("--pipeline_config_path and --output_path are required")
    check_output_file("--output_path", FLAGS.output_path)
    path = FLAGS.pipeline_config_path
    text = _read_config_text(path)
    if not _looks_like_pbtxt(text):
        return cli.fail(f"{path} is not an OD API pipeline.config (it reads as YAML already)")
    notes = map_pipeline_config(text, path).approximations
    config = load_config(path, FLAGS.params_override)
    yaml_text = to_yaml_text(to_dict(config))
    _, lines = parse_yaml(yaml_text, FLAGS.output_path)
    out = yaml_text.splitlines()
    for key, note in notes.items():
        line = lines.get(key)
        if line is not None:
            out[line - 1] += "  # approximated: " + note.split(" approximated", 1)[-1].split(
                ": ", 1)[-1]
    make_parent(FLAGS.output_path)
    with open(FLAGS.output_path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    logging.info("wrote %s", FLAGS.output_path)
    return 0


if __name__ == "__main__":
    app.run(cli.main(run))
