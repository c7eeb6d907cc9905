"""YAML text <-> plain data for pipeline configs, keeping the line of every key.

`parse_yaml` reads one document and also returns the 1-based line of each
dotted key path, so that later errors can say `pipeline.yaml:12: ...`; syntax
errors and duplicate keys raise ConfigError with the line (and column).
`YamlLoader` is PyYAML's SafeLoader that also reads `1e-3` as a float.
`to_yaml_text` writes data back in the layout of the example configs.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from train_lib.config.errors import ConfigError

__all__ = ["YamlLoader", "parse_yaml", "to_yaml_text", "yaml_error_message"]

_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (plain PyYAML reads it as a string),
    and reports a scalar it cannot construct (an integer of more digits than Python
    reads, a date such as 2024-13-01) as a YAML error at its line, not a ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.value!r:.40} ({exc})", node.start_mark
            ) from None


YamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def yaml_error_message(error: yaml.YAMLError, source: str) -> str:
    """`source`, 1-based line and column, and the problem of a PyYAML error."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = "an unknown line"
    if mark is not None:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
    message = f"{source}: YAML syntax error at {where}: {problem}"
    context = getattr(error, "context", None)
    context_mark = getattr(error, "context_mark", None)
    if context and context_mark is not None:
        message += f" ({context} at line {context_mark.line + 1})"
    if "\\t" in problem:
        message += "; YAML does not allow tabs for indentation, use spaces"
    snippet = mark.get_snippet() if mark is not None else None
    if snippet:
        message += "\n" + snippet
    return message


def _reader_error_message(error: yaml.reader.ReaderError, text: str, source: str) -> str:
    """A character YAML does not allow (a control character), with its line and column."""
    line = text.count("\n", 0, error.position) + 1
    column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
    return (f"{source}: YAML does not allow the character U+{error.character:04X} (line "
            f"{line}, column {column}); remove it or save the file as plain text")


def _key_lines(node: yaml.Node, prefix: str, lines: dict[str, int], source: str) -> None:
    """Records the 1-based line of every mapping key; raises on duplicate keys."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
            continue
        path = f"{prefix}.{key_node.value}" if prefix else key_node.value
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            raise ConfigError(
                f"{source}:{line}: duplicate key `{path}` (first given at line "
                f"{seen[key_node.value]}); YAML would silently keep only the last one, "
                "so merge the two into one"
            )
        seen[key_node.value] = line
        lines[path] = line
        _key_lines(value_node, path, lines, source)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Parses one YAML document.

    Args:
        text: the YAML text.
        source: how messages name the text (a file path, `--params_override`).

    Returns:
        (data, {dotted key path: 1-based line}); data is None for an empty document.

    Raises:
        ConfigError: a syntax error (with line and column) or a duplicate key.
    """
    try:
        loader = YamlLoader(text)  # reads the whole text: a control character fails here
    except yaml.reader.ReaderError as e:
        raise ConfigError(_reader_error_message(e, text, source)) from None
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        if node is not None:
            _key_lines(node, "", lines, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error_message(e, source)) from None
    except (ValueError, OverflowError) as e:  # a value inside a mapping, built later
        raise ConfigError(f"{source}: cannot read a value ({e})") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be read") from None
    finally:
        loader.dispose()
    return data, lines


class _Dumper(yaml.SafeDumper):
    """Sections in block style, lists inline: `input_size: [128, 128]`."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def to_yaml_text(data: Any) -> str:
    """`data` as YAML: mappings in block style and key order, lists inline."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)
