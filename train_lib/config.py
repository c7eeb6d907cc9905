"""Pipeline config: YAML with the OD API's sections -> typed, validated dataclasses.

Sections: `model`, `train_config`, `train_input_reader`, `eval_config`,
`eval_input_reader`, and the optional `shapes_dataset` (how to generate the
built-in synthetic dataset when its files are absent).

Class ids follow the OD API: `model.num_classes` counts the object classes,
whose ids in the label map are 1..num_classes; id 0 is the background.

Entry points: `load_config` (file + `--params_override`, strict conversion, then
`validate`), `config_from_dict`, `dump_config`; the file checks `resolve_input_files`
and `check_label_map` (not run by load_config); `structural_differences` and
`other_differences` for resuming. Every user mistake raises ConfigError.
This module must not import TensorFlow.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import glob
import itertools
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml


class ConfigError(ValueError):
    """A user mistake in the pipeline config; the message names the key and the fix."""


# ---------------------------------------------------------------- model


@dataclass
class BackboneConfig:
    type: str = "mobilenet"  # mobilenet | resnet
    # mobilenet: MobileNetV2 | MobileNetV3Small | MobileNetV3Large
    # resnet: 18 | 34 | 50 | 101 (given as a string or an int)
    model_id: str = "MobileNetV2"
    # MobileNet filter_size_scale / ResNet depth_multiplier.
    width_multiplier: float = 1.0


@dataclass
class FpnConfig:
    num_filters: int = 256
    use_separable_conv: bool = False


@dataclass
class HeadConfig:
    num_convs: int = 4
    num_filters: int = 256
    use_separable_conv: bool = False


@dataclass
class AnchorConfig:
    num_scales: int = 3
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    anchor_size: float = 4.0
    match_threshold: float = 0.5
    unmatched_threshold: float = 0.5


@dataclass
class LossConfig:
    focal_loss_alpha: float = 0.25
    focal_loss_gamma: float = 1.5
    huber_loss_delta: float = 0.1
    box_loss_weight: float = 50.0
    l2_weight_decay: float = 4e-5


@dataclass
class PostProcessingConfig:
    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    max_detections: int = 100
    pre_nms_top_k: int = 1000


@dataclass
class NormConfig:
    activation: str = "relu6"
    use_sync_bn: bool = False
    norm_momentum: float = 0.99
    norm_epsilon: float = 0.001


@dataclass
class ModelConfig:
    architecture: str = "retinanet"
    num_classes: int = 1
    input_size: list[int] = field(default_factory=lambda: [128, 128])  # [height, width]
    min_level: int = 3
    max_level: int = 5
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FpnConfig = field(default_factory=FpnConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    post_processing: PostProcessingConfig = field(default_factory=PostProcessingConfig)
    norm: NormConfig = field(default_factory=NormConfig)


# ---------------------------------------------------------------- training


@dataclass
class OptimizerConfig:
    type: str = "sgd"  # sgd | adam
    momentum: float = 0.9  # sgd only
    beta_1: float = 0.9  # adam only
    beta_2: float = 0.999  # adam only
    epsilon: float = 1e-7  # adam only
    gradient_clip_norm: float = 0.0  # 0 disables clipping


@dataclass
class LearningRateConfig:
    schedule: str = "cosine"  # constant | cosine | step
    base: float = 0.01
    warmup_steps: int = 0
    warmup_start: float = 0.0  # learning rate at step 0 of the linear warmup
    cosine_alpha: float = 0.0  # cosine: final rate as a fraction of `base`
    boundaries: list[int] = field(default_factory=list)  # step: steps where the rate drops
    decay_factor: float = 0.1  # step: multiplier applied at each boundary


@dataclass
class AugmentationConfig:
    random_horizontal_flip: bool = True
    scale_min: float = 1.0  # scale jitter range; 1.0 and 1.0 disable it
    scale_max: float = 1.0


@dataclass
class TrainConfig:
    batch_size: int = 8
    num_steps: int = 1000
    seed: int = 42
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    learning_rate: LearningRateConfig = field(default_factory=LearningRateConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    steps_per_loop: int = 1  # training steps run inside one tf.function call
    log_every_n: int = 100  # OD API: a log line every 100 steps
    summary_every_n: int = 100
    fine_tune_checkpoint: str = ""
    fine_tune_checkpoint_type: str = "backbone"  # backbone | detection
    # Keras mixed precision: float32 | mixed_float16 (GPUs) | mixed_bfloat16 (TPUs, CPUs).
    mixed_precision: str = "float32"
    jit_compile: bool = False  # compile each replica's step with XLA


# ---------------------------------------------------------------- inputs and eval


@dataclass
class InputReaderConfig:
    input_path: list[str] = field(default_factory=list)  # files or globs; YAML may give one string
    label_map_path: str = ""
    shuffle_buffer_size: int = 256
    num_parallel_calls: int = -1  # -1: tf.data.AUTOTUNE


@dataclass
class EvalConfig:
    batch_size: int = 8
    eval_every_n: int = 0  # in-process evaluation during training; 0 disables
    metric_for_best: str = "AP"
    num_visualizations: int = 4


@dataclass
class ShapesDatasetConfig:
    """Where and how to generate the synthetic shapes dataset when it is absent."""

    output_dir: str = ""  # empty: no generation
    num_train: int = 2000
    num_val: int = 200
    image_size: int = 128
    num_shards: int = 4
    seed: int = 0


@dataclass
class PipelineConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train_config: TrainConfig = field(default_factory=TrainConfig)
    train_input_reader: InputReaderConfig = field(default_factory=InputReaderConfig)
    eval_config: EvalConfig = field(default_factory=EvalConfig)
    eval_input_reader: InputReaderConfig = field(default_factory=InputReaderConfig)
    shapes_dataset: ShapesDatasetConfig = field(default_factory=ShapesDatasetConfig)


def to_dict(config: PipelineConfig) -> dict:
    """The config as plain YAML-ready data."""
    return dataclasses.asdict(config)


# ---------------------------------------------------------------- YAML reading

README_CONFIG_REFERENCE = "README.md, section 'Config reference'"

_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (plain PyYAML reads it as a string)."""


YamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))

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
    """Parses one YAML document; returns (data, {dotted key path: line}).

    Raises ConfigError on a syntax error (with line and column) or a duplicate key.
    """
    loader = YamlLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        if node is not None:
            _key_lines(node, "", lines, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error_message(e, source)) from None
    finally:
        loader.dispose()
    return data, lines


# ---------------------------------------------------------------- dict -> dataclasses

# Keys of OD API pipeline.config files that people carry over, with what to write instead.
_ODAPI_HINTS = {
    "tf_record_input_reader": "this driver takes `{parent}.input_path` directly",
    "ssd": "this driver builds a RetinaNet: set `model.architecture: retinanet`",
    "faster_rcnn": "this driver builds a RetinaNet: set `model.architecture: retinanet`",
    "center_net": "this driver builds a RetinaNet: set `model.architecture: retinanet`",
}


@dataclass
class _Source:
    name: str
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, path: str) -> str:
        line = self.lines.get(path.split("[", 1)[0])
        return f"{self.name}:{line}" if line is not None else self.name


def _fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type for a config dataclass (schema order)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _schema_paths(cls: type = PipelineConfig, prefix: str = "") -> list[str]:
    """Every dotted key path of the schema, sections included."""
    paths = []
    for name, ftype in _fields(cls).items():
        path = f"{prefix}.{name}" if prefix else name
        paths.append(path)
        if dataclasses.is_dataclass(ftype):
            paths.extend(_schema_paths(ftype, path))
    return paths


def _describe(value: Any) -> str:
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
             dict: "mapping"}
    if value is None:
        return "nothing (null)"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{kinds.get(type(value), type(value).__name__)} {text}"


def _unknown_key(key: Any, parent: str, valid: list[str], source: _Source) -> ConfigError:
    path = f"{parent}.{key}" if parent else str(key)
    line_path = path if path in source.lines else parent
    message = f"{source.where(line_path)}: unknown key `{path}`"
    if isinstance(key, str) and key in _ODAPI_HINTS:
        return ConfigError(f"{message}; {_ODAPI_HINTS[key].format(parent=parent)}")
    elsewhere = [p for p in _schema_paths() if isinstance(key, str) and p.endswith("." + key)]
    if elsewhere:
        return ConfigError(f"{message}; `{key}` belongs under " + " or ".join(
            f"`{p.rsplit('.', 1)[0]}`" for p in elsewhere))
    close = difflib.get_close_matches(str(key).lower(), valid, n=1)
    if close:
        full = f"{parent}.{close[0]}" if parent else close[0]
        return ConfigError(f"{message}; did you mean `{full}`?")
    under = f"under `{parent}`" if parent else "at the top level"
    return ConfigError(f"{message}; valid keys {under}: {', '.join(valid)}")


def _type_error(path: str, expected: str, value: Any, source: _Source) -> ConfigError:
    message = f"{source.where(path)}: `{path}` must be {expected}, got {_describe(value)}"
    if expected == "an integer" and isinstance(value, float) and value.is_integer():
        message += f"; write {int(value)}"
    return ConfigError(message)


def _coerce(value: Any, ftype: Any, path: str, owner: type, name: str, source: _Source) -> Any:
    """Checks `value` against a leaf field type; returns it in its stored form."""
    if owner is BackboneConfig and name == "model_id":
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value)
        raise _type_error(path, "a string or an integer", value, source)
    if owner is InputReaderConfig and name == "input_path":
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise _type_error(path, "a file path or glob, or a list of them (strings)", value, source)
    if ftype is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(path, "true or false", value, source)
    if ftype is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(path, "an integer", value, source)
    if ftype is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
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
        return [_coerce(v, elem, f"{path}[{i}]", list, "", source) for i, v in enumerate(value)]
    raise TypeError(f"unsupported config field type {ftype!r} at {path}")  # schema bug


def _apply(target: Any, data: Mapping, prefix: str, source: _Source) -> None:
    """Writes the keys of `data` into the config dataclass `target`, strictly."""
    fields = _fields(type(target))
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            raise _unknown_key(key, prefix, list(fields), source)
        path = f"{prefix}.{key}" if prefix else key
        ftype = fields[key]
        if dataclasses.is_dataclass(ftype):
            if value is None:  # an empty or null section keeps what it had
                continue
            if not isinstance(value, Mapping):
                raise _type_error(path, "a mapping (a section of keys)", value, source)
            _apply(getattr(target, key), value, path, source)
        else:
            setattr(target, key, _coerce(value, ftype, path, type(target), key, source))


def _merge_into(base: PipelineConfig | None, data: Any, source: _Source) -> PipelineConfig:
    """`base` (or the defaults) with `data` applied; `base` itself is left unchanged."""
    config = copy.deepcopy(base) if base is not None else PipelineConfig()
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source.name}: the top level must be a mapping of sections "
            f"({', '.join(_fields(PipelineConfig))}), got {_describe(data)}"
        )
    _apply(config, data, "", source)
    return config


def config_from_dict(data: Mapping, source: str = "<dict>") -> PipelineConfig:
    """Strictly converts plain data (as from YAML) to a validated PipelineConfig.

    Omitted keys and null sections keep their defaults. Raises ConfigError naming
    `source` and the key path on an unknown key, a wrong type or an invalid value.
    """
    config = _merge_into(None, data, _Source(source))
    _raise_problems(_problems(config), source)
    return config


def load_config(path: str, params_override: str = "") -> PipelineConfig:
    """Reads the YAML pipeline config at `path`, applies `params_override`, validates.

    `params_override` is a YAML/JSON mapping string or comma-separated `a.b.c=value`
    pairs (values parsed as YAML); it is applied after the file. Raises ConfigError
    with the file, line and key path of the problem.
    """
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "not found"
        raise ConfigError(
            f"pipeline config {path} {what} (current directory: {os.getcwd()}); "
            "check --pipeline_config_path"
        )
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read pipeline config {path}: {e}") from None
    if _looks_like_pbtxt(text):
        raise ConfigError(
            f"{path} looks like an OD API protobuf text pipeline.config (`section {{ ... }}` "
            "blocks). This driver reads YAML with the same section names (model, train_config, "
            "train_input_reader, eval_config, eval_input_reader) but its own keys; rewrite it "
            f"as YAML, see {README_CONFIG_REFERENCE}"
        )
    data, lines = parse_yaml(text, path)
    if data is None:
        raise ConfigError(
            f"{path} is empty; it must be a YAML mapping with sections such as `model:` and "
            f"`train_config:` (write `{{}}` for all defaults), see {README_CONFIG_REFERENCE}"
        )
    config = _merge_into(None, data, _Source(path, lines))
    source = path
    if params_override.strip():
        # Imported here: config_overrides imports this module.
        from train_lib.config_overrides import parse_params_override

        override = parse_params_override(params_override)
        config = _merge_into(config, override, _Source("--params_override"))
        source = f"{path} with --params_override"
    _raise_problems(_problems(config), source)
    return config


class _Dumper(yaml.SafeDumper):
    """Sections in block style, lists inline: `input_size: [128, 128]`."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def dump_config(config: PipelineConfig, path: str) -> None:
    """Writes `config` as YAML to `path` (atomically) so that load_config reads it back equal."""
    text = yaml.dump(to_dict(config), Dumper=_Dumper, sort_keys=False)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- value checks

ARCHITECTURES = ("retinanet",)
BACKBONE_MODEL_IDS = {
    "mobilenet": ("MobileNetV2", "MobileNetV3Small", "MobileNetV3Large"),
    "resnet": ("18", "34", "50", "101"),
}
ACTIVATIONS = ("relu", "relu6", "swish", "hard_swish")
OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
LR_SCHEDULES = ("constant", "cosine", "step")
FINE_TUNE_CHECKPOINT_TYPES = ("backbone", "detection")
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
MIN_LEVEL, MAX_LEVEL = 2, 7


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _problems(c: PipelineConfig) -> list[str]:
    """Every invalid value of a well-typed config, as 'path is value; what to do' lines."""
    out: list[str] = []

    def need(ok: bool, path: str, value: Any, requirement: str) -> None:
        if not ok:  # written so that NaN fails every check
            out.append(f"{path} is {_fmt(value)}; {requirement}")

    def choice(path: str, value: str, choices: tuple[str, ...], why: str = "") -> None:
        if value in choices:
            return
        message = f"{path} is {_fmt(value)}; must be one of {', '.join(choices)}{why}"
        folded = {c.lower(): c for c in choices}
        close = [folded[value.lower()]] if value.lower() in folded else (
            difflib.get_close_matches(value, choices, n=1))
        out.append(message + (f" (did you mean {close[0]!r}?)" if close else ""))

    m = c.model
    choice("model.architecture", m.architecture, ARCHITECTURES)
    choice("model.backbone.type", m.backbone.type, tuple(BACKBONE_MODEL_IDS))
    if m.backbone.type in BACKBONE_MODEL_IDS:
        choice("model.backbone.model_id", m.backbone.model_id,
               BACKBONE_MODEL_IDS[m.backbone.type], f" for model.backbone.type: {m.backbone.type}")
    need(m.backbone.width_multiplier > 0, "model.backbone.width_multiplier",
         m.backbone.width_multiplier, "must be > 0")
    need(m.num_classes >= 1, "model.num_classes", m.num_classes,
         "must be >= 1 (the number of object classes; label map ids are 1..num_classes)")
    levels = f"must be in [{MIN_LEVEL}, {MAX_LEVEL}]"
    need(MIN_LEVEL <= m.min_level <= MAX_LEVEL, "model.min_level", m.min_level, levels)
    need(MIN_LEVEL <= m.max_level <= MAX_LEVEL, "model.max_level", m.max_level, levels)
    need(m.min_level <= m.max_level, "model.min_level", m.min_level,
         f"must be <= model.max_level ({m.max_level})")
    levels_ok = MIN_LEVEL <= m.min_level <= m.max_level <= MAX_LEVEL
    size = m.input_size
    if len(size) != 2:
        out.append(f"model.input_size is {size}; must be [height, width]")
    elif not all(s > 0 for s in size):
        out.append(f"model.input_size is {size}; height and width must be positive")
    elif levels_ok and any(s % 2**m.max_level for s in size):
        stride = 2**m.max_level
        nearest = [max(stride, (s + stride // 2) // stride * stride) for s in size]
        out.append(
            f"model.input_size {size} must be a multiple of 2**max_level = {stride} "
            f"(model.max_level: {m.max_level}); try {nearest}"
        )
    need(m.fpn.num_filters >= 1, "model.fpn.num_filters", m.fpn.num_filters, "must be >= 1")
    need(m.head.num_filters >= 1, "model.head.num_filters", m.head.num_filters, "must be >= 1")
    need(m.head.num_convs >= 0, "model.head.num_convs", m.head.num_convs, "must be >= 0")

    a = m.anchor
    need(a.num_scales >= 1, "model.anchor.num_scales", a.num_scales, "must be >= 1")
    need(len(a.aspect_ratios) > 0 and all(r > 0 for r in a.aspect_ratios),
         "model.anchor.aspect_ratios", a.aspect_ratios,
         "must be a non-empty list of positive numbers, e.g. [0.5, 1.0, 2.0]")
    need(a.anchor_size > 0, "model.anchor.anchor_size", a.anchor_size, "must be > 0")
    if not 0 < a.unmatched_threshold <= a.match_threshold <= 1:
        out.append(
            f"model.anchor.unmatched_threshold is {a.unmatched_threshold} and "
            f"model.anchor.match_threshold is {a.match_threshold}; they must satisfy "
            "0 < unmatched_threshold <= match_threshold <= 1"
        )
    for name in _fields(LossConfig):
        value = getattr(m.loss, name)
        need(value >= 0, f"model.loss.{name}", value, "must be >= 0")
    need(m.loss.focal_loss_alpha <= 1, "model.loss.focal_loss_alpha", m.loss.focal_loss_alpha,
         "must be in [0, 1]")
    pp = m.post_processing
    need(0 <= pp.score_threshold < 1, "model.post_processing.score_threshold",
         pp.score_threshold, "must be in [0, 1)")
    need(0 < pp.iou_threshold <= 1, "model.post_processing.iou_threshold", pp.iou_threshold,
         "must be in (0, 1]")
    need(pp.max_detections >= 1, "model.post_processing.max_detections", pp.max_detections,
         "must be >= 1")
    need(pp.pre_nms_top_k >= pp.max_detections, "model.post_processing.pre_nms_top_k",
         pp.pre_nms_top_k, f"must be >= model.post_processing.max_detections ({pp.max_detections})")
    choice("model.norm.activation", m.norm.activation, ACTIVATIONS)
    need(0 <= m.norm.norm_momentum <= 1, "model.norm.norm_momentum", m.norm.norm_momentum,
         "must be in [0, 1]")
    need(m.norm.norm_epsilon > 0, "model.norm.norm_epsilon", m.norm.norm_epsilon, "must be > 0")

    t = c.train_config
    for name in ("batch_size", "num_steps", "steps_per_loop", "log_every_n", "summary_every_n"):
        need(getattr(t, name) >= 1, f"train_config.{name}", getattr(t, name), "must be >= 1")
    o = t.optimizer
    choice("train_config.optimizer.type", o.type, OPTIMIZERS)
    choice("train_config.mixed_precision", t.mixed_precision, PRECISIONS)
    for name in ("momentum", "beta_1", "beta_2"):
        value = getattr(o, name)
        need(0 <= value < 1, f"train_config.optimizer.{name}", value, "must be in [0, 1)")
    need(o.epsilon > 0, "train_config.optimizer.epsilon", o.epsilon, "must be > 0")
    need(o.gradient_clip_norm >= 0, "train_config.optimizer.gradient_clip_norm",
         o.gradient_clip_norm, "must be >= 0 (0 disables clipping)")
    lr = t.learning_rate
    choice("train_config.learning_rate.schedule", lr.schedule, LR_SCHEDULES)
    need(lr.base > 0, "train_config.learning_rate.base", lr.base, "must be > 0")
    # A warmup or boundary at or past num_steps is allowed: a short run (e.g.
    # --num_train_steps=200 on a config with 500 warmup steps) simply stops first.
    need(lr.warmup_steps >= 0, "train_config.learning_rate.warmup_steps",
         lr.warmup_steps, "must be >= 0")
    need(lr.warmup_start >= 0, "train_config.learning_rate.warmup_start", lr.warmup_start,
         "must be >= 0")
    need(0 <= lr.cosine_alpha <= 1, "train_config.learning_rate.cosine_alpha", lr.cosine_alpha,
         "must be in [0, 1]")
    if lr.schedule == "step":
        b = lr.boundaries
        need(len(b) > 0, "train_config.learning_rate.boundaries", b,
             "the step schedule needs at least one boundary step, e.g. "
             f"[{t.num_steps * 2 // 3}, {t.num_steps * 8 // 9}]")
        need(all(x > 0 for x in b) and all(x < y for x, y in itertools.pairwise(b)),
             "train_config.learning_rate.boundaries", b,
             "must be strictly increasing positive steps")
        need(0 < lr.decay_factor <= 1, "train_config.learning_rate.decay_factor",
             lr.decay_factor, "must be in (0, 1]")
    aug = t.augmentation
    if not 0 < aug.scale_min <= aug.scale_max:
        out.append(
            f"train_config.augmentation.scale_min is {aug.scale_min} and scale_max is "
            f"{aug.scale_max}; they must satisfy 0 < scale_min <= scale_max (1.0 and 1.0 "
            "disable scale jitter)"
        )
    choice("train_config.fine_tune_checkpoint_type", t.fine_tune_checkpoint_type,
           FINE_TUNE_CHECKPOINT_TYPES)

    for key in ("train_input_reader", "eval_input_reader"):
        r: InputReaderConfig = getattr(c, key)
        need(r.shuffle_buffer_size >= 1, f"{key}.shuffle_buffer_size", r.shuffle_buffer_size,
             "must be >= 1 (1 disables shuffling)")
        need(r.num_parallel_calls == -1 or r.num_parallel_calls >= 1,
             f"{key}.num_parallel_calls", r.num_parallel_calls, "must be -1 (autotune) or >= 1")
    e = c.eval_config
    need(e.batch_size >= 1, "eval_config.batch_size", e.batch_size, "must be >= 1")
    need(e.eval_every_n >= 0, "eval_config.eval_every_n", e.eval_every_n,
         "must be >= 0 (0 disables evaluation during training)")
    choice("eval_config.metric_for_best", e.metric_for_best, COCO_METRICS)
    need(e.num_visualizations >= 0, "eval_config.num_visualizations", e.num_visualizations,
         "must be >= 0")

    s = c.shapes_dataset
    if s.output_dir:
        for name in ("num_train", "num_val", "num_shards"):
            need(getattr(s, name) >= 1, f"shapes_dataset.{name}", getattr(s, name),
                 "must be >= 1")
        need(s.image_size >= 16, "shapes_dataset.image_size", s.image_size, "must be >= 16")
    return out


def _raise_problems(problems: list[str], source: str | None) -> None:
    if not problems:
        return
    prefix = f"{source}: " if source else ""
    if len(problems) == 1:
        raise ConfigError(prefix + problems[0])
    raise ConfigError(f"{prefix}{len(problems)} invalid values:\n  - " + "\n  - ".join(problems))


def validate(config: PipelineConfig) -> None:
    """Raises ConfigError naming each invalid key path, its value and the fix.

    Also re-checks the field types, so configs built in code are held to the same rules.
    """
    typed = _merge_into(None, to_dict(config), _Source("config"))
    _raise_problems(_problems(typed), None)


# ---------------------------------------------------------------- files named by the config

_GLOB_MAGIC = re.compile(r"[*?[]")


def resolve_input_files(reader: InputReaderConfig, key: str) -> list[str]:
    """The sorted, de-duplicated files that `reader.input_path` names.

    Each entry is a file or a glob pattern (relative to the current directory).
    Raises ConfigError if input_path is empty, an entry matches no file, or a
    file is empty (it has no records).
    """
    if not reader.input_path:
        raise ConfigError(
            f"`{key}.input_path` is empty; set `{key}.input_path` to the TFRecord file(s) or "
            "glob pattern(s) to read"
        )
    found: set[str] = set()
    for entry in reader.input_path:
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
        found.update(os.path.normpath(p) for p in matches)
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


def check_label_map(config: PipelineConfig, reader: InputReaderConfig, key: str) -> dict[int, str]:
    """Loads `reader.label_map_path` and checks its largest id equals model.num_classes.

    Returns {id: name}. Raises ConfigError (LabelMapError for an unreadable map).
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
    from train_lib.label_map import load_label_map  # lazy: keeps this module light

    label_map = load_label_map(path)
    if not label_map:
        raise ConfigError(f"the label map {path} (`{key}.label_map_path`) has no items")
    ids = sorted(label_map)
    if ids[0] < 1:
        raise ConfigError(
            f"the label map {path} (`{key}.label_map_path`) has id {ids[0]}; ids start at 1 "
            "(0 is the background)"
        )
    if ids[-1] != num_classes:
        raise ConfigError(
            f"model.num_classes is {num_classes} but the label map {path} has ids "
            f"{_describe_ids(ids)}; set model.num_classes: {ids[-1]}"
        )
    return label_map


# ---------------------------------------------------------------- comparing configs


def _leaves(data: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            out.update(_leaves(value, path))
        else:
            out[path] = value
    return out


def _differences(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    a, b = _leaves(to_dict(old)), _leaves(to_dict(new))
    return [path for path in a if a[path] != b.get(path)]


# Keys whose change alters the model's variables or what its outputs mean: a
# checkpoint written under one value cannot be resumed under another (the
# optimizer type decides its slot variables). Loss weights, matching
# thresholds and post-processing may change on resume.
STRUCTURAL_PREFIXES = (
    "model.architecture", "model.num_classes", "model.input_size", "model.min_level",
    "model.max_level", "model.backbone.", "model.fpn.", "model.head.",
    "model.anchor.num_scales", "model.anchor.aspect_ratios", "model.anchor.anchor_size",
    "model.norm.", "train_config.optimizer.type",
    # mixed_float16 wraps the optimizer in a loss-scale optimizer (other variables).
    "train_config.mixed_precision",
)


def _is_structural(path: str) -> bool:
    return path.startswith(STRUCTURAL_PREFIXES)


def structural_differences(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    """Dotted leaf paths that differ and change the model's structure (schema
    order); the trainer refuses to resume with them."""
    return [p for p in _differences(old, new) if _is_structural(p)]


def other_differences(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    """Dotted leaf paths that differ but may change on resume (schema order), for logging."""
    return [p for p in _differences(old, new) if not _is_structural(p)]
