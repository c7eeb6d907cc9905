"""How invalid config values are reported.

Each section's `problems()` (schema.py) collects its problems with a `Checks`,
one "dotted.key is value; what to do" line each; `raise_problems` turns the
problems of a whole config into one ConfigError listing them all.
"""

from __future__ import annotations

import difflib
from typing import Any

from train_lib.config.errors import ConfigError

__all__ = ["Checks", "raise_problems"]


class Checks:
    """Collects the problems of one section; names are relative to its dotted `prefix`.

    Every check is written as "fails unless ok", so that NaN fails every check.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.problems: list[str] = []

    def path(self, name: str) -> str:
        """The dotted key path of field `name` of the section."""
        return f"{self.prefix}.{name}"

    def need(self, ok: bool, name: str, value: Any, requirement: str) -> None:
        """Adds "path is value; requirement" unless `ok`."""
        if not ok:
            shown = repr(value) if isinstance(value, str) else str(value)
            self.problems.append(f"{self.path(name)} is {shown}; {requirement}")

    def choice(self, name: str, value: str, choices: tuple[str, ...], why: str = "") -> None:
        """Adds a problem unless `value` is one of `choices`, suggesting the closest."""
        if value in choices:
            return
        message = f"{self.path(name)} is {value!r}; must be one of {', '.join(choices)}{why}"
        folded = {c.lower(): c for c in choices}
        close = [folded[value.lower()]] if value.lower() in folded else (
            difflib.get_close_matches(value, choices, n=1))
        self.problems.append(message + (f" (did you mean {close[0]!r}?)" if close else ""))


def raise_problems(problems: list[str], source: str | None) -> None:
    """Raises one ConfigError listing all `problems` (prefixed by `source`); none: returns."""
    if not problems:
        return
    prefix = f"{source}: " if source else ""
    if len(problems) == 1:
        raise ConfigError(prefix + problems[0])
    raise ConfigError(f"{prefix}{len(problems)} invalid values:\n  - " + "\n  - ".join(problems))
