"""CheckpointPolicy: pure decisions, no TensorFlow (checked in a subprocess)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from train_lib.checkpointing.policy import (
    KEEP_EVERY_N_HOURS,
    MAX_TO_KEEP,
    CheckpointPolicy,
    SaveReason,
)

# A regular save, the final save at num_steps, the final save of a run stopped by a signal.
IV, F, S = SaveReason.INTERVAL, SaveReason.END, SaveReason.SIGNAL


def simulate(policy: CheckpointPolicy, num_steps: int, resume: int, stop: int | None):
    """Run the policy like the training loop: a first run stopped at `resume` (if > 0),
    then a run from `resume` to `stop` (default num_steps). Returns (saves of each
    run as (step, reason), steps present at the end)."""
    present: dict[int, float] = {}

    def run(start: int, end: int) -> list[tuple[int, str]]:
        saves = []
        last = start or None
        for step in range(start + 1, end + 1):
            reason = policy.save_reason(step)
            if reason:
                saves.append((step, reason))
                last = step
        if policy.needs_final_save(end, last):
            saves.append((end, F if end == num_steps else S))
        for step, _ in saves:
            present[step] = float(step)  # the newest is committed before rotating
            plan = policy.plan_rotation(list(present.items()), last_preserved_time=0.0)
            assert step not in plan.delete
            for gone in plan.delete:
                del present[gone]
        return saves

    first = run(0, resume) if resume else []
    second = run(resume, num_steps if stop is None else stop)
    return first, second, sorted(present)


# (num_steps, every_n, max_to_keep, resume, stop) -> saves of the last run, present at end
CASES = [
    ((3500, 1000, 3, 0, None), [(1000, IV), (2000, IV), (3000, IV), (3500, F)], [2000, 3000, 3500]),
    ((3500, 1000, 3, 0, 3200), [(1000, IV), (2000, IV), (3000, IV), (3200, S)], [2000, 3000, 3200]),
    ((3500, 1000, 3, 0, 3000), [(1000, IV), (2000, IV), (3000, IV)], [1000, 2000, 3000]),
    ((3000, 1000, 3, 0, None), [(1000, IV), (2000, IV), (3000, IV)], [1000, 2000, 3000]),
    ((3000, 1000, 2, 0, None), [(1000, IV), (2000, IV), (3000, IV)], [2000, 3000]),
    ((2500, 1000, 10, 0, None), [(1000, IV), (2000, IV), (2500, F)], [1000, 2000, 2500]),
    ((10, 3, 1, 0, None), [(3, IV), (6, IV), (9, IV), (10, F)], [10]),
    ((5, 10, 5, 0, None), [(5, F)], [5]),
    ((4, 1, 2, 0, None), [(1, IV), (2, IV), (3, IV), (4, IV)], [3, 4]),
    ((0, 10, 5, 0, None), [], []),
    ((100, 10, 3, 0, 0), [], []),
    ((5000, 1000, 3, 3200, None), [(4000, IV), (5000, IV)], [3200, 4000, 5000]),
    ((2500, 1000, 2, 2000, None), [(2500, F)], [2000, 2500]),
    ((3000, 1000, 3, 3000, None), [], [1000, 2000, 3000]),  # finished run started again
    ((10000, 1000, 2, 1500, 2700), [(2000, IV), (2700, S)], [2000, 2700]),
    ((10000, 1000, 4, 1500, 1600), [(1600, S)], [1000, 1500, 1600]),
    ((7, 2, 2, 3, 5), [(4, IV), (5, S)], [4, 5]),
]


@pytest.mark.parametrize(("args", "saves", "remaining"), CASES)
def test_simulated_run(args, saves, remaining):
    num_steps, every_n, keep, resume, stop = args
    policy = CheckpointPolicy(every_n=every_n, max_to_keep=keep)
    _, last_run, present = simulate(policy, num_steps, resume, stop)
    assert last_run == saves
    assert present == remaining
    assert policy.planned_saves(num_steps, resume, stop) == saves
    assert policy.expected_checkpoints(num_steps, resume, stop) == remaining


def test_expected_checkpoints_examples_from_the_contract():
    policy = CheckpointPolicy(every_n=1000, max_to_keep=3)
    assert policy.expected_checkpoints(3500) == [2000, 3000, 3500]
    assert policy.expected_checkpoints(3500, stop_step=3200) == [2000, 3000, 3200]
    with pytest.raises(ValueError, match="stop_step <= num_steps"):
        policy.expected_checkpoints(3500, stop_step=4000)


def test_next_save_step_is_the_next_step_with_a_save_reason():
    policy = CheckpointPolicy(every_n=5, max_to_keep=1)
    for step in range(0, 21):
        following = next(s for s in range(step + 1, 100) if policy.save_reason(s))
        assert policy.next_save_step(step) == following, step


def test_save_reason_and_final_save():
    policy = CheckpointPolicy(every_n=5, max_to_keep=1)
    assert [s for s in range(0, 21) if policy.save_reason(s)] == [5, 10, 15, 20]
    assert policy.save_reason(0) is None
    assert policy.save_reason(15) is SaveReason.INTERVAL
    assert policy.needs_final_save(0, None) is False
    assert policy.needs_final_save(7, 5) is True
    assert policy.needs_final_save(10, 10) is False
    assert policy.needs_final_save(3, None) is True


def test_every_save_counts_whatever_its_reason():
    policy = CheckpointPolicy(every_n=1000, max_to_keep=2)
    plan = policy.plan_rotation([(1000, 1.0), (1500, 2.0), (2000, 3.0)], 0.0)
    assert plan.delete == (1000,)
    assert plan.rotating == (1500, 2000)
    assert plan.reasons == {1000: MAX_TO_KEEP}
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.delete = ()


def test_hours_keeping_over_a_run_of_saves_every_20_minutes():
    policy = CheckpointPolicy(every_n=1, max_to_keep=2, keep_every_n_hours=1.0)
    present: list[tuple[int, float]] = []
    anchor = -1.0  # the run started at t=0
    deleted, forever = [], []
    for step in range(1, 13):
        present.append((step, 1200.0 * step))
        plan = policy.plan_rotation(present, anchor)
        deleted += plan.delete
        forever += plan.keep_forever
        for s in plan.delete + plan.keep_forever:
            assert plan.reasons[s] == (
                KEEP_EVERY_N_HOURS if s in plan.keep_forever else MAX_TO_KEEP)
        present = [(s, t) for s, t in present if s in plan.rotating]
        anchor = plan.last_preserved_time
    # Kept when at least 3600 s after the last kept one (>=, like TF): t=3600, 7200, 10800.
    assert forever == [3, 6, 9]
    assert deleted == [1, 2, 4, 5, 7, 8, 10]
    assert [s for s, _ in present] == [11, 12]
    assert anchor == 10800.0


def test_hours_keeping_several_leave_at_once_oldest_first():
    policy = CheckpointPolicy(every_n=1, max_to_keep=1, keep_every_n_hours=1.0)
    rotating = [(4, 8100.0), (2, 4000.0), (1, 0.0), (3, 8000.0)]  # any order
    plan = policy.plan_rotation(rotating, last_preserved_time=-1.0)
    assert plan.delete == (1,)
    assert plan.keep_forever == (2, 3)
    assert plan.rotating == (4,)
    assert plan.reasons == {1: MAX_TO_KEEP, 2: KEEP_EVERY_N_HOURS, 3: KEEP_EVERY_N_HOURS}
    assert plan.last_preserved_time == 8000.0
    # A recent anchor (a restarted run that kept one at t=4000) changes the decision.
    late = policy.plan_rotation([(3, 7000.0), (4, 8100.0)], last_preserved_time=4000.0)
    assert late.delete == (3,) and late.keep_forever == ()
    # Without keep_every_n_hours nothing is kept forever.
    plain = CheckpointPolicy(every_n=1, max_to_keep=1).plan_rotation(rotating, -1e12)
    assert plain.delete == (1, 2, 3) and plain.keep_forever == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every_n": 0, "max_to_keep": 1}, r"every_n \(--checkpoint_every_n\) must be .*>= 1"),
        ({"every_n": -5, "max_to_keep": 1}, "got -5"),
        ({"every_n": 1.5, "max_to_keep": 1}, "every_n"),
        ({"every_n": True, "max_to_keep": 1}, "every_n"),
        ({"every_n": 1, "max_to_keep": 0}, r"max_to_keep \(--checkpoint_max_to_keep\)"),
        ({"every_n": 1, "max_to_keep": 1, "keep_every_n_hours": 0}, "keep_every_n_hours"),
        ({"every_n": 1, "max_to_keep": 1, "keep_every_n_hours": -1.0}, "> 0"),
        ({"every_n": 1, "max_to_keep": 1, "keep_every_n_hours": "2"}, "keep_every_n_hours"),
    ],
)
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CheckpointPolicy(**kwargs)


def test_policy_module_does_not_import_tensorflow():
    code = ("import sys, train_lib.checkpointing.policy; "
            "sys.exit('tensorflow' in sys.modules)")
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
