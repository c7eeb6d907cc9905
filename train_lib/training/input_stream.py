"""The training input stream of a run: where it resumes, and its iterator.

A checkpoint holds the input position (epoch, example) as the variable
`input_position` (see data/inputs.py for why two integers determine the stream).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import tensorflow as tf

from train_lib.config import PipelineConfig
from train_lib.data import decoded_cache, inputs
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


class CacheBuild:
    """This worker's decoded cache (data/decoded_cache.py), built on a thread from
    construction on, so that decoding overlaps building the model and restoring
    it. A context manager: leaving it (a run that ends, or fails, before it needs
    the cache) stops the build and joins the thread."""

    def __init__(self, config: PipelineConfig, files: list[str], role: distribute.Role,
                 log: Callable[[str], None]):
        # The input context tf.distribute gives this worker's one input pipeline.
        self.pipelines = (role.num_workers, role.worker_index)
        context = (tf.distribute.InputContext(role.num_workers, role.worker_index)
                   if role.num_workers > 1 else None)
        self._stop = threading.Event()
        self._cache = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._cache = decoded_cache.build(config, files, context, log, self._stop)
            except BaseException as err:  # re-raised by result(), on the caller's thread
                self._error = err
        self._thread = threading.Thread(target=run, name="decoded-cache", daemon=True)
        self._thread.start()

    def result(self) -> decoded_cache.DecodedCache | None:
        """The cache (None when there is none), once it is built."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._cache

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> CacheBuild:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def train_iterator(config: PipelineConfig, files: list[str], strategy, role: distribute.Role,
                   start: inputs.InputPosition, log: Callable[[str], None],
                   cache: CacheBuild):
    """The training batches from input position `start` on: with one replica a
    plain tf.data iterator, with several tf.distribute's iterator over each
    worker's shard; the records looked up in `cache` when it holds them."""
    global_batch = config.train_config.batch_size
    if start != inputs.InputPosition():
        who, shard = ((f"{role.name} skips", "of its shard ") if role.num_workers > 1
                      else ("skipping", ""))
        log(f"input position: {who} the {start.offset} examples {shard}before the "
            f"position in epoch {start.epoch} (read, not decoded)")

    def dataset(batch_size: int, context: tf.distribute.InputContext | None):
        pipelines = ((context.num_input_pipelines, context.input_pipeline_id) if context
                     else (1, 0))
        records = (cache.result() if pipelines == cache.pipelines
                   else decoded_cache.build(config, files, context, log))  # another pipeline
        return inputs.build_train_dataset(config, files, batch_size, context, start, records)

    if strategy.num_replicas_in_sync == 1:
        return iter(dataset(global_batch, None))
    return iter(strategy.distribute_datasets_from_function(
        lambda ctx: dataset(ctx.get_per_replica_batch_size(global_batch), ctx)))
