"""The one base of every message a user sees.

A `UserError` is a mistake or a condition the user can act on: its message
names the config key, the file, the record or the step, and says what to do.
Entry points (`train_lib.cli.main`) print it as one `error: ...` line and exit
1, without a traceback. Each package raises its own subclass (ConfigError,
TrainError, CheckpointError, EvalError, ...); those that callers also catch as
ValueError or RuntimeError keep that base too.

No TensorFlow here: every module may import this one.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can act on; `one_line(error)` is what they are shown."""


def one_line(error: BaseException) -> str:
    """The message of `error` on one line: inner newlines and runs of spaces folded."""
    return " ".join(str(error).split())
