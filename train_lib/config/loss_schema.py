"""`model.loss`: the loss weights and settings of each family, and the L2 weight of
each part of the model (`l2_weight_decay`, and `l2_weight_decay_by_part` where a part
has its own; families/regularizers.py applies them).

The parts are those of `model.initializers` (initializer_schema.ARCHITECTURE_PARTS);
model_schema.ARCHITECTURE_KEYS refuses another architecture's part, and its
RetinaNet- and Faster R-CNN-only loss keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from train_lib.config.initializer_schema import PARTS
from train_lib.config.problems import Checks

__all__ = ["L2WeightsByPartConfig", "LOSS_NORMALIZERS", "LossConfig"]

# RetinaNet's summed losses divided by: Model Garden's matched anchors + 1, the OD API's
# max(matched anchors, 1) (normalize_loss_by_num_matches: true), or nothing (false).
LOSS_NORMALIZERS = ("positives_plus_one", "positives", "none")


@dataclass
class L2WeightsByPartConfig:
    """The L2 weight of each part of the model, where it differs from
    `model.loss.l2_weight_decay`: the parts of `model.initializers`
    (initializer_schema.ARCHITECTURE_PARTS; another architecture's is refused by its
    key). null (the default): the part takes l2_weight_decay. A weight w adds
    w / 2 * sum(v**2) for each variable of the part that its layers regularise (the
    OD API's convention, as l2_weight_decay), 0 none."""

    backbone: float | None = None
    fpn: float | None = None
    head: float | None = None
    predictors: float | None = None
    rpn_head: float | None = None
    detection_head: float | None = None
    detection_predictors: float | None = None

    def problems(self, prefix: str = "model.loss.l2_weight_decay_by_part") -> list[str]:
        c = Checks(prefix)
        for part in PARTS:
            value = getattr(self, part)
            c.need(value is None or value >= 0, part, value,
                   "must be >= 0 (or null: model.loss.l2_weight_decay)")
        return c.problems


@dataclass
class LossConfig:
    # retinanet
    focal_loss_alpha: float = 0.25
    focal_loss_gamma: float = 1.5
    huber_loss_delta: float = 0.1
    box_loss_weight: float = 50.0
    class_loss_weight: float = 1.0
    # what the class and box losses, summed over the batch's anchors, are divided by
    # (LOSS_NORMALIZERS), counted over the whole global batch
    normalizer: str = "positives_plus_one"
    # both: the L2 weight of every part of the model, but those
    # l2_weight_decay_by_part sets
    l2_weight_decay: float = 4e-5
    l2_weight_decay_by_part: L2WeightsByPartConfig = field(
        default_factory=L2WeightsByPartConfig)
    # faster_rcnn: the OD API's first_stage_* and second_stage_* loss weights
    rpn_score_weight: float = 1.0  # first_stage_objectness_loss_weight
    rpn_box_weight: float = 2.0  # first_stage_localization_loss_weight
    frcnn_class_weight: float = 1.0  # second_stage_classification_loss_weight
    frcnn_box_weight: float = 2.0  # second_stage_localization_loss_weight
    rpn_huber_loss_delta: float = 1.0 / 9.0
    frcnn_huber_loss_delta: float = 1.0

    def l2_weight(self, part: str) -> float:
        """The L2 weight of `part` (a model.initializers part): its
        l2_weight_decay_by_part entry, else l2_weight_decay."""
        weight = getattr(self.l2_weight_decay_by_part, part)
        return self.l2_weight_decay if weight is None else weight

    def problems(self, prefix: str = "model.loss") -> list[str]:
        c = Checks(prefix)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "l2_weight_decay_by_part":
                c.problems += value.problems(c.path(f.name))
                continue
            if f.name == "normalizer":
                c.choice(f.name, value, LOSS_NORMALIZERS)
                continue
            c.need(value >= 0, f.name, value, "must be >= 0")
        c.need(self.focal_loss_alpha <= 1, "focal_loss_alpha", self.focal_loss_alpha,
               "must be in [0, 1]")
        return c.problems
