"""What a failed training run tells the user: each error names the step, the
file or the worker, and what to do. Pure functions of the error and the facts
the loop passes in; the loop decides when to raise them."""

from __future__ import annotations

import re
import sys

import tensorflow as tf

from train_lib.config import PipelineConfig
from train_lib.data import input_errors
from train_lib.errors import UserError


class TrainError(UserError, RuntimeError):
    """Training stopped for a reason the user can act on; the message says which."""


def non_finite_error(step: int, outputs: dict[str, float], last: str | None) -> TrainError:
    """The loss of `step` is NaN or infinite; `last` is the last good checkpoint."""
    terms = ", ".join(f"{k}={v:.4g}" for k, v in outputs.items())
    return TrainError(
        f"non-finite loss at step {step} ({terms}); nothing was saved from this state. "
        f"Last good checkpoint: {last or 'none (no checkpoint was saved yet)'}. Lower "
        "train_config.learning_rate.base, add warmup (learning_rate.warmup_steps) or "
        "gradient clipping (optimizer.gradient_clip_norm), then resume.")


def worker_lost(err: Exception, num_workers: int) -> bool:
    """Whether `err` (or the error behind a failed save) is a multi-worker
    collective aborted because another worker stopped or became unreachable."""
    cause = err if isinstance(err, tf.errors.OpError) else err.__cause__
    return num_workers > 1 and isinstance(
        cause, tf.errors.UnavailableError | tf.errors.CancelledError | tf.errors.AbortedError)


def worker_lost_error(err: Exception, step: int, who_am_i: str, last: str | None) -> TrainError:
    """For an error `worker_lost` recognised: which worker was lost and how to resume."""
    cause = err if isinstance(err, tf.errors.OpError) else err.__cause__
    lost = re.search(r"(?:unhealthy[^\n]*\n\s*|remote target )(/job:[\w/:]*?task:\d+)",
                     cause.message)
    who = f"lost contact with {lost.group(1)}" if lost else op_error_summary(cause)
    return TrainError(
        f"another worker of this job stopped or became unreachable at step {step} ({who}); "
        f"the {who_am_i} stops too. Restart every worker to resume from the last "
        f"checkpoint ({last or 'none yet'}).")


def translate_error(err: Exception, files: list[str], config: PipelineConfig,
                    step: int) -> Exception:
    """Input-pipeline errors become a TrainError that names the file, the record and
    the rule; others pass."""
    if not isinstance(err, tf.errors.OpError | UnicodeDecodeError):
        return err
    explained = input_errors.explain_input_error(err, files, config.train_input_reader,
                                           config.model.num_classes)
    if explained is not None:
        kind, detail = explained
        if kind == "corrupt":
            return TrainError(f"corrupt training data at step {step}: {detail}. "
                              "Regenerate or remove that file.")
        return TrainError(f"bad training data at step {step}: {detail}")
    return err


def op_error_summary(err: tf.errors.OpError) -> str:
    """The last line of a TensorFlow error (its cause, after the graph context)."""
    lines = [ln.strip() for ln in err.message.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else type(err).__name__


def ignore_pools_of_aborted_collectives() -> None:
    """An eager all-reduce that a lost worker aborted (e.g. in a save) leaves
    TensorFlow's thread pool unclosed, and its __del__ prints a traceback as the
    process exits. The error the user needs is ours; drop that one report."""
    default = sys.unraisablehook

    def hook(unraisable) -> None:
        if getattr(unraisable.object, "__qualname__", "") != "Pool.__del__":
            default(unraisable)
    sys.unraisablehook = hook
