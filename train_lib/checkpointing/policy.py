"""When to save a checkpoint and which ones to keep: a pure policy, no TensorFlow.

"Decide, then do": this module only decides. Steps and wall times go in, decisions
come out; `train_lib.checkpointing.manager.CheckpointManager` does the file work. Time is
always an argument, so every decision can be replayed in a test.

Contract (docs/architecture.md, "The checkpoint contract"):
- a regular save at every positive multiple of `every_n`, never at step 0;
- a final save where training stops, unless that step is already saved or the
  state is not finite (`final_save_reason`);
- at most `max_to_keep` checkpoints in the rotating set (every save counts,
  whatever its reason); one that leaves it is kept forever instead of deleted if
  it is at least `keep_every_n_hours` newer than the last one kept forever
  (the semantics of tf.train.CheckpointManager's keep_checkpoint_every_n_hours).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import NamedTuple


class SaveReason(enum.StrEnum):
    """Why a checkpoint was saved: the `reason` of a `saved` event in checkpoints.jsonl,
    as the inspector and the timeline read it."""

    INTERVAL = "interval"  # a positive multiple of every_n
    END = "end"  # the final save at num_steps
    SIGNAL = "signal"  # the final save after SIGINT / SIGTERM
    ERROR = "error"  # the final save of the last completed step before an error


class StopReason(enum.StrEnum):
    """Why training stopped: what the loop tells its hooks at the end of a run, and
    `TrainResult.stop_reason`."""

    FINISHED = "finished"  # num_steps reached
    SIGNAL = "signal"  # SIGINT / SIGTERM (in a multi-worker job: agreed by all)
    ERROR = "error"  # a step or a hook raised
    NON_FINITE = "non_finite"  # a loss was NaN or infinite: nothing may be saved
    # train() alone: model_dir had reached num_steps before the run; no step ran.
    ALREADY_FINISHED = "already_finished"


FINAL_SAVE_REASONS = (SaveReason.END, SaveReason.SIGNAL, SaveReason.ERROR)
_FINAL_SAVE = {StopReason.FINISHED: SaveReason.END, StopReason.SIGNAL: SaveReason.SIGNAL,
               StopReason.ERROR: SaveReason.ERROR}

# Rotation reasons.
MAX_TO_KEEP = "max_to_keep"
KEEP_EVERY_N_HOURS = "keep_every_n_hours"


class CheckpointInfo(NamedTuple):
    """A checkpoint in the rotating set: its global step and wall time (unix seconds)."""

    step: int
    time: float


@dataclasses.dataclass(frozen=True)
class RotationPlan:
    """What to do after a save: `delete` and `keep_forever` (oldest first) leave the
    rotating set, `rotating` stays in it; `reasons[step]` is MAX_TO_KEEP or
    KEEP_EVERY_N_HOURS for every step that leaves; `last_preserved_time` is the new
    wall time of the last checkpoint kept forever."""

    delete: tuple[int, ...]
    keep_forever: tuple[int, ...]
    rotating: tuple[int, ...]
    reasons: dict[int, str]
    last_preserved_time: float


def _require_int(name: str, flag: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} (--{flag}) must be an integer >= {minimum}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class CheckpointPolicy:
    """When to save (`save_reason`, `needs_final_save`) and what to keep (`plan_rotation`).

    Raises ValueError on construction if every_n < 1, max_to_keep < 1 or
    keep_every_n_hours is not None and not > 0.
    """

    every_n: int
    max_to_keep: int
    keep_every_n_hours: float | None = None

    def __post_init__(self) -> None:
        _require_int("every_n", "checkpoint_every_n", self.every_n, 1)
        _require_int("max_to_keep", "checkpoint_max_to_keep", self.max_to_keep, 1)
        hours = self.keep_every_n_hours
        if hours is not None and (
            isinstance(hours, bool) or not isinstance(hours, (int, float)) or not hours > 0
        ):
            raise ValueError(
                "keep_every_n_hours (--keep_checkpoint_every_n_hours) must be a number > 0 "
                f"or None (keep none), got {hours!r}"
            )

    # ------------------------------------------------------------ when to save

    def save_reason(self, step: int) -> SaveReason | None:
        """INTERVAL if `step` is a positive multiple of every_n, else None (never at 0)."""
        if step > 0 and step % self.every_n == 0:
            return SaveReason.INTERVAL
        return None

    def next_save_step(self, step: int) -> int:
        """The first step after `step` with a regular save (`save_reason` is INTERVAL)."""
        return (step // self.every_n + 1) * self.every_n

    def needs_final_save(self, step: int, last_saved_step: int | None) -> bool:
        """True when training stops at `step` and that step is not already saved."""
        return step > 0 and step != last_saved_step

    def final_save_reason(self, step: int, last_saved_step: int | None,
                          stop: StopReason) -> SaveReason | None:
        """The reason of the final save when training stops at `step` for `stop`, or
        None when none is due: step 0, a step already saved, or a non-finite state
        (never saved over a good one)."""
        if stop == StopReason.NON_FINITE or not self.needs_final_save(step, last_saved_step):
            return None
        return _FINAL_SAVE[StopReason(stop)]

    # ------------------------------------------------------------ what to keep

    def plan_rotation(
        self, rotating: Sequence[tuple[int, float]], last_preserved_time: float
    ) -> RotationPlan:
        """Decide which checkpoints leave the rotating set after a save.

        `rotating`: (step, wall time) of every checkpoint in the rotating set,
        including the one just committed; checkpoints already kept forever must
        not be in it. `last_preserved_time`: wall time of the last checkpoint kept
        forever (or, if none yet, when checkpointing of this model_dir started);
        ignored without keep_every_n_hours. The oldest steps leave first.
        """
        ordered = sorted(CheckpointInfo(int(s), float(t)) for s, t in rotating)
        excess = max(0, len(ordered) - self.max_to_keep)
        delete: list[int] = []
        keep: list[int] = []
        reasons: dict[int, str] = {}
        anchor = last_preserved_time
        for info in ordered[:excess]:
            hours = self.keep_every_n_hours
            if hours is not None and info.time - hours * 3600.0 >= anchor:
                keep.append(info.step)
                reasons[info.step] = KEEP_EVERY_N_HOURS
                anchor = info.time
            else:
                delete.append(info.step)
                reasons[info.step] = MAX_TO_KEEP
        return RotationPlan(
            delete=tuple(delete),
            keep_forever=tuple(keep),
            rotating=tuple(info.step for info in ordered[excess:]),
            reasons=reasons,
            last_preserved_time=anchor,
        )

    # ------------------------------------------------------------ explanation

    def planned_saves(
        self, num_steps: int, start_step: int = 0, stop_step: int | None = None
    ) -> list[tuple[int, str]]:
        """(step, reason) of every save of a run from `start_step` (a restored
        checkpoint, or 0) that ends at `stop_step` (default: num_steps): INTERVAL
        saves, then END at num_steps or, for a run stopped before it, SIGNAL (the
        reason of a stop by SIGINT / SIGTERM; one after an error would be ERROR)."""
        end = num_steps if stop_step is None else stop_step
        if not 0 <= start_step <= end <= num_steps:
            raise ValueError(
                "need 0 <= start_step <= stop_step <= num_steps, got "
                f"start_step={start_step}, stop_step={stop_step}, num_steps={num_steps}"
            )
        first = self.next_save_step(start_step)
        saves = [(step, SaveReason.INTERVAL) for step in range(first, end + 1, self.every_n)]
        last_saved = saves[-1][0] if saves else (start_step or None)
        if self.needs_final_save(end, last_saved):
            saves.append((end, SaveReason.END if end == num_steps else SaveReason.SIGNAL))
        return saves

    def expected_checkpoints(
        self, num_steps: int, start_step: int = 0, stop_step: int | None = None
    ) -> list[int]:
        """Steps present at the end of a run without keep_every_n_hours, oldest first.

        Assumes the run that reached `start_step` saved at the interval steps and
        at `start_step`, e.g. every_n=1000, max_to_keep=3: num_steps=3500 ->
        [2000, 3000, 3500]; stopped at 3200 -> [2000, 3000, 3200].
        """
        earlier = self.planned_saves(start_step, 0, start_step) if start_step else []
        steps = [s for s, _ in earlier] + [s for s, _ in self.planned_saves(
            num_steps, start_step, stop_step)]
        return sorted(set(steps))[-self.max_to_keep:]
