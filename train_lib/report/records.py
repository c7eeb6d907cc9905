"""The records of an inspection (inspect.py gathers them, analysis.py reasons over
them, format.py words them): one checkpoint's status, the scan of a model_dir's
files, checkpoints.jsonl condensed, the run's settings, and the whole `Report`.
Plain dataclasses; this module imports nothing of the project.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class CheckpointStatus:
    """One `ckpt-<step>` in model_dir. `time` is when it was written (unix seconds;
    `time_source` "event" or "mtime"); `reason` its save reason from the events (None if
    not recorded); `problem` why it is invalid (None if it reads back completely);
    `optimizer_step` the optimizer's step counter inside it (None if absent/unreadable)."""

    step: int
    prefix: str
    time: float | None
    time_source: str
    size_bytes: int
    reason: str | None
    latest: bool
    kept_forever: bool
    valid: bool
    problem: str | None
    optimizer_step: int | None


@dataclasses.dataclass
class DirScan:
    """The files of a model_dir (no checkpoint is read). `state_latest`/`state_listed` are
    absolute prefixes from the `checkpoint` state file; `lock` is `lock_status`'s result."""

    steps: list[int]
    data_only: dict[int, list[str]]
    temp_dirs: list[str]
    foreign: dict[str, list[str]]
    moved_invalid: dict[str, list[str]]
    state_exists: bool
    state_latest: str | None
    state_listed: list[str]
    has_events_file: bool
    lock: dict


@dataclasses.dataclass
class EventSummary:
    """checkpoints.jsonl condensed: `saves` (step, reason) in order, `saves_since_resume`
    those after the last restore, `removed` by max_to_keep, `kept` forever by hours,
    `skipped_invalid` (step, why), `restores` (resume steps), `reason_of`/`time_of` per
    step (last `saved` event), `gone` steps whose last event is removed/skipped_invalid."""

    saves: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    saves_since_resume: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    removed: list[int] = dataclasses.field(default_factory=list)
    kept: list[int] = dataclasses.field(default_factory=list)
    skipped_invalid: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    restores: list[int] = dataclasses.field(default_factory=list)
    state_repairs: int = 0
    reason_of: dict[int, str] = dataclasses.field(default_factory=dict)
    time_of: dict[int, float] = dataclasses.field(default_factory=dict)
    gone: set[int] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class Settings:
    """The settings a run used, each None when not known; `sources[name]` says where a
    value came from, `notes` why one is missing."""

    checkpoint_every_n: int | None = None
    checkpoint_max_to_keep: int | None = None
    num_steps: int | None = None
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Report:
    """Everything `format.format_report` prints; `format.report_json` gives the --json
    object."""

    model_dir: str
    checkpoints: list[CheckpointStatus]
    summary: dict
    expected: list[int] | None
    anomalies: list[str]
    why: list[str]
