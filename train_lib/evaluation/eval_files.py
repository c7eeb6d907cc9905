"""What evaluation reads and writes on disk, apart from TensorBoard. No TensorFlow.

Reads a training run's checkpoint_dir: which checkpoints are committed
(`checkpoint_steps`) and the num_steps in force (`recorded_num_steps`). Writes
into the evaluation's model_dir:

    <model_dir>/eval_metrics.jsonl               one JSON line per evaluation
    <model_dir>/best/ckpt-<step>.index|.data-*   the best checkpoint so far
    <model_dir>/best/checkpoint                  state file: tf.train.latest_checkpoint works
    <model_dir>/best/metrics.json                step, checkpoint, metric, value, metrics, time

`best/` is out of reach of the trainer's rotation (which only touches
`<model_dir>/ckpt-*`). It is replaced as a whole: the new copy is written into
a temporary directory, then renamed into place; `read_best` recovers the
previous copy if a crash came between the two renames. Checkpoint files are
hard-linked where possible (they are never modified once written), else copied.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping

import yaml

from train_lib.checkpointing.events import EVENTS_FILE
from train_lib.checkpointing.files import list_steps, parse_step
from train_lib.checkpointing.lock import LOCK_FILE
from train_lib.jsonl import read_jsonl
from train_lib.training.workdir import PIPELINE_FILE

BEST_DIR = "best"
METRICS_FILE = "metrics.json"
EVAL_METRICS_FILE = "eval_metrics.jsonl"
STATE_FILE = "checkpoint"  # TensorFlow's checkpoint state file
_OLD_PREFIX = ".best-old-"
_STATE_PATH = re.compile(r'^\s*(?:model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"(.*)"',
                         re.MULTILINE)


# ---------------------------------------------------------------- the training run


def checkpoint_steps(checkpoint_dir: str) -> list[int]:
    """Steps of the committed checkpoints of checkpoint_dir, ascending.

    With a `checkpoint` state file: the `ckpt-<step>` it lists (trainers update it
    only after a checkpoint is completely written; TensorFlow writes the index
    file in place, so its mere presence does not mean the checkpoint is done).
    Without one (copied checkpoints): the steps of the `ckpt-<step>.index` files.
    """
    try:
        with open(os.path.join(checkpoint_dir, STATE_FILE), encoding="utf-8") as f:
            paths = _STATE_PATH.findall(f.read())
    except FileNotFoundError:
        paths = None
    except (OSError, UnicodeDecodeError):
        paths = []  # being replaced or unreadable: look again at the next poll
    if paths is None:
        return list_steps(checkpoint_dir)  # [] if checkpoint_dir cannot be listed
    return sorted({s for s in map(parse_step, paths) if s is not None})


def training_run_problem(checkpoint_dir: str) -> str | None:
    """Why `checkpoint_dir` is not a training run's model_dir to evaluate, or None.

    A training run's model_dir holds checkpoints (ckpt-*), or, before its first
    save, what the trainer writes at start (pipeline.yaml, train.lock,
    checkpoints.jsonl): then evaluation waits for checkpoints. A directory that
    does not exist, or holds none of these, is a mistake (a typo, the wrong dir).
    """
    hint = ("give the --model_dir of a training run (model_main_tf2.py "
            "--pipeline_config_path=... --model_dir=<dir> trains one)")
    if not os.path.exists(checkpoint_dir):
        return f"--checkpoint_dir {checkpoint_dir} does not exist; {hint}"
    if not os.path.isdir(checkpoint_dir):
        return f"--checkpoint_dir {checkpoint_dir} is not a directory; {hint}"
    try:
        names = os.listdir(checkpoint_dir)
    except OSError as err:
        return f"--checkpoint_dir {checkpoint_dir} cannot be read ({err.strerror})"
    signs = {PIPELINE_FILE, LOCK_FILE, EVENTS_FILE, STATE_FILE}
    if any(name in signs or name.startswith("ckpt-") for name in names):
        return None
    return (f"--checkpoint_dir {checkpoint_dir} holds nothing of a training run (no "
            f"ckpt-*, {PIPELINE_FILE}, {LOCK_FILE} or {EVENTS_FILE}); {hint}")


def recorded_num_steps(checkpoint_dir: str) -> int | None:
    """train_config.num_steps of the run's pipeline.yaml (the trainer keeps it current)."""
    try:
        with open(os.path.join(checkpoint_dir, PIPELINE_FILE), encoding="utf-8") as f:
            data = yaml.safe_load(f)
        value = data["train_config"]["num_steps"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) else None


# ---------------------------------------------------------------- eval_metrics.jsonl


def read_eval_records(model_dir: str) -> list[dict]:
    """The lines of `<model_dir>/eval_metrics.jsonl`, oldest first (bad lines skipped)."""
    return read_jsonl(os.path.join(model_dir, EVAL_METRICS_FILE))


def find_eval_record(model_dir: str, checkpoint: str, split: str) -> dict | None:
    """The newest record of eval_metrics.jsonl for the checkpoint prefix `checkpoint`
    (an absolute path) on `split`, or None."""
    found = [r for r in read_eval_records(model_dir)
             if r.get("checkpoint") == checkpoint and r.get("split") == split
             and isinstance(r.get("metrics"), dict)]
    return found[-1] if found else None


def append_eval_record(model_dir: str, record: Mapping) -> None:
    """Appends one JSON line to `<model_dir>/eval_metrics.jsonl`."""
    with open(os.path.join(model_dir, EVAL_METRICS_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(record)) + "\n")


# ---------------------------------------------------------------- checkpoint copies


def checkpoint_files(prefix: str) -> list[str]:
    """The files of the checkpoint at `prefix`: its index first, then its data shards."""
    data = sorted(glob.glob(glob.escape(prefix) + ".data-*"))
    return [prefix + ".index", *data]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except FileNotFoundError:
        raise
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def copy_checkpoint(prefix: str, directory: str, name: str | None = None) -> str | None:
    """Hard-links (or copies) the checkpoint files of `prefix` into `directory` as
    `name` (default: the prefix's own name); returns the new prefix, or None if the
    checkpoint is gone (its index or a data file vanished meanwhile)."""
    name = name or os.path.basename(prefix)
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, name)
    copied = []
    try:
        for src in checkpoint_files(prefix):
            dst = target + src[len(prefix):]
            if os.path.exists(dst):
                os.remove(dst)
            _link_or_copy(src, dst)
            copied.append(dst)
    except FileNotFoundError:
        for path in copied:
            os.remove(path)
        return None
    return target


def remove_checkpoint(prefix: str) -> None:
    """Removes the files of the checkpoint at `prefix` (missing files are fine)."""
    for path in checkpoint_files(prefix):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _recover(model_dir: str) -> None:
    """A crash between moving best/ aside and renaming the new copy into place leaves
    no best/ but a `.best-old-*`: put that back."""
    best = os.path.join(model_dir, BEST_DIR)
    olds = sorted(glob.glob(os.path.join(glob.escape(model_dir), _OLD_PREFIX + "*")))
    if not os.path.isdir(best) and olds:
        os.replace(olds[-1], best)
        olds = olds[:-1]
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


def read_best(model_dir: str) -> dict | None:
    """The contents of `<model_dir>/best/metrics.json`, or None when there is no best yet
    (or the file is unreadable)."""
    _recover(model_dir)
    try:
        with open(os.path.join(model_dir, BEST_DIR, METRICS_FILE), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("metrics"), dict) \
        else None


def is_better(value: float | None, best: float | None) -> bool:
    """Whether `value` beats `best` (COCO metrics: higher is better; NaN never wins)."""
    if value is None or math.isnan(value):
        return False
    return best is None or math.isnan(best) or value > best


def update_best(model_dir: str, prefix: str, step: int, metrics: Mapping[str, float],
                metric: str, checkpoint: str | None = None) -> bool:
    """Makes the checkpoint at `prefix` the best one if `metrics[metric]` beats the
    recorded best (read back from best/metrics.json, so it survives restarts).

    `checkpoint` is the path recorded as its origin (default `prefix`). Returns True
    if best/ was replaced. Raises FileNotFoundError if `prefix`'s files are gone.
    """
    previous = read_best(model_dir)
    old_value = previous["metrics"].get(metric) if previous else None
    if not is_better(metrics.get(metric), old_value):
        return False
    tmp = tempfile.mkdtemp(prefix=".best-tmp-", dir=model_dir)
    try:
        if copy_checkpoint(prefix, tmp, f"ckpt-{step}") is None:
            raise FileNotFoundError(f"the checkpoint {prefix} is gone")
        with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
            f.write(f'model_checkpoint_path: "ckpt-{step}"\n'
                    f'all_model_checkpoint_paths: "ckpt-{step}"\n')
        record = {"step": step, "checkpoint": checkpoint or prefix, "metric": metric,
                  "value": metrics[metric], "metrics": dict(metrics), "time": time.time()}
        with open(os.path.join(tmp, METRICS_FILE), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        best = os.path.join(model_dir, BEST_DIR)
        old = None
        if os.path.exists(best):
            old = os.path.join(model_dir, f"{_OLD_PREFIX}{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(best, old)
        os.replace(tmp, best)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)
    return True
