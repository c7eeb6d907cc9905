"""Where an entry point writes, checked before any expensive work.

Every script that writes (the exporters, the annotation converter, the config
converter, detect.py, the inspector's --plot) checks its output location first,
with the flag that named it, so that a typo costs no model loading:

- a location that must be a directory is not an existing file, and one that must
  be a file is not an existing directory;
- missing folders are fine: they are created when the output is written (as the
  trainer's model_dir always was), so the nearest folder that does exist must be a
  folder, not a file, and must be writable (probed by creating a temporary file in
  it, which also catches read-only file systems and works for root);
- remote locations (gs://, ...) are not checked here.

A failed check is one OutputPathError naming the flag and the path. No TensorFlow
here.
"""

from __future__ import annotations

import os
import tempfile

from train_lib.errors import UserError

__all__ = ["OutputPathError", "check_output_directory", "check_output_file", "make_parent"]


class OutputPathError(UserError, ValueError):
    """An output location that cannot be written; names the flag, the path and the fix."""


def _is_remote(path: str) -> bool:
    return "://" in path


def _nearest_existing(path: str) -> str:
    """The path itself or its nearest ancestor that exists."""
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _check_creatable(flag: str, path: str, start: str) -> None:
    """Raises unless the folder `start` (or its nearest existing ancestor) is a writable
    folder, so that `path` can be created there."""
    existing = _nearest_existing(start)
    if not os.path.isdir(existing):
        raise OutputPathError(f"{flag} {path}: {existing} is a file, so no folder can be "
                              "created there; choose another location")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputPathError(f"{flag} {path}: the folder {existing} is not writable "
                              f"({exc.strerror}); choose a writable location") from None


def _check_given(flag: str, path: str) -> None:
    if not path or not path.strip():
        raise OutputPathError(f"{flag} is empty; give the location to write to")


def check_output_directory(flag: str, path: str) -> None:
    """Raises OutputPathError (naming `flag` and `path`) unless `path` is a writable
    directory or can be created as one; creates nothing."""
    _check_given(flag, path)
    if _is_remote(path):
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputPathError(f"{flag} {path} is a file; give a directory (a new one is "
                              "created)")
    _check_creatable(flag, path, path)


def check_output_file(flag: str, path: str) -> None:
    """Raises OutputPathError (naming `flag` and `path`) unless a file can be written at
    `path`: not an existing directory, in a writable folder or one that can be created;
    creates nothing."""
    _check_given(flag, path)
    if _is_remote(path):
        return
    if os.path.isdir(path):
        raise OutputPathError(f"{flag} {path} is a directory; give the path of the file "
                              "to write")
    _check_creatable(flag, path, os.path.dirname(os.path.abspath(path)))


def make_parent(path: str) -> None:
    """Creates the missing folders above the file `path` (local paths only)."""
    if not _is_remote(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
