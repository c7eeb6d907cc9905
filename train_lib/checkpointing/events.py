"""The checkpoint event log `<model_dir>/checkpoints.jsonl`. No TensorFlow.

Append-only, one JSON object per line with at least `event`, `step`, `reason` and
`time` (unix seconds). Events (written by CheckpointManager):
- `saved`: path; seconds (how long the caller was blocked by the write); async;
  checkpoint_every_n, checkpoint_max_to_keep, keep_checkpoint_every_n_hours (the
  settings in force); for async saves also confirmed_seconds (start until the
  write was known complete: an upper bound of the write time); with
  keep_every_n_hours also last_preserved_time. Its `time` is when the write
  started (the checkpoint's wall time, used by keep_every_n_hours).
- `removed` (reason max_to_keep; path), `kept` (kept forever, reason
  keep_every_n_hours; path, checkpoint_time).
- `skipped_invalid` (reason: why it is invalid; path, moved_to),
  `state_repaired` (reason: what was wrong; path), `restored` (reason "resume"; path).

Readers (`read_events`, the inspector, the timeline) skip lines that are not a JSON
object, such as a last line cut short by a crash.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from train_lib.jsonl import read_jsonl

__all__ = ["EVENTS_FILE", "EventLog", "read_events"]

EVENTS_FILE = "checkpoints.jsonl"


def read_events(model_dir: str) -> list[dict]:
    """All events of `<model_dir>/checkpoints.jsonl`, oldest first; [] if absent.

    Lines that are not a JSON object (a line truncated by a crash) are skipped.
    """
    return read_jsonl(os.path.join(model_dir, EVENTS_FILE))


class EventLog:
    """Appends events to `<model_dir>/checkpoints.jsonl`, each one fsynced.

    Before its first append, an EventLog ends a last line cut short by a crash with a
    newline, so that the truncated record stays one unreadable line and the new one
    is readable. Does not create model_dir.
    """

    def __init__(self, model_dir: str, clock: Callable[[], float] = time.time) -> None:
        self.path = os.path.join(model_dir, EVENTS_FILE)
        self._clock = clock
        self._newline_checked = False

    def append(self, event: str, step: int, reason: str, **fields: object) -> dict:
        """Append {event, step, reason, time: clock(), **fields} (a `time` in `fields`
        replaces the clock's) and return it; raises OSError if it cannot be written."""
        record: dict = {"event": event, "step": step, "reason": reason, "time": self._clock()}
        record.update(fields)
        with open(self.path, "a+b") as f:
            if not self._newline_checked:  # a crash may have left a truncated last line
                self._newline_checked = True
                if f.seek(0, os.SEEK_END) > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
            f.write((json.dumps(record) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        return record
