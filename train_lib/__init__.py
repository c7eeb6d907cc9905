"""An OD API-style training driver for Model Garden's detectors (RetinaNet, Faster
R-CNN).

Public face: `load_config` (no TensorFlow import), `train`, `evaluate_checkpoint`,
`continuous_eval` and `export_saved_model`. Every module is imported on first
use, so loading and validating a config stays fast.
"""

from __future__ import annotations

from train_lib.model_garden_packages import skip_package_inits

__all__ = ["ConfigError", "PipelineConfig", "continuous_eval", "evaluate_checkpoint",
           "export_saved_model", "load_config", "train"]

# Nothing is imported until used: the TFLite runtime (export/tflite_runtime.py) runs
# on a device with LiteRT, numpy and pillow alone, without PyYAML or absl.
# Model Garden's modules, when they are imported, come without the registries of
# its package __init__s (model_garden_packages.py: about 1-2 s of start-up).
skip_package_inits()
_LAZY = {"ConfigError": "train_lib.config",
         "PipelineConfig": "train_lib.config",
         "load_config": "train_lib.config",
         "train": "train_lib.training.trainer",
         "evaluate_checkpoint": "train_lib.evaluation.continuous",
         "continuous_eval": "train_lib.evaluation.continuous",
         "export_saved_model": "train_lib.export.saved_model"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'train_lib' has no attribute {name!r}")
