"""`model.initializers`: the distribution each part's kernels start from, as the OD
API's `conv_hyperparams.initializer`. families/initializers.py draws them once the
model is built.

`backbone` and `fpn` are parts of both architectures; RetinaNet's own are `head`
and `predictors`, Faster R-CNN's `rpn_head`, `detection_head` and
`detection_predictors` (`ARCHITECTURE_PARTS`; model_schema.ARCHITECTURE_KEYS
refuses another architecture's part)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from train_lib.config.problems import Checks

__all__ = ["ARCHITECTURE_PARTS", "CLASS_PRIOR_BIAS", "FAN_MODES", "INITIALIZER_TYPES", "PARTS",
           "InitializerConfig", "InitializersConfig"]

INITIALIZER_TYPES = ("", "truncated_normal", "random_normal", "variance_scaling",
                     "glorot_uniform")
FAN_MODES = ("fan_in", "fan_out", "fan_avg")
# Model Garden's RetinaNet class bias: -log((1 - p) / p) for a prior p = 0.01.
CLASS_PRIOR_BIAS = -math.log(99.0)
# Each architecture's parts, in the order families/initializers.py draws them.
ARCHITECTURE_PARTS = {
    "retinanet": ("backbone", "fpn", "head", "predictors"),
    "faster_rcnn": ("backbone", "fpn", "rpn_head", "detection_head", "detection_predictors"),
}
# Every part, each once: the fields of InitializersConfig.
PARTS = tuple(dict.fromkeys(p for parts in ARCHITECTURE_PARTS.values() for p in parts))


@dataclass
class InitializerConfig:
    """The distribution one part's kernels start from, as the OD API's
    conv_hyperparams.initializer: truncated_normal or random_normal (mean, stddev),
    variance_scaling (factor, mode, uniform: the OD API's variance_scaling_initializer),
    glorot_uniform; "" keeps Model Garden's own (families/initializers.py)."""

    type: str = ""
    mean: float = 0.0
    stddev: float = 1.0
    factor: float = 2.0
    mode: str = "fan_in"
    uniform: bool = False

    def problems(self, prefix: str) -> list[str]:
        c = Checks(prefix)
        if self.type not in INITIALIZER_TYPES:
            c.problems.append(f"{c.path('type')} is {self.type!r}; must be one of "
                              f"{', '.join(INITIALIZER_TYPES[1:])}, or '' (Model Garden's "
                              "own)")
        c.need(self.stddev > 0, "stddev", self.stddev, "must be > 0")
        c.need(self.factor > 0, "factor", self.factor, "must be > 0")
        c.choice("mode", self.mode, FAN_MODES)
        return c.problems


@dataclass
class InitializersConfig:
    """The parts of a model and the distribution each one's kernels start from.
    Both architectures: the backbone and the FPN. RetinaNet: the head's towers
    (`head`), its class and box predictors (`predictors`). Faster R-CNN: the RPN
    head, its convolution and its score and box predictors alike (`rpn_head`), the
    detection head's convolutions and fully connected layers (`detection_head`), its
    class and box predictors (`detection_predictors`)."""

    backbone: InitializerConfig = field(default_factory=InitializerConfig)
    fpn: InitializerConfig = field(default_factory=InitializerConfig)
    head: InitializerConfig = field(default_factory=InitializerConfig)
    predictors: InitializerConfig = field(default_factory=InitializerConfig)
    rpn_head: InitializerConfig = field(default_factory=InitializerConfig)
    detection_head: InitializerConfig = field(default_factory=InitializerConfig)
    detection_predictors: InitializerConfig = field(default_factory=InitializerConfig)
    # RetinaNet: the value every bias of the class predictor starts at (the OD API's
    # class_prediction_bias_init); the default is Model Garden's, a prior of 0.01.
    class_bias: float = CLASS_PRIOR_BIAS

    def problems(self, prefix: str = "model.initializers",
                 parts: tuple[str, ...] = PARTS) -> list[str]:
        """The problems of the `parts` checked (an architecture's: another's are
        refused by their key)."""
        return [p for part in parts
                for p in getattr(self, part).problems(f"{prefix}.{part}")]
