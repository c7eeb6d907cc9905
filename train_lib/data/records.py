"""The serialized records of an input pipeline: which files, in which order.

Every element is `(filename, record index in that file, serialized record)`, so
any check can name the record it failed on. `records` reads a pipeline's files
in file order (evaluation) or permuted by a seed; `epoch_records` is one epoch of
the training stream, whose order depends on (seed, epoch) alone (see inputs.py
for why that makes the input position two integers).
"""

from __future__ import annotations

import tensorflow as tf

# Epoch e's shuffles are seeded by seed * _EPOCH_SEED_STRIDE + e.
_EPOCH_SEED_STRIDE = 1_000_003


def _pipeline_files(files: list[str], input_context) -> tuple[list[str], bool]:
    """This input pipeline's files, and whether its records must still be sharded
    (fewer files than pipelines: each pipeline takes every n-th record instead)."""
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    if num_pipelines > 1 and len(files) >= num_pipelines:
        return files[pipeline_id::num_pipelines], False
    return files, num_pipelines > 1


def _read(files_ds: tf.data.Dataset, num_files: int) -> tf.data.Dataset:
    """(filename, record index, serialized record) of the files in `files_ds`,
    interleaved."""
    return files_ds.interleave(
        lambda f: tf.data.TFRecordDataset(f).enumerate().map(lambda i, r: (f, i, r)),
        cycle_length=min(num_files, 4),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def records(files: list[str], input_context, order_seed: tf.Tensor | None = None
            ) -> tf.data.Dataset:
    """(filename, record index, serialized record), sharded per input pipeline: in
    file order, or with this pipeline's files permuted by (order_seed, their count)."""
    own, shard_records = _pipeline_files(files, input_context)
    names = tf.constant(own)
    if order_seed is not None:
        key = tf.stack([order_seed, tf.constant(len(own), tf.int64)])
        names = tf.gather(names, tf.argsort(tf.random.stateless_uniform([len(own)],
                                                                        seed=key)))
    ds = _read(tf.data.Dataset.from_tensor_slices(names), len(own))
    if shard_records:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return ds


def epoch_records(files: list[str], seed: int, shuffle_buffer_size: int, input_context,
                  epoch: tf.Tensor) -> tf.data.Dataset:
    """Epoch `epoch` of this pipeline's records as (filename, record index, record,
    epoch, index in epoch), in an order seeded by (seed, epoch) alone."""
    epoch_seed = tf.constant(seed, tf.int64) * _EPOCH_SEED_STRIDE + epoch
    ds = records(files, input_context, order_seed=epoch_seed)
    ds = ds.shuffle(shuffle_buffer_size, seed=epoch_seed, reshuffle_each_iteration=False)
    return ds.enumerate().map(lambda index, rec: (rec[0], rec[1], rec[2], epoch, index))
