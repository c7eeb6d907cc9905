"""The files of a model_dir's checkpoints: names, listing, removal and the state file.

No TensorFlow: the inspector, evaluation and scripts use this module without it.

Names. The checkpoint of global step N is the prefix `<model_dir>/ckpt-N`, N in
decimal without leading zeros (`checkpoint_name`). Its files are `ckpt-N.index` and
the data shards `ckpt-N.data-<i>-of-<n>`; TensorFlow writes the shards, then the
index, so a prefix without an index is not a checkpoint. `parse_step` is the only
parser of the name in train_lib and accepts exactly the names `checkpoint_name`
writes: `ckpt-07`, `ckpt-+7`, `ckpt-x`, non-ASCII digits, `ckpt-12.index` (a
file, not a prefix) and `ckpt-12.index.tmp` are not checkpoint names, so
`parse_step(checkpoint_name(n)) == n` for every n >= 0 and a name that parses is
the name of its step (`ckpt-07.index` is a stray file, never "step 7").

State file. `<model_dir>/checkpoint` (STATE_FILE) is the text-format
CheckpointState that `tf.train.get_checkpoint_state` and `tf.train.latest_checkpoint`
read: `model_checkpoint_path`, then `all_model_checkpoint_paths` and
`all_model_checkpoint_timestamps` (oldest first), then `last_preserved_timestamp`;
paths relative to model_dir. `write_state` replaces it atomically.

Invalid checkpoints are moved aside into `<model_dir>/invalid_checkpoints/`
(INVALID_DIR) by `quarantine`.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shutil
from collections.abc import Sequence

__all__ = ["INVALID_DIR", "STATE_FILE", "CheckpointState", "checkpoint_name", "data_files",
           "list_steps", "missing_files", "parse_step", "prefix", "quarantine", "read_state",
           "remove_checkpoint", "write_state"]

STATE_FILE = "checkpoint"
INVALID_DIR = "invalid_checkpoints"
_NAME = re.compile(r"ckpt-(0|[1-9][0-9]*)")
_SHARD = re.compile(r"\.data-\d+-of-(\d+)$")
_STATE_PATH = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"(.*)"')
_STATE_TIME = re.compile(r"^\s*(all_model_checkpoint_timestamps|last_preserved_timestamp)"
                         r"\s*:\s*(\S+)")


# ---------------------------------------------------------------- names


def checkpoint_name(step: int) -> str:
    """The checkpoint name of global step `step` (>= 0): `ckpt-<step>`."""
    return f"ckpt-{step}"


def prefix(model_dir: str, step: int) -> str:
    """The checkpoint prefix of `step` in model_dir: `<model_dir>/ckpt-<step>`."""
    return os.path.join(model_dir, checkpoint_name(step))


def parse_step(name_or_path: str | os.PathLike[str]) -> int | None:
    """The step of a checkpoint name or prefix (`ckpt-12`, `/run/ckpt-12`), else None.

    Only the last path component counts; it must be exactly what `checkpoint_name`
    writes (see the module docstring for what is refused).
    """
    match = _NAME.fullmatch(os.path.basename(os.fspath(name_or_path)))
    return int(match.group(1)) if match else None


def list_steps(model_dir: str | os.PathLike[str]) -> list[int]:
    """Steps of the `ckpt-<step>.index` files in model_dir, ascending; [] if there are
    none or model_dir does not exist. Other files (data shards without an index,
    look-alike names, temporary files) are ignored."""
    pattern = os.path.join(glob.escape(os.fspath(model_dir)), "ckpt-*.index")
    steps = (parse_step(path[: -len(".index")]) for path in glob.glob(pattern))
    return sorted(step for step in steps if step is not None)


# ---------------------------------------------------------------- one checkpoint's files


def data_files(ckpt_prefix: str) -> list[str]:
    """The data shards (`<prefix>.data-*`) of the checkpoint at `ckpt_prefix`, sorted."""
    return sorted(glob.glob(glob.escape(ckpt_prefix) + ".data-*"))


def missing_files(ckpt_prefix: str) -> str | None:
    """None if the index and every data shard of `ckpt_prefix` exist, else what is
    missing ("index file missing", "data file missing", "data file missing (1 of 2
    shards present)"). Reads no file."""
    if not os.path.exists(ckpt_prefix + ".index"):
        return "index file missing"
    shards = data_files(ckpt_prefix)
    if not shards:
        return "data file missing"
    match = _SHARD.search(shards[0])
    expected = int(match.group(1)) if match else 1
    if len(shards) < expected:
        return f"data file missing ({len(shards)} of {expected} shards present)"
    return None


def remove_checkpoint(ckpt_prefix: str) -> None:
    """Remove a checkpoint's files, the index first (no index = not a checkpoint), then
    its data shards and a `<prefix>_temp` directory left by an unfinished write.

    Missing files are fine; raises OSError if an existing file cannot be removed.
    """
    for path in [ckpt_prefix + ".index", *data_files(ckpt_prefix)]:
        if os.path.exists(path):
            os.remove(path)
    if os.path.isdir(ckpt_prefix + "_temp"):
        shutil.rmtree(ckpt_prefix + "_temp", ignore_errors=True)


def quarantine(model_dir: str, step: int) -> str | None:
    """Move the files of `ckpt-<step>` (index first) into `<model_dir>/invalid_checkpoints/`
    (created if needed); returns that directory, or None if the checkpoint has no files.
    Raises OSError if a file cannot be moved."""
    ckpt_prefix = prefix(model_dir, step)
    paths = [ckpt_prefix + ".index", *data_files(ckpt_prefix)]
    paths = [path for path in paths if os.path.exists(path)]
    if not paths:
        return None
    target = os.path.join(model_dir, INVALID_DIR)
    os.makedirs(target, exist_ok=True)
    for path in paths:
        os.replace(path, os.path.join(target, os.path.basename(path)))
    return target


# ---------------------------------------------------------------- the state file


@dataclasses.dataclass
class CheckpointState:
    """The contents of a `checkpoint` state file. Paths are absolute: relative ones are
    joined to model_dir and normalized. `model_checkpoint_path` is None if the file
    names none (damaged); timestamps that are not numbers are left out."""

    model_checkpoint_path: str | None
    all_model_checkpoint_paths: list[str]
    all_model_checkpoint_timestamps: list[float]
    last_preserved_timestamp: float | None


def read_state(model_dir: str) -> CheckpointState | None:
    """The `<model_dir>/checkpoint` state file, or None if there is no such file.

    Tolerant, for inspecting damaged directories: lines it does not know are skipped,
    bytes that are not UTF-8 are replaced, the last `model_checkpoint_path` line wins.
    Raises OSError if the file exists but cannot be read.
    """
    path = os.path.join(model_dir, STATE_FILE)
    if not os.path.isfile(path):
        return None
    state = CheckpointState(None, [], [], None)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            match = _STATE_PATH.match(line)
            if match:
                ckpt_path = os.path.normpath(os.path.join(model_dir, match.group(2)))
                if match.group(1) == "model_checkpoint_path":
                    state.model_checkpoint_path = ckpt_path
                else:
                    state.all_model_checkpoint_paths.append(ckpt_path)
                continue
            match = _STATE_TIME.match(line)
            if match:
                try:
                    value = float(match.group(2))
                except ValueError:
                    continue
                if match.group(1) == "last_preserved_timestamp":
                    state.last_preserved_timestamp = value
                else:
                    state.all_model_checkpoint_timestamps.append(value)
    return state


def write_state(model_dir: str, latest: int, steps: Sequence[int],
                timestamps: Sequence[float], last_preserved_time: float) -> None:
    """Atomically replace `<model_dir>/checkpoint`: it names `ckpt-<latest>` as the
    latest checkpoint and lists `steps` with their wall times `timestamps` (unix
    seconds), oldest first, by paths relative to model_dir.

    Written to a temporary file, fsynced, then renamed over the old one, so a reader
    sees the old or the new file, never a torn one. Raises ValueError if `steps` and
    `timestamps` differ in length, OSError if the file cannot be written.
    """
    if len(steps) != len(timestamps):
        raise ValueError(f"{len(steps)} steps but {len(timestamps)} timestamps")
    lines = [f'model_checkpoint_path: "{checkpoint_name(latest)}"']
    lines += [f'all_model_checkpoint_paths: "{checkpoint_name(s)}"' for s in steps]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in timestamps]
    lines.append(f"last_preserved_timestamp: {last_preserved_time!r}")
    path = os.path.join(model_dir, STATE_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
