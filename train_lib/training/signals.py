"""SIGINT / SIGTERM during training: recorded, never acted on in the handler.

The loop asks `received` after each call of the training function, so a signal
stops training at a step boundary, where the state is saved (exit 128 + signal).
"""

from __future__ import annotations

import signal
from collections.abc import Callable


class StopSignals:
    """Records SIGINT/SIGTERM instead of acting on them; restores handlers on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log: Callable[[str], None]):
        self.received: int | None = None
        self._log = log
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
            self._log(f"received {signal.Signals(signum).name}: stopping after the current "
                      "step and saving a checkpoint")
        else:
            self._log(f"received {signal.Signals(signum).name} again: already stopping")

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def agreed_signal(strategy, role, received: int | None, step: int,
                  log: Callable[[str], None]) -> int | None:
    """The signal the job stops for: this process's `received`, or in a multi-worker
    job any worker's (SIGTERM before SIGINT), agreed by all workers at the same step.
    A collective when `role` (distribute.Role) has several workers: every worker
    calls it after the same step."""
    if role.num_workers == 1:
        return received
    from train_lib.training import distribute  # TensorFlow only for a multi-worker job

    rows = distribute.gather_ints(strategy, [received or 0])
    signals = {row[0] for row in rows if row[0]}
    if not signals:
        return None
    agreed = signal.SIGTERM if signal.SIGTERM in signals else min(signals)
    if received is None:
        log(f"another worker received {signal.Signals(agreed).name}: the {role.name} "
            f"stops at step {step} and saves with it")
    return int(agreed)
