"""One trainer per model_dir: the run lock `<model_dir>/train.lock`. No TensorFlow.

The lock file holds {host, pid, started} of the trainer that holds it, as JSON. It is
created atomically (O_EXCL); a lock whose process is gone from this host is taken over
with a warning, one held on another host is never taken over (its liveness cannot be
checked from here).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
from collections.abc import Callable

from absl import logging

from train_lib.errors import UserError

__all__ = ["LOCK_FILE", "LockError", "RunLock", "pid_alive"]

LOCK_FILE = "train.lock"


class LockError(UserError, RuntimeError):
    """Another trainer holds the model_dir lock."""


_HELD_HERE: set[str] = set()  # lock paths held by RunLocks of this process


class RunLock:
    """One trainer per model_dir: `<model_dir>/train.lock` holds {host, pid, started}.

    Use as a context manager or acquire()/release(). acquire() raises LockError if
    a live trainer (this host) or any trainer on another host holds the lock; a
    lock left by a dead process on this host is taken over with a warning.
    """

    def __init__(self, model_dir: str, log: Callable[[str], None] = logging.warning) -> None:
        self.model_dir = os.path.abspath(model_dir)
        self.path = os.path.join(self.model_dir, LOCK_FILE)
        self._log = log
        self._owned: dict | None = None

    def acquire(self) -> None:
        """Create the lock file atomically; raise LockError if another trainer holds it."""
        os.makedirs(self.model_dir, exist_ok=True)
        for _ in range(3):
            mine = {"host": socket.gethostname(), "pid": os.getpid(),
                    "started": datetime.datetime.now().astimezone().isoformat()}
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(mine, f)
                f.flush()
                os.fsync(f.fileno())
            self._owned = mine
            _HELD_HERE.add(self.path)
            return
        raise LockError(f"Could not create {self.path}: other trainers keep taking it.")

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if self._owned is None:
            return
        if self._read() == self._owned:
            os.remove(self.path)
        else:
            self._log(f"{self.path} was replaced by another trainer; not removing it")
        _HELD_HERE.discard(self.path)
        self._owned = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _read(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                holder = json.load(f)
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _take_over_if_stale(self) -> None:
        holder = self._read()
        if holder is None:
            if not os.path.exists(self.path):
                return  # released meanwhile: retry
            age = time.time() - os.path.getmtime(self.path)
            if age < 10.0:
                raise LockError(f"{self.path} is being created by another trainer.")
            self._log(f"WARNING: taking over the unreadable lock {self.path}")
        else:
            host, pid, started = holder.get("host"), holder.get("pid"), holder.get("started")
            who = f"pid {pid} on host {host}, started {started}"
            if host != socket.gethostname():
                raise LockError(
                    f"{self.path} is held by a trainer on another host ({who}). If that "
                    f"trainer is really gone, delete {self.path} and start again.")
            if isinstance(pid, int) and pid_alive(pid) and (
                    pid != os.getpid() or self.path in _HELD_HERE):
                raise LockError(
                    f"Another trainer is using {self.model_dir} ({who}; lock {self.path}). "
                    "Stop it, or use another --model_dir.")
            self._log(f"WARNING: taking over the stale lock {self.path}: its trainer "
                      f"({who}) is no longer running")
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
