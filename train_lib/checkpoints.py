"""Checkpoint files: save, rotate, restore the newest valid one, one trainer per model_dir.

What to save and keep is decided by the pure `CheckpointPolicy`
(train_lib/checkpoint_policy.py); this module does the file work:

    <model_dir>/ckpt-<global_step>.index|.data-*   written with Checkpoint.write
    <model_dir>/checkpoint                         state file for tf.train.latest_checkpoint
    <model_dir>/checkpoints.jsonl                  append-only event log (read_events)
    <model_dir>/train.lock                         RunLock
    <model_dir>/invalid_checkpoints/               invalid checkpoints moved aside by restore

Event log: one JSON object per line with at least `event`, `step`, `reason` and
`time` (unix seconds). Events:
- `saved`: path; seconds (how long the caller was blocked by the write); async;
  for async saves also confirmed_seconds (start until the write was known
  complete: an upper bound of the write time); with keep_every_n_hours also
  last_preserved_time. Its `time` is when the write started (the checkpoint's
  wall time, used by keep_every_n_hours).
- `removed` (reason max_to_keep; path), `kept` (kept forever, reason
  keep_every_n_hours; path, checkpoint_time).
- `skipped_invalid` (reason: why it is invalid; path, moved_to),
  `state_repaired`, `restored` (reason "resume"; path).
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from absl import logging

from train_lib.checkpoint_policy import (
    KEEP_EVERY_N_HOURS,
    CheckpointInfo,
    CheckpointPolicy,
    RotationPlan,
)
from train_lib.workdir import read_jsonl

__all__ = ["CheckpointError", "CheckpointInfo", "CheckpointManager", "CheckpointPolicy",
           "LockError", "RotationPlan", "RunLock", "read_events", "verify_checkpoint"]

EVENTS_FILE = "checkpoints.jsonl"
STATE_FILE = "checkpoint"
LOCK_FILE = "train.lock"
INVALID_DIR = "invalid_checkpoints"
_NAME = re.compile(r"^ckpt-(\d+)$")
_SHARD = re.compile(r"\.data-\d+-of-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or no checkpoint can be restored; says what to do."""


class LockError(RuntimeError):
    """Another trainer holds the model_dir lock."""


def read_events(model_dir: str) -> list[dict]:
    """All events of `<model_dir>/checkpoints.jsonl`, oldest first; [] if absent.

    Lines that are not a JSON object (a line truncated by a crash) are skipped.
    """
    return read_jsonl(os.path.join(model_dir, EVENTS_FILE))


@dataclasses.dataclass
class _Pending:
    step: int
    reason: str
    prefix: str
    start_time: float
    start_clock: float
    stall: float


class CheckpointManager:
    """Writes `ckpt-<step>` checkpoints of `checkpoint` into `model_dir` per `policy`.

    With async_save=True the write runs in a background thread; it is committed
    (state file, `saved` event, rotation) once known complete, at the next save or
    in `sync()`. Call `sync()` (or `close()`) before the process exits, or the last
    checkpoint is neither committed nor rotated. Non-chief workers (is_chief=False)
    take part in the same saves (decided the same way) but write into
    `worker_tmp_dir` (default `$TMPDIR/train_lib-worker-<pid>`), which is deleted
    after each save: no state file, events or rotation.

    Everything to save must be passed to `checkpoint`'s constructor: TF's async
    checkpointer saves only those objects. `restore()` reads the newest checkpoint
    into `required` (default: `checkpoint`), the objects a checkpoint must hold to
    be valid; the caller reads any others itself.
    """

    def __init__(
        self,
        model_dir: str,
        checkpoint: tf.train.Checkpoint,
        policy: CheckpointPolicy,
        async_save: bool = False,
        log: Callable[[str], None] = logging.info,
        is_chief: bool = True,
        worker_tmp_dir: str | None = None,
        clock: Callable[[], float] = time.time,
        required: tf.train.Checkpoint | None = None,
    ) -> None:
        self.model_dir = os.path.abspath(model_dir)
        self.policy = policy
        self._checkpoint = checkpoint
        self._required = required or checkpoint
        self._async = async_save
        self._options = (
            tf.train.CheckpointOptions(experimental_enable_async_checkpoint=True)
            if async_save else None
        )
        self._log = log
        self._clock = clock
        self.is_chief = is_chief
        self._worker_dir = worker_tmp_dir or os.path.join(
            tempfile.gettempdir(), f"train_lib-worker-{os.getpid()}")
        self._pending: _Pending | None = None
        self._newline_checked = False
        # Async writes always include the standard save_counter; create it so that sync
        # and async checkpoints hold the same objects and restore without warnings.
        getattr(checkpoint, "save_counter", None)
        if is_chief:
            os.makedirs(self.model_dir, exist_ok=True)
        # Derive the rotation state from the files and the event log.
        self._times: dict[int, float] = {}
        self._kept_forever: set[int] = set()
        self._last_preserved = clock() - 1.0  # as tf.train.CheckpointManager
        for event in read_events(self.model_dir):
            kind, step = event.get("event"), event.get("step")
            if kind == "saved" and isinstance(step, int):
                self._times[step] = float(event.get("time", 0.0))
                if event.get("last_preserved_time") is not None:
                    self._last_preserved = float(event["last_preserved_time"])
            elif kind == "kept" and event.get("reason") == KEEP_EVERY_N_HOURS:
                self._kept_forever.add(step)
                self._last_preserved = float(
                    event.get("checkpoint_time", event.get("time", self._last_preserved)))
        self._present: set[int] = set(self._files_steps())
        self._kept_forever &= self._present

    # ------------------------------------------------------------ queries

    @property
    def latest_step(self) -> int | None:
        """Newest checkpoint step committed in model_dir, or None."""
        return max(self._present) if self._present else None

    def saved_steps(self) -> list[int]:
        """Steps of the committed checkpoints in model_dir (rotating and kept forever)."""
        return sorted(self._present)

    def prefix(self, step: int) -> str:
        """The checkpoint prefix of `step`: `<model_dir>/ckpt-<step>`."""
        return os.path.join(self.model_dir, f"ckpt-{step}")

    # ------------------------------------------------------------ save

    def save(self, step: int, reason: str) -> str:
        """Write the checkpoint of `step`, commit it, then rotate; returns its prefix.

        A step already saved is a no-op. Raises CheckpointError if the write fails
        (earlier checkpoints and the state file are left intact) and ValueError if
        `step` is older than the latest checkpoint.
        """
        if not self.is_chief:
            return self.prefix(step) if step in self._present else self._save_worker(step)
        self._finish_pending()
        prefix = self.prefix(step)
        if step in self._present:
            return prefix
        if self._present and step < max(self._present):
            raise ValueError(f"cannot save step {step}: model_dir already has ckpt-"
                             f"{max(self._present)}, a newer step")
        start_time, start_clock = self._clock(), time.perf_counter()
        try:
            self._remove_files(prefix)  # leftovers of a crashed write of this step
            self._checkpoint.write(prefix, options=self._options)
        except (OSError, tf.errors.OpError) as e:
            self._fail(step, prefix, e)
        pending = _Pending(step, reason, prefix, start_time, start_clock,
                           time.perf_counter() - start_clock)
        if self._async:
            self._pending = pending
        else:
            self._commit(pending)
        return prefix

    def sync(self) -> None:
        """Wait for an async save and commit it; raises CheckpointError if it failed."""
        self._finish_pending()

    def close(self) -> None:
        """Commit any pending async save (calls `sync()`)."""
        self.sync()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _finish_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self._checkpoint.sync()
        # Checkpoint.sync() does not raise the background thread's error: fetch it, so
        # that it is reported for this checkpoint and not again at the next write.
        impl = getattr(self._checkpoint, "_async_checkpointer_impl", None)
        error = getattr(impl, "_async_error", None)
        if error is not None:
            impl._async_error = None
            self._fail(pending.step, pending.prefix, error)
        if not os.path.exists(pending.prefix + ".index"):
            self._fail(pending.step, pending.prefix, OSError("the index file was not written"))
        self._commit(pending)

    def _fail(self, step: int, prefix: str, error: BaseException) -> None:
        """Remove the partial files of `prefix` if possible; raise CheckpointError."""
        try:
            self._remove_files(prefix)
        except OSError:
            pass
        latest = self.latest_step
        intact = (f"The earlier checkpoints are intact; the latest is {self.prefix(latest)}."
                  if latest is not None else "There is no earlier checkpoint.")
        raise CheckpointError(
            f"Could not write checkpoint {prefix} (step {step}): "
            f"{type(error).__name__}: {_short(error)}. {intact} Check the free disk space "
            f"(df -h {self.model_dir}) and write permissions of {self.model_dir}."
        ) from error

    def _commit(self, p: _Pending) -> None:
        """Record a completely written checkpoint: state file, `saved` event, rotation."""
        confirmed = time.perf_counter() - p.start_clock
        self._present.add(p.step)
        self._times[p.step] = p.start_time
        rotating = [(s, self._time_of(s)) for s in self._present - self._kept_forever]
        plan = self.policy.plan_rotation(rotating, self._last_preserved)
        try:
            self._write_state(p.step, sorted(self._present - set(plan.delete)))
        except OSError as e:
            self._present.discard(p.step)
            self._fail(p.step, p.prefix, OSError(f"could not update the state file: {e}"))
        saved: dict[str, object] = {"path": p.prefix, "seconds": round(p.stall, 4),
                                    "async": self._async,
                                    # the settings in force, so the count can be explained
                                    "checkpoint_every_n": self.policy.every_n,
                                    "checkpoint_max_to_keep": self.policy.max_to_keep,
                                    "keep_checkpoint_every_n_hours":
                                        self.policy.keep_every_n_hours}
        if self._async:
            saved["confirmed_seconds"] = round(confirmed, 4)
        if self.policy.keep_every_n_hours is not None:
            saved["last_preserved_time"] = self._last_preserved
        self._event("saved", p.step, p.reason, time=p.start_time, **saved)
        detail = f", async; confirmed after {confirmed:.2f} s" if self._async else ""
        self._log(f"saved ckpt-{p.step} ({p.reason}) in {p.stall:.2f} s{detail}")
        self._apply(plan)

    def _apply(self, plan: RotationPlan) -> None:
        for step in plan.keep_forever:
            self._kept_forever.add(step)
            self._event("kept", step, KEEP_EVERY_N_HOURS, path=self.prefix(step),
                        checkpoint_time=self._time_of(step))
            self._log(f"kept ckpt-{step} forever "
                      f"(keep_every_n_hours={self.policy.keep_every_n_hours:g})")
        for step in plan.delete:
            try:
                self._remove_files(self.prefix(step))
            except OSError as e:
                self._log(f"WARNING: could not remove ckpt-{step}: {e}")
                continue
            self._present.discard(step)
            self._event("removed", step, plan.reasons[step], path=self.prefix(step))
            self._log(f"removed ckpt-{step} ({plan.reasons[step]}="
                      f"{self.policy.max_to_keep})")
        self._last_preserved = plan.last_preserved_time
        names = ", ".join(f"ckpt-{s}" for s in plan.rotating)
        forever = sorted(self._kept_forever)
        extra = (" (+ forever: " + ", ".join(f"ckpt-{s}" for s in forever) + ")"
                 if forever else "")
        self._log(f"kept: {names}{extra}")

    def _save_worker(self, step: int) -> str:
        prefix = os.path.join(self._worker_dir, f"ckpt-{step}")
        try:
            self._checkpoint.write(prefix)  # synchronous: the directory is deleted next
        except (OSError, tf.errors.OpError) as e:
            raise CheckpointError(f"worker could not write its temporary checkpoint "
                                  f"{prefix}: {e}") from e
        finally:
            shutil.rmtree(self._worker_dir, ignore_errors=True)
        self._present.add(step)  # so that save decisions match the chief's
        return prefix

    # ------------------------------------------------------------ restore

    def restore(self, expect_partial: bool = False) -> int | None:
        """Restore the newest checkpoint that reads back completely; returns its step
        (parsed from the name), or None if model_dir has no checkpoint.

        Invalid newer checkpoints are reported and moved to invalid_checkpoints/ (so
        they are neither resumed from nor mistaken for saved steps); a stale or
        missing state file is rewritten. Raises CheckpointError if checkpoints exist
        but none is valid.
        """
        self._finish_pending()
        state = tf.train.get_checkpoint_state(self.model_dir)
        listed = self._state_steps(state)
        candidates = sorted(set(listed) | set(self._files_steps()), reverse=True)
        if not candidates:
            return None
        invalid: list[tuple[int, str]] = []
        restored = None
        for step in candidates:
            problem = self._verify(self.prefix(step), expect_partial)
            if problem is None:
                restored = step
                break
            invalid.append((step, problem))
            self._log(f"WARNING: skipping ckpt-{step}: {problem}")
        if restored is None:
            names = "; ".join(f"{self.prefix(s)}: {why}" for s, why in invalid)
            raise CheckpointError(
                f"No valid checkpoint in {self.model_dir} ({names}). Training will not "
                "silently start over: move these files away (or use another --model_dir) "
                "to start fresh.")
        if self.is_chief:
            for step, problem in invalid:
                moved = self._quarantine(step)
                self._event("skipped_invalid", step, problem, path=self.prefix(step),
                            moved_to=moved)
                if moved:
                    self._log(f"moved the files of invalid ckpt-{step} to {moved}")
            self._present = set(self._files_steps())
            self._kept_forever &= self._present
            self._repair_state(state, restored)
            self._event("restored", restored, "resume", path=self.prefix(restored))
        self._log(f"restored ckpt-{restored} from {self.model_dir}")
        return restored

    def _verify(self, prefix: str, expect_partial: bool) -> str | None:
        """None if `prefix` reads back completely into the checkpoint, else why not."""
        problem = verify_checkpoint(prefix)
        if problem is not None:
            return problem
        try:
            status = self._required.read(prefix)
            if expect_partial:
                status.expect_partial()
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            return f"does not match the model ({type(e).__name__}: {_short(e)})"
        return None

    def _quarantine(self, step: int) -> str | None:
        prefix = self.prefix(step)
        files = [prefix + ".index"] + glob.glob(glob.escape(prefix) + ".data-*")
        files = [f for f in files if os.path.exists(f)]
        if not files:
            return None
        target = os.path.join(self.model_dir, INVALID_DIR)
        os.makedirs(target, exist_ok=True)
        for f in files:
            os.replace(f, os.path.join(target, os.path.basename(f)))
        return target

    def _repair_state(self, state: Any, restored: int) -> None:
        steps = sorted(self._present)
        wanted = self.prefix(restored)
        if state is None:
            what = "was missing"
        elif (state.model_checkpoint_path != wanted
              or sorted(self._state_steps(state)) != steps):
            what = f"was stale (pointed to {state.model_checkpoint_path})"
        else:
            return
        self._write_state(restored, steps)
        self._event("state_repaired", restored, what, path=wanted)
        self._log(f"checkpoint state file {what}; rewrote it to point to {wanted}")

    # ------------------------------------------------------------ files

    def _files_steps(self) -> list[int]:
        steps = []
        for index in glob.glob(os.path.join(glob.escape(self.model_dir), "ckpt-*.index")):
            match = _NAME.match(os.path.basename(index)[: -len(".index")])
            if match:
                steps.append(int(match.group(1)))
        return steps

    def _state_steps(self, state: Any) -> list[int]:
        if state is None:
            return []
        paths = [state.model_checkpoint_path, *state.all_model_checkpoint_paths]
        matches = [_NAME.match(os.path.basename(p)) for p in paths]
        return sorted({int(m.group(1)) for m in matches if m})

    def _time_of(self, step: int) -> float:
        """Wall time of a checkpoint: from its `saved` event, else its index file."""
        if step in self._times:
            return self._times[step]
        try:
            return os.path.getmtime(self.prefix(step) + ".index")
        except OSError:
            return self._clock()

    def _remove_files(self, prefix: str) -> None:
        """Remove a checkpoint's files, the index first (no index = not a checkpoint)."""
        for path in [prefix + ".index", *glob.glob(glob.escape(prefix) + ".data-*")]:
            if os.path.exists(path):
                os.remove(path)
        if os.path.isdir(prefix + "_temp"):
            shutil.rmtree(prefix + "_temp", ignore_errors=True)

    def _write_state(self, latest: int, steps: list[int]) -> None:
        """Atomically write the `checkpoint` state file (relative paths, oldest first)."""
        lines = [f'model_checkpoint_path: "ckpt-{latest}"']
        lines += [f'all_model_checkpoint_paths: "ckpt-{s}"' for s in steps]
        lines += [f"all_model_checkpoint_timestamps: {self._time_of(s)!r}" for s in steps]
        lines.append(f"last_preserved_timestamp: {self._last_preserved!r}")
        path = os.path.join(self.model_dir, STATE_FILE)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _event(self, event: str, step: int, reason: str, **fields: object) -> None:
        record = {"event": event, "step": step, "reason": reason, "time": self._clock()}
        record.update(fields)
        path = os.path.join(self.model_dir, EVENTS_FILE)
        with open(path, "a+b") as f:
            if not self._newline_checked:  # a crash may have left a truncated last line
                self._newline_checked = True
                if f.seek(0, os.SEEK_END) > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
            f.write((json.dumps(record) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def verify_checkpoint(prefix: str) -> str | None:
    """None if the checkpoint at `prefix` reads back completely, else why not.

    Checks that the index and every data shard exist, then reads (and checksums)
    every tensor with RestoreV2, also variants such as a tf.data iterator's state,
    which reader.get_tensor cannot convert. Does not compare with any model.
    """
    if not os.path.exists(prefix + ".index"):
        return "index file missing"
    shards = sorted(glob.glob(glob.escape(prefix) + ".data-*"))
    if not shards:
        return "data file missing"
    match = _SHARD.search(shards[0])
    expected = int(match.group(1)) if match else 1
    if len(shards) < expected:
        return f"data file missing ({len(shards)} of {expected} shards present)"
    try:
        dtypes = tf.train.load_checkpoint(prefix).get_variable_to_dtype_map()
        with tf.device("/cpu:0"):
            for name, dtype in dtypes.items():
                tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=[name],
                                     shape_and_slices=[""], dtypes=[dtype])
    except Exception as e:  # noqa: BLE001 - any read failure means invalid
        return f"data file truncated or corrupt ({type(e).__name__}: {_short(e)})"
    return None


def _short(error: BaseException) -> str:
    """The first line of an error message without TensorFlow's op decorations."""
    text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", str(error)).strip()
    return text.splitlines()[0] if text else ""


# ---------------------------------------------------------------- run lock

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
