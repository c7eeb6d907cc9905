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
