"""Checkpoints of a training run: when to save, what to keep, and the files on disk.

Modules, one concern each:
- policy.py: `CheckpointPolicy`, the pure decisions (when to save, which checkpoints
  leave the rotating set, which are kept forever); no I/O, no TensorFlow.
- files.py: the `ckpt-<step>` name (`checkpoint_name`, `parse_step`, the only parser
  of it), listing (`list_steps`), a checkpoint's files (`missing_files`,
  `remove_checkpoint`, `quarantine`) and the `checkpoint` state file
  (`read_state`, `write_state`); no TensorFlow.
- events.py: the event log checkpoints.jsonl (`EventLog`, `read_events`); no TensorFlow.
- lock.py: the run lock train.lock (`RunLock`, `LockError`, `pid_alive`); no TensorFlow.
- verify.py: `verify_checkpoint`, whether a checkpoint reads back completely (TensorFlow).
- manager.py: `CheckpointManager`, the I/O the policy decides: save (sync or async),
  commit, rotate, restore the newest valid checkpoint (TensorFlow).

The files in a model_dir:

    <model_dir>/ckpt-<step>.index|.data-*   a checkpoint, written with Checkpoint.write
    <model_dir>/checkpoint                  state file for tf.train.latest_checkpoint
    <model_dir>/checkpoints.jsonl           append-only event log (read_events)
    <model_dir>/train.lock                  RunLock: the trainer that uses model_dir
    <model_dir>/invalid_checkpoints/        invalid checkpoints moved aside by restore

The public names below can be imported from this package
(`from train_lib.checkpointing import CheckpointManager, RunLock, read_events`). They
are loaded on first use, so importing the package (or files.py, events.py, lock.py,
policy.py) does not import TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from train_lib.checkpointing.events import EVENTS_FILE, EventLog, read_events
    from train_lib.checkpointing.files import (
        INVALID_DIR,
        STATE_FILE,
        checkpoint_name,
        list_steps,
        parse_step,
    )
    from train_lib.checkpointing.lock import LOCK_FILE, LockError, RunLock, pid_alive
    from train_lib.checkpointing.manager import CheckpointError, CheckpointManager
    from train_lib.checkpointing.policy import CheckpointPolicy
    from train_lib.checkpointing.verify import verify_checkpoint

_EXPORTS = {
    "EVENTS_FILE": "events", "EventLog": "events", "read_events": "events",
    "INVALID_DIR": "files", "STATE_FILE": "files", "checkpoint_name": "files",
    "list_steps": "files", "parse_step": "files",
    "LOCK_FILE": "lock", "LockError": "lock", "RunLock": "lock", "pid_alive": "lock",
    "CheckpointError": "manager", "CheckpointManager": "manager",
    "CheckpointPolicy": "policy",
    "verify_checkpoint": "verify",
}

__all__ = ["EVENTS_FILE", "INVALID_DIR", "LOCK_FILE", "STATE_FILE", "CheckpointError",
           "CheckpointManager", "CheckpointPolicy", "EventLog", "LockError", "RunLock",
           "checkpoint_name", "list_steps", "parse_step", "pid_alive", "read_events",
           "verify_checkpoint"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
