"""Parsing of `--params_override`, as in Model Garden.

Two forms are accepted:
  * a YAML or JSON mapping: `"train_config: {batch_size: 4}"`;
  * comma-separated dotted pairs: `"train_config.learning_rate.base=0.02,model.input_size=[64,64]"`,
    whose values are parsed as YAML (commas inside [], {} or quotes do not split pairs).
Dotted keys in the mapping form are expanded too. The result is a nested dict that
`load_config` (loading.py) applies, strictly, on top of the config file.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from train_lib.config.errors import ConfigError
from train_lib.config.yaml_io import YamlLoader, parse_yaml

SOURCE = "--params_override"
_PAIR_RE = re.compile(r"^\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*=(.*)$", re.DOTALL)
_EXAMPLES = (
    "give a YAML/JSON mapping such as 'train_config: {batch_size: 4}' or comma-separated "
    "pairs such as 'train_config.batch_size=4,model.input_size=[64,64]'"
)


def split_pairs(text: str) -> list[str]:
    """Splits `text` at top-level commas (not inside [], {} or quotes); drops empty parts."""
    parts: list[str] = []
    stack: list[str] = []  # the closing brackets expected
    quote = ""
    start = 0
    previous = ""  # last non-space character outside quotes
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"" and previous in ("", "=", "[", "{", ",", ":"):
            quote = ch
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}":
            if not stack or stack.pop() != ch:
                raise ConfigError(f"{SOURCE}: unbalanced {ch!r} at character {i + 1} of {text!r}")
        elif ch == "," and not stack:
            parts.append(text[start:i])
            start = i + 1
        if not ch.isspace():
            previous = ch
    if quote or stack:
        what = f"quote {quote}" if quote else "bracket"
        raise ConfigError(f"{SOURCE}: unclosed {what} in {text!r}")
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def _parse_value(text: str, key: str) -> Any:
    """A pair's value as YAML; empty is ''. Unparsable plain text (e.g. `*.tfrecord`) stays text."""
    text = text.strip()
    if not text:
        return ""
    try:
        return yaml.load(text, Loader=YamlLoader)  # YamlLoader is a SafeLoader
    except yaml.YAMLError as e:
        if text[0] in "[{'\"":
            mark = getattr(e, "problem_mark", None)
            where = f" at column {mark.column + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError(
                f"{SOURCE}: cannot parse the value of `{key}`{where}: {problem} (value {text!r})"
            ) from None
        return text


def _set_path(tree: dict, key: str, value: Any) -> None:
    """Sets tree[a][b][c] = value for key 'a.b.c', creating the mappings on the way."""
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"{SOURCE}: `{'.'.join(parts[: i + 1])}` is given a value and also used as a "
                f"section in `{key}`"
            )
        node = child
    last = parts[-1]
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        _deep_update(node[last], value)
    else:
        node[last] = value


def _deep_update(target: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _expand_dotted(data: dict) -> dict:
    """Nests dotted keys of a mapping: {'a.b': 1} -> {'a': {'b': 1}} (recursively)."""
    out: dict = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _expand_dotted(value)
        if isinstance(key, str) and "." in key:
            _set_path(out, key, value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def parse_params_override(text: str) -> dict:
    """The nested mapping that `--params_override` text describes ({} for blank text).

    Raises ConfigError if the text is neither a mapping nor `key=value` pairs.
    """
    if not text.strip():
        return {}
    if _PAIR_RE.match(text):  # starts with `a.b.c=`: the pairs form
        tree: dict = {}
        for pair in split_pairs(text):
            m = _PAIR_RE.match(pair)
            if m is None:
                raise ConfigError(
                    f"{SOURCE}: {pair.strip()!r} is not a `key=value` pair; {_EXAMPLES}"
                )
            _set_path(tree, m.group(1), _parse_value(m.group(2), m.group(1)))
        return tree
    data, _ = parse_yaml(text, SOURCE)
    if not isinstance(data, dict):
        raise ConfigError(f"{SOURCE}: cannot read {text!r}; {_EXAMPLES}")
    return _expand_dotted(data)
