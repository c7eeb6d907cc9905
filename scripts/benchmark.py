r"""How fast is this driver, against Model Garden's own trainer and the bare loop?

One command, one machine; prints a table (and, with --json, the figures as JSON on
stdout or into a file):

    .venv/bin/python scripts/benchmark.py [--pipeline_config_path configs/shapes_retinanet.yaml] \
        [--rounds 3] [--steps 400] [--quick] [--json [benchmark.json]]

Every figure below is taken once per round, the parts interleaved within a round
(ours, Model Garden, the start-ups, the bare loops, the input pipeline, the saves),
so that a drift of the machine's speed touches them alike; the table gives each
figure's median over the rounds and its spread (lowest and highest), and each ratio
is taken within a round before its median. --quick: 200-step runs logged every 50
steps and 10-step bare loop calls, about half the time.

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
6. start-up: a bare `python -c "import tensorflow"` (the floor); process start to
   the end of training's first step, fresh and on resume; to an evaluation's first
   metrics (model_main_tf2.py --checkpoint_dir); to an export's SavedModel
   (exporter_main_v2.py).

JSON ratios: `ratio_vs_model_garden` (steady steps/s, ours over theirs),
`ratio_vs_model_garden_wall` (their whole-process time over ours: above 1 when
ours finishes first), `ratio_vs_bare_constant` (ours over the constant-batch
loop), `async_stall_ratio` (async stall over sync stall), `start_ratio` (fresh start to
the first step over the bare TensorFlow import).

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
# What the driver's defaults set that the user had not: the bare `import tensorflow`
# runs without them, as a user's would.
DRIVER_SET = tuple(name for name in (cli.ONEDNN, cli.LEGACY_KERAS, cli.CPP_LOG_LEVEL)
                   if name not in os.environ)
cli.tensorflow_defaults()  # before TensorFlow is imported, as the driver does

import tensorflow as tf  # noqa: E402

from train_lib import families  # noqa: E402
from train_lib.bench import processes  # noqa: E402
from train_lib.bench import rounds as rounds_lib  # noqa: E402
from train_lib.checkpointing import CheckpointManager, CheckpointPolicy  # noqa: E402
from train_lib.config import load_config  # noqa: E402
from train_lib.data import decoded_cache, example_checks, inputs  # noqa: E402
from train_lib.training import graph_optimization, workdir  # noqa: E402
from train_lib.training.optimizer import build_optimizer  # noqa: E402

REPEATS = 2  # timed calls of each bare loop, and saves, per round


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


def bare_loops(config, files: list[str],
               cache: decoded_cache.DecodedCache | None) -> tuple[dict, tf.train.Checkpoint]:
    """Steps/s of the same model in a tf.function while-loop (no hooks, no position,
    no checks): the whole step (forward + backward + apply) over the input pipeline
    and over one constant batch; over that constant batch, the forward pass alone
    and forward + backward without the apply (where a step's time goes); and the
    optimizer's apply alone, on fixed gradients. The partial loops run one step at a
    time (parallel_iterations 1): writing no variable, their steps could otherwise
    overlap, which a training step's cannot (each reads the last one's update).
    Returns the loops, traced and warmed up (`time_bare_loops` times them), and a
    checkpoint of that model and optimizer."""
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
    position = tf.Variable([0, 0], dtype=tf.int64, name="input_position")
    counts = tf.Variable(tf.zeros([len(example_checks.COUNTERS)], tf.int64))
    return loops, tf.train.Checkpoint(model=model, optimizer=optimizer,
                                      input_position=position, data_counts=counts)


def time_bare_loops(loops: dict, steps: int) -> dict:
    """Steps/s of each traced bare loop: the median of REPEATS calls of `steps` steps,
    the loops' calls taken in turn (a drift of the machine's speed touches all)."""
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(REPEATS):
        for name, loop in loops.items():
            rates[name].append(_rate(steps, lambda f=loop: f(tf.constant(steps)).numpy()))
    return {name: median(values) for name, values in rates.items()}


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


def _step_parts(bare: dict) -> dict[str, float]:
    """Where the constant-batch step's time goes, in milliseconds: from the loops that
    stop after the forward pass and after the backward pass, and the apply alone.
    Each is timed alone, so they need not add up to the step (whose ops overlap a
    little with one another)."""
    forward, backward, apply = (1000 / bare[k] for k in (
        "forward", "forward_backward", "apply"))
    return {"forward_ms": forward, "backward_ms": backward - forward, "apply_ms": apply}


def one_round(args, config, files: list[str], config_path: str, root: str, loops: dict,
              checkpoint: tf.train.Checkpoint, cache, note) -> dict[str, float]:
    """Every figure once (a flat dict), the parts one after the other."""
    batch = config.train_config.batch_size
    interval = 50 if args.quick else None  # our log lines and Model Garden's loops
    note(f"this driver, {args.steps} steps")
    ours = processes.our_training(config_path, os.path.join(root, "ours"), args.steps,
                                  args.checkpoint_every_n, interval)
    note(f"Model Garden's trainer, {args.steps} steps")
    mg = processes.model_garden_training(
        config, files, root, args.steps, args.checkpoint_every_n,
        unset=(cli.ONEDNN,) if USER_ONEDNN is None else (), steps_per_loop=interval or 100)
    note("start-up: import tensorflow, training fresh and resumed, evaluation, export")
    bare_import = processes.import_tensorflow(unset=DRIVER_SET)
    start_dir = os.path.join(root, "start")
    start = processes.start_to_first_step(config_path, start_dir)
    evaluation = processes.start_to_evaluation(start_dir, os.path.join(root, "start_eval"))
    export = processes.start_to_export(start_dir, os.path.join(root, "start_export"))
    note("bare loops")
    bare = time_bare_loops(loops, args.bare_steps)
    note("input pipeline alone, from the decoded cache and from the files")
    pipeline_batches = 2 * args.bare_steps
    images_per_sec = input_pipeline(config, files, pipeline_batches, cache)
    uncached_per_sec = input_pipeline(config, files, pipeline_batches, None)
    note("save stall")
    save = save_stall(checkpoint, os.path.join(root, "saves"))
    for name in ("ours", "model_garden", "saves"):
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    figures = {
        "ours_steps_per_sec": ours["steps_per_sec"], "ours_wall_s": ours["wall_s"],
        "mg_steps_per_sec": mg["steps_per_sec"], "mg_wall_s": mg["wall_s"],
        **{f"bare_{name}": rate for name, rate in bare.items()}, **_step_parts(bare),
        "input_images_per_sec": images_per_sec,
        "input_images_per_sec_decoding": uncached_per_sec,
        "save_sync_s": save["sync_s"], "save_async_s": save["async_s"],
        "checkpoint_mb": save["size_mb"],
        "import_tensorflow_s": bare_import, "start_fresh_s": start["fresh_s"],
        "start_resume_s": start["resume_s"], "start_eval_s": evaluation,
        "start_export_s": export,
    }
    figures.update({
        "ratio_vs_model_garden": ours["steps_per_sec"] / mg["steps_per_sec"],
        "ratio_vs_model_garden_wall": mg["wall_s"] / ours["wall_s"],
        "ratio_vs_bare_constant": ours["steps_per_sec"] / bare["constant"],
        "async_stall_ratio": save["async_s"] / save["sync_s"],
        "start_ratio": start["fresh_s"] / bare_import,
        "input_share": ours["steps_per_sec"] * batch / images_per_sec,
    })
    return figures


# (figure, row label, format, unit) in the table's order.
ROWS = [
    ("ours_steps_per_sec", "this driver, steady", "{:.2f}", "steps/s"),
    ("mg_steps_per_sec", "Model Garden trainer, steady", "{:.2f}", "steps/s"),
    ("ours_wall_s", "this driver, whole process", "{:.0f}", "s"),
    ("mg_wall_s", "Model Garden, whole process", "{:.0f}", "s"),
    ("bare_pipeline", "bare loop, our input pipeline", "{:.2f}", "steps/s"),
    ("bare_constant", "bare loop, one constant batch", "{:.2f}", "steps/s"),
    ("forward_ms", "  forward pass", "{:.0f}", "ms"),
    ("backward_ms", "  backward pass", "{:.0f}", "ms"),
    ("apply_ms", "  optimizer apply", "{:.1f}", "ms"),
    ("input_images_per_sec", "input pipeline alone", "{:.0f}", "images/s"),
    ("input_images_per_sec_decoding", "  decoding each image as read", "{:.0f}", "images/s"),
    ("save_sync_s", "save stall, sync", "{:.3f}", "s"),
    ("save_async_s", "save stall, async", "{:.3f}", "s"),
    ("import_tensorflow_s", "python -c 'import tensorflow'", "{:.1f}", "s"),
    ("start_fresh_s", "start to first step, fresh", "{:.1f}", "s"),
    ("start_resume_s", "start to first step, resumed", "{:.1f}", "s"),
    ("start_eval_s", "start to first eval metrics", "{:.1f}", "s"),
    ("start_export_s", "start to SavedModel written", "{:.1f}", "s"),
    ("ratio_vs_model_garden", "ours / Model Garden, steady", "{:.3f}", ""),
    ("ratio_vs_model_garden_wall", "Model Garden / ours, whole", "{:.3f}", ""),
    ("ratio_vs_bare_constant", "ours / bare constant loop", "{:.3f}", ""),
    ("async_stall_ratio", "async / sync save stall", "{:.3f}", ""),
    ("start_ratio", "fresh start / tensorflow import", "{:.2f}", ""),
    ("input_share", "input pipeline share taken", "{:.0%}", ""),
]
# The targets that hold (issue 34): (figure, bound, at most / at least).
TARGETS = [("async_stall_ratio", 0.10, "at most"), ("ratio_vs_bare_constant", 0.95, "at least")]


def _table(summary: dict, num_rounds: int) -> str:
    width = max(len(label) for _, label, _, _ in ROWS)
    lines = [f"{'':<{width}}  {'median':>9} {'':<8} lowest-highest of {num_rounds} rounds"]
    for name, label, fmt, unit in ROWS:
        s = summary[name]
        spread = (s["max"] - s["min"]) / s["median"] if s["median"] else 0.0
        lines.append(f"{label:<{width}}  {fmt.format(s['median']):>9} {unit:<8} "
                     f"{fmt.format(s['min'])}-{fmt.format(s['max'])} "
                     f"({spread:.0%} of the median)")
    for name, bound, how in TARGETS:
        value = summary[name]["median"]
        held = value <= bound if how == "at most" else value >= bound
        lines.append(f"target: {name} {how} {bound}: {'held' if held else 'MISSED'} "
                     f"(median {value:.3f})")
    return "\n".join(lines)


def _onednn(value: str | None) -> str:
    return "unset (TensorFlow's default)" if value is None else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline_config_path", default="configs/shapes_retinanet.yaml")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every measurement (at least 3 for a spread)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps of each whole run, ours and Model Garden's "
                             "(400; 200 with --quick)")
    parser.add_argument("--bare_steps", type=int, default=None,
                        help="steps per timed call of the bare loops (30; 10 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="shorter runs (200 steps logged every 50, 10-step bare calls)")
    parser.add_argument("--checkpoint_every_n", type=int, default=1000)
    parser.add_argument("--json", nargs="?", const="-", default=None,
                        help="also write the figures as JSON (to stdout, or to this file)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.steps = args.steps or (200 if args.quick else 400)
    args.bare_steps = args.bare_steps or (10 if args.quick else 30)
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

    rounds, loads = [], []
    try:
        note("the decoded cache and the bare loops (built and traced once)")
        cache = training_cache(config, files)
        loops, checkpoint = bare_loops(config, files, cache)
        for index in range(args.rounds):
            loads.append(os.getloadavg()[0])
            note(f"round {index + 1} of {args.rounds} (load average {loads[-1]:.2f})")
            round_dir = os.path.join(root, f"round{index}")
            os.makedirs(round_dir)
            rounds.append(one_round(args, config, files, config_path, round_dir, loops,
                                    checkpoint, cache, note))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    loads.append(os.getloadavg()[0])
    summary = rounds_lib.summarize(rounds)
    results = {
        "config": args.pipeline_config_path, "batch_size": config.train_config.batch_size,
        "steps": args.steps, "bare_steps": args.bare_steps, "grappler": grappler,
        "onednn": {"ours": os.environ.get(cli.ONEDNN), "model_garden": USER_ONEDNN},
        "load_average_1m": loads, "cpus": os.cpu_count(), "decoded_cache": cache is not None,
        "rounds": rounds, "summary": summary,
        "benchmark_wall_s": time.monotonic() - began,
    }
    print(f"{args.pipeline_config_path}, batch {results['batch_size']}, {os.cpu_count()} CPUs, "
          f"grappler {'on' if grappler else 'off'} (ours), "
          f"TF_ENABLE_ONEDNN_OPTS {_onednn(os.environ.get(cli.ONEDNN))} (ours) and "
          f"{_onednn(USER_ONEDNN)} (Model Garden), {args.steps}-step runs, "
          f"load average {load_before:.2f} before, "
          f"{' '.join(f'{x:.2f}' for x in loads[:-1])} at each round, {loads[-1]:.2f} after; "
          f"took {results['benchmark_wall_s']:.0f} s")
    print(_table(summary, len(rounds)))
    if args.json == "-":
        print(json.dumps(results, indent=2))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
