"""The process-level measurements of scripts/benchmark.py: whole training runs of
this driver and of Model Garden's own trainer, and each entry point's start-up: to
the first training step (fresh and resumed), to an evaluation's first metrics, to
an export's SavedModel.

Each run is a subprocess whose stderr lines are read as they come, each stamped
with the time since the process was started, so steady-state rates come from the
trainers' own log lines and start-up from the first line that reports a step.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from statistics import median

import yaml

# The repository's checkout (the package is installed editable): model_main_tf2.py
# and configs/ are run from there.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OUR_STEP = re.compile(r"Step (\d+) per-step time ([0-9.]+)s")
_MG_STEP = re.compile(r"train \| step:\s*(\d+) \| steps/sec:\s*([0-9.]+)")
_EVALUATED = re.compile(r"evaluated step \d+ on \d+ images")
_EXPORTED = re.compile(r"wrote .*saved_model")


class RunFailed(RuntimeError):
    """A measured subprocess exited non-zero (its last lines are in the message)."""


def run_timed(args: list[str], cwd: str = REPO,
              unset: tuple[str, ...] = ()) -> tuple[float, list[tuple[float, str]]]:
    """Runs `args` in this process's environment less the variables `unset`;
    returns (wall seconds, [(seconds since start, stderr line)])."""
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    began = time.monotonic()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append((time.monotonic() - began, line.rstrip("\n")))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = proc.wait()
    reader.join()
    wall = time.monotonic() - began
    if code:
        tail = "\n".join(line for _, line in lines[-15:])
        raise RunFailed(f"{' '.join(args[:4])} ... exited {code}:\n{tail}")
    return wall, lines


def _ours(model_dir: str, config_path: str, steps: int, checkpoint_every_n: int,
          override: str = "") -> list[str]:
    """Our trainer's command line. The final evaluation is off: Model Garden's
    `--mode=train` does not evaluate, and the same work is what is compared."""
    args = [sys.executable, os.path.join(REPO, "model_main_tf2.py"),
            f"--pipeline_config_path={config_path}", f"--model_dir={model_dir}",
            f"--num_train_steps={steps}", f"--checkpoint_every_n={checkpoint_every_n}"]
    overrides = ", ".join(["eval_config: {eval_at_end: false}"] + ([override] if override else []))
    return args + [f"--params_override={{{overrides}}}"]


def steady_rate(rates: list[float]) -> float:
    """Median of the per-interval rates after the first (which holds the tracing)."""
    return median(rates[1:] if len(rates) > 1 else rates)


def our_training(config_path: str, model_dir: str, steps: int,
                 checkpoint_every_n: int, log_every_n: int | None = None) -> dict:
    """This driver on the config: steady steps/s (from its log lines' per-step time,
    every `log_every_n` steps: the config's by default) and the whole process's wall
    time."""
    override = f"train_config: {{log_every_n: {log_every_n}}}" if log_every_n else ""
    wall, lines = run_timed(_ours(model_dir, config_path, steps, checkpoint_every_n,
                                  override))
    rates = [1.0 / float(m.group(2)) for _, line in lines if (m := _OUR_STEP.search(line))]
    if not rates:
        raise RunFailed("our trainer logged no step line")
    return {"steps": steps, "steps_per_sec": steady_rate(rates), "wall_s": wall,
            "interval_rates": rates}


def model_garden_experiment(config, files: list[str], steps: int,
                            checkpoint_every_n: int, steps_per_loop: int = 100) -> dict:
    """Model Garden's `retinanet_resnetfpn_coco` experiment overridden to train our
    config's detector: the same model, anchors, losses, optimizer and schedule,
    batch and TFRecords; offline (no init checkpoint), float32, no sync BN; its own
    defaults otherwise, with `steps_per_loop` steps per call and summaries, and
    checkpoints every `checkpoint_every_n` steps as ours."""
    from train_lib.families.retinanet import model_garden_config

    model, train = config.model, config.train_config
    aug, lr, opt = train.augmentation, train.learning_rate, train.optimizer
    model_cfg = model_garden_config(model).as_dict()
    model_cfg["norm_activation"]["use_sync_bn"] = False
    optimizer = ({"type": "adam", "adam": {"beta_1": opt.beta_1, "beta_2": opt.beta_2,
                                           "epsilon": opt.epsilon}}
                 if opt.type == "adam" else {"type": "sgd", "sgd": {"momentum": opt.momentum}})
    if opt.gradient_clip_norm:
        optimizer[opt.type]["global_clipnorm"] = opt.gradient_clip_norm
    if lr.schedule != "cosine":
        raise ValueError("the Model Garden comparison maps the cosine schedule only")
    loss = model.loss
    return {
        "runtime": {"mixed_precision_dtype": "float32"},
        "task": {
            "init_checkpoint": "",
            "init_checkpoint_modules": "",
            "annotation_file": "",
            "model": model_cfg,
            "losses": {"focal_loss_alpha": loss.focal_loss_alpha,
                       "focal_loss_gamma": loss.focal_loss_gamma,
                       "huber_loss_delta": loss.huber_loss_delta,
                       "box_loss_weight": loss.box_loss_weight,
                       "l2_weight_decay": loss.l2_weight_decay},
            "train_data": {
                "input_path": ",".join(files), "is_training": True,
                "global_batch_size": train.batch_size, "dtype": "float32",
                "shuffle_buffer_size": config.train_input_reader.shuffle_buffer_size,
                "parser": {"aug_rand_hflip": aug.random_horizontal_flip,
                           "aug_scale_min": aug.scale_min, "aug_scale_max": aug.scale_max,
                           "match_threshold": model.anchor.match_threshold,
                           "unmatched_threshold": model.anchor.unmatched_threshold}},
        },
        "trainer": {
            "train_steps": steps, "steps_per_loop": steps_per_loop,
            "summary_interval": steps_per_loop, "checkpoint_interval": checkpoint_every_n,
            "optimizer_config": {
                "optimizer": optimizer,
                "learning_rate": {"type": "cosine", "cosine": {
                    "initial_learning_rate": lr.base,
                    "decay_steps": max(train.num_steps - lr.warmup_steps, 1),
                    "alpha": lr.cosine_alpha, "offset": lr.warmup_steps}},
                "warmup": {"type": "linear", "linear": {
                    "warmup_steps": lr.warmup_steps,
                    "warmup_learning_rate": lr.warmup_start}}},
        },
    }


def model_garden_training(config, files: list[str], work_dir: str, steps: int,
                          checkpoint_every_n: int, unset: tuple[str, ...] = (),
                          steps_per_loop: int = 100) -> dict:
    """Model Garden's trainer (`official.vision.train`, Orbit) on the equivalent
    experiment, in this process's environment less `unset` (the variables that our
    driver's defaults set, not the user): steady steps/s (its `steps/sec` lines,
    one per `steps_per_loop` steps) and whole-process wall time."""
    experiment = model_garden_experiment(config, [os.path.abspath(f) for f in files], steps,
                                         checkpoint_every_n, steps_per_loop)
    config_file = os.path.join(work_dir, "model_garden_retinanet.yaml")
    with open(config_file, "w") as f:
        yaml.safe_dump(experiment, f, sort_keys=False)
    wall, lines = run_timed([sys.executable, "-m", "official.vision.train",
                             "--experiment=retinanet_resnetfpn_coco", "--mode=train",
                             f"--config_file={config_file}",
                             f"--model_dir={os.path.join(work_dir, 'model_garden')}"],
                            unset=unset)
    rates = [float(m.group(2)) for _, line in lines if (m := _MG_STEP.search(line))]
    if not rates:
        raise RunFailed("Model Garden's trainer logged no 'train | step' line")
    return {"steps": steps, "steps_per_sec": steady_rate(rates), "wall_s": wall,
            "interval_rates": rates, "config_file": config_file}


def _first(lines: list[tuple[float, str]], pattern: re.Pattern, what: str) -> float:
    """The time of the first line that matches `pattern`."""
    found = next((t for t, line in lines if pattern.search(line)), None)
    if found is None:
        raise RunFailed(f"{what} logged no line matching {pattern.pattern!r}")
    return found


def start_to_first_step(config_path: str, model_dir: str) -> dict:
    """Seconds from process start to the end of its first step: a fresh run (2 steps)
    and a resumed one (from its ckpt-2 to step 4), each logging every step. Leaves
    model_dir a finished 4-step run (for `start_to_evaluation` and `start_to_export`)."""
    override = "train_config: {log_every_n: 1}"

    def first_step(steps: int) -> float:
        _, lines = run_timed(_ours(model_dir, config_path, steps, 1000, override))
        return _first(lines, _OUR_STEP, "our trainer")
    return {"fresh_s": first_step(2), "resume_s": first_step(4)}


def start_to_evaluation(checkpoint_dir: str, model_dir: str) -> float:
    """Seconds from the start of `model_main_tf2.py --checkpoint_dir` (evaluation
    mode, with the run's own pipeline.yaml) to its first metrics' log line."""
    _, lines = run_timed([
        sys.executable, os.path.join(REPO, "model_main_tf2.py"),
        f"--pipeline_config_path={os.path.join(checkpoint_dir, 'pipeline.yaml')}",
        f"--checkpoint_dir={checkpoint_dir}", f"--model_dir={model_dir}", "--eval_timeout=0"])
    return _first(lines, _EVALUATED, "the evaluation")


def start_to_export(checkpoint_dir: str, output_directory: str) -> float:
    """Seconds from the start of scripts/exporter_main_v2.py to its log line saying the
    SavedModel is written."""
    _, lines = run_timed([
        sys.executable, os.path.join(REPO, "scripts", "exporter_main_v2.py"),
        "--input_type=image_tensor", f"--trained_checkpoint_dir={checkpoint_dir}",
        f"--output_directory={output_directory}"])
    return _first(lines, _EXPORTED, "the exporter")


def import_tensorflow(unset: tuple[str, ...] = ()) -> float:
    """Wall seconds of a bare `python -c "import tensorflow"` (the floor of every
    start-up), in this process's environment less `unset`."""
    wall, _ = run_timed([sys.executable, "-c", "import tensorflow"], unset=unset)
    return wall
