r"""Candidates for the default recipe: train them, print their learning curves, plot them.

The default config (configs/shapes_retinanet.yaml) should reach COCO AP >= 0.85 and
AP50 >= 0.98 within 5 minutes from start to exit on a 2-core CPU. Each candidate
here is a set of config keys applied over that file with --params_override; every
candidate sets all the keys any candidate tunes, so each is the same recipe
whatever the file holds today.

    .venv/bin/python scripts/tune_default_recipe.py [--candidates a,b] \
        [--output_dir runs/tune] [--eval_every_n 250] [--plot docs/recipe_curves.png]
    .venv/bin/python scripts/tune_default_recipe.py --timing_steps 150 [--candidates a,b]
    .venv/bin/python scripts/tune_default_recipe.py --list

Curves: each candidate runs as README's first command does (`model_main_tf2.py`,
a subprocess, from the current directory, so data/shapes/ is generated there when
absent) into <output_dir>/<name>, with an in-training evaluation of the val
split every --eval_every_n steps (it reads the live model and changes no training
step: the losses are those of a run without it) and at the end. A candidate
whose model_dir already holds its finished run is not trained again (the driver
exits at once), so the table and plot can be redrawn from earlier runs.
Prints, per candidate, AP and AP50 at each evaluated step, the median seconds
per step of its log intervals (the first, which holds the tracing, left out)
and a 5-minute budget estimate: start-up (process start to the first step,
measured) + num_steps x that step time + the final evaluation's seconds.

Timing (--timing_steps N): each candidate runs N steps alone, without
evaluation, and prints its median step time and the 1-minute load average
before and after; on a machine shared with other work the figures are
inflated, which the load average shows.

AP at a given step does not depend on the machine's load: the driver is
deterministic (the same config gives the same losses on one machine type).
Wall-clock figures do.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from statistics import median

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "shapes_retinanet.yaml")
STEP_LINE = re.compile(r"Step (\d+) per-step time ([0-9.]+)s")


@dataclass(frozen=True)
class Candidate:
    """One recipe: what it tries, and the keys it sets over the config file."""

    description: str
    num_steps: int
    batch_size: int = 16
    base_lr: float = 0.002
    warmup_steps: int = 200
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    num_scales: int = 3
    anchor_size: float = 3.0
    scale_range: tuple[float, float] = (0.8, 1.2)
    head_separable: bool = False
    fpn_separable: bool = False
    fpn_filters: int = 64
    head_convs: int = 2
    nms_iou: float = 0.5
    extra: dict = field(default_factory=dict)

    def overrides(self, log_every_n: int, eval_every_n: int, eval_at_end: bool = True) -> dict:
        """The nested config keys of this candidate (YAML flow via JSON)."""
        keys = {
            "model": {
                "anchor": {"aspect_ratios": list(self.aspect_ratios),
                           "num_scales": self.num_scales,
                           "anchor_size": self.anchor_size},
                "head": {"use_separable_conv": self.head_separable,
                         "num_convs": self.head_convs},
                "fpn": {"use_separable_conv": self.fpn_separable,
                        "num_filters": self.fpn_filters},
                "post_processing": {"iou_threshold": self.nms_iou},
            },
            "train_config": {
                "num_steps": self.num_steps,
                "batch_size": self.batch_size,
                "learning_rate": {"schedule": "cosine", "base": self.base_lr,
                                  "warmup_steps": self.warmup_steps,
                                  "warmup_start": self.base_lr / 10},
                "augmentation": {"scale_min": self.scale_range[0],
                                 "scale_max": self.scale_range[1]},
                "log_every_n": log_every_n,
            },
            "eval_config": {"eval_every_n": eval_every_n, "eval_at_end": eval_at_end},
        }
        _merge(keys, self.extra)
        return keys


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


SQUARE = (1.0,)  # every shapes box is square (a shape's bounding square)
CANDIDATES: dict[str, Candidate] = {
    "old_default_3000": Candidate("the default before issue 34: 3000 steps", 3000),
    "old_recipe_1600": Candidate("the same recipe cut to 1600 steps", 1600),
    "square_1600": Candidate("square anchors only (3 a location, not 9)", 1600,
                             aspect_ratios=SQUARE),
    "square_lr4_1600": Candidate("square anchors, base lr 0.004, warmup 100", 1600,
                                 aspect_ratios=SQUARE, base_lr=0.004, warmup_steps=100),
    "square_sep_1600": Candidate("square anchors, separable head convs", 1600,
                                 aspect_ratios=SQUARE, head_separable=True),
    "square_sep_lr4_2000": Candidate("square anchors, separable head, lr 0.004, 2000 steps",
                                     2000, aspect_ratios=SQUARE, head_separable=True,
                                     base_lr=0.004, warmup_steps=100),
    "square_sep_lr8_a2_2000": Candidate(
        "separable head, lr 0.008, anchor_size 2 (anchors 16-101 px, not 24-152)", 2000,
        aspect_ratios=SQUARE, head_separable=True, base_lr=0.008, warmup_steps=100,
        anchor_size=2.0),
    "square_sep_lr8_a25_2000": Candidate(
        "separable head, lr 0.008, anchor_size 2.5 (anchors 20-126 px)", 2000,
        aspect_ratios=SQUARE, head_separable=True, base_lr=0.008, warmup_steps=100,
        anchor_size=2.5),
    "sq_sep_lr4_a25_2000": Candidate(
        "square_sep_lr8_a25_2000 at base lr 0.004", 2000,
        aspect_ratios=SQUARE, head_separable=True, base_lr=0.004, warmup_steps=100,
        anchor_size=2.5),
    "sq_sep_lr8_a25_noscale_2000": Candidate(
        "square_sep_lr8_a25_2000 without the scale jitter", 2000,
        aspect_ratios=SQUARE, head_separable=True, base_lr=0.008, warmup_steps=100,
        anchor_size=2.5, scale_range=(1.0, 1.0)),
    "sq_sep_sepfpn_lr8_a25_2000": Candidate(
        "square_sep_lr8_a25_2000 with a separable FPN", 2000,
        aspect_ratios=SQUARE, head_separable=True, fpn_separable=True, base_lr=0.008,
        warmup_steps=100, anchor_size=2.5),
    "sq_sep_sepfpn_lr8_a25_2400": Candidate(
        "separable head and FPN, lr 0.008, anchor_size 2.5, 2400 steps", 2400,
        aspect_ratios=SQUARE, head_separable=True, fpn_separable=True, base_lr=0.008,
        warmup_steps=100, anchor_size=2.5),
    "sq_sep_lr8_a25_s2_2000": Candidate(
        "square_sep_lr8_a25_2000 with 2 anchor scales an octave, not 3", 2000,
        aspect_ratios=SQUARE, head_separable=True, base_lr=0.008, warmup_steps=100,
        anchor_size=2.5, num_scales=2),
    "sq_sep_lr8_a25_c1_2000": Candidate(
        "square_sep_lr8_a25_2000 with one conv a head tower, not 2", 2000,
        aspect_ratios=SQUARE, head_separable=True, base_lr=0.008, warmup_steps=100,
        anchor_size=2.5, head_convs=1),
    "sq_sep_sepfpn_lr8_a25_nms6_2400": Candidate(
        "separable head and FPN, lr 0.008, anchor_size 2.5, NMS IoU 0.6, 2400 steps", 2400,
        aspect_ratios=SQUARE, head_separable=True, fpn_separable=True, base_lr=0.008,
        warmup_steps=100, anchor_size=2.5, nms_iou=0.6),
    "sq_sep_sepfpn_lr8_a25_nms6_2200": Candidate(
        "sq_sep_sepfpn_lr8_a25_nms6_2400 cut to 2200 steps", 2200,
        aspect_ratios=SQUARE, head_separable=True, fpn_separable=True, base_lr=0.008,
        warmup_steps=100, anchor_size=2.5, nms_iou=0.6),
    "square_lr8_1600": Candidate("square anchors, base lr 0.008, warmup 100", 1600,
                                 aspect_ratios=SQUARE, base_lr=0.008, warmup_steps=100),
    "square_lr4_noscale_1600": Candidate("square_lr4_1600 without the scale jitter", 1600,
                                         aspect_ratios=SQUARE, base_lr=0.004,
                                         warmup_steps=100, scale_range=(1.0, 1.0)),
    "square_lr4_b8_3200": Candidate("square_lr4_1600 at batch 8 for 3200 steps", 3200,
                                    batch_size=8, aspect_ratios=SQUARE, base_lr=0.004,
                                    warmup_steps=200),
}


def run_candidate(name: str, cand: Candidate, args: argparse.Namespace, model_dir: str,
                  eval_every_n: int, num_steps: int | None = None) -> dict:
    """Runs model_main_tf2.py for one candidate; returns the timings read from its log."""
    timing_only = num_steps is not None
    override = json.dumps(cand.overrides(args.log_every_n, eval_every_n,
                                         eval_at_end=not timing_only))
    cmd = [sys.executable, os.path.join(REPO, "model_main_tf2.py"),
           f"--pipeline_config_path={args.pipeline_config_path}",
           f"--model_dir={model_dir}", f"--params_override={override}"]
    if num_steps is not None:
        cmd.append(f"--num_train_steps={num_steps}")
    log_path = model_dir.rstrip("/") + ".log"
    began = time.monotonic()
    first_step_at = None
    step_times: list[float] = []
    cpu_marks: list[tuple[int, float]] = []  # (step, the process's CPU seconds then)
    first_step = 0
    with open(log_path, "a") as log, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            log.write(line)
            match = STEP_LINE.search(line)
            if match:
                cpu_marks.append((int(match.group(1)), _cpu_seconds(proc.pid)))
                if first_step_at is None:
                    first_step_at = time.monotonic() - began
                    first_step = int(match.group(1))
                else:
                    step_times.append(float(match.group(2)))
    wall = time.monotonic() - began
    if proc.returncode != 0:
        raise SystemExit(f"error: candidate {name} failed (exit {proc.returncode}); "
                         f"see {log_path}")
    timing_path = model_dir.rstrip("/") + ".timing.json"
    if not step_times and os.path.exists(timing_path):  # finished before: its timings
        with open(timing_path) as f:
            return json.load(f)
    step = median(step_times) if step_times else float("nan")
    startup = (first_step_at - first_step * step) if first_step_at is not None else 0.0
    cpu_step = float("nan")
    if len(cpu_marks) >= 3:  # from the second log line on: the tracing left out
        (s0, c0), (s1, c1) = cpu_marks[1], cpu_marks[-1]
        cpu_step = (c1 - c0) / (s1 - s0)
    timing = {"wall": wall, "step_time": step, "cpu_step": cpu_step, "startup": startup,
              "log": log_path, "load_after": os.getloadavg()[0]}
    with open(timing_path, "w") as f:
        json.dump(timing, f)
    return timing


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_curve(model_dir: str) -> list[dict]:
    """[{step, AP, AP50, seconds}] of the model_dir's evaluations, by step."""
    path = os.path.join(model_dir, "eval_metrics.jsonl")
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            metrics = record["metrics"]
            rows[record["step"]] = {"step": record["step"], "AP": metrics["AP"],
                                    "AP50": metrics["AP50"], "seconds": record["seconds"]}
    return [rows[s] for s in sorted(rows)]


def plot(curves: dict[str, list[dict]], path: str) -> None:
    """AP and AP50 against the step, one line per candidate."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ap, ax_50) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, rows in curves.items():
        steps = [r["step"] for r in rows]
        ax_ap.plot(steps, [r["AP"] for r in rows], marker="o", label=name)
        ax_50.plot(steps, [r["AP50"] for r in rows], marker="o", label=name)
    for ax, metric, goal in ((ax_ap, "AP", 0.85), (ax_50, "AP50", 0.98)):
        ax.axhline(goal, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"COCO {metric}, 200 val images")
        ax.grid(alpha=0.3)
    ax_ap.set_ylim(0.3, 0.9)
    ax_50.set_ylim(0.6, 1.0)
    ax_50.legend(loc="lower right", fontsize=8)
    fig.suptitle("Default recipe candidates (scripts/tune_default_recipe.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline_config_path", default=DEFAULT_CONFIG)
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma-separated names (--list shows them)")
    parser.add_argument("--output_dir", default="runs/tune")
    parser.add_argument("--eval_every_n", type=int, default=400)
    parser.add_argument("--log_every_n", type=int, default=50)
    parser.add_argument("--plot", default="", help="write the curves as this PNG")
    parser.add_argument("--timing_steps", type=int, default=0,
                        help="time N steps of each candidate instead (no evaluation)")
    parser.add_argument("--list", action="store_true", help="list the candidates")
    parser.add_argument("--report_only", action="store_true",
                        help="train nothing: the table and plot of the runs in --output_dir")
    args = parser.parse_args()

    if args.list:
        for name, cand in CANDIDATES.items():
            print(f"{name:22s} {cand.description}")
        return
    names = [n for n in args.candidates.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"error: --candidates: unknown {unknown}; --list shows the names")
    os.makedirs(args.output_dir, exist_ok=True)

    if args.timing_steps:
        print(f"{'candidate':22s} {'s/step':>7s} {'CPU s/step':>10s}  load before, after")
        for name in names:
            model_dir = os.path.join(args.output_dir, f"timing-{name}-{time.time():.0f}")
            load = os.getloadavg()[0]
            t = run_candidate(name, CANDIDATES[name], args, model_dir, eval_every_n=0,
                              num_steps=args.timing_steps)
            print(f"{name:22s} {t['step_time']:7.3f} {t['cpu_step']:10.3f}  "
                  f"{load:.2f}, {os.getloadavg()[0]:.2f}"
                  f"  (start-up {t['startup']:.1f} s, process {t['wall']:.0f} s)", flush=True)
        return

    curves = {}
    print(f"{'candidate':22s} {'steps':>5s} {'AP':>6s} {'AP50':>6s} {'s/step':>6s} {'CPU':>5s} "
          f"{'start':>5s} {'eval':>5s} {'budget':>6s}  AP by step")
    for name in names:
        cand = CANDIDATES[name]
        load = os.getloadavg()[0]
        model_dir = os.path.join(args.output_dir, name)
        if args.report_only:
            if not os.path.exists(model_dir + ".timing.json"):
                continue
            with open(model_dir + ".timing.json") as f:
                t = json.load(f)
        else:
            t = run_candidate(name, cand, args, model_dir, args.eval_every_n)
        rows = read_curve(model_dir)
        curves[name] = rows
        final = rows[-1]
        # The default run evaluates once, at the end, tracing the evaluation as the
        # first in-training evaluation here does: its seconds are the estimate.
        eval_seconds = rows[0]["seconds"]
        budget = t["startup"] + cand.num_steps * t["step_time"] + eval_seconds
        by_step = " ".join(f"{r['step']}:{r['AP']:.3f}" for r in rows)
        cpu = t.get("cpu_step", float("nan"))
        loads = (f"load after {t.get('load_after', float('nan')):.2f}" if args.report_only
                 else f"load {load:.2f}, {os.getloadavg()[0]:.2f}")
        print(f"{name:22s} {cand.num_steps:5d} {final['AP']:6.4f} {final['AP50']:6.4f} "
              f"{t['step_time']:6.3f} {cpu:5.3f} {t['startup']:5.1f} {eval_seconds:5.1f} "
              f"{budget:6.0f}  {by_step}  ({loads})", flush=True)
    if args.plot:
        plot(curves, args.plot)


if __name__ == "__main__":
    main()
