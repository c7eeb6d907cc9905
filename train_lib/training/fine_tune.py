"""train_config.fine_tune_checkpoint: the starting weights of a run whose model_dir
has no checkpoint yet (a resume always uses model_dir's own checkpoints).

Contract:
- `resolve_checkpoint(path)` is the checkpoint prefix `path` names: a prefix, or
  a directory whose newest checkpoint is taken. ConfigError naming the key if neither.
- `apply(model, prefix, kind)` loads into `model`, as the OD API's types do:
  `backbone` the backbone alone, from this trainer's checkpoints (`model/_backbone`)
  or Model Garden's backbone checkpoints (`backbone`); `detection` the whole
  detector but its class output layer (backbone, FPN, head towers, box
  regressor), so the number of classes may change. Every variable of those parts
  must be in the checkpoint with its shape, else TrainError says which part
  does not fit. The optimizer and the step start fresh.
"""

from __future__ import annotations

import os

import tensorflow as tf

from train_lib.config import ConfigError
from train_lib.training.failures import TrainError

KEY = "train_config.fine_tune_checkpoint"
# RetinaNet head parts that do not depend on the number of classes.
HEAD_PARTS = ("_cls_convs", "_cls_norms", "_box_convs", "_box_norms", "_box_regressor")


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
    ours = any(n.startswith("model/_backbone/") for n in names)
    if kind == "backbone":
        parts = {"backbone": model.backbone}
        if ours:
            target = tf.train.Checkpoint(model=tf.train.Checkpoint(_backbone=model.backbone))
        elif any(n.startswith("backbone/") for n in names):
            target = tf.train.Checkpoint(backbone=model.backbone)
        else:
            raise TrainError(f"{KEY} {prefix} holds no backbone (neither model/_backbone "
                             "nor backbone); name a checkpoint of this trainer or a Model "
                             "Garden backbone checkpoint")
    else:
        if not ours:
            raise TrainError(f"{KEY} {prefix} is not a detector checkpoint of this trainer "
                             "(no model/_backbone); use fine_tune_checkpoint_type: backbone "
                             "for a backbone-only checkpoint")
        head = {part: getattr(model.head, part) for part in HEAD_PARTS}
        parts = {"backbone": model.backbone, "decoder": model.decoder, "head": model.head}
        target = tf.train.Checkpoint(model=tf.train.Checkpoint(
            _backbone=model.backbone, _decoder=model.decoder,
            _head=tf.train.Checkpoint(**head)))
    try:
        target.read(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise TrainError(
            f"{KEY} {prefix} does not fit this model's {' and '.join(parts)} ({first}); it "
            "must come from a model with the same model.backbone (and, for detection, "
            "fpn, head and anchor) settings") from None
    variables = {id(v) for part in parts.values() for v in part.variables}
    if kind == "detection":
        variables -= {id(v) for v in model.head._classifier.variables}
    return len(variables)
