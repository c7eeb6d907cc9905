r"""How fast does training go, and what do summaries cost? Prints figures.

Runs train() for --steps steps into fresh temporary model_dirs, once without
summaries and once with them (scalars and training images every
--summary_every_n steps), and prints seconds per step for each (the first call,
which traces the graph, is excluded) and the summaries' overhead.

    python scripts/bench_train.py [--pipeline_config_path configs/shapes_retinanet.yaml] \
        [--steps 200] [--summary_every_n 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from train_lib import cli

cli.tensorflow_defaults()  # before TensorFlow is imported

from train_lib.config import load_config  # noqa: E402
from train_lib.training.trainer import train  # noqa: E402


def seconds_per_step(config, steps: int, summaries: bool) -> float:
    """Wall time per step after the first log line (the graph is traced by then)."""
    times: list[tuple[int, float]] = []

    def log(message: str) -> None:
        if message.startswith("Step "):
            times.append((int(message.split()[1]), time.monotonic()))

    with tempfile.TemporaryDirectory(prefix="bench_train_") as model_dir:
        train(config, model_dir, num_train_steps=steps, checkpoint_every_n=10 * steps,
              record_summaries=summaries, log=log)
    (first_step, first_time), (last_step, last_time) = times[0], times[-1]
    return (last_time - first_time) / (last_step - first_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline_config_path", default="configs/shapes_retinanet.yaml")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--summary_every_n", type=int, default=20)
    args = parser.parse_args()
    override = (f"{{train_config: {{log_every_n: {args.summary_every_n}, "
                f"summary_every_n: {args.summary_every_n}}}, "
                "eval_config: {eval_at_end: false}}")  # training steps alone
    config = load_config(args.pipeline_config_path, override)
    plain = seconds_per_step(config, args.steps, summaries=False)
    with_summaries = seconds_per_step(config, args.steps, summaries=True)
    batch = config.train_config.batch_size
    print(f"config: {args.pipeline_config_path}, batch {batch}, {args.steps} steps")
    print(f"without summaries: {plain:.3f} s/step ({batch / plain:.1f} images/s)")
    print(f"with summaries every {args.summary_every_n} steps: {with_summaries:.3f} s/step "
          f"({batch / with_summaries:.1f} images/s)")
    print(f"summary overhead: {100 * (with_summaries / plain - 1):+.1f}%")


if __name__ == "__main__":
    main()
