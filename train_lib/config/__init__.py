"""Pipeline config: YAML with the OD API's sections, or the OD API's pipeline.config,
-> typed, validated dataclasses.

`load_config` reads either; `validate` reports every problem at once; a user's
mistake is a `ConfigError`. docs/architecture.md ("Packages") says which module
holds what.

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
    ONLY_TRAINING_READS,
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
    "ONLY_TRAINING_READS",
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
