"""The training input stream of a run: where it resumes, and its iterator.

A checkpoint holds the input position (epoch, example) as the variable
`input_position` (see data/inputs.py for why two integers determine the stream).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import tensorflow as tf

from train_lib.config import PipelineConfig
from train_lib.data import inputs
from train_lib.training import distribute

POSITION_KEY = "input_position/.ATTRIBUTES/VARIABLE_VALUE"
DATA_COUNTS_KEY = "data_counts/.ATTRIBUTES/VARIABLE_VALUE"


def start_position(restored: str | None, start: int, examples_per_step: int,
                 log: Callable[[str], None]) -> inputs.InputPosition:
    """Where this worker's input stream resumes: the `input_position` that the
    checkpoint `restored` holds; for a checkpoint without one (written by an
    earlier version of this trainer) the position after the examples of `start`
    steps, said in one log line."""
    if restored is None:
        return inputs.InputPosition()
    reader = tf.train.load_checkpoint(restored)
    if reader.has_tensor(POSITION_KEY):
        epoch, offset = (int(v) for v in reader.get_tensor(POSITION_KEY))
        return inputs.InputPosition(epoch, offset)
    skip = start * examples_per_step
    form = ("a tf.data iterator state" if any(name.startswith("iterator/") for name in
                                              reader.get_variable_to_shape_map())
            else "no input position")
    log(f"{os.path.basename(restored)} holds {form} (written by an earlier version of "
        f"this trainer): the input continues after the {skip} examples of {start} steps, "
        "in this version's data order")
    return inputs.InputPosition(0, skip)


def restored_data_counts(restored: str | None, size: int) -> list[int]:
    """The data counts the checkpoint `restored` holds (zeros for a new run or a
    checkpoint written before they were kept). Like the position, they are read
    from the file: the restore reads the model and optimizer only."""
    if restored is None:
        return [0] * size
    reader = tf.train.load_checkpoint(restored)
    if not reader.has_tensor(DATA_COUNTS_KEY):
        return [0] * size
    counts = [int(v) for v in reader.get_tensor(DATA_COUNTS_KEY)]
    return counts if len(counts) == size else [0] * size


def train_iterator(config: PipelineConfig, files: list[str], strategy, role: distribute.Role,
                    start: inputs.InputPosition, log: Callable[[str], None]):
    """The training batches from input position `start` on: with one replica a
    plain tf.data iterator, with several tf.distribute's iterator over each
    worker's shard."""
    global_batch = config.train_config.batch_size
    if start != inputs.InputPosition():
        who, shard = ((f"{role.name} skips", "of its shard ") if role.num_workers > 1
                      else ("skipping", ""))
        log(f"input position: {who} the {start.offset} examples {shard}before the "
            f"position in epoch {start.epoch} (read, not decoded)")
    if strategy.num_replicas_in_sync == 1:
        return iter(inputs.build_train_dataset(config, files, global_batch, start=start))
    return iter(strategy.distribute_datasets_from_function(
        lambda ctx: inputs.build_train_dataset(
            config, files, ctx.get_per_replica_batch_size(global_batch), ctx, start=start)))
