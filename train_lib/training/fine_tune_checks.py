"""train_config.fine_tune_checkpoint read in full before it is used: a checkpoint
that is not one, a TF1 one, or a truncated or corrupt one is one clear error
before anything is loaded or written.

Contract:
- `resolve(path)` is fine_tune.resolve_checkpoint(path), but a directory whose
  `checkpoint` state file is not a checkpoint state (random bytes, another
  file of that name) is a ConfigError naming it, not a decoding traceback.
- `check_readable(prefix)` raises TrainError, naming the file and what to do, if
  the checkpoint's index is not one TensorFlow reads (truncated, not an index),
  if it is a TF1 name-based checkpoint (no object graph: the OD API's TF1 zoo,
  `fine_tune_checkpoint_version: V1`), or if any tensor of it cannot be read
  (a truncated or corrupt data file). It reads every tensor once. A path that is
  not a checkpoint prefix (a Keras weights file) is left to fine_tune.
"""

from __future__ import annotations

import os

import tensorflow as tf
from google.protobuf import text_format

from train_lib.config import ConfigError
from train_lib.training import fine_tune
from train_lib.training.failures import TrainError

KEY = fine_tune.KEY
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def resolve(path: str) -> str:
    """The checkpoint prefix `path` names (fine_tune.resolve_checkpoint)."""
    state = os.path.join(path, "checkpoint")
    if os.path.isdir(path) and os.path.isfile(state):
        try:
            tf.train.get_checkpoint_state(path)
        except (UnicodeDecodeError, text_format.ParseError, tf.errors.OpError) as err:
            raise ConfigError(
                f"{KEY} {path!r}: its `checkpoint` file is not a checkpoint state file "
                f"({_first_line(err)}); name a checkpoint prefix such as <dir>/ckpt-0, or a "
                "directory holding a TensorFlow checkpoint") from None
    return fine_tune.resolve_checkpoint(path)


def check_readable(prefix: str) -> None:
    """TrainError unless `prefix` is a TF2 checkpoint whose every tensor reads."""
    if not os.path.isfile(prefix + ".index"):
        return
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as err:
        raise TrainError(
            f"{KEY} {prefix} is not a readable TensorFlow checkpoint: {prefix}.index is "
            f"truncated or not a checkpoint index ({_first_line(err)}); copy or download the "
            "checkpoint again, or name another") from None
    shapes = reader.get_variable_to_shape_map()
    if OBJECT_GRAPH not in shapes:
        example = min(shapes) if shapes else "none"
        raise TrainError(
            f"{KEY} {prefix} is a TF1 name-based checkpoint (variables such as {example}, "
            "no object graph): this trainer starts, as the OD API's model_main_tf2.py, from "
            "TF2 object-based checkpoints only (fine_tune_checkpoint_version: V2); take the "
            "model's TF2 checkpoint (checkpoint/ckpt-0 of the OD API's TF2 model zoo) or "
            "one of this trainer")
    for key in sorted(shapes):
        try:
            reader.get_tensor(key)
        except (tf.errors.OpError, ValueError, IndexError) as err:  # IndexError: short read
            raise TrainError(
                f"{KEY} {prefix}: its tensor {key} cannot be read ({_first_line(err)}); the "
                "checkpoint's data file is truncated or corrupt: copy or download it "
                "again") from None
