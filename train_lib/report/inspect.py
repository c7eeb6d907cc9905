"""Inspect a model_dir's checkpoints: what is there, why that many, and what looks wrong.

Reads (never writes) `ckpt-<step>.*`, the `checkpoint` state file, checkpoints.jsonl,
train.lock, invalid_checkpoints/ and pipeline.yaml. `inspect_model_dir` gathers a
`Report` (records.py holds the records); format.py renders it for people
(`format_report`) and for programs (`report_json`; scripts/inspect_checkpoints.py).
The file scan (`scan_model_dir`), the event summary (`summarize_events`) and the
settings (`resolve_settings`) are here;
the expected steps (`expected_steps`), the anomaly rules (`find_anomalies`) and the
"why" lines (`explain`) are analysis.py. Each can be called on its own.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import socket
import time

import tensorflow as tf

from train_lib.checkpointing.events import read_events
from train_lib.checkpointing.files import INVALID_DIR, parse_step, read_state
from train_lib.checkpointing.files import prefix as checkpoint_prefix
from train_lib.checkpointing.lock import LOCK_FILE, pid_alive
from train_lib.checkpointing.policy import KEEP_EVERY_N_HOURS, MAX_TO_KEEP
from train_lib.checkpointing.verify import verify_checkpoint
from train_lib.config import ConfigError, load_config
from train_lib.errors import UserError
from train_lib.report.analysis import expected_steps, explain, find_anomalies
from train_lib.report.records import CheckpointStatus, DirScan, EventSummary, Report, Settings
from train_lib.training.workdir import PIPELINE_FILE

__all__ = ["CheckpointStatus", "DirScan", "EventSummary", "InspectError", "Report", "Settings",
           "checkpoint_status", "expected_steps", "explain", "find_anomalies",
           "inspect_model_dir", "lock_status", "read_optimizer_step", "resolve_settings",
           "scan_model_dir", "summarize_events"]

# Where a Keras optimizer keeps its step counter in a checkpoint (tf_keras; legacy Keras).
OPTIMIZER_STEP_KEYS = ("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE",
                       "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE",
                       "optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE")
# Optional settings fields of `saved` events: setting -> accepted field names.
EVENT_SETTING_KEYS = {"checkpoint_every_n": ("checkpoint_every_n", "every_n"),
                      "checkpoint_max_to_keep": ("checkpoint_max_to_keep", "max_to_keep"),
                      "num_steps": ("num_steps", "num_train_steps")}
_CKPT_FILE = re.compile(r"^(.+?)(\.index|\.meta|\.data-\d+-of-\d+)$")


class InspectError(UserError, RuntimeError):
    """model_dir cannot be inspected (does not exist, not a directory)."""


# ---------------------------------------------------------------- reading the directory


def lock_status(model_dir: str) -> dict:
    """{"state": "absent" | "running" | "stale" | "other_host" | "unreadable", plus the
    holder's host/pid/started}; "running" means its pid is alive on this host."""
    path = os.path.join(model_dir, LOCK_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            holder = json.load(f)
    except FileNotFoundError:
        return {"state": "absent"}
    except (OSError, ValueError):
        holder = None
    if not isinstance(holder, dict):
        return {"state": "unreadable", "age_seconds": time.time() - os.path.getmtime(path)}
    info = {k: holder.get(k) for k in ("host", "pid", "started")}
    if info["host"] != socket.gethostname():
        return dict(info, state="other_host")
    pid = info["pid"]
    return dict(info, state="running" if isinstance(pid, int) and pid_alive(pid) else "stale")


def _prefix_files(directory: str) -> dict[str, list[str]]:
    """Checkpoint file prefix -> its file names, for the files directly in `directory`."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        match = _CKPT_FILE.match(name)
        if match and os.path.isfile(os.path.join(directory, name)):
            found[match.group(1)].append(name)
    return dict(found)


def scan_model_dir(model_dir: str) -> DirScan:
    """Lists model_dir's checkpoint files, state file, lock and moved-aside checkpoints."""
    if not os.path.isdir(model_dir):
        what = "is not a directory" if os.path.exists(model_dir) else "does not exist"
        raise InspectError(f"model_dir {model_dir} {what}")
    steps, data_only, foreign = [], {}, {}
    for prefix, names in _prefix_files(model_dir).items():
        step = parse_step(prefix)
        if step is None:
            foreign[prefix] = names
        elif prefix + ".index" in names:
            steps.append(step)
        else:
            data_only[step] = names
    temp_dirs = sorted(os.path.basename(p) for p in glob.glob(
        os.path.join(glob.escape(model_dir), "ckpt-*_temp")) if os.path.isdir(p))
    state = read_state(model_dir)
    return DirScan(sorted(steps), data_only, temp_dirs, foreign,
                   _prefix_files(os.path.join(model_dir, INVALID_DIR)),
                   state is not None, state.model_checkpoint_path if state else None,
                   state.all_model_checkpoint_paths if state else [],
                   os.path.isfile(os.path.join(model_dir, "checkpoints.jsonl")),
                   lock_status(model_dir))


def read_optimizer_step(prefix: str) -> int | None:
    """The optimizer's step counter stored in the checkpoint at `prefix`, or None."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in OPTIMIZER_STEP_KEYS:
            if reader.has_tensor(key):
                return int(reader.get_tensor(key))
    except (tf.errors.OpError, ValueError, TypeError):
        pass
    return None


def checkpoint_status(model_dir: str, step: int, scan: DirScan,
                      events: EventSummary) -> CheckpointStatus:
    """Reads `ckpt-<step>` back completely and describes it."""
    prefix = checkpoint_prefix(model_dir, step)
    files = [prefix + ".index", *glob.glob(glob.escape(prefix) + ".data-*")]
    size = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    if step in events.time_of:
        written, source = events.time_of[step], "event"
    else:
        written, source = os.path.getmtime(prefix + ".index"), "mtime"
    problem = verify_checkpoint(prefix)
    return CheckpointStatus(
        step=step, prefix=prefix, time=written, time_source=source, size_bytes=size,
        reason=events.reason_of.get(step), latest=scan.state_latest == prefix,
        kept_forever=step in events.kept, valid=problem is None, problem=problem,
        optimizer_step=read_optimizer_step(prefix) if problem is None else None)


# ---------------------------------------------------------------- events and settings


def summarize_events(events: list[dict]) -> EventSummary:
    """Condenses checkpoints.jsonl events (as `read_events` returns them)."""
    out = EventSummary()
    for event in events:
        kind, step, reason = event.get("event"), event.get("step"), str(event.get("reason"))
        if not isinstance(step, int):
            continue
        if kind == "saved":
            out.saves.append((step, reason))
            out.saves_since_resume.append((step, reason))
            out.reason_of[step] = reason
            out.time_of[step] = float(event.get("time", 0.0))
            out.gone.discard(step)
        elif kind == "removed":
            if reason == MAX_TO_KEEP:
                out.removed.append(step)
            out.gone.add(step)
        elif kind == "kept" and reason == KEEP_EVERY_N_HOURS:
            out.kept.append(step)
        elif kind == "skipped_invalid":
            out.skipped_invalid.append((step, reason))
            out.gone.add(step)
        elif kind == "restored":
            out.restores.append(step)
            out.saves_since_resume = []
        elif kind == "state_repaired":
            out.state_repairs += 1
    return out


def resolve_settings(model_dir: str, events: list[dict], *, every_n: int | None = None,
                     max_to_keep: int | None = None, num_steps: int | None = None,
                     pipeline_config_path: str | None = None) -> Settings:
    """Settings from the arguments, else the newest `saved` event carrying them; num_steps
    also from pipeline_config_path, else model_dir/pipeline.yaml. Raises ConfigError if
    an explicitly given pipeline_config_path cannot be loaded."""
    out = Settings()
    given = {"checkpoint_every_n": every_n, "checkpoint_max_to_keep": max_to_keep,
             "num_steps": num_steps}
    for name, value in given.items():
        if value is not None:
            setattr(out, name, value)
            out.sources[name] = "--num_train_steps" if name == "num_steps" else f"--{name}"
    if out.num_steps is None:
        path = pipeline_config_path or os.path.join(model_dir, PIPELINE_FILE)
        try:
            out.num_steps = load_config(path).train_config.num_steps
            out.sources["num_steps"] = path if pipeline_config_path else PIPELINE_FILE
        except ConfigError as err:
            if pipeline_config_path:
                raise
            if os.path.exists(path):
                out.notes.append(f"could not read num_steps from {path}: {err}")
    for event in reversed([e for e in events if e.get("event") == "saved"]):
        for name, keys in EVENT_SETTING_KEYS.items():
            value = next((event[k] for k in keys if isinstance(event.get(k), int)), None)
            if getattr(out, name) is None and value is not None:
                setattr(out, name, value)
                out.sources[name] = "checkpoints.jsonl"
    return out


# ---------------------------------------------------------------- entry points


def inspect_model_dir(model_dir: str, *, every_n: int | None = None,
                      max_to_keep: int | None = None, num_steps: int | None = None,
                      pipeline_config_path: str | None = None) -> Report:
    """Inspects model_dir (read only). Raises InspectError if it is not a directory,
    ConfigError if an explicit pipeline_config_path cannot be loaded and ValueError if
    every_n or max_to_keep is < 1."""
    model_dir = os.path.abspath(model_dir)
    scan = scan_model_dir(model_dir)
    events = read_events(model_dir)
    summary = summarize_events(events)
    settings = resolve_settings(model_dir, events, every_n=every_n, max_to_keep=max_to_keep,
                                num_steps=num_steps, pipeline_config_path=pipeline_config_path)
    expected = expected_steps(settings, summary)
    checkpoints = [checkpoint_status(model_dir, s, scan, summary) for s in scan.steps]
    anomalies, notes = find_anomalies(scan, checkpoints, summary, settings, expected)
    present = [c.step for c in checkpoints]
    why = explain(present, summary, settings, expected, scan.has_events_file) + notes
    counts = {
        "present": len(present), "valid": sum(c.valid for c in checkpoints),
        "latest": next((c.step for c in checkpoints if c.latest), None),
        "saves": len(summary.saves),
        "saves_by_reason": dict(collections.Counter(r for _, r in summary.saves)),
        "removed_by_max_to_keep": summary.removed, "kept_by_hours": summary.kept,
        "skipped_invalid": [{"step": s, "reason": r} for s, r in summary.skipped_invalid],
        "restores": summary.restores, "state_repairs": summary.state_repairs,
        "trainer_running": scan.lock["state"] == "running",
        "settings": {n: getattr(settings, n) for n in EVENT_SETTING_KEYS},
    }
    return Report(model_dir, checkpoints, counts, expected, anomalies, why)
