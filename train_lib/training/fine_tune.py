"""train_config.fine_tune_checkpoint: the starting weights of a run whose model_dir
has no checkpoint yet (a resume always uses model_dir's own checkpoints).

Contract:
- `resolve_checkpoint(path)` is the checkpoint prefix `path` names: a prefix, or
  a directory whose newest checkpoint is taken. ConfigError naming the key if neither.
- With neither, the run starts from random weights and says so (`RANDOM_START`).
- `apply(model, prefix, kind)` loads into `model`, as the OD API's types do:
  `backbone` the backbone alone, from this trainer's checkpoints
  of either family, or Model Garden's backbone checkpoints (`backbone`);
  `detection` the whole detector of the same family but the layers whose shape
  follows the number of classes (families.detection_target: RetinaNet's class
  layer, Faster R-CNN's class and box layers), so the number of classes may
  change. Every variable of those parts must be in the checkpoint with its shape,
  else TrainError says which part does not fit. The optimizer and the step start
  fresh.
"""

from __future__ import annotations

import os

import tensorflow as tf

from train_lib import families
from train_lib.config import ConfigError
from train_lib.training.failures import TrainError

KEY = "train_config.fine_tune_checkpoint"

# Said once when a run starts with neither a checkpoint in model_dir nor a fine-tune one.
RANDOM_START = (f"training from random weights: model_dir has no checkpoint and {KEY} is "
                f"not set; to start from pretrained weights, set {KEY} (with "
                "train_config.fine_tune_checkpoint_type: detection or backbone)")


def resolve_checkpoint(path: str) -> str:
    """The checkpoint prefix that `path` names; ConfigError if there is none."""
    if os.path.isdir(path):
        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            raise ConfigError(f"{KEY} {path!r} is a directory without a checkpoint state "
                              "file; name a checkpoint prefix such as <dir>/ckpt-3000")
        return prefix
    if not os.path.exists(path + ".index"):
        raise ConfigError(f"{KEY} {path!r} is not a checkpoint: there is no "
                          f"{path}.index; name a prefix such as <model_dir>/ckpt-3000 "
                          "(without .index) or a directory with a checkpoint state file")
    return path


def apply(model, prefix: str, kind: str) -> int:
    """Loads the `kind` parts of `prefix` into `model`; returns how many variables."""
    names = {name for name, _ in tf.train.list_variables(prefix)}
    written_by = families.checkpoint_family(names)
    architecture = families.architecture_of(model)
    if kind == "backbone":
        parts = {"backbone": model.backbone}
        if written_by is not None:  # any family's: the backbone is the same
            target = families.backbone_target(written_by, model.backbone)
        elif any(n.startswith("backbone/") for n in names):
            target = tf.train.Checkpoint(backbone=model.backbone)
        else:
            raise TrainError(f"{KEY} {prefix} holds no backbone (neither a detector "
                             "checkpoint of this trainer nor a Model Garden backbone "
                             "checkpoint); name one of those")
        excluded: list = []
    else:
        if written_by is None:
            raise TrainError(f"{KEY} {prefix} is not a detector checkpoint of this trainer; "
                             "use fine_tune_checkpoint_type: backbone for a backbone-only "
                             "checkpoint")
        if written_by != architecture:
            raise TrainError(
                f"{KEY} {prefix} is a {written_by} checkpoint, but model.architecture is "
                f"{architecture}: fine_tune_checkpoint_type: detection needs a checkpoint "
                "of the same architecture; use fine_tune_checkpoint_type: backbone to start "
                "from its backbone")
        parts, target, excluded = families.detection_target(model)
    try:
        target.read(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise TrainError(
            f"{KEY} {prefix} does not fit this model's {' and '.join(parts)} ({first}); it "
            "must come from a model with the same model.backbone (and, for detection, "
            "fpn, heads and anchor) settings") from None
    variables = {id(v) for part in parts.values() for v in part.variables}
    variables -= {id(v) for v in excluded}
    return len(variables)
