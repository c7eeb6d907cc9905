"""Hooks around the training loop: each concern a small object.

Each is a `loop.Hook` (the interface, defined with the loop): it says *when* it
next wants to run (`next_step`), *what* it does then (`after_steps`), and what it
does when the run ends (`end`, with the reason). The loop (training/loop.py,
which documents the call order) runs training steps
up to the nearest step any hook asks for, so save, log and summary boundaries
are exact however many steps run inside one tf.function call. The hooks of a
training run are composed in one place: `trainer.build_hooks`.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Callable
from typing import TextIO

import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from train_lib.checkpointing.policy import SaveReason, StopReason
from train_lib.training.failures import op_error_summary
from train_lib.training.loop import Hook

StepOutputs = dict[str, float]  # loss terms and learning_rate after the last step


def next_multiple(step: int, every_n: int) -> int:
    """The smallest positive multiple of `every_n` strictly greater than `step`."""
    return (step // every_n + 1) * every_n


class PeriodicHook(Hook):
    """A hook that runs at positive multiples of `every_n` (0: never)."""

    every_n: int = 0

    def next_step(self, step: int) -> int | None:
        return next_multiple(step, self.every_n) if self.every_n else None

    def wants(self, step: int) -> bool:
        return bool(self.every_n) and step > 0 and step % self.every_n == 0


class LogHook(PeriodicHook):
    """OD API-style progress lines: step, per-step time, losses, learning rate, ETA."""

    def __init__(self, every_n: int, num_steps: int, batch_size: int, start_step: int,
                 log: Callable[[str], None]):
        self.every_n = every_n
        self._num_steps = num_steps
        self._batch_size = batch_size
        self._log = log
        self._last_step = start_step
        self._last_time = time.monotonic()
        self.history: list[tuple[int, float]] = []  # (step, total_loss) at each log line

    def after_steps(self, step: int, outputs: StepOutputs) -> None:
        if not self.wants(step) and step != self._num_steps:
            return
        now = time.monotonic()
        steps = max(step - self._last_step, 1)
        per_step = (now - self._last_time) / steps
        self.history.append((step, outputs["total_loss"]))
        eta = datetime.timedelta(seconds=round(per_step * (self._num_steps - step)))
        self._log(
            f"Step {step} per-step time {per_step:.3f}s "
            f"loss={outputs['total_loss']:.4f} "
            f"({_loss_terms(outputs)}) "
            f"learning_rate={outputs['learning_rate']:.6f} "
            f"images/s={self._batch_size / per_step:.1f} ETA {eta}"
        )
        self._last_step, self._last_time = step, now


def _loss_terms(outputs: StepOutputs) -> str:
    """The step's loss terms but the total, as "classification 0.1234, ..." (a term's
    key without `_loss`, underscores as spaces), in the family's order."""
    return ", ".join(f"{key.removesuffix('_loss').replace('_', ' ')} {value:.4f}"
                     for key, value in outputs.items()
                     if key.endswith("_loss") and key != "total_loss")


class SummaryHook(PeriodicHook):
    """TensorBoard under `<model_dir>/train`: Loss/*, learning_rate, steps_per_sec,
    images_per_sec; and, when `pictures` is given, `train/images`: the pictures it
    returns for a step (uint8 [H, W, 3] each, e.g. training images with boxes)."""

    def __init__(self, writer: tf.summary.SummaryWriter, every_n: int, batch_size: int,
                 start_step: int, pictures: Callable[[int], list] | None = None):
        self.every_n = every_n
        self._writer = writer
        self._batch_size = batch_size
        self._pictures = pictures
        self._last_step = start_step
        self._last_time = time.monotonic()

    def after_steps(self, step: int, outputs: StepOutputs) -> None:
        if not self.wants(step):
            return
        now = time.monotonic()
        steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
        with self._writer.as_default(step=step):
            for key, value in outputs.items():
                name = "learning_rate" if key == "learning_rate" else f"Loss/{key}"
                tf.summary.scalar(name, value)
            tf.summary.scalar("steps_per_sec", steps_per_sec)
            tf.summary.scalar("images_per_sec", steps_per_sec * self._batch_size)
            if self._pictures is not None:
                pictures = self._pictures(step)
                if pictures:
                    tf.summary.image("train/images", np.stack(pictures), step=step,
                                     max_outputs=len(pictures))
        self._writer.flush()
        # The pictures' cost is not training's: start the next interval after them.
        self._last_step, self._last_time = step, time.monotonic()


class CheckpointHook(Hook):
    """Regular saves where the checkpoint policy says so, and the final save.

    At the end of a run the policy gives the final save's reason (none for a
    step already saved or a non-finite state), then async writes are waited for.
    After an error the last completed step is saved only if `may_save(error)`
    (e.g. not when another worker was lost: a save needs every worker) and
    `state_is_finite()`; a failure to save is logged, never raised over the error.
    """

    def __init__(self, manager, policy, *, log: Callable[[str], None] = absl_logging.info,
                 state_is_finite: Callable[[], bool] = lambda: True,
                 may_save: Callable[[BaseException], bool] = lambda error: True):
        self._manager = manager
        self._policy = policy
        self._log = log
        self._state_is_finite = state_is_finite
        self._may_save = may_save

    def next_step(self, step: int) -> int | None:
        return self._policy.next_save_step(step)

    def after_steps(self, step: int, outputs: StepOutputs) -> None:
        reason = self._policy.save_reason(step)
        if reason:
            self._manager.save(step, reason)

    def end(self, step: int, reason: StopReason, error: BaseException | None = None) -> None:
        save = self._policy.final_save_reason(step, self._manager.latest_step, reason)
        if save == SaveReason.ERROR:
            self._save_before_failing(step, error)
            return
        if save is not None:
            self._manager.save(step, save)
        self._manager.sync()

    def _save_before_failing(self, step: int, error: BaseException | None) -> None:
        if error is not None and not self._may_save(error):
            return
        try:
            if not self._state_is_finite():
                self._log(f"not saving step {step} before failing: the model state is "
                          "not finite")
                return
            self._manager.save(step, SaveReason.ERROR)
            self._manager.sync()
            self._log(f"saved ckpt-{step} before failing")
        except Exception as save_err:  # noqa: BLE001 - the original error matters more
            why = (op_error_summary(save_err)
                   if isinstance(save_err, tf.errors.OpError) else save_err)
            self._log(f"could not save ckpt-{step} before failing: {why}")


class ProgressLine(Hook):
    """On a terminal, one live line rewritten after every call of the training
    function: step / num_steps, loss, steps/s, ETA. Elsewhere (files, CI) it writes
    nothing. Log through `wrap(log)` so that log lines are not glued to it."""

    def __init__(self, num_steps: int, stream: TextIO | None = None):
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = self._stream.isatty()
        self._num_steps = num_steps
        self._first: tuple[int, float] | None = None
        self._shown = False

    def after_steps(self, step: int, outputs: StepOutputs) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._first is None:
            self._first = (step, now)
        first_step, first_time = self._first
        rate = (step - first_step) / (now - first_time) if now > first_time else 0.0
        eta = (datetime.timedelta(seconds=round((self._num_steps - step) / rate))
               if rate > 0 else "?")
        self._stream.write(f"\r\033[Kstep {step}/{self._num_steps} "
                           f"loss {outputs['total_loss']:.4f} {rate:.2f} steps/s ETA {eta}")
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._shown = False

    def wrap(self, log: Callable[[str], None]) -> Callable[[str], None]:
        def logged(message: str) -> None:
            self.clear()
            log(message)
        return logged


# absl names the file:line that logged; let it look past the wrapper to the caller.
absl_logging.ABSLLogger.register_frame_to_skip(__file__, "logged")


class EvalHook(PeriodicHook):
    """In-training evaluation: `evaluate(step)` measures the live model and records
    the metrics at every positive multiple of `every_n` (0: none), and, with
    `final_step`, once when the run finishes there (reason FINISHED; not after a
    signal or an error). The step `final_step` itself is then left to `end`, so
    it is evaluated once, after the final save. Placed after the CheckpointHook,
    so a checkpoint saved at the same step is already on disk."""

    def __init__(self, every_n: int, evaluate: Callable[[int], None],
                 final_step: int | None = None):
        self.every_n = every_n
        self._evaluate = evaluate
        self._final_step = final_step

    def after_steps(self, step: int, outputs: StepOutputs) -> None:
        if self.wants(step) and (self._final_step is None or step < self._final_step):
            self._evaluate(step)

    def end(self, step: int, reason: StopReason, error: BaseException | None = None) -> None:
        if self._final_step is not None and reason == StopReason.FINISHED \
                and step >= self._final_step:
            self._evaluate(step)
