"""`model.initializers` (RetinaNet only): the distribution each part's convolution
kernels start from, as the OD API's `conv_hyperparams.initializer`.
families/initializers.py draws them once the model is built."""

from __future__ import annotations

from dataclasses import dataclass, field

from train_lib.config.problems import Checks

__all__ = ["FAN_MODES", "INITIALIZER_TYPES", "PARTS", "InitializerConfig",
           "InitializersConfig"]

INITIALIZER_TYPES = ("", "truncated_normal", "random_normal", "variance_scaling",
                     "glorot_uniform")
FAN_MODES = ("fan_in", "fan_out", "fan_avg")
# RetinaNet's parts, in the order families/initializers.py draws them.
PARTS = ("backbone", "fpn", "head", "predictors")


@dataclass
class InitializerConfig:
    """The distribution one part's convolution kernels start from, as the OD API's
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
    """RetinaNet's parts and the distribution each one's kernels start from: the
    backbone, the FPN, the head's towers, and the class and box predictors."""

    backbone: InitializerConfig = field(default_factory=InitializerConfig)
    fpn: InitializerConfig = field(default_factory=InitializerConfig)
    head: InitializerConfig = field(default_factory=InitializerConfig)
    predictors: InitializerConfig = field(default_factory=InitializerConfig)

    def problems(self, prefix: str = "model.initializers") -> list[str]:
        return [p for part in PARTS
                for p in getattr(self, part).problems(f"{prefix}.{part}")]
