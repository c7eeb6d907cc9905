"""What every command-line entry point shares (the flags stay in each script).

- `fail(message)` prints the one `error: ...` line a user's mistake gets and
  returns exit code 1; no traceback.
- `main(run)` is an absl main for `run() -> exit code` that refuses stray
  positional arguments. No TensorFlow import here: scripts fail fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import logging

EXIT_ERROR = 1


def fail(message: str) -> int:
    """Print `error: <message>` to stderr; return EXIT_ERROR."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def main(run: Callable[[], int], verbose: bool = True) -> Callable[[list[str]], None]:
    """An absl main: refuses positional arguments, logs at INFO if `verbose`,
    exits with `run()`'s code."""
    def absl_main(argv: list[str]) -> None:
        if len(argv) > 1:
            sys.exit(fail(f"unexpected arguments: {' '.join(argv[1:])}"))
        if verbose:
            logging.set_verbosity(logging.INFO)
        sys.exit(run())
    return absl_main
