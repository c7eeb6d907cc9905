"""Read and write OD API `label_map.pbtxt` files without a protobuf dependency.

A label map is the text format of the OD API's `StringIntLabelMap`:

    item {
      id: 1
      name: 'square'
      display_name: 'Square'  # optional, ignored here
    }

Ids start at 1; id 0 is reserved for the background. Items may span several
lines or sit on one line, fields may come in any order, strings may use single
or double quotes, and `#` starts a comment. Other item fields of the OD API
proto (`keypoints { ... }`, `frequency: FREQUENT`, ...) are parsed and ignored.
The text format itself is read by `train_lib.textproto`.
"""

from __future__ import annotations

import numbers
import os

from train_lib import textproto
from train_lib.config import ConfigError

__all__ = ["LabelMapError", "load_label_map", "write_label_map"]

# The largest id: the OD API's StringIntLabelMapItem.id is an int32.
MAX_ID = 2**31 - 1
_FORMAT_HINT = "Each entry must look like: item { id: 1 name: 'square' }"


class LabelMapError(ConfigError):
    """A missing or malformed label map; the message names the file, the line and the fix."""


# ---------------------------------------------------------------- reading


def _error(path: str, line: int | None, problem: str, fix: str) -> LabelMapError:
    where = f"label map {path}" + (f", line {line}" if line is not None else "")
    return LabelMapError(f"{where}: {problem}. {fix}")


def _read_text(path: str) -> str:
    """The UTF-8 text at `path` (local, or gs:// etc. through TensorFlow's gfile)."""
    if "://" in path:  # gs://, hdfs://, ...: only then pay for the TensorFlow import
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(path)
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    return data.decode("utf-8")


def _parse_file(path: str) -> textproto.Node:
    """The parsed label map file; LabelMapError if it cannot be read or parsed."""
    try:
        text = _read_text(path)
    except FileNotFoundError:
        raise _error(path, None, "file not found",
                     "Check the label_map_path setting, or create the file "
                     f"({_FORMAT_HINT})") from None
    except IsADirectoryError:
        raise _error(path, None, "is a directory, not a file",
                     "Point label_map_path at the label_map.pbtxt file") from None
    except UnicodeDecodeError as exc:
        raise _error(path, None, f"not valid UTF-8 text ({exc.reason} at byte {exc.start})",
                     "Save the file as UTF-8 text") from None
    except OSError as exc:
        raise _error(path, None, f"cannot be read ({exc})",
                     "Check that the file exists and is readable") from None
    try:
        return textproto.parse(text, path)
    except textproto.TextProtoError as exc:
        raise _error(path, exc.line, f"syntax error: {exc.problem}", _FORMAT_HINT) from None


def _int_id(path: str, node: textproto.Node) -> int:
    if node.kind == "number":
        text = node.value
        try:
            return int(text, 16) if text.lower().lstrip("+-").startswith("0x") else int(text)
        except ValueError:
            pass
    shown = node.value if node.kind in textproto.SCALAR_KINDS else "a list or message"
    raise _error(path, node.line, f"id must be an integer, got {shown!r}",
                 "Write the id as a plain number, e.g. id: 1")


def _read_item(path: str, item: textproto.Node
               ) -> tuple[int, textproto.Node, textproto.Node]:
    """(id, the id's node, the name's node) of one top-level field, which must be a
    valid item on its own; the name is the name node's value."""
    if item.name != "item":
        raise _error(path, item.line, f"unexpected top-level field {item.name!r}",
                     f"A label map holds only item {{ ... }} entries. {_FORMAT_HINT}")
    if not item.is_message:
        raise _error(path, item.line, "item is not a { ... } block", _FORMAT_HINT)
    seen: dict[str, textproto.Node] = {}
    for f in item.children:
        if f.name in ("id", "name", "display_name"):
            if f.name in seen:
                raise _error(path, f.line, f"item has '{f.name}' twice",
                             f"Give each item exactly one {f.name}")
            seen[f.name] = f
    missing = [k for k in ("id", "name") if k not in seen]
    if missing:
        raise _error(path, item.line, f"item has no {' and no '.join(missing)}", _FORMAT_HINT)
    item_id = _int_id(path, seen["id"])
    name_node = seen["name"]
    if name_node.kind != "string":
        raise _error(path, name_node.line, "name must be a quoted string",
                     "Write it as name: 'square'")
    if item_id < 1:
        raise _error(path, seen["id"].line, f"id {item_id} is invalid",
                     "Ids start at 1; id 0 is reserved for the background class")
    if item_id > MAX_ID:
        raise _error(path, seen["id"].line, f"id {item_id} is too large",
                     f"Ids are int32 in the OD API's label map: at most {MAX_ID}")
    if not name_node.value:
        raise _error(path, name_node.line, "name is empty", "Give every class a name")
    return item_id, seen["id"], name_node


def load_label_map(path: str) -> dict[int, str]:
    """Returns {id: name} from an OD API label map file.

    `display_name` and other item fields are ignored.

    Raises:
        LabelMapError: naming the file, and the line where known, if the file is
            missing or unreadable, has a syntax error (a NaN or infinite number
            included), an item lacks id or name, an id is < 1 (0 is the background)
            or above MAX_ID (int32), an id or name repeats, or the
            map has no items.
    """
    path = os.fspath(path)
    names: dict[int, str] = {}
    id_lines: dict[int, int] = {}
    name_ids: dict[str, int] = {}
    for item in _parse_file(path).children:
        item_id, id_node, name_node = _read_item(path, item)
        name = name_node.value
        if item_id in names:
            raise _error(path, id_node.line,
                         f"duplicate id {item_id} (also used on line {id_lines[item_id]})",
                         "Give every item a distinct id")
        if name in name_ids:
            raise _error(path, name_node.line,
                         f"duplicate name {name!r} (ids {name_ids[name]} and {item_id})",
                         "Give every item a distinct name")
        names[item_id] = name
        id_lines[item_id] = id_node.line
        name_ids[name] = item_id
    if not names:
        raise _error(path, None, "has no items", f"Add one item per class. {_FORMAT_HINT}")
    return names


# ---------------------------------------------------------------- writing


def _quote(name: str) -> str:
    out = []
    for ch in name:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def write_label_map(path: str, names: dict[int, str]) -> None:
    """Writes {id: name} as an OD API label map (items sorted by id), atomically for local paths.

    Ids must be integers from 1 to MAX_ID and names distinct non-empty strings, else LabelMapError;
    `load_label_map(path)` then returns `names` unchanged.
    """
    path = os.fspath(path)
    if not names:
        raise _error(path, None, "nothing to write: no classes given",
                     "Pass at least one {id: name} entry")
    seen_names: dict[str, int] = {}
    items: list[tuple[int, str]] = []
    for key, name in names.items():
        if (not isinstance(key, numbers.Integral) or isinstance(key, bool) or int(key) < 1
                or int(key) > MAX_ID):
            raise _error(path, None, f"invalid id {key!r}",
                         f"Ids must be integers from 1 to {MAX_ID}; id 0 is reserved for the "
                         "background")
        if not isinstance(name, str) or not name:
            raise _error(path, None, f"invalid name {name!r} for id {key}",
                         "Names must be non-empty strings")
        if name in seen_names:
            raise _error(path, None, f"duplicate name {name!r} (ids {seen_names[name]} and {key})",
                         "Give every class a distinct name")
        seen_names[name] = int(key)
        items.append((int(key), name))
    text = "".join(f"item {{\n  id: {i}\n  name: {_quote(n)}\n}}\n" for i, n in sorted(items))
    data = text.encode("utf-8")

    if "://" in path:
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(data)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
