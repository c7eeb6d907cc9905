"""The training loop: steps up to the nearest hook boundary, then the hooks; stop.

`run_loop` knows nothing of models, files or TensorFlow: it drives a `Steps`
object (`step_function.StepRunner` in training, a fake in tests) and a list of
`Hook`s (the interface is defined here; the training hooks are in `hooks.py`), so
its contract is tested in milliseconds.

Call order, for hooks [h1, h2, ...] in list order:
1. before each call of the training function: every hook's `next_step(step)`;
   the call runs up to the nearest step any hook asked for (or num_steps, or
   `steps_per_loop` steps), so hook boundaries are exact at any steps_per_loop;
2. after each call: if a loss was not finite, stop (reason NON_FINITE); else
   `stop_requested(step)` (a signal), then every hook's `after_steps(step, outputs)`;
3. once, when the run ends for any reason: every hook's `end(step, reason)`,
   with reason FINISHED (num_steps reached), SIGNAL, ERROR (a step or a hook
   raised: the error is passed to `end` and raised again after the end calls)
   or NON_FINITE. The checkpoint hook's `end` is the final save (hooks.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

from absl import logging

from train_lib.checkpointing.policy import StopReason


class Steps(Protocol):
    """What the loop drives: the global step and a way to advance it."""

    @property
    def step(self) -> int: ...

    def run(self, num_steps: int) -> tuple[dict[str, float], bool]:
        """Runs up to `num_steps` steps; returns the last outputs and whether all
        losses were finite (it stops at the first that is not)."""


class Hook:
    """The one interface of a training hook: what the loop calls (the module
    docstring gives the order). Each method does nothing unless overridden; the
    hooks of a training run are in hooks.py (`PeriodicHook` runs at multiples of
    an interval)."""

    def next_step(self, step: int) -> int | None:
        """The next step after `step` at which this hook wants to run, or None."""
        return None

    def after_steps(self, step: int, outputs: dict[str, float]) -> None:
        """Called after every call of the training function, at the global `step`,
        with the last step's outputs (loss terms, learning_rate)."""

    def end(self, step: int, reason: StopReason, error: BaseException | None = None) -> None:
        """Called once when the run ends at `step`; `error` is set when reason is ERROR."""


@dataclasses.dataclass
class LoopEnd:
    """How a run of the loop ended."""

    step: int
    reason: StopReason
    signal_number: int | None = None
    outputs: dict[str, float] | None = None


def run_loop(
    steps: Steps,
    hooks: Sequence[Hook],
    *,
    num_steps: int,
    steps_per_loop: int,
    stop_requested: Callable[[int], int | None] = lambda step: None,
) -> LoopEnd:
    """Runs `steps` from its current step to `num_steps` (see the module docstring).

    Args:
      steps: the training steps; `steps.step` is the global step.
      hooks: called in list order.
      num_steps: the global step to stop at.
      steps_per_loop: the most steps in one call of the training function.
      stop_requested: after each call, the signal number to stop for, or None.

    Returns:
      How the run ended (FINISHED, SIGNAL or NON_FINITE), after the end calls.

    Raises:
      Whatever a step or a hook raised, after every hook's `end(step, ERROR)`.
    """
    step, outputs, stop = steps.step, None, None
    reason = StopReason.FINISHED
    try:
        while step < num_steps and stop is None:
            targets = [t for t in (h.next_step(step) for h in hooks) if t]
            target = min([*targets, num_steps, step + steps_per_loop])
            outputs, finite = steps.run(target - step)
            step = steps.step
            if not finite:
                reason = StopReason.NON_FINITE
                break
            stop = stop_requested(step)
            for hook in hooks:
                hook.after_steps(step, outputs)
    except Exception as err:
        _end_all(hooks, steps.step, StopReason.ERROR, err)
        raise
    if stop is not None:
        reason = StopReason.SIGNAL
    _end_all(hooks, step, reason)
    return LoopEnd(step, reason, stop, outputs)


def _end_all(hooks: Sequence[Hook], step: int, reason: StopReason,
             error: BaseException | None = None) -> None:
    """Every hook's end call, in order. After an error, a hook's own failure is
    logged and the others still run: the original error matters more."""
    for hook in hooks:
        if error is None:
            hook.end(step, reason)
            continue
        try:
            hook.end(step, reason, error)
        except Exception as err:  # noqa: BLE001 - reported, the original error is raised
            logging.warning("%s could not finish after the error: %s",
                            type(hook).__name__, err)
