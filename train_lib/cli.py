"""What every command-line entry point shares (the flags stay in each script).

- `fail(message)` prints the one `error: ...` line a user's mistake gets and
  returns exit code 1; no traceback.
- `main(run)` is an absl main for `run() -> exit code` that refuses stray
  positional arguments (or passes them on) and turns any `UserError` that
  `run` raises (config, data, training, checkpoints, evaluation, export) into
  that one line.
  No TensorFlow import here: scripts fail fast.
- Quiet logs: at the default verbosity, `main` shows the log lines of this
  repository (train_lib/, scripts/, model_main_tf2.py) and WARNING and above
  from anyone; the INFO chatter of Model Garden, TensorFlow and tf_keras (and
  tf_keras's "Input dict contained keys" warning) is hidden. Entry points whose
  library warnings say nothing to a user (the exporter's ten "Skipping full
  serialization ... because it is not built") pass `library_warnings=False`:
  then only this repository's lines and anyone's errors show, and TensorFlow's
  C++ start-up errors (no GPU) are hidden too. absl's own `--verbosity=1`
  (`-v 1`) shows everything again (`quiet_library_logs`).
- TensorFlow's process defaults (`tensorflow_defaults`, which `main` applies
  before anything imports TensorFlow): its C++ log at WARNING and above,
  oneDNN's kernels on x86-64 CPUs, and tf_keras as `tf.keras` (no Keras 3).
"""

from __future__ import annotations

import logging as std_logging
import os
import platform
import sys
import warnings
from collections.abc import Callable

from absl import flags, logging

from train_lib.errors import UserError, one_line

EXIT_ERROR = 1

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where our own log lines come from: a record's pathname is its caller's file.
OWN_PATHS = (os.path.join(REPO_ROOT, "train_lib") + os.sep,
             os.path.join(REPO_ROOT, "scripts") + os.sep,
             os.path.join(REPO_ROOT, "model_main_tf2.py"))
CPP_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
LEGACY_KERAS = "TF_USE_LEGACY_KERAS"
# tf_keras warns on every call of Model Garden's FPN over the backbone's level-6 output.
IGNORED_WARNING = r"Input dict contained keys .* which did not match any model input"


def fail(message: str) -> int:
    """Print `error: <message>` to stderr; return EXIT_ERROR."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


class OwnLinesFilter(std_logging.Filter):
    """Passes records logged from this repository's files (or the running entry
    point), and records of level WARNING (ERROR without `library_warnings`) and
    above from anywhere."""

    def __init__(self, own_paths: tuple[str, ...] = OWN_PATHS, library_warnings: bool = True):
        super().__init__()
        self._min_level = std_logging.WARNING if library_warnings else std_logging.ERROR
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        self._own = own_paths + ((os.path.abspath(main_file),) if main_file else ())
        self._known: dict[str, bool] = {}  # pathname -> ours?

    def filter(self, record: std_logging.LogRecord) -> bool:
        if record.levelno >= self._min_level:
            return True
        ours = self._known.get(record.pathname)
        if ours is None:
            ours = os.path.abspath(record.pathname).startswith(self._own)
            self._known[record.pathname] = ours
        return ours


def quiet_library_logs(library_warnings: bool = True) -> OwnLinesFilter:
    """Hides other libraries' INFO (and lower) log lines and tf_keras's "Input dict
    contained keys" warning, from now on, in this process: a filter on absl's
    handler, through which every Python logger's records go in an absl app.
    Without `library_warnings`, their warnings too (log records and Python
    warnings), and TensorFlow's C++ log below FATAL if TensorFlow is not loaded
    yet and TF_CPP_MIN_LOG_LEVEL is not set by the user."""
    handler = logging.get_absl_handler()
    for old in [f for f in handler.filters if isinstance(f, OwnLinesFilter)]:
        handler.removeFilter(old)
    own = OwnLinesFilter(library_warnings=library_warnings)
    handler.addFilter(own)
    warnings.filterwarnings("ignore", message=IGNORED_WARNING, category=UserWarning)
    if not library_warnings:
        warnings.simplefilter("ignore")
        if "tensorflow" not in sys.modules:
            os.environ.setdefault(CPP_LOG_LEVEL, "3")
    return own


def tensorflow_defaults() -> None:
    """Sets TensorFlow's process settings that the user has not set; call it before
    TensorFlow is imported (later it changes nothing).

    - TF_CPP_MIN_LOG_LEVEL=2: TensorFlow's C++ start-up chatter (INFO and
      WARNING) is hidden, its errors shown.
    - TF_ENABLE_ONEDNN_OPTS=1 on x86-64: oneDNN's convolution, batch-norm and
      pooling kernels. TensorFlow turns them on by itself only on CPUs with
      AVX-512 VNNI, BF16 or AMX; on an AVX2 CPU (AMD EPYC, 2 cores) they made the
      default model's training step 1.45 times as fast as TensorFlow's own
      kernels, with the same seed giving the same losses run after run.
      There TensorFlow prints one line at start-up ("oneDNN supports DT_INT32
      only on platforms with AVX-512"): its integer ops keep their own kernels.
      TF_ENABLE_ONEDNN_OPTS=0 turns them off.
    - TF_USE_LEGACY_KERAS=1: `tf.keras` is tf_keras (Keras 2), which Model Garden
      and this project build every model and optimizer with, so `import
      tensorflow` no longer imports Keras 3 as well (about 2.5 s of a 6 s import
      measured with `python -X importtime`). Results are unchanged: a 10-step
      run's checkpoint had the same bytes with and without it.
    """
    os.environ.setdefault(CPP_LOG_LEVEL, "2")
    os.environ.setdefault(LEGACY_KERAS, "1")
    if platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.setdefault(ONEDNN, "1")


def main(run: Callable[..., int], verbose: bool = True, positional: bool = False,
         library_warnings: bool = True) -> Callable[[list[str]], None]:
    """An absl main: logs at INFO if `verbose` (unless --verbosity is given), hides
    library INFO lines (and without `library_warnings` their warnings) below
    --verbosity=1 (`quiet_library_logs`), exits with `run()`'s code. Positional
    arguments are refused, or with `positional` passed on: `run(argv[1:])`."""
    def absl_main(argv: list[str]) -> None:
        if len(argv) > 1 and not positional:
            sys.exit(fail(f"unexpected arguments: {' '.join(argv[1:])}"))
        if verbose and not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.INFO)
        if logging.get_verbosity() < logging.DEBUG:
            quiet_library_logs(library_warnings)
        tensorflow_defaults()
        try:
            code = run(list(argv[1:])) if positional else run()
        except UserError as err:
            code = fail(one_line(err))
        sys.exit(code)
    return absl_main
