"""A converter's progress: a bar redrawn in place on a terminal, plain lines elsewhere.

On a terminal: `[########............] 412/1000 images 85.3/s ETA 0:00:06`, redrawn
at most ten times a second and cleared at the end. In files and CI: one line per
tenth of the work (`412/1000 images (41%)`), so logs stay short.
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import TextIO

__all__ = ["Progress"]

_WIDTH = 24
_REDRAW_S = 0.1


class Progress:
    """Counts `update()` calls up to `total`; `close()` ends the bar."""

    def __init__(self, total: int, unit: str = "images", stream: TextIO | None = None):
        self._stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self.total = max(0, total)
        self.done = 0
        self._unit = unit
        self._start = time.monotonic()
        self._drawn = 0.0
        self._next_tenth = 1

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.tty:
            now = time.monotonic()
            if now - self._drawn >= _REDRAW_S or self.done >= self.total:
                self._drawn = now
                self._draw(now)
        elif self.total and self.done * 10 >= self._next_tenth * self.total:
            while self.done * 10 >= self._next_tenth * self.total:
                self._next_tenth += 1
            self._stream.write(f"{self.done}/{self.total} {self._unit} "
                               f"({100 * self.done // self.total}%)\n")
            self._stream.flush()

    def _draw(self, now: float) -> None:
        fraction = self.done / self.total if self.total else 1.0
        filled = round(_WIDTH * min(1.0, fraction))
        rate = self.done / (now - self._start) if now > self._start else 0.0
        eta = (datetime.timedelta(seconds=round((self.total - self.done) / rate))
               if rate > 0 else "?")
        self._stream.write(f"\r\033[K[{'#' * filled}{'.' * (_WIDTH - filled)}] "
                           f"{self.done}/{self.total} {self._unit} {rate:.1f}/s ETA {eta}")
        self._stream.flush()

    def close(self) -> None:
        """Clears the bar on a terminal (the summary follows it)."""
        if self.tty and self._drawn:
            self._stream.write("\r\033[K")
            self._stream.flush()
