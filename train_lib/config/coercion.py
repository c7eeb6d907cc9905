"""Strict conversion of plain data (as read from YAML) into config dataclasses.

`merge_into(base, data, source)` writes the keys of a nested mapping into a
copy of a config dataclass, checking every key and value against the field
types: an unknown key, or a value of the wrong type, raises ConfigError naming
the source file and line (where known) and the dotted key path, with a
suggestion. Value *ranges* are not checked here; that is the sections'
`problems()` (schema.py).

This module knows no particular schema: it works on any tree of dataclasses
whose fields are bool, int, float, str, list[...], one of those or None (`float |
None`: null is a value, "not set") or nested dataclasses. A field may widen what it
accepts through its metadata (see `ACCEPTS`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from train_lib.config.errors import ConfigError

__all__ = ["ACCEPTS", "PATHS", "STRING_OR_INTEGER", "STRING_OR_SWITCH", "Source", "describe",
           "merge_into", "optional_type"]

T = TypeVar("T")

# Every integer of a config ends up in a TensorFlow or NumPy int64.
_INT64 = 2**63

# Field metadata key: a str field given `STRING_OR_INTEGER` also accepts an
# integer (stored as its text); a str field given `STRING_OR_SWITCH` also accepts
# a boolean (YAML's on/off, true/false, yes/no; stored as "enabled"/"disabled");
# a list[str] field given `PATHS` also accepts one string (a one-element list).
ACCEPTS = "accepts"
STRING_OR_INTEGER = {ACCEPTS: "string_or_integer"}
STRING_OR_SWITCH = {ACCEPTS: "string_or_switch"}
PATHS = {ACCEPTS: "paths"}

# Keys of OD API pipeline.config files that people carry over, with what to write instead.
_ODAPI_HINTS = {
    "tf_record_input_reader": "this driver takes `{parent}.input_path` directly",
    "ssd": "this driver builds a RetinaNet: set `model.architecture: retinanet`",
    "faster_rcnn": "set `model.architecture: faster_rcnn` and its keys "
                   "(docs/faster_rcnn.md)",
    "center_net": "this driver builds a RetinaNet: set `model.architecture: retinanet`",
}


@dataclass
class Source:
    """Where data came from: a name for messages and the 1-based line of each key path."""

    name: str
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, path: str) -> str:
        """`name:line` of the key path (list indices ignored), or just `name`."""
        line = self.lines.get(path.split("[", 1)[0])
        return f"{self.name}:{line}" if line is not None else self.name


def fields_of(cls: type) -> dict[str, Any]:
    """Field name -> resolved type for a config dataclass (schema order)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def schema_paths(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key path of the dataclass tree rooted at `cls`, sections included."""
    paths = []
    for name, ftype in fields_of(cls).items():
        path = f"{prefix}.{name}" if prefix else name
        paths.append(path)
        if dataclasses.is_dataclass(ftype):
            paths.extend(schema_paths(ftype, path))
    return paths


def describe(value: Any) -> str:
    """The kind and (shortened) repr of a YAML value, as messages show it."""
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
             dict: "mapping"}
    if value is None:
        return "nothing (null)"
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python converts to text
        text = f"of {value.bit_length()} bits"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{kinds.get(type(value), type(value).__name__)} {text}"


def _type_error(path: str, expected: str, value: Any, source: Source) -> ConfigError:
    message = f"{source.where(path)}: `{path}` must be {expected}, got {describe(value)}"
    if expected == "an integer" and isinstance(value, float) and value.is_integer():
        message += f"; write {int(value)}"
    return ConfigError(message)


def _coerce_widened(value: Any, accepts: str, path: str, source: Source) -> Any:
    """A value of a field whose metadata widens what it accepts (see `ACCEPTS`)."""
    if accepts == STRING_OR_INTEGER[ACCEPTS]:
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value)
        raise _type_error(path, "a string or an integer", value, source)
    if accepts == STRING_OR_SWITCH[ACCEPTS]:
        if isinstance(value, bool):
            return "enabled" if value else "disabled"
        if isinstance(value, str):
            return value
        raise _type_error(path, "a string or on/off", value, source)
    if accepts == PATHS[ACCEPTS]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise _type_error(path, "a file path or glob, or a list of them (strings)", value, source)
    raise TypeError(f"unknown {ACCEPTS} {accepts!r} at {path}")  # schema bug


def _finite(value: int | float, path: str, source: Source) -> float:
    """`value` as a float; ConfigError if it is NaN or infinite (YAML's .nan, .inf, 1e999)
    or an integer beyond a float's range. No setting means NaN: every comparison with
    it is false, so it would pass every range check."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        shown = repr(number) if isinstance(value, float) else "an integer beyond a float's range"
        raise ConfigError(f"{source.where(path)}: {path} is {shown}; must be a finite number "
                          "(NaN and infinity are not settings)")
    return number


def optional_type(ftype: Any) -> Any:
    """X of a field type `X | None`, else None."""
    args = typing.get_args(ftype)
    if isinstance(ftype, types.UnionType) and len(args) == 2 and type(None) in args:
        return next(a for a in args if a is not type(None))
    return None


def _coerce(value: Any, ftype: Any, path: str, source: Source) -> Any:
    """Checks `value` against a leaf field type; returns it in its stored form."""
    inner = optional_type(ftype)
    if inner is not None:
        return None if value is None else _coerce(value, inner, path, source)
    if ftype is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(path, "true or false", value, source)
    if ftype is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not -_INT64 <= value < _INT64:
                raise ConfigError(f"{source.where(path)}: `{path}` is too large ({describe(value)}"
                                  "); an integer must fit in 64 bits")
            return value
        raise _type_error(path, "an integer", value, source)
    if ftype is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _finite(value, path, source)
        raise _type_error(path, "a number", value, source)
    if ftype is str:
        if isinstance(value, str):
            return value
        raise _type_error(path, "a string", value, source)
    if typing.get_origin(ftype) is list:
        (elem,) = typing.get_args(ftype)
        if not isinstance(value, list):
            kind = {int: "integers", float: "numbers", str: "strings"}.get(elem, str(elem))
            raise _type_error(path, f"a list of {kind}", value, source)
        return [_coerce(v, elem, f"{path}[{i}]", source) for i, v in enumerate(value)]
    raise TypeError(f"unsupported config field type {ftype!r} at {path}")  # schema bug


class _Writer:
    """Applies nested mappings to a dataclass tree rooted at `root`, reporting via `source`."""

    def __init__(self, root: type, source: Source):
        self.root = root
        self.source = source

    def unknown_key(self, key: Any, parent: str, valid: list[str]) -> ConfigError:
        """The error for `key` under `parent`: an OD API hint, where the key belongs, the
        closest valid key, or the valid keys."""
        source = self.source
        path = f"{parent}.{key}" if parent else str(key)
        line_path = path if path in source.lines else parent
        message = f"{source.where(line_path)}: unknown key `{path}`"
        if isinstance(key, str) and key in _ODAPI_HINTS:
            return ConfigError(f"{message}; {_ODAPI_HINTS[key].format(parent=parent)}")
        elsewhere = [p for p in schema_paths(self.root)
                     if isinstance(key, str) and p.endswith("." + key)]
        if elsewhere:
            return ConfigError(f"{message}; `{key}` belongs under " + " or ".join(
                f"`{p.rsplit('.', 1)[0]}`" for p in elsewhere))
        close = difflib.get_close_matches(str(key).lower(), valid, n=1)
        if close:
            full = f"{parent}.{close[0]}" if parent else close[0]
            return ConfigError(f"{message}; did you mean `{full}`?")
        under = f"under `{parent}`" if parent else "at the top level"
        return ConfigError(f"{message}; valid keys {under}: {', '.join(valid)}")

    def apply(self, target: Any, data: Mapping, prefix: str) -> None:
        """Writes the keys of `data` into the config dataclass `target`, strictly."""
        fields = {f.name: f for f in dataclasses.fields(target)}
        types = fields_of(type(target))
        for key, value in data.items():
            if not isinstance(key, str) or key not in fields:
                raise self.unknown_key(key, prefix, list(fields))
            path = f"{prefix}.{key}" if prefix else key
            ftype = types[key]
            if dataclasses.is_dataclass(ftype):
                if value is None:  # an empty or null section keeps what it had
                    continue
                if not isinstance(value, Mapping):
                    raise _type_error(path, "a mapping (a section of keys)", value, self.source)
                self.apply(getattr(target, key), value, path)
            elif ACCEPTS in fields[key].metadata:
                accepts = fields[key].metadata[ACCEPTS]
                setattr(target, key, _coerce_widened(value, accepts, path, self.source))
            else:
                setattr(target, key, _coerce(value, ftype, path, self.source))


def merge_into(base: T, data: Any, source: Source) -> T:
    """A deep copy of the config dataclass `base` with the mapping `data` applied.

    Keys omitted from `data`, and null sections, keep their value in `base`;
    `base` itself is left unchanged.

    Raises:
        ConfigError: `data` is not a mapping, or has an unknown key or a value
            of the wrong type (the message names `source`, the line where known,
            and the key path).
    """
    config = copy.deepcopy(base)
    root = type(base)
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source.name}: the top level must be a mapping of sections "
            f"({', '.join(fields_of(root))}), got {describe(data)}"
        )
    _Writer(root, source).apply(config, data, "")
    return config
