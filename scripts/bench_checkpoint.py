"""How long does a checkpoint save block training? Sync vs async CheckpointManager.save.

Builds a tf.train.Checkpoint over ~1M float32 parameters in a few variables plus
an optimizer-sized copy (two Adam-like slots), then prints the caller's stall of
a sync save and of an async save (steady state, after the first two async saves,
which set up the host copies and trace the copy function), and the time sync()
then waits for the background write.

    python scripts/bench_checkpoint.py [--params 1000000] [--dir /tmp/bench_ckpt]
    python scripts/bench_checkpoint.py --pipeline_config_path configs/shapes_retinanet.yaml

With --pipeline_config_path the checkpoint is the trainer's own: the config's
model, its optimizer (slots created) and the input position (two integers).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from statistics import median

import tensorflow as tf

from train_lib.checkpointing import CheckpointManager, CheckpointPolicy

REPEATS = 5


def build_checkpoint(num_params: int) -> tf.train.Checkpoint:
    """Model variables of about `num_params` floats in 4 tensors, plus 2 slot copies."""
    sizes = [num_params // 2, num_params // 4, num_params // 8]
    sizes.append(num_params - sum(sizes))
    model = [tf.Variable(tf.random.normal([n]), name=f"w{i}") for i, n in enumerate(sizes)]
    slots = {f"{kind}_{i}": tf.Variable(tf.zeros_like(v)) for kind in ("m", "v")
             for i, v in enumerate(model)}
    step = tf.Variable(0, dtype=tf.int64)
    return tf.train.Checkpoint(model=model, optimizer=tf.train.Checkpoint(**slots), step=step)


def build_trainer_checkpoint(config_path: str) -> tf.train.Checkpoint:
    """The checkpoint train() writes for this config: model, optimizer, input position,
    data counts."""
    from train_lib.config import load_config
    from train_lib.data.example_checks import COUNTERS
    from train_lib.families import build_model
    from train_lib.training.optimizer import build_optimizer

    config = load_config(config_path)
    model = build_model(config.model)
    optimizer = build_optimizer(config.train_config)
    optimizer.build(model.trainable_variables)
    position = tf.Variable([0, 3 * config.train_config.batch_size], dtype=tf.int64)
    counts = tf.Variable(tf.zeros([len(COUNTERS)], tf.int64))
    return tf.train.Checkpoint(model=model, optimizer=optimizer, input_position=position,
                               data_counts=counts)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--pipeline_config_path", default=None,
                        help="measure the trainer's checkpoint for this config instead")
    args = parser.parse_args()
    root = args.dir or tempfile.mkdtemp(prefix="bench_ckpt_")
    policy = CheckpointPolicy(every_n=1, max_to_keep=2)
    quiet = lambda _: None  # noqa: E731

    if args.pipeline_config_path:
        ckpt = build_trainer_checkpoint(args.pipeline_config_path)
        print(f"checkpoint: the trainer's for {args.pipeline_config_path} in {root}")
    else:
        ckpt = build_checkpoint(args.params)
        megabytes = 3 * args.params * 4 / 1e6
        print(f"checkpoint: {3 * args.params:,} float32 ({megabytes:.1f} MB) in {root}")

    sync_manager = CheckpointManager(os.path.join(root, "sync"), ckpt, policy, log=quiet)
    timed(lambda: sync_manager.save(1, "warmup"))
    size = sum(os.path.getsize(os.path.join(root, "sync", n))
               for n in os.listdir(os.path.join(root, "sync")) if n.startswith("ckpt-1."))
    print(f"one checkpoint on disk: {size / 1e6:.1f} MB")
    stalls = [timed(lambda s=s: sync_manager.save(s, "interval")) for s in range(2, 2 + REPEATS)]
    sync_stall = median(stalls)
    print(f"sync save:           stall {sync_stall:.3f} s (median of {REPEATS})")

    async_manager = CheckpointManager(os.path.join(root, "async"), ckpt, policy,
                                      async_save=True, log=quiet)
    for step, note in ((1, "sets up the host copies"), (2, "traces the copy function")):
        stall = timed(lambda s=step: async_manager.save(s, "warmup"))
        print(f"async save #{step}:       stall {stall:.3f} s ({note}); "
              f"sync() {timed(async_manager.sync):.3f} s")
    stalls, waits = [], []
    for step in range(3, 3 + REPEATS):
        stalls.append(timed(lambda s=step: async_manager.save(s, "interval")))
        waits.append(timed(async_manager.sync))
    print(f"async save (steady): stall {median(stalls):.3f} s; sync() {median(waits):.3f} s "
          f"(medians of {REPEATS}); stall {median(stalls) / sync_stall:.0%} of a sync save's")
    async_manager.close()
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
