"""Checkpoint I/O: save, commit, rotate, restore the newest valid checkpoint.

What to save and keep is decided by the pure `CheckpointPolicy` (policy.py);
`CheckpointManager` does the file work it decides, with the helpers of files.py
(names, removal, the `checkpoint` state file, invalid_checkpoints/), events.py
(checkpoints.jsonl) and verify.py (reading a checkpoint back). The run lock is
lock.py's `RunLock`, taken by the trainer around its manager.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from absl import logging

from train_lib.checkpointing import files
from train_lib.checkpointing.events import EventLog, read_events
from train_lib.checkpointing.policy import KEEP_EVERY_N_HOURS, CheckpointPolicy, RotationPlan
from train_lib.checkpointing.verify import short_error, verify_checkpoint
from train_lib.errors import UserError

__all__ = ["CheckpointError", "CheckpointManager"]


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be written or no checkpoint can be restored; says what to do."""


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
        self._events = EventLog(self.model_dir, clock)
        self.is_chief = is_chief
        self._worker_dir = worker_tmp_dir or os.path.join(
            tempfile.gettempdir(), f"train_lib-worker-{os.getpid()}")
        self._pending: _Pending | None = None
        # Async writes always include the standard save_counter; create it so that sync
        # and async checkpoints hold the same objects and restore without warnings.
        getattr(checkpoint, "save_counter", None)
        if is_chief:
            os.makedirs(self.model_dir, exist_ok=True)
        self._times: dict[int, float] = {}
        self._kept_forever: set[int] = set()
        self._last_preserved = clock() - 1.0  # as tf.train.CheckpointManager
        self._load_history()
        self._present: set[int] = set(files.list_steps(self.model_dir))
        self._kept_forever &= self._present

    def _load_history(self) -> None:
        """Derive the rotation state (wall times, kept forever, last preserved time)
        from the event log."""
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
        return files.prefix(self.model_dir, step)

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
            files.remove_checkpoint(prefix)  # leftovers of a crashed write of this step
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
            files.remove_checkpoint(prefix)
        except OSError:
            pass
        latest = self.latest_step
        intact = (f"The earlier checkpoints are intact; the latest is {self.prefix(latest)}."
                  if latest is not None else "There is no earlier checkpoint.")
        raise CheckpointError(
            f"Could not write checkpoint {prefix} (step {step}): "
            f"{type(error).__name__}: {short_error(error)}. {intact} Check the free disk "
            f"space (df -h {self.model_dir}) and write permissions of {self.model_dir}."
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
        self._events.append("saved", p.step, p.reason, time=p.start_time, **saved)
        detail = f", async; confirmed after {confirmed:.2f} s" if self._async else ""
        self._log(f"saved ckpt-{p.step} ({p.reason}) in {p.stall:.2f} s{detail}")
        self._apply(plan)

    def _apply(self, plan: RotationPlan) -> None:
        for step in plan.keep_forever:
            self._kept_forever.add(step)
            self._events.append("kept", step, KEEP_EVERY_N_HOURS, path=self.prefix(step),
                                checkpoint_time=self._time_of(step))
            self._log(f"kept ckpt-{step} forever "
                      f"(keep_every_n_hours={self.policy.keep_every_n_hours:g})")
        for step in plan.delete:
            try:
                files.remove_checkpoint(self.prefix(step))
            except OSError as e:
                self._log(f"WARNING: could not remove ckpt-{step}: {e}")
                continue
            self._present.discard(step)
            self._events.append("removed", step, plan.reasons[step], path=self.prefix(step))
            self._log(f"removed ckpt-{step} ({plan.reasons[step]}="
                      f"{self.policy.max_to_keep})")
        self._last_preserved = plan.last_preserved_time
        names = ", ".join(f"ckpt-{s}" for s in plan.rotating)
        forever = sorted(self._kept_forever)
        extra = (" (+ forever: " + ", ".join(f"ckpt-{s}" for s in forever) + ")"
                 if forever else "")
        self._log(f"kept: {names}{extra}")

    def _save_worker(self, step: int) -> str:
        prefix = files.prefix(self._worker_dir, step)
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
        # The state as TensorFlow reads it: the repair is for tf.train.latest_checkpoint.
        state = tf.train.get_checkpoint_state(self.model_dir)
        listed = self._state_steps(state)
        candidates = sorted(set(listed) | set(files.list_steps(self.model_dir)), reverse=True)
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
            self._set_aside(invalid)
            self._repair_state(state, restored)
            self._events.append("restored", restored, "resume", path=self.prefix(restored))
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
            return f"does not match the model ({type(e).__name__}: {short_error(e)})"
        return None

    def _set_aside(self, invalid: list[tuple[int, str]]) -> None:
        """Move the invalid checkpoints to invalid_checkpoints/, record each one, and
        re-read which checkpoints are present."""
        for step, problem in invalid:
            moved = files.quarantine(self.model_dir, step)
            self._events.append("skipped_invalid", step, problem, path=self.prefix(step),
                                moved_to=moved)
            if moved:
                self._log(f"moved the files of invalid ckpt-{step} to {moved}")
        self._present = set(files.list_steps(self.model_dir))
        self._kept_forever &= self._present

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
        self._events.append("state_repaired", restored, what, path=wanted)
        self._log(f"checkpoint state file {what}; rewrote it to point to {wanted}")

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _state_steps(state: Any) -> list[int]:
        """Steps named by a tf.train.CheckpointState (None: no state file)."""
        if state is None:
            return []
        paths = [state.model_checkpoint_path, *state.all_model_checkpoint_paths]
        steps = (files.parse_step(p) for p in paths)
        return sorted({s for s in steps if s is not None})

    def _time_of(self, step: int) -> float:
        """Wall time of a checkpoint: from its `saved` event, else its index file."""
        if step in self._times:
            return self._times[step]
        try:
            return os.path.getmtime(self.prefix(step) + ".index")
        except OSError:
            return self._clock()

    def _write_state(self, latest: int, steps: list[int]) -> None:
        """Atomically write the `checkpoint` state file (relative paths, oldest first)."""
        files.write_state(self.model_dir, latest, steps, [self._time_of(s) for s in steps],
                          self._last_preserved)
