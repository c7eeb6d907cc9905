r"""Evaluates a checkpoint the OD API trained with our evaluation: the model our mapper
builds from the same pipeline.config, every variable loaded from the checkpoint
(fine_tune_checkpoint_type `full`), the config's eval TFRecords and label map, our
COCO metrics.

Where our evaluation computes the OD API's (the same model function, input
normalisation, box decoding, NMS and COCO metrics), the AP equals the OD API's own
evaluation of the checkpoint; training_parity.py's `crossed` side prints both side by
side. It refuses (one `error:` line, exit 1) a checkpoint that does not load whole:
a model left partly fresh would measure nothing.

    .venv/bin/python scripts/odapi_parity/evaluate_odapi_checkpoint.py \
        --pipeline_config=runs/odapi_parity/<run>/pipeline.config \
        --checkpoint=runs/odapi_parity/<run>/odapi/train \
        --output=runs/odapi_parity/<run>/crossed/metrics.json

--checkpoint is a checkpoint prefix or a directory (its latest checkpoint). It imports
nothing of the OD API: the checkpoint is read by our fine-tune mapping.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_whole(model, prefix: str, why: str):
    """Loads the OD API checkpoint at `prefix` into every variable of `model` (the `full`
    fine-tune mapping) and returns the fine-tune result; SystemExit (one `error:` line
    ending with `why`) when any variable would stay fresh."""
    from train_lib.training import fine_tune

    result = fine_tune.apply(model, prefix, "full")
    fresh = len(model.variables) - len(result.report["loaded"])
    if fresh:
        raise SystemExit(f"error: {prefix}: {fresh} of the model's {len(model.variables)} "
                         f"variables do not load from it ({result.line}); {why}")
    return result


def evaluate(pipeline_config: str, checkpoint: str, params_override: str = "") -> dict:
    """{"AP": ..., "AP50": ..., ..., "checkpoint": prefix, "fine_tune": its log line}."""
    import tensorflow as tf

    from train_lib import config as config_lib
    from train_lib.errors import UserError
    from train_lib.evaluation.evaluator import eval_inputs, evaluate_model
    from train_lib.families import build_model

    prefix = tf.train.latest_checkpoint(checkpoint) if os.path.isdir(checkpoint) else checkpoint
    if not prefix:
        raise SystemExit(f"error: --checkpoint: no checkpoint in {checkpoint}")
    try:
        config = config_lib.load_config(pipeline_config, params_override)
        model = build_model(config.model)
        result = load_whole(model, prefix, "the evaluation would be of a partly fresh model")
        files, label_map = eval_inputs(config)
        metrics = evaluate_model(model, config, files, label_map)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    return {**metrics, "checkpoint": os.path.abspath(prefix), "fine_tune": result.line}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline_config", required=True,
                        help="the pipeline.config the OD API trained the checkpoint with")
    parser.add_argument("--checkpoint", required=True,
                        help="an OD API checkpoint prefix, or its directory")
    parser.add_argument("--output", default="", help="a JSON file for the metrics")
    parser.add_argument("--params_override", default="",
                        help="our keys over the mapped config, as model_main_tf2.py's "
                             "(to measure what one costs, e.g. other pixel statistics)")
    args = parser.parse_args(argv)
    metrics = evaluate(args.pipeline_config, args.checkpoint, args.params_override)
    print(metrics["fine_tune"])
    print(f"AP {metrics['AP']:.4f} AP50 {metrics['AP50']:.4f} ({metrics['checkpoint']})")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(metrics, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
