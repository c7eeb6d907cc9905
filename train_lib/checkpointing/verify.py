"""Whether a checkpoint reads back completely, with TensorFlow but without a model."""

from __future__ import annotations

import re

import tensorflow as tf

from train_lib.checkpointing.files import missing_files

__all__ = ["short_error", "verify_checkpoint"]


def verify_checkpoint(prefix: str) -> str | None:
    """None if the checkpoint at `prefix` reads back completely, else why not.

    Checks that the index and every data shard exist, then reads (and checksums)
    every tensor with RestoreV2, also variants such as a tf.data iterator's state,
    which reader.get_tensor cannot convert. Does not compare with any model.
    """
    problem = missing_files(prefix)
    if problem is not None:
        return problem
    try:
        dtypes = tf.train.load_checkpoint(prefix).get_variable_to_dtype_map()
        with tf.device("/cpu:0"):
            for name, dtype in dtypes.items():
                tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=[name],
                                     shape_and_slices=[""], dtypes=[dtype])
    except Exception as e:  # noqa: BLE001 - any read failure means invalid
        return f"data file truncated or corrupt ({type(e).__name__}: {short_error(e)})"
    return None


def short_error(error: BaseException) -> str:
    """The first line of an error message without TensorFlow's op decorations."""
    text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", str(error)).strip()
    return text.splitlines()[0] if text else ""
