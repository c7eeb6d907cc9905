"""An OD API-style training driver for Model Garden's RetinaNet.

Public face: `load_config` (no TensorFlow import), `train`, `evaluate_checkpoint`,
`continuous_eval` and `export_saved_model`. Heavy modules are imported on first
use, so loading and validating a config stays fast.
"""

from __future__ import annotations

from train_lib.config import ConfigError, PipelineConfig, load_config

__all__ = ["ConfigError", "PipelineConfig", "continuous_eval", "evaluate_checkpoint",
           "export_saved_model", "load_config", "train"]

_LAZY = {"train": "train_lib.training.trainer",
         "evaluate_checkpoint": "train_lib.evaluation.continuous",
         "continuous_eval": "train_lib.evaluation.continuous",
         "export_saved_model": "train_lib.export.saved_model"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'train_lib' has no attribute {name!r}")
