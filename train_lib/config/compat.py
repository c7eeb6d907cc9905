"""What may change between the config a run was trained with and a later one.

One set of structural keys, `STRUCTURAL_PREFIXES` (less `LOSS_ONLY_KEYS`; and
train_config.mixed_precision when a change goes into or out of mixed_float16),
decides all three cases:

- resuming training (training/workdir.py): `structural_differences` must be
  empty, `other_differences` are only logged;
- evaluating or exporting a checkpoint (evaluation/evaluator.py, which export
  uses): `model_weight_differences` must be empty. Only the model's variables
  are read there, so the training-only structural keys do not matter, nor the
  input size (evaluating at another resolution is legitimate).

Differences are dotted leaf key paths in schema order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from train_lib.config.schema import PipelineConfig, to_dict

__all__ = [
    "LOSS_ONLY_KEYS",
    "STRUCTURAL_PREFIXES",
    "WEIGHT_INDEPENDENT_KEYS",
    "model_weight_differences",
    "other_differences",
    "structural_differences",
]

# Keys whose change alters the model's variables or what its outputs mean: a
# checkpoint written under one value cannot be resumed under another (the
# optimizer type decides its slot variables). Loss weights, matching
# thresholds and post-processing may change on resume.
STRUCTURAL_PREFIXES = (
    "model.architecture", "model.num_classes", "model.input_size", "model.min_level",
    # The weights were trained on pixels normalised so: other statistics, other outputs.
    "model.pixel_mean", "model.pixel_stddev",
    "model.max_level", "model.backbone.", "model.fpn.", "model.head.",
    "model.anchor.num_scales", "model.anchor.aspect_ratios", "model.anchor.anchor_size",
    "model.norm.", "model.rpn_head.", "model.roi_aligner.", "model.detection_head.",
    "train_config.optimizer.type",
)
# mixed_float16 wraps the optimizer in a loss-scale optimizer (other variables): a
# change of train_config.mixed_precision into or out of it is structural. Between
# the others (float32, mixed_bfloat16, mixed_bfloat16_on_tpu) the variables are the
# same float32 ones: they may change on resume.
LOSS_SCALED_PRECISION = "mixed_float16"

# Keys under a structural prefix that change only the loss, not the variables: they
# may change on resume.
LOSS_ONLY_KEYS = ("model.backbone.regularize_depthwise",)

# Structural keys that the model's variables do not depend on: a checkpoint may
# be evaluated or exported under another value.
WEIGHT_INDEPENDENT_KEYS = ("model.input_size",)


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


def _is_structural(path: str, old: PipelineConfig, new: PipelineConfig) -> bool:
    if path == "train_config.mixed_precision":
        precisions = (old.train_config.mixed_precision, new.train_config.mixed_precision)
        return sum(p == LOSS_SCALED_PRECISION for p in precisions) == 1
    return path.startswith(STRUCTURAL_PREFIXES) and path not in LOSS_ONLY_KEYS


def structural_differences(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    """Dotted leaf paths that differ and change the model's structure (schema
    order); the trainer refuses to resume with them."""
    return [p for p in _differences(old, new) if _is_structural(p, old, new)]


def other_differences(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    """Dotted leaf paths that differ but may change on resume (schema order), for logging."""
    return [p for p in _differences(old, new) if not _is_structural(p, old, new)]


def model_weight_differences(trained: PipelineConfig, config: PipelineConfig) -> list[str]:
    """Structural `model.` keys that differ between the config a checkpoint was trained
    with and `config`, except WEIGHT_INDEPENDENT_KEYS: with any of them, the checkpoint's
    model variables do not fit the model `config` builds, or compute another function
    of the image (the pixel statistics) (schema order)."""
    return [key for key in structural_differences(trained, config)
            if key.startswith("model.") and key not in WEIGHT_INDEPENDENT_KEYS]
