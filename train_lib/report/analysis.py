"""What the facts of a model_dir imply: the checkpoints the settings lead to
(`expected_steps`), what looks wrong (`find_anomalies`, one rule group per helper)
and the "Why N checkpoints" lines (`explain`). Pure functions of what inspect.py
gathered; no file is read here.
"""

from __future__ import annotations

import collections
import os

from train_lib.checkpointing.files import INVALID_DIR, STATE_FILE, parse_step
from train_lib.checkpointing.lock import LOCK_FILE
from train_lib.checkpointing.policy import FINAL_SAVE_REASONS, CheckpointPolicy, SaveReason
from train_lib.report.records import CheckpointStatus, DirScan, EventSummary, Settings

FINAL_REASONS = FINAL_SAVE_REASONS  # the trainer's final saves
STOPPED_EARLY = (SaveReason.SIGNAL, SaveReason.ERROR)  # final saves before num_steps


def expected_steps(settings: Settings, summary: EventSummary) -> list[int] | None:
    """The checkpoint steps the settings imply at the end of the run the events record,
    with CheckpointPolicy.expected_checkpoints from the last resume point to num_steps
    (or to the step of a signal/error stop), plus the steps of earlier stops and of
    checkpoints kept by keep_every_n_hours. None if a setting is unknown."""
    every_n, keep, num = (settings.checkpoint_every_n, settings.checkpoint_max_to_keep,
                          settings.num_steps)
    if every_n is None or keep is None or num is None:
        return None
    policy = CheckpointPolicy(every_n, keep)
    start = summary.restores[-1] if summary.restores else 0
    num = max(num, start)
    stop = None
    if summary.saves_since_resume:
        step, reason = summary.saves_since_resume[-1]
        if reason in STOPPED_EARLY and start <= step < num:
            stop = step
    rotating = set(policy.expected_checkpoints(num, start, stop))
    rotating |= {s for s, r in summary.saves if r in FINAL_REASONS and s < start}
    kept = set(summary.kept)
    return sorted(sorted(rotating - kept)[-keep:] + sorted(kept))



def find_anomalies(scan: DirScan, checkpoints: list[CheckpointStatus], summary: EventSummary,
                   settings: Settings, expected: list[int] | None) -> tuple[list[str], list[str]]:
    """(anomalies, notes): one clear line each. Notes are facts that are not wrong but
    limit what can be checked (a trainer running, num_steps unknown)."""
    bad: list[str] = []
    notes: list[str] = []
    running = scan.lock["state"] == "running"
    present = [c.step for c in checkpoints]
    bad += _file_problems(scan, checkpoints)
    bad += _event_problems(scan, present, summary)
    bad += _state_file_problems(scan, present, running)
    bad += _moved_invalid(scan, summary)
    _lock_problems(scan.lock, bad, notes)
    _end_of_run_problems(scan.lock, present, summary, settings, bad, notes)
    if expected is not None and (present or summary.saves) and not running:
        missing = sorted(set(expected) - set(present))
        extra = sorted(set(present) - set(expected))
        if missing or extra:
            bad.append("the checkpoints differ from what the settings imply: "
                       + "; ".join(part for part in (_names("missing", missing),
                                                     _names("unexpected", extra)) if part))
    return bad, notes


def _file_problems(scan: DirScan, checkpoints: list[CheckpointStatus]) -> list[str]:
    """Damaged or foreign checkpoints, and files left by an unfinished write."""
    bad = []
    for c in checkpoints:
        if not c.valid:
            bad.append(f"ckpt-{c.step} is half-written or damaged: {c.problem}; the trainer "
                       "skips it and resumes from an older one")
        elif c.optimizer_step is not None and c.optimizer_step != c.step:
            bad.append(f"ckpt-{c.step} holds optimizer step {c.optimizer_step}, not "
                       f"{c.step}: from a foreign run (the OD API names checkpoints by save "
                       "counter) or copied/renamed; do not resume from it")
    for step, names in sorted(scan.data_only.items()):
        bad.append(f"ckpt-{step} has data files but no index ({', '.join(names)}): a half-"
                   "written or half-deleted checkpoint; delete these files")
    for name in scan.temp_dirs:
        bad.append(f"{name}/ is left from a checkpoint write that did not finish; delete it")
    for _prefix, names in sorted(scan.foreign.items()):
        bad.append(f"foreign checkpoint files {', '.join(names)}: not named ckpt-<step> "
                   "(another run or tool wrote them); the trainer ignores them")
    return bad


def _event_problems(scan: DirScan, present: list[int], summary: EventSummary) -> list[str]:
    """Checkpoints and checkpoints.jsonl disagreeing, or no events at all."""
    bad = []
    if summary.saves:
        for step in present:
            if step not in summary.reason_of:
                bad.append(f"ckpt-{step} is in no checkpoints.jsonl event: written by another "
                           "run or tool, or copied in")
        for step in sorted(set(summary.reason_of) - set(present) - summary.gone
                           - set(scan.data_only)):
            bad.append(f"ckpt-{step} was saved (checkpoints.jsonl) but its files are gone and "
                       "no removal is recorded: deleted by hand?")
    elif present:
        bad.append("checkpoints.jsonl is " + ("empty" if scan.has_events_file else "missing")
                   + ": these checkpoints were not written by this trainer (or the log was "
                   "deleted); their save reasons are unknown")
    return bad


def _state_file_problems(scan: DirScan, present: list[int], running: bool) -> list[str]:
    """The state file tf.train.latest_checkpoint reads: missing, damaged, naming
    absent checkpoints, or behind the newest checkpoint."""
    bad = []
    newest = max(present, default=None)
    if not scan.state_exists:
        if present:
            bad.append(f"the '{STATE_FILE}' state file is missing: tf.train.latest_checkpoint "
                       "finds nothing (the trainer rewrites it on its next start)")
    elif scan.state_latest is None:
        bad.append(f"the '{STATE_FILE}' state file names no model_checkpoint_path (damaged)")
    else:
        listed = [scan.state_latest, *scan.state_listed]
        for path in dict.fromkeys(listed):
            if not os.path.exists(path + ".index"):
                what = "latest checkpoint" if path == scan.state_latest else "checkpoint list"
                bad.append(f"the '{STATE_FILE}' state file's {what} names "
                           f"{os.path.basename(path)}, which does not exist")
        latest = parse_step(scan.state_latest)
        if (latest is not None and newest is not None and latest < newest
                and os.path.exists(scan.state_latest + ".index") and not running):
            bad.append(f"the '{STATE_FILE}' state file points to ckpt-{latest} but "
                       f"ckpt-{newest} is newer (not committed: a save cut short, or files "
                       "copied in)")
    return bad


def _moved_invalid(scan: DirScan, summary: EventSummary) -> list[str]:
    """Checkpoints the trainer moved to invalid_checkpoints/, with its reason."""
    bad = []
    for prefix in sorted(scan.moved_invalid):
        step = parse_step(prefix)
        why = dict(summary.skipped_invalid).get(step) if step is not None else None
        bad.append(f"{prefix} was moved to {INVALID_DIR}/ as invalid"
                   + (f": {why}" if why else " (no record in checkpoints.jsonl)"))
    return bad


def _lock_problems(lock: dict, bad: list[str], notes: list[str]) -> None:
    """A stale or unreadable lock (anomalies); a trainer running here or elsewhere (notes)."""
    who = f"pid {lock.get('pid')} on host {lock.get('host')}, started {lock.get('started')}"
    if lock["state"] == "stale":
        bad.append(f"stale lock {LOCK_FILE}: its trainer ({who}) is no longer running; the "
                   "next trainer takes it over")
    elif lock["state"] == "unreadable" and lock["age_seconds"] > 10:
        bad.append(f"{LOCK_FILE} is unreadable; the next trainer takes it over")
    elif lock["state"] == "running":
        notes.append(f"a trainer is running ({who}): the run is not finished")
    elif lock["state"] == "other_host":
        notes.append(f"{LOCK_FILE} is held by a trainer on another host ({who}); cannot tell "
                     "whether it is still running")


def _end_of_run_problems(lock: dict, present: list[int], summary: EventSummary,
                         settings: Settings, bad: list[str], notes: list[str]) -> None:
    """A run that stopped below num_steps without a final save, with no trainer running."""
    reached = max([*present, *(s for s, _ in summary.saves_since_resume),
                   *summary.restores[-1:]], default=None)
    if reached is not None and lock["state"] in ("absent", "stale", "unreadable"):
        reason = summary.reason_of.get(reached)
        if settings.num_steps is None:
            notes.append("cannot check for a missing final save: num_steps unknown (pass "
                         "--num_train_steps or --pipeline_config_path)")
        elif reached < settings.num_steps and reason not in FINAL_REASONS:
            bad.append(f"missing final save: training got to ckpt-{reached} "
                       f"({reason or 'reason unknown'}), below num_steps={settings.num_steps}, "
                       "with no end/signal/error save and no trainer running: it was killed "
                       f"(SIGKILL, out of memory?); start it again to resume from ckpt-{reached}")


def _names(label: str, steps: list[int]) -> str:
    return f"{label} " + ", ".join(f"ckpt-{s}" for s in steps) if steps else ""


def _steps(steps: list[int]) -> str:
    return ", ".join(f"ckpt-{s}" for s in steps) if steps else "none"


def _count(steps: list[int]) -> str:
    return f"{len(steps)} ({_steps(steps)})" if steps else "0"


def explain(present: list[int], summary: EventSummary, settings: Settings,
            expected: list[int] | None, has_events: bool) -> list[str]:
    """The "Why N checkpoints" lines: saves by reason, removals, keeps, skips, resumes,
    the settings and the count they imply."""
    lines = []
    if not summary.saves and not has_events:
        lines.append("no checkpoints.jsonl: how and why they were saved is not recorded")
    else:
        by_reason = collections.Counter(r for _, r in summary.saves)
        lines.append(f"saves: {len(summary.saves)}" + (
            " (" + ", ".join(f"{r} {n}" for r, n in by_reason.items()) + ") at steps "
            + ", ".join(str(s) for s, _ in summary.saves) if summary.saves else ""))
        lines.append(f"removed by max_to_keep: {_count(summary.removed)}")
        lines.append(f"kept forever by keep_every_n_hours: {_count(summary.kept)}")
        lines.append(f"skipped as invalid: {len(summary.skipped_invalid)}" + "".join(
            f"; ckpt-{s}: {why}" for s, why in summary.skipped_invalid))
        lines.append(f"restores (resume points): {_count(summary.restores)}")
        if summary.saves_since_resume:
            step, reason = summary.saves_since_resume[-1]
            if reason in STOPPED_EARLY:
                lines.append(f"the last run stopped at step {step} ({reason}); starting the "
                             "trainer again continues it")
    names = ("checkpoint_every_n", "checkpoint_max_to_keep", "num_steps")
    known = [f"{n}={getattr(settings, n)} ({settings.sources[n]})" for n in names
             if getattr(settings, n) is not None]
    unknown = [n for n in names if getattr(settings, n) is None]
    lines.append("settings: " + (", ".join(known) or "none known")
                 + (f"; not recorded: {', '.join(unknown)}" if unknown else ""))
    lines.extend(settings.notes)
    if expected is None:
        names = ["--num_train_steps" if n == "num_steps" else f"--{n}" for n in unknown]
        flags = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        lines.append(f"expected count: unknown ({', '.join(unknown)} not recorded here); "
                     f"pass {flags} to compare")
    else:
        verdict = ("matches" if expected == present else "differs from")
        lines.append(f"expected by the settings: {len(expected)} ({_steps(expected)}); "
                     f"{verdict} the {len(present)} present")
    return lines

