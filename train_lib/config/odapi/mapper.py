"""`Mapper`: a parsed pipeline.config read field by field, and our config data written.

A `Mapper` checks every field name against the OD API's messages (fields.py: a
typo is an error naming the nearest known field), records each field's nodes by
path, and decides each field by its row in table.py (`classify`): exact and
approximated fields with a plain conversion become our keys, ignored ones are
listed, unsupported ones collected for one error. The modules that compute the
keys combining several fields (ssd.py, faster_rcnn.py, train.py) read and write
through it (`one`, `get`, `set`, `approx`, `refuse`). The result is an
`OdapiConfig`: plain data in our keys (as YAML would give), the pipeline.config
line of each key, and the notes to log.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from train_lib.config.errors import ConfigError
from train_lib.config.odapi.fields import MESSAGES, OPAQUE, S
from train_lib.config.odapi.table import APPROX, EXACT, IGNORED, ROWS, UNSUPPORTED
from train_lib.textproto import LIST, Node
from train_lib.textproto import scalar_value as _value

__all__ = ["Mapper", "OdapiConfig", "child_value"]

_ROWS = {row.path: row for row in ROWS}


@dataclass
class OdapiConfig:
    """A mapped pipeline.config.

    Attributes:
        data: our config as nested plain data (as parsed YAML).
        lines: our dotted key -> its line in the pipeline.config.
        origins: our dotted key -> the OD API field path it came from.
        approximations: our dotted key (or the OD API path) -> why, one log line each.
        ignored: "file:line: path (why)" of the harmless fields not used.
    """

    data: dict = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    approximations: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def _written(node: Node) -> str:
    return node.value


def _allowed(node: Node, only: tuple[str, ...]) -> bool:
    """Whether `node` is a scalar holding one of the values `only` (as written in the
    table), compared as values: `False` is `false`, `1.00` is `1`."""
    if node.is_message or node.kind == LIST:
        return False
    value = _value(node)
    return any(isinstance(value, bool) == isinstance(allowed, bool) and value == allowed
               for allowed in map(_table_value, only))


def _table_value(text: str) -> int | float | bool | str:
    """A value of a row's `only`, as the text-format reader gives it."""
    if text in ("true", "false"):
        return text == "true"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


class Mapper:
    """The fields of one parsed pipeline.config (`nodes`, by path) and what they map to
    (`out`); `unsupported` collects the fields that cannot be honoured, for one error."""

    def __init__(self, root: Node, source: str):
        self.source = source
        self.nodes: dict[str, list[Node]] = defaultdict(list)
        self.out = OdapiConfig()
        self.unsupported: list[str] = []
        self._walk(root, "TrainEvalPipelineConfig")

    # ------------------------------------------------------------ reading
    def at(self, node: Node) -> str:
        """"file:line" of `node`, for messages."""
        return f"{self.source}:{node.line}"

    def _walk(self, message: Node, mtype: str) -> None:
        """Checks every field name and kind below `message`; records the nodes by path."""
        known = MESSAGES[mtype]
        for child in message.children:
            ftype = known.get(child.name)
            if ftype is None:
                parent = message.path
                close = difflib.get_close_matches(child.name, list(known), n=1, cutoff=0.5)
                hint = (f"; did you mean `{f'{parent}.' if parent else ''}{close[0]}`?" if close
                        else f"; known fields here: {', '.join(known)}")
                raise ConfigError(f"{self.source}:{child.line}:{child.column}: unknown field "
                                  f"`{child.path}`{hint}")
            if (ftype == S) == child.is_message:
                want = "a value (`name: value`)" if ftype == S else "a message (`name { ... }`)"
                raise ConfigError(f"{self.source}:{child.line}:{child.column}: `{child.path}` "
                                  f"must be {want}")
            self.nodes[child.path].append(child)
            if ftype not in (S, OPAQUE) and child.path not in _ROWS:
                self._walk(child, ftype)

    def one(self, path: str) -> Node | None:
        """The node of field `path` (None when absent); a field given twice that must be
        given once is collected as unsupported."""
        found = self.nodes.get(path, [])
        if len(found) > 1 and not path.endswith(("aspect_ratios", "input_path", "metrics_set",
                                                 "schedule", "step", "learning_rate")):
            self.unsupported.append(f"{self.at(found[1])}: {path} (given {len(found)} times; "
                                    "give it once)")
        return found[0] if found else None

    def get(self, path: str, default: Any = None) -> Any:
        """The value of scalar field `path` (text-format types), `default` when absent."""
        node = self.one(path)
        return default if node is None else _value(node)

    # ------------------------------------------------------------ writing
    def set(self, key: str, value: Any, origin: str, note: str = "") -> None:
        """Sets our dotted `key`; `note` (if any) says why it is approximated."""
        target = self.out.data
        *parents, leaf = key.split(".")
        for name in parents:
            target = target.setdefault(name, {})
        target[leaf] = value
        node = self.one(origin)
        if node is not None:
            self.out.lines.setdefault(key, node.line)
            self.out.origins.setdefault(key, origin)
        if note:
            where = f"{self.at(node)}: " if node is not None else f"{self.source}: "
            self.out.approximations[key] = f"{where}{origin} approximated as {key}: {note}"

    def approx(self, path: str, note: str, absent_too: bool = False) -> None:
        """Notes (for the log) that field `path`, if given (with `absent_too`, also when
        absent: its proto default is the value approximated), is approximated, and why."""
        node = self.one(path)
        if node is None:
            if absent_too:
                self.out.approximations[path] = (
                    f"{self.source}: {path} (absent: the OD API's default) approximated: "
                    f"{note}")
            return
        if path in self.out.approximations:  # a second note on the same field
            if note not in self.out.approximations[path]:
                self.out.approximations[path] += f"; {note}"
        else:
            self.out.approximations[path] = f"{self.at(node)}: {path} approximated: {note}"

    def refuse(self, path: str, why: str) -> None:
        """Collects field `path` (or the file, when absent) as unsupported, with why."""
        node = self.one(path)
        where = self.at(node) if node is not None else self.source
        self.unsupported.append(f"{where}: {path} ({why})")

    # ------------------------------------------------------------ the table
    def classify(self) -> None:
        """Applies each field's row: plain conversions, notes, warnings, refusals."""
        covered = [p for p in self.nodes if p in _ROWS]
        for path, nodes in self.nodes.items():
            row = _ROWS.get(path)
            node = nodes[0]
            if row is None:
                if any(path.startswith(c + ".") for c in covered):
                    continue  # inside a field decided whole by its row
                if node.is_message and _message_type(path) != OPAQUE:
                    continue  # a described message: its fields are decided one by one
                self.unsupported.append(f"{self.at(node)}: {path} (not supported)")
                continue
            if row.only and not _allowed(node, row.only):
                shown = "{...}" if node.is_message else _written(node)
                self.unsupported.append(f"{self.at(node)}: {path}: {shown} ({row.why}; only "
                                        f"{' / '.join(row.only)})")
            elif row.status == UNSUPPORTED:
                self.unsupported.append(f"{self.at(node)}: {path} ({row.why})")
            elif row.status == IGNORED:
                self.out.ignored.append(f"{self.at(node)}: {path}"
                                        + (f" ({row.why})" if row.why else ""))
            elif row.status == APPROX and not row.kind:
                self.approx(path, row.why)
            if row.kind and row.status in (EXACT, APPROX):
                items = [c for n in nodes for c in (n.children if n.kind == LIST else [n])]
                value = _value(items[0]) if row.kind not in ("paths", "floats") else [
                    float(v) if row.kind == "floats" else v for v in map(_value, items)]
                if row.kind == "float" and isinstance(value, int):
                    value = float(value)
                if row.kind == "int" and not isinstance(value, int):
                    self.unsupported.append(f"{self.at(node)}: {path}: {node.value} (must be "
                                            "an integer)")
                    continue
                self.set(row.ours, value, path, row.why if row.status == APPROX else "")


def _message_type(path: str) -> str:
    mtype = "TrainEvalPipelineConfig"
    for name in path.split("."):
        mtype = MESSAGES.get(mtype, {}).get(name, OPAQUE)
    return mtype


def child_value(node: Node | None, name: str, default: Any) -> Any:
    """The value of field `name` of message `node` (all values for a repeated one, when
    `default` is a list); `default` when absent."""
    values = [_value(n) for n in node.fields(name)] if node is not None else []
    if not values:
        return default
    return values if isinstance(default, list) else values[0]
