"""Pipeline config files -> validated PipelineConfig, and back.

`load_config` reads a YAML file or an OD API protobuf-text pipeline.config
(decided from the content; odapi.py maps the latter to our keys), applies
`--params_override` (overrides.py) on top, converts strictly (coercion.py)
and validates (schema.py);
`config_from_dict` does the same for data built in code; `dump_config`
writes a config so that `load_config` reads it back equal. Every user
mistake raises ConfigError naming the file, the line and the key path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping

from absl import logging

from train_lib.config.coercion import Source, merge_into
from train_lib.config.errors import ConfigError
from train_lib.config.odapi import OdapiConfig, map_pipeline_config
from train_lib.config.overrides import parse_params_override
from train_lib.config.problems import raise_problems
from train_lib.config.schema import PipelineConfig, architecture_key_problems, to_dict
from train_lib.config.yaml_io import parse_yaml, to_yaml_text

__all__ = ["CONFIG_REFERENCE", "config_from_dict", "dump_config", "load_config"]

CONFIG_REFERENCE = "docs/configuration.md"

# A protobuf text message opens a block with `name {` (no colon before the brace).
_PBTXT_BLOCK_RE = re.compile(r"^\s*[A-Za-z_]\w*\s*\{\s*(#.*)?$", re.MULTILINE)
_PBTXT_SECTION_RE = re.compile(
    r"^(model|train_config|train_input_reader|eval_config|eval_input_readers?|graph_rewriter)"
    r"\s*:?\s*\{\s*(#.*)?$"
)


def _looks_like_pbtxt(text: str) -> bool:
    """True if `text` reads like an OD API protobuf text pipeline.config."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return False
    return bool(_PBTXT_SECTION_RE.match(lines[0]) or _PBTXT_BLOCK_RE.search("\n".join(lines)))


def config_from_dict(data: Mapping, source: str = "<dict>") -> PipelineConfig:
    """Strictly converts plain data (as from YAML) to a validated PipelineConfig.

    Omitted keys and null sections keep their defaults.

    Raises:
        ConfigError: naming `source` and the key path, on an unknown key, a wrong
            type or an invalid value.
    """
    config = merge_into(PipelineConfig(), data, Source(source))
    _check_architecture_keys(config, [(data, Source(source))])
    raise_problems(config.problems(), source)
    return config


def _key_paths(data, prefix: str = "") -> list[str]:
    """Every dotted key path of nested mappings `data`, sections included."""
    paths: list[str] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths.append(path)
            paths += _key_paths(value, path)
    return paths


def _check_architecture_keys(config: PipelineConfig, given: list[tuple[Mapping, Source]]
                             ) -> None:
    """ConfigError (file:line, the key and both architectures) for the first key that
    `given` data holds and that another model.architecture reads."""
    for data, source in given:
        paths = _key_paths(data)
        problems = architecture_key_problems(config.model.architecture, paths)
        if problems:
            key, problem = problems[0]
            raise ConfigError(f"{source.where(key)}: {problem}")


def _read_config_text(path: str) -> str:
    """The text of the config file at `path`; ConfigError if it is missing or unreadable."""
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "not found"
        raise ConfigError(
            f"pipeline config {path} {what} (current directory: {os.getcwd()}); "
            "check --pipeline_config_path"
        )
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read pipeline config {path}: {e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(_binary_message(path, data, e.start, f"byte 0x{data[e.start]:02x} "
                                          "is not UTF-8 text")) from None
    binary = _BINARY_RE.search(text)
    if binary:
        offset = len(text[:binary.start()].encode("utf-8"))
        raise ConfigError(_binary_message(path, data, offset,
                                          f"byte 0x{ord(binary.group()):02x} is not text"))
    return text


# Control characters other than tab, newline and carriage return never belong in a config.
_BINARY_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _binary_message(path: str, data: bytes, offset: int, what: str) -> str:
    """"file:line:column: <what>; ..." for binary content at byte `offset`."""
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return (f"{path}:{line}:{column}: {what}: the pipeline config must be a text file (YAML "
            "or an OD API pipeline.config); check that --pipeline_config_path names the "
            "right file and that it was saved as text")


def load_config(path: str, params_override: str = "",
                unused_keys: Collection[str] = ()) -> PipelineConfig:
    """Reads the pipeline config at `path`, applies `params_override`, validates.

    Args:
        path: our YAML, or an OD API protobuf-text pipeline.config (which of the two is
            decided from the content). A pipeline.config's approximated fields are
            logged one line each, its harmless unused fields in one warning.
        params_override: a YAML/JSON mapping string or comma-separated `a.b.c=value`
            pairs (values parsed as YAML), applied after the file; blank: none.
        unused_keys: keys of the OD API's path fields that the caller never reads
            (ONLY_TRAINING_READS, for evaluation, export and the data check): the
            placeholder PATH_TO_BE_CONFIGURED left in one of them is not refused.

    Raises:
        ConfigError: with the file, line and key path of the problem (or all
            invalid values at once).
    """
    text = _read_config_text(path)
    odapi = None
    if _looks_like_pbtxt(text):
        odapi = map_pipeline_config(text, path)
        _log_odapi_notes(odapi, path)
        data, lines = odapi.data, odapi.lines
    else:
        data, lines = parse_yaml(text, path)
    if data is None:
        raise ConfigError(
            f"{path} is empty; it must be a YAML mapping with sections such as `model:` and "
            f"`train_config:` (write `{{}}` for all defaults), see {CONFIG_REFERENCE}"
        )
    config = merge_into(PipelineConfig(), data, Source(path, lines))
    given = [(data, Source(path, lines))]
    source = path
    if params_override.strip():
        override = parse_params_override(params_override)
        config = merge_into(config, override, Source("--params_override"))
        given.append((override, Source("--params_override")))
        source = f"{path} with --params_override"
    _check_architecture_keys(config, given)
    if odapi is not None:
        _check_configured(config, odapi, path, unused_keys)
    raise_problems(config.problems(), source)
    return config


_PLACEHOLDER = "PATH_TO_BE_CONFIGURED"
# The path keys only a new training run reads: evaluation, export and the data check
# pass them as `unused_keys`, so an OD API placeholder left there is not refused.
ONLY_TRAINING_READS = ("train_config.fine_tune_checkpoint",)


def _log_odapi_notes(odapi: OdapiConfig, path: str) -> None:
    for note in odapi.approximations.values():
        logging.info("%s", note)
    if odapi.ignored:
        logging.warning("%s: %d fields of this pipeline.config are not used (harmless here):"
                        "\n  - %s", path, len(odapi.ignored), "\n  - ".join(odapi.ignored))


def _check_configured(config: PipelineConfig, odapi: OdapiConfig, path: str,
                      unused_keys: Collection[str] = ()) -> None:
    """ConfigError naming the field if a path still holds the OD API's placeholder
    (a key of `unused_keys` aside: its caller does not read it)."""
    values = {
        "train_config.fine_tune_checkpoint": [config.train_config.fine_tune_checkpoint],
        "train_input_reader.label_map_path": [config.train_input_reader.label_map_path],
        "train_input_reader.input_path": config.train_input_reader.input_path,
        "eval_input_reader.label_map_path": [config.eval_input_reader.label_map_path],
        "eval_input_reader.input_path": config.eval_input_reader.input_path,
    }
    for key, found in values.items():
        if key not in unused_keys and any(_PLACEHOLDER in v for v in found):
            origin = odapi.origins.get(key, key)
            line = odapi.lines.get(key)
            where = f"{path}:{line}" if line else path
            raise ConfigError(
                f"{where}: {origin} still holds {_PLACEHOLDER}: {[v for v in found if v]}; "
                f"write the real path there, or give it with --params_override={key}=...")


def dump_config(config: PipelineConfig, path: str) -> None:
    """Writes `config` as YAML to `path` (atomically) so that load_config reads it back equal.

    Creates the parent directory if needed.
    """
    text = to_yaml_text(to_dict(config))
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
