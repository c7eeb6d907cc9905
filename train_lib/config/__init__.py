"""Pipeline config: YAML with the OD API's sections, or the OD API's pipeline.config,
-> typed, validated dataclasses.

Modules:

- schema.py     the dataclasses (one per section, each with its `problems()`), `validate`
- model_schema.py  the `model` section: the keys the families share and each one's own
                 (faster_rcnn_schema.py: Faster R-CNN's own sections)
- loading.py    `load_config` (YAML or OD API pipeline.config), `config_from_dict`, `dump_config`
- odapi.py      an OD API pipeline.config -> our keys (odapi_fields.py: its messages;
                odapi_table.py: what becomes of each field; odapi_model/odapi_train.py)
- yaml_io.py    YAML text <-> data, with the line of every key; `YamlLoader`
- coercion.py   strict conversion of plain data into the dataclasses (types, unknown keys)
- problems.py   how invalid values are reported, all at once
- overrides.py  parsing of `--params_override`
- compat.py     what may change on resume, evaluation and export (structural keys)
- errors.py     `ConfigError`, raised for every user mistake

The checks of the files a config names (`resolve_input_files`,
`check_label_map`) are in `train_lib.data.input_files`, which reads label maps.
This package must not import TensorFlow, nor `train_lib.data`.
"""

from __future__ import annotations

from train_lib.config.compat import (
    STRUCTURAL_PREFIXES,
    model_weight_differences,
    other_differences,
    structural_differences,
)
from train_lib.config.errors import ConfigError
from train_lib.config.loading import (
    CONFIG_REFERENCE,
    config_from_dict,
    dump_config,
    load_config,
)
from train_lib.config.schema import (
    ACTIVATIONS,
    ARCHITECTURES,
    BACKBONE_MODEL_IDS,
    COCO_METRICS,
    FINE_TUNE_CHECKPOINT_TYPES,
    LR_SCHEDULES,
    MAX_LEVEL,
    MIN_LEVEL,
    OPTIMIZERS,
    PRECISIONS,
    AnchorConfig,
    AugmentationConfig,
    BackboneConfig,
    EvalConfig,
    FpnConfig,
    HeadConfig,
    InputReaderConfig,
    LearningRateConfig,
    LossConfig,
    ModelConfig,
    NormConfig,
    OptimizerConfig,
    PipelineConfig,
    PostProcessingConfig,
    ShapesDatasetConfig,
    TrainConfig,
    to_dict,
    validate,
)
from train_lib.config.yaml_io import YamlLoader, parse_yaml, yaml_error_message

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "BACKBONE_MODEL_IDS",
    "COCO_METRICS",
    "FINE_TUNE_CHECKPOINT_TYPES",
    "LR_SCHEDULES",
    "MAX_LEVEL",
    "MIN_LEVEL",
    "OPTIMIZERS",
    "PRECISIONS",
    "CONFIG_REFERENCE",
    "STRUCTURAL_PREFIXES",
    "AnchorConfig",
    "AugmentationConfig",
    "BackboneConfig",
    "ConfigError",
    "EvalConfig",
    "FpnConfig",
    "HeadConfig",
    "InputReaderConfig",
    "LearningRateConfig",
    "LossConfig",
    "ModelConfig",
    "NormConfig",
    "OptimizerConfig",
    "PipelineConfig",
    "PostProcessingConfig",
    "ShapesDatasetConfig",
    "TrainConfig",
    "YamlLoader",
    "config_from_dict",
    "dump_config",
    "load_config",
    "model_weight_differences",
    "other_differences",
    "parse_yaml",
    "structural_differences",
    "to_dict",
    "validate",
    "yaml_error_message",
]
