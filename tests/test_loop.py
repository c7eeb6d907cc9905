"""The loop contract with a fake step (one real variable, real checkpoints):
exact boundaries at any steps_per_loop, the final save's reason for every way a
run ends, and the order of the hooks' calls."""

from __future__ import annotations

import math
import signal

import pytest
import tensorflow as tf

from tests.conftest import ckpt_steps
from train_lib.checkpointing import CheckpointManager, read_events
from train_lib.checkpointing.policy import CheckpointPolicy, StopReason
from train_lib.training.hooks import CheckpointHook, PeriodicHook
from train_lib.training.loop import run_loop


class FakeSteps:
    """A global step in a tf.Variable; a step may raise (`fail_at`) or give a
    non-finite loss (`nan_at`)."""

    def __init__(self, fail_at: int | None = None, nan_at: int | None = None):
        self.variable = tf.Variable(0, dtype=tf.int64)
        self.fail_at, self.nan_at = fail_at, nan_at
        self.calls: list[tuple[int, int]] = []  # (step before, steps asked)

    @property
    def step(self) -> int:
        return int(self.variable.numpy())

    def run(self, num_steps: int) -> tuple[dict[str, float], bool]:
        self.calls.append((self.step, num_steps))
        for _ in range(num_steps):
            if self.step + 1 == self.fail_at:
                raise RuntimeError(f"step {self.fail_at} failed")
            self.variable.assign_add(1)
            if self.step == self.nan_at:
                return {"total_loss": math.nan}, False
        return {"total_loss": 1.0 / self.step}, True


class Recorder(PeriodicHook):
    """Records every call; runs at multiples of `every_n`."""

    def __init__(self, name: str, every_n: int, calls: list, fail_in_end: bool = False):
        self.name, self.every_n, self.calls, self.fail_in_end = name, every_n, calls, fail_in_end

    def after_steps(self, step: int, outputs: dict) -> None:
        self.calls.append((self.name, "after", step))

    def end(self, step: int, reason: StopReason, error=None) -> None:
        self.calls.append((self.name, "end", step, str(reason), type(error).__name__))
        if self.fail_in_end:
            raise OSError("disk full")


def _run(tmp_path, steps: FakeSteps, num_steps: int, *, every_n: int = 5,
         steps_per_loop: int = 10, stop_at: int | None = None, extra=()):
    policy = CheckpointPolicy(every_n, max_to_keep=100)
    manager = CheckpointManager(str(tmp_path), tf.train.Checkpoint(step=steps.variable),
                                policy, log=lambda _: None)
    hooks = [CheckpointHook(manager, policy, log=lambda _: None), *extra]
    end = run_loop(steps, hooks, num_steps=num_steps, steps_per_loop=steps_per_loop,
                   stop_requested=lambda step: (signal.SIGTERM if stop_at is not None
                                                and step >= stop_at else None))
    return end, _saves(tmp_path)


def _saves(model_dir) -> list[tuple[int, str]]:
    return [(e["step"], e["reason"]) for e in read_events(str(model_dir))
            if e["event"] == "saved"]


@pytest.mark.parametrize("steps_per_loop", [1, 3, 7, 10])
def test_boundaries_are_exact_at_any_steps_per_loop(tmp_path, steps_per_loop):
    calls: list = []
    steps = FakeSteps()
    end, saves = _run(tmp_path, steps, 23, steps_per_loop=steps_per_loop,
                      extra=[Recorder("log", 3, calls)])
    assert end.step == 23 and end.reason == StopReason.FINISHED
    after = [c[2] for c in calls if c[1] == "after"]
    assert set(range(3, 23, 3)) <= set(after) and set(range(5, 23, 5)) <= set(after)
    assert all(n <= steps_per_loop for _, n in steps.calls)
    # No call crosses a boundary of either hook.
    for before, n in steps.calls:
        assert not any(before < b < before + n for b in range(3, 24, 3)), steps.calls
        assert not any(before < b < before + n for b in range(5, 24, 5)), steps.calls
    assert saves == [(5, "interval"), (10, "interval"), (15, "interval"), (20, "interval"),
                     (23, "end")]
    assert ckpt_steps(tmp_path) == [5, 10, 15, 20, 23]


def test_finished_on_a_saved_step_adds_no_final_save(tmp_path):
    end, saves = _run(tmp_path, FakeSteps(), 10)
    assert end.reason == StopReason.FINISHED
    assert saves == [(5, "interval"), (10, "interval")]


def test_signal_saves_the_step_it_stops_at(tmp_path):
    end, saves = _run(tmp_path, FakeSteps(), 100, steps_per_loop=4, stop_at=6)
    # Calls of 4 steps cut at the save boundary 5: steps 1-4, 5, 6-9; the signal is
    # seen after the call that reaches step 6 or later.
    assert end.reason == StopReason.SIGNAL and end.signal_number == signal.SIGTERM
    assert end.step == 9
    assert saves == [(5, "interval"), (9, "signal")]


def test_error_saves_the_last_completed_step_then_raises(tmp_path):
    calls: list = []
    with pytest.raises(RuntimeError, match="step 8 failed"):
        _run(tmp_path, FakeSteps(fail_at=8), 20, extra=[Recorder("other", 0, calls)])
    assert _saves(tmp_path) == [(5, "interval"), (7, "error")]
    assert calls[-1] == ("other", "end", 7, "error", "RuntimeError")


def test_error_with_may_save_false_saves_nothing_more(tmp_path):
    steps = FakeSteps(fail_at=8)
    policy = CheckpointPolicy(5, max_to_keep=10)
    manager = CheckpointManager(str(tmp_path), tf.train.Checkpoint(step=steps.variable),
                                policy, log=lambda _: None)
    hook = CheckpointHook(manager, policy, log=lambda _: None, may_save=lambda error: False)
    with pytest.raises(RuntimeError):
        run_loop(steps, [hook], num_steps=20, steps_per_loop=10)
    assert _saves(tmp_path) == [(5, "interval")]


def test_non_finite_state_is_never_saved(tmp_path):
    end, saves = _run(tmp_path, FakeSteps(nan_at=8), 20)
    assert end.reason == StopReason.NON_FINITE and end.step == 8
    assert saves == [(5, "interval")]
    # ... nor after an error when the state is not finite.
    steps = FakeSteps(fail_at=4)
    policy = CheckpointPolicy(5, max_to_keep=10)
    manager = CheckpointManager(str(tmp_path / "b"), tf.train.Checkpoint(step=steps.variable),
                                policy, log=lambda _: None)
    logs: list[str] = []
    hook = CheckpointHook(manager, policy, log=logs.append, state_is_finite=lambda: False)
    with pytest.raises(RuntimeError):
        run_loop(steps, [hook], num_steps=20, steps_per_loop=10)
    assert _saves(tmp_path / "b") == []
    assert logs == ["not saving step 3 before failing: the model state is not finite"]


def test_end_calls_come_once_in_hook_order_after_the_last_after_steps(tmp_path):
    calls: list = []
    hooks = [Recorder("first", 2, calls), Recorder("second", 3, calls)]
    run_loop(FakeSteps(), hooks, num_steps=4, steps_per_loop=10)
    assert calls == [("first", "after", 2), ("second", "after", 2),
                     ("first", "after", 3), ("second", "after", 3),
                     ("first", "after", 4), ("second", "after", 4),
                     ("first", "end", 4, "finished", "NoneType"),
                     ("second", "end", 4, "finished", "NoneType")]


def test_a_hook_failing_at_the_end_of_an_error_does_not_hide_the_error(tmp_path):
    calls: list = []
    hooks = [Recorder("first", 0, calls, fail_in_end=True), Recorder("second", 0, calls)]
    with pytest.raises(RuntimeError, match="step 3 failed"):
        run_loop(FakeSteps(fail_at=3), hooks, num_steps=10, steps_per_loop=10)
    assert [c[:2] for c in calls] == [("first", "end"), ("second", "end")]


@pytest.mark.parametrize(("num_steps", "stop_at", "fail_at", "evaluated"), [
    (12, None, None, [(4, [4]), (8, [4, 8]), (12, [4, 8, 12])]),  # the end, once
    (10, None, None, [(4, [4]), (8, [4, 8]), (10, [4, 8, 10])]),  # whatever num_steps is
    (100, 6, None, [(4, [4])]),  # a signal: no final evaluation (stop fast)
    (100, None, 6, [(4, [4])]),  # an error: none either
])
def test_eval_hook_evaluates_the_final_step_once_after_the_final_save(
        tmp_path, num_steps, stop_at, fail_at, evaluated):
    """EvalHook(every_n, final_step): every multiple of every_n before the end, then the
    final step in `end` (only when the run finished), with its checkpoint on disk."""
    from train_lib.training.hooks import EvalHook

    seen: list = []
    hook = EvalHook(4, lambda step: seen.append((step, ckpt_steps(tmp_path))),
                    final_step=num_steps)
    try:
        _run(tmp_path, FakeSteps(fail_at=fail_at), num_steps, every_n=4, steps_per_loop=3,
             stop_at=stop_at, extra=[hook])
    except RuntimeError:
        assert fail_at is not None
    assert seen == evaluated


def test_eval_hook_without_final_step_evaluates_multiples_only(tmp_path):
    from train_lib.training.hooks import EvalHook

    seen: list[int] = []
    _run(tmp_path, FakeSteps(), 10, every_n=4, extra=[EvalHook(4, seen.append)])
    assert seen == [4, 8]
    seen.clear()  # every_n 0 and a final step: the end alone
    _run(tmp_path / "b", FakeSteps(), 10, extra=[EvalHook(0, seen.append, final_step=10)])
    assert seen == [10]
