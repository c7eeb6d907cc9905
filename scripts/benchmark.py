r"""How fast is this driver, against Model Garden's own trainer and the bare loop?

One command, one machine, one run; prints a table (and, with --json, the figures
as JSON on stdout or into a file):

    .venv/bin/python scripts/benchmark.py [--pipeline_config_path configs/shapes_retinanet.yaml] \
        [--steps 400] [--json [benchmark.json]]

1. this driver (model_main_tf2.py, a subprocess) on the config for --steps steps:
   steady steps/s and images/s (median of its log intervals, the first, which
   holds the tracing, left out) and the whole process's wall time;
2. Model Garden's trainer (`python -m official.vision.train
   --experiment=retinanet_resnetfpn_coco --mode=train`, Orbit) on an experiment
   config written for the same model, anchors, losses, optimizer and schedule,
   batch and TFRecords (its defaults otherwise: 100 steps per loop and summaries
   every 100; checkpoints every --checkpoint_every_n as ours): the same figures;
3. the bare limit: the same model's forward + backward + apply in a tf.function
   while-loop over (a) this driver's input pipeline and (b) one constant batch,
   and where (b)'s time goes: the forward pass alone, forward + backward, and the
   optimizer's apply alone on fixed gradients;
4. the input pipeline alone, images/s, against what training consumes: with
   the records decoded once in memory (as training has them when they fit in
   train_input_reader.decoded_cache_mb) and decoding each image as it is read;
5. one save's stall, sync and async, and the checkpoint's size;
6. process start to the end of the first step, fresh and on resume.

JSON ratios: `ratio_vs_model_garden` (steady steps/s, ours over theirs),
`ratio_vs_model_garden_wall` (their whole-process time over ours: above 1 when
ours finishes first), `ratio_vs_bare_constant` (ours over the constant-batch
loop), `async_stall_ratio` (async stall over sync stall).

Our driver and the bare loops run with the driver's TensorFlow settings
(cli.tensorflow_defaults: oneDNN's kernels on x86-64); Model Garden's trainer in
the environment the benchmark was started in, as a user would run it (set
TF_ENABLE_ONEDNN_OPTS=1 to give it oneDNN's kernels too). The first line says
which each had.

Figures are wall clock: on a machine shared with other work they are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from statistics import median

from train_lib import cli

# Model Garden's trainer runs in the user's environment, without our defaults.
USER_ONEDNN = os.environ.get(cli.ONEDNN)
cli.tensorflow_defaults()  # before TensorFlow is imported, as the driver does

import tensorflow as tf  # noqa: E402

from train_lib import families  # noqa: E402
from train_lib.bench import processes  # noqa: E402
from train_lib.checkpointing import CheckpointManager, CheckpointPolicy  # noqa: E402
from train_lib.config import load_config  # noqa: E402
from train_lib.data import decoded_cache, example_checks, inputs  # noqa: E402
from train_lib.training import graph_optimization, workdir  # noqa: E402
from train_lib.training.optimizer import build_optimizer  # noqa: E402

REPEATS = 3


def _rate(count: int, fn) -> float:
    began = time.perf_counter()
    fn()
    return count / (time.perf_counter() - began)


def training_cache(config, files: list[str]) -> decoded_cache.DecodedCache | None:
    """The decoded cache training builds for one input pipeline (or None, as training
    would have none)."""
    return decoded_cache.build(config, files, None, lambda m: print(m, file=sys.stderr))


def input_pipeline(config, files: list[str], batches: int,
                   cache: decoded_cache.DecodedCache | None) -> float:
    """Images/s of the training input pipeline alone (after 10 warm-up batches),
    its records looked up in `cache` or, without one, read and decoded."""
    iterator = iter(inputs.build_train_dataset(config, files, cache=cache))
    for _ in range(10):
        next(iterator)
    batch = config.train_config.batch_size

    def take() -> None:
        for _ in range(batches):
            next(iterator)
    return batch * _rate(batches, take)


def bare_loops(config, files: list[str], steps: int,
               cache: decoded_cache.DecodedCache | None) -> tuple[dict, tf.train.Checkpoint]:
    """Steps/s of the same model in a tf.function while-loop (no hooks, no position,
    no checks): the whole step (forward + backward + apply) over the input pipeline
    and over one constant batch; over that constant batch, the forward pass alone
    and forward + backward without the apply (where a step's time goes); and the
    optimizer's apply alone, on fixed gradients. The partial loops run one step at a
    time (parallel_iterations 1): writing no variable, their steps could otherwise
    overlap, which a training step's cannot (each reads the last one's update).
    Each the median of REPEATS calls of `steps` steps after a traced first call,
    the loops' calls taken in turn.
    Returns the figures and a checkpoint of that model and optimizer."""
    tf.keras.utils.set_random_seed(config.train_config.seed)
    model = families.build_model(config.model)
    optimizer = build_optimizer(config.train_config)
    optimizer.build(model.trainable_variables)
    variables = model.trainable_variables

    def gradients(images, labels):
        with tf.GradientTape() as tape:
            outputs = families.train_outputs(config.model, model, images, labels)
            regularization = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
            normalizers = families.loss_normalizers(config.model, labels)  # one replica
            loss = families.compute_losses(config.model, outputs, labels, normalizers,
                                           regularization)["total_loss"]
        return loss, tape

    def step(images, labels, part):
        loss, tape = gradients(images, labels)
        if part == "forward":
            return loss
        pairs = [(g, v) for g, v in zip(tape.gradient(loss, variables), variables, strict=True)
                 if g is not None]
        if part == "forward_backward":  # the gradients are used, so they are computed
            return loss + 0.0 * tf.add_n([tf.reduce_sum(g) for g, _ in pairs])
        optimizer.apply_gradients(pairs)
        return loss

    def make_loop(body_step, parallel):
        @tf.function(autograph=False)
        def loop(num_steps):
            def body(i, _):
                return i + 1, body_step()
            return tf.while_loop(lambda i, _: i < num_steps, body,
                                 (tf.constant(0), tf.constant(0.0)),
                                 parallel_iterations=parallel)[1]
        return loop

    iterator = iter(inputs.build_train_dataset(config, files, cache=cache))
    constant_images, constant_labels, _, _ = next(iterator)
    loss, tape = gradients(constant_images, constant_labels)
    fixed = [(tf.constant(g), v) for g, v in zip(tape.gradient(loss, variables), variables,
                                                 strict=True) if g is not None]

    def apply_alone():
        optimizer.apply_gradients(fixed)
        return tf.constant(0.0)
    loops = {
        "pipeline": make_loop(lambda: step(*next(iterator)[:2], "step"), 10),
        "constant": make_loop(lambda: step(constant_images, constant_labels, "step"), 10),
        "forward_backward": make_loop(
            lambda: step(constant_images, constant_labels, "forward_backward"), 1),
        "forward": make_loop(lambda: step(constant_images, constant_labels, "forward"), 1),
        "apply": make_loop(apply_alone, 1),
    }
    tf.get_logger().setLevel("ERROR")  # not 'retracing': five loops, five functions
    for loop in loops.values():
        loop(tf.constant(5)).numpy()  # traces and warms up
    # Round-robin repeats: a drift of the machine's speed then touches every loop
    # alike.
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(REPEATS):
        for name, loop in loops.items():
            rates[name].append(_rate(steps, lambda f=loop: f(tf.constant(steps)).numpy()))
    results = {name: median(values) for name, values in rates.items()}
    position = tf.Variable([0, 0], dtype=tf.int64, name="input_position")
    counts = tf.Variable(tf.zeros([len(example_checks.COUNTERS)], tf.int64))
    return results, tf.train.Checkpoint(model=model, optimizer=optimizer,
                                        input_position=position, data_counts=counts)


def save_stall(checkpoint: tf.train.Checkpoint, root: str) -> dict:
    """The caller's stall of one sync save and one async save (medians of REPEATS,
    after warm-up saves) and the checkpoint's size on disk."""
    policy = CheckpointPolicy(every_n=1, max_to_keep=2)

    def quiet(_: str) -> None:
        pass

    def timed(fn) -> float:
        began = time.perf_counter()
        fn()
        return time.perf_counter() - began

    sync_dir, async_dir = os.path.join(root, "sync"), os.path.join(root, "async")
    sync_manager = CheckpointManager(sync_dir, checkpoint, policy, log=quiet)
    sync_manager.save(1, "warmup")
    size = sum(os.path.getsize(os.path.join(sync_dir, n)) for n in os.listdir(sync_dir)
               if n.startswith("ckpt-1."))
    sync = median(timed(lambda s=s: sync_manager.save(s, "interval"))
                  for s in range(2, 2 + REPEATS))
    async_manager = CheckpointManager(async_dir, checkpoint, policy, async_save=True,
                                      log=quiet)
    for s in (1, 2):  # sets up the host copies, then traces the copy function
        async_manager.save(s, "warmup")
        async_manager.sync()
    stalls = []
    for s in range(3, 3 + REPEATS):
        stalls.append(timed(lambda s=s: async_manager.save(s, "interval")))
        async_manager.sync()
    async_manager.close()
    return {"sync_s": sync, "async_s": median(stalls), "size_mb": size / 1e6}


def _step_parts(bare: dict) -> list[tuple[str, float]]:
    """Where the constant-batch step's time goes: (part, milliseconds), from the
    loops that stop after the forward pass and after the backward pass, and the
    apply alone. Each is timed alone, so they need not add up to the step (whose
    ops overlap a little with one another)."""
    forward, backward, apply = (1000 / bare[k] for k in (
        "forward", "forward_backward", "apply"))
    return [("forward pass", forward), ("backward pass", backward - forward),
            ("optimizer apply", apply)]


def _table(r: dict) -> str:
    ours, mg, bare = r["ours"], r["model_garden"], r["bare"]
    batch = r["batch_size"]
    rows = [
        ("this driver, steady", f"{ours['steps_per_sec']:.2f} steps/s",
         f"{ours['steps_per_sec'] * batch:.0f} images/s"),
        ("Model Garden trainer, steady", f"{mg['steps_per_sec']:.2f} steps/s",
         f"{mg['steps_per_sec'] * batch:.0f} images/s"),
        (f"whole process, {ours['steps']} steps", f"ours {ours['wall_s']:.0f} s",
         f"Model Garden {mg['wall_s']:.0f} s"),
        ("bare loop, our input pipeline", f"{bare['pipeline']:.2f} steps/s", ""),
        ("bare loop, one constant batch", f"{bare['constant']:.2f} steps/s",
         f"{1000 / bare['constant']:.0f} ms a step"),
        *((f"  {what}", f"{ms:.0f} ms", f"{ms * bare['constant'] / 1000:.0%} of the step")
          for what, ms in _step_parts(bare)),
        ("input pipeline alone", f"{r['input_images_per_sec']:.0f} images/s",
         f"training takes {ours['steps_per_sec'] * batch:.0f} "
         f"({ours['steps_per_sec'] * batch / r['input_images_per_sec']:.0%} of it)"),
        ("  decoding each image as read", f"{r['input_images_per_sec_decoding']:.0f} images/s",
         "(train_input_reader.decoded_cache_mb: 0)"),
        (f"save stall ({r['save']['size_mb']:.1f} MB checkpoint)",
         f"sync {r['save']['sync_s']:.3f} s", f"async {r['save']['async_s']:.3f} s"),
        ("start to first step", f"fresh {r['start']['fresh_s']:.1f} s",
         f"resume {r['start']['resume_s']:.1f} s"),
    ]
    width = max(len(row[0]) for row in rows)
    lines = [f"{a:<{width}}  {b:<18} {c}" for a, b, c in rows]
    ratios = (f"ratios: ours/Model Garden steady {r['ratio_vs_model_garden']:.3f}, wall "
              f"{r['ratio_vs_model_garden_wall']:.3f}; ours/bare constant "
              f"{r['ratio_vs_bare_constant']:.3f}; async/sync stall "
              f"{r['async_stall_ratio']:.3f}")
    return "\n".join([*lines, ratios])


def _onednn(value: str | None) -> str:
    return "unset (TensorFlow's default)" if value is None else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline_config_path", default="configs/shapes_retinanet.yaml")
    parser.add_argument("--steps", type=int, default=400,
                        help="training steps of each whole run (ours and Model Garden's)")
    parser.add_argument("--bare_steps", type=int, default=30,
                        help="steps per timed call of the bare loops")
    parser.add_argument("--checkpoint_every_n", type=int, default=1000)
    parser.add_argument("--json", nargs="?", const="-", default=None,
                        help="also write the figures as JSON (to stdout, or to this file)")
    args = parser.parse_args()
    # The warning the driver hides too (its FPN is given a level it does not use).
    warnings.filterwarnings("ignore", message=cli.IGNORED_WARNING, category=UserWarning)
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    config = load_config(args.pipeline_config_path)
    # The bare loops run as the driver's step does: with grappler or without.
    grappler = graph_optimization.apply(config.train_config.graph_optimization)
    files = workdir.train_files(config, lambda m: print(m, file=sys.stderr))
    root = tempfile.mkdtemp(prefix="benchmark_")
    config_path = os.path.abspath(args.pipeline_config_path)

    def note(what: str) -> None:
        print(f"[{time.monotonic() - began:5.0f} s] {what}", file=sys.stderr, flush=True)

    try:
        note(f"this driver, {args.steps} steps")
        ours = processes.our_training(config_path, os.path.join(root, "ours"),
                                            args.steps, args.checkpoint_every_n)
        note(f"Model Garden's trainer, {args.steps} steps")
        mg = processes.model_garden_training(
            config, files, root, args.steps, args.checkpoint_every_n,
            unset=(cli.ONEDNN,) if USER_ONEDNN is None else ())
        note("start to first step, fresh and resumed")
        start = processes.start_to_first_step(config_path, os.path.join(root, "start"))
        note("input pipeline alone, from the decoded cache and from the files")
        cache = training_cache(config, files)
        images_per_sec = input_pipeline(config, files, 4 * args.bare_steps // 2, cache)
        uncached_per_sec = input_pipeline(config, files, 4 * args.bare_steps // 2, None)
        note("bare loops")
        bare, checkpoint = bare_loops(config, files, args.bare_steps, cache)
        note("save stall")
        save = save_stall(checkpoint, os.path.join(root, "saves"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = {
        "config": args.pipeline_config_path, "batch_size": config.train_config.batch_size,
        "grappler": grappler,
        "onednn": {"ours": os.environ.get(cli.ONEDNN), "model_garden": USER_ONEDNN},
        "load_average_1m": [load_before, os.getloadavg()[0]], "cpus": os.cpu_count(),
        "ours": ours, "model_garden": {k: v for k, v in mg.items() if k != "config_file"},
        "bare": bare, "input_images_per_sec": images_per_sec,
        "input_images_per_sec_decoding": uncached_per_sec, "decoded_cache": cache is not None,
        "save": save, "start": start,
        "ratio_vs_model_garden": ours["steps_per_sec"] / mg["steps_per_sec"],
        "ratio_vs_model_garden_wall": mg["wall_s"] / ours["wall_s"],
        "ratio_vs_bare_constant": ours["steps_per_sec"] / bare["constant"],
        "async_stall_ratio": save["async_s"] / save["sync_s"],
        "benchmark_wall_s": time.monotonic() - began,
    }
    print(f"{args.pipeline_config_path}, batch {results['batch_size']}, {os.cpu_count()} CPUs, "
          f"grappler {'on' if grappler else 'off'} (ours), "
          f"TF_ENABLE_ONEDNN_OPTS {_onednn(os.environ.get(cli.ONEDNN))} (ours) and "
          f"{_onednn(USER_ONEDNN)} (Model Garden), "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; took "
          f"{results['benchmark_wall_s']:.0f} s")
    print(_table(results))
    if args.json == "-":
        print(json.dumps(results, indent=2))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
