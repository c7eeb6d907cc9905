"""The records of an input pipeline: which files, in which order.

Every element is `(filename, record index in that file, serialized record)`, so
any check can name the record it failed on. `records` reads a pipeline's files
in file order (evaluation) or permuted by a seed; `epoch_records` is one epoch of
the training stream, whose order depends on (seed, epoch) alone (see inputs.py
for why that makes the input position two integers). `epoch_indices` is the same
epoch as (file position, record index) pairs, for records already decoded in
memory (decoded_cache.py): it reads no file, and its order is `epoch_records`'
element for element, since interleave and shuffle orders depend only on how many
records each file holds, never on what they hold.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

# Epoch e's shuffles are seeded by seed * _EPOCH_SEED_STRIDE + e.
_EPOCH_SEED_STRIDE = 1_000_003


def options() -> tf.data.Options:
    """The options of every dataset of records: deterministic, and accepted under op
    determinism (--deterministic), which rejects the fused MapAndBatch kernel."""
    opts = tf.data.Options()
    opts.deterministic = True
    opts.experimental_optimization.map_and_batch_fusion = False
    return opts


def pipeline_files(files: list[str], input_context) -> tuple[list[str], bool]:
    """This input pipeline's files, and whether its records must still be sharded
    (fewer files than pipelines: each pipeline takes every n-th record instead)."""
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    if num_pipelines > 1 and len(files) >= num_pipelines:
        return files[pipeline_id::num_pipelines], False
    return files, num_pipelines > 1


def _in_order(num_files: int, per_file: Callable[[tf.Tensor], tf.data.Dataset],
              record_shard, order_seed: tf.Tensor | None) -> tf.data.Dataset:
    """`per_file(position)`'s elements for the positions 0..num_files-1 of this
    pipeline's files: in that order, or permuted by (order_seed, num_files);
    interleaved, and sharded by record for the input context `record_shard` (None
    when `pipeline_files` says the records need no sharding)."""
    positions = tf.range(num_files, dtype=tf.int64)
    if order_seed is not None:
        key = tf.stack([order_seed, tf.constant(num_files, tf.int64)])
        positions = tf.gather(positions, tf.argsort(
            tf.random.stateless_uniform([num_files], seed=key)))
    ds = tf.data.Dataset.from_tensor_slices(positions).interleave(
        per_file, cycle_length=min(num_files, 4), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)
    if record_shard is not None:
        ds = ds.shard(record_shard.num_input_pipelines, record_shard.input_pipeline_id)
    return ds


def records(files: list[str], input_context, order_seed: tf.Tensor | None = None
            ) -> tf.data.Dataset:
    """(filename, record index, serialized record), sharded per input pipeline: in
    file order, or with this pipeline's files permuted by (order_seed, their count)."""
    own, shard_records = pipeline_files(files, input_context)
    names = tf.constant(own)

    def read(position):
        name = tf.gather(names, position)
        return tf.data.TFRecordDataset(name).enumerate().map(lambda i, r: (name, i, r))
    return _in_order(len(own), read, input_context if shard_records else None, order_seed)


def _epoch(ds: tf.data.Dataset, shuffle_buffer_size: int, epoch: tf.Tensor,
           order_seed: tf.Tensor) -> tf.data.Dataset:
    ds = ds.shuffle(shuffle_buffer_size, seed=order_seed, reshuffle_each_iteration=False)
    return ds.enumerate().map(lambda index, element: (*element, epoch, index))


def _epoch_seed(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    return tf.constant(seed, tf.int64) * _EPOCH_SEED_STRIDE + epoch


def epoch_records(files: list[str], seed: int, shuffle_buffer_size: int, input_context,
                  epoch: tf.Tensor) -> tf.data.Dataset:
    """Epoch `epoch` of this pipeline's records as (filename, record index, record,
    epoch, index in epoch), in an order seeded by (seed, epoch) alone."""
    order_seed = _epoch_seed(seed, epoch)
    return _epoch(records(files, input_context, order_seed), shuffle_buffer_size, epoch,
                  order_seed)


def epoch_indices(record_counts: list[int], shard_records: bool, seed: int,
                  shuffle_buffer_size: int, input_context, epoch: tf.Tensor
                  ) -> tf.data.Dataset:
    """`epoch_records`' epoch as (file position in `pipeline_files`, record index,
    epoch, index in epoch), for a pipeline whose own files hold `record_counts`
    records each (`shard_records` as `pipeline_files` returns it). Reads no file."""
    order_seed = _epoch_seed(seed, epoch)
    counts = tf.constant(record_counts, tf.int64)

    def indices(position):
        return tf.data.Dataset.range(tf.gather(counts, position)).map(
            lambda i: (position, i))
    ds = _in_order(len(record_counts), indices, input_context if shard_records else None,
                   order_seed)
    return _epoch(ds, shuffle_buffer_size, epoch, order_seed)
