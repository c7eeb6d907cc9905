"""Checks of the files a pipeline config names: the input records and the label map.

`load_config` does not run these (a config may be written before its data);
the trainer, the evaluator and the exporter do, before they build anything:

- `resolve_input_files`: the TFRecord files an input reader's `input_path` names;
- `check_label_map`: the reader's label map, whose ids must be 1..model.num_classes.

Both raise ConfigError naming the config key and the fix. No TensorFlow here.
"""

from __future__ import annotations

import glob
import os
import re

from train_lib.config import ConfigError, InputReaderConfig, PipelineConfig
from train_lib.data.label_map import load_label_map

__all__ = ["check_label_map", "resolve_input_files"]

_GLOB_MAGIC = re.compile(r"[*?[]")


def _entry_files(entry: str, key: str) -> list[str]:
    """The files one `input_path` entry (a file or a glob) names; ConfigError if none."""
    pattern = os.path.expanduser(entry)
    if os.path.isfile(pattern):
        matches = [pattern]
    elif os.path.isdir(pattern):
        raise ConfigError(
            f"`{key}.input_path` entry {entry!r} is a directory; name the files or a glob "
            f"such as {os.path.join(entry, '*.tfrecord')!r}"
        )
    elif pattern and _GLOB_MAGIC.search(pattern):
        matches = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    else:
        matches = []
    if not matches:
        raise ConfigError(
            f"`{key}.input_path` entry {entry!r} matches no file (relative paths are "
            f"resolved against the current directory {os.getcwd()})"
        )
    return matches


def resolve_input_files(reader: InputReaderConfig, key: str) -> list[str]:
    """The sorted, de-duplicated files that `reader.input_path` names.

    Args:
        reader: the input reader section.
        key: its key in the config (train_input_reader or eval_input_reader), for messages.

    Each entry is a file or a glob pattern (relative to the current directory).

    Raises:
        ConfigError: input_path is empty, an entry matches no file (or is a
            directory), or a file is empty (it has no records).
    """
    if not reader.input_path:
        raise ConfigError(
            f"`{key}.input_path` is empty; set `{key}.input_path` to the TFRecord file(s) or "
            "glob pattern(s) to read"
        )
    found: set[str] = set()
    for entry in reader.input_path:
        found.update(os.path.normpath(p) for p in _entry_files(entry, key))
    empty = sorted(p for p in found if os.path.getsize(p) == 0)
    if empty:
        raise ConfigError(
            f"`{key}.input_path`: {empty[0]} has no records (an empty file"
            + (f"; {len(empty) - 1} more are empty" if len(empty) > 1 else "")
            + "); write its records again or leave it out of the input_path")
    return sorted(found)


def _describe_ids(ids: list[int]) -> str:
    if ids == list(range(1, len(ids) + 1)):
        return f"1..{ids[-1]}" if len(ids) > 1 else "1"
    if len(ids) <= 10:
        return ", ".join(map(str, ids))
    return f"{ids[0]}..{ids[-1]} ({len(ids)} ids)"


def check_label_map(config: PipelineConfig, reader: InputReaderConfig, key: str,
                    subset: bool = False) -> dict[int, str]:
    """Loads `reader.label_map_path` and checks its largest id equals model.num_classes
    (with `subset`, is at most model.num_classes: an evaluation may score some of the
    model's classes; evaluation/label_maps.py checks their names).

    Args:
        config: the pipeline config (for model.num_classes).
        reader: the input reader section naming the label map.
        key: its key in the config, for messages.
        subset: accept a map of some of the ids 1..model.num_classes.

    Returns:
        {id: name} of the label map.

    Raises:
        ConfigError: the path is empty or not a file, the map has no items, an id
            below 1, or a largest id other than model.num_classes (with `subset`,
            above model.num_classes) (LabelMapError,
            a ConfigError, for an unreadable or malformed map).
    """
    path = reader.label_map_path
    num_classes = config.model.num_classes
    if not path:
        raise ConfigError(
            f"`{key}.label_map_path` is empty; set `{key}.label_map_path` to a label_map.pbtxt "
            f"with ids 1..{num_classes}"
        )
    if not os.path.isfile(path):
        raise ConfigError(
            f"`{key}.label_map_path` {path!r} is not a file (relative paths are resolved "
            f"against the current directory {os.getcwd()})"
        )
    label_map = load_label_map(path)
    if not label_map:
        raise ConfigError(f"the label map {path} (`{key}.label_map_path`) has no items")
    ids = sorted(label_map)
    if ids[0] < 1:
        raise ConfigError(
            f"the label map {path} (`{key}.label_map_path`) has id {ids[0]}; ids start at 1 "
            "(0 is the background)"
        )
    if subset and ids[-1] <= num_classes:
        return label_map
    if subset:
        raise ConfigError(
            f"the label map {path} (`{key}.label_map_path`) has id {ids[-1]} "
            f"({label_map[ids[-1]]!r}), beyond model.num_classes {num_classes}: the model has "
            f"no such class; evaluate with a label map of its classes (ids 1..{num_classes})"
        )
    if ids[-1] != num_classes:
        raise ConfigError(
            f"model.num_classes is {num_classes} but the label map {path} has ids "
            f"{_describe_ids(ids)}; set model.num_classes: {ids[-1]}"
        )
    return label_map
