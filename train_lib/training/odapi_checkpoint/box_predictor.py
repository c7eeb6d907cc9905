"""The OD API's weight-shared box predictor (WeightSharedConvolutionalBoxPredictor)
into our RetinaNet head, which computes its function: with `share_prediction_tower:
true` (the FPN-lite configs') into `model.head.share_prediction_tower: true`
(families/shared_tower_head.py, SharedTowerRetinaNetHead: one tower for both
predictors); with `false` (the SSD ResNet and MobileNet v1 FPN configs') into Model
Garden's two-tower head (families/tower_bias_head.py, with `model.head.tower_conv_bias:
false`: no bias in the towers, as the OD API's with batch norm). Either way the
towers' convolutions are shared across levels, each level has its own batch norms,
the class and box predictors are shared across levels (plain or, with use_depthwise /
model.head.use_separable_conv, separable).

Where the OD API keeps it (under `model/_box_predictor/`; its layers are Python lists
and dicts, so the checkpoint numbers or names them):

- `_head_scope_conv_layers/<tower>/<i>`: a tower's i-th convolution: `PredictionTower`
  (ours `_tower_convs[i]`), or `BoxPredictionTower` and `ClassPredictionTower` (ours
  `_box_convs[i]`, `_cls_convs[i]`);
- `_base_tower_layers_for_heads/<head>/<l>/<3 i + 1>`: the batch norm after it on the
  l-th level from min_level (the list holds convolution, batch norm and activation per
  layer), `<head>` `box_encodings` for the shared tower and the box tower (ours
  `_tower_norms[l][i]`, `_box_norms[l][i]`), `class_predictions_with_background` for
  the class tower (ours `_cls_norms[l][i]`);
- `_box_prediction_head/_box_encoder_layers/<n>`: the box predictor (ours
  `_box_regressor`);
- `_prediction_heads/class_predictions_with_background/_class_predictor_layers/<n>`:
  the class predictor (ours `_classifier`; a dropout layer before it, `use_dropout`,
  has no variables and shifts n).

The predictors' outputs per location are A anchors' codes (4 box codes, or
num_classes + 1 class logits, background first), anchor after anchor, as ours; but
the OD API's multiscale grid anchor generator orders a location's anchors aspect ratio
by aspect ratio, each at its scales (a = r x num_scales + s), where Model Garden's
orders them scale by scale, each at its aspect ratios (k = s x len(aspect_ratios) + r).
The predictors' output channels (a kernel's last axis, its bias) are permuted on
loading, so that our k-th anchor's outputs are the OD API's for the same anchor.
"""

from __future__ import annotations

import numpy as np
from official.vision.modeling.heads import dense_prediction_heads

from train_lib.families.shared_tower_head import SharedTowerRetinaNetHead

PREDICTOR = "model/_box_predictor/"
TOWER_CONVS = PREDICTOR + "_head_scope_conv_layers/"
TOWER_NORMS = PREDICTOR + "_base_tower_layers_for_heads/"
BOX_HEAD, CLASS_HEAD = "box_encodings", "class_predictions_with_background"
BOX = PREDICTOR + "_box_prediction_head/_box_encoder_layers/"
CLASS = PREDICTOR + "_prediction_heads/class_predictions_with_background/_class_predictor_layers/"
# A predictor's weights whose last axis is its output channels (a depthwise kernel's
# is its depth multiplier).
OUTPUT_AXIS_WEIGHTS = ("kernel", "pointwise_kernel", "bias")


def towers(shapes) -> str | None:
    """The towers of the checkpoint's (its keys `shapes`) weight-shared box predictor:
    `shared` (share_prediction_tower: true), `separate`, or None (it has none)."""
    if any(key.startswith(TOWER_CONVS + "PredictionTower/") for key in shapes):
        return "shared"
    if any(key.startswith(TOWER_CONVS + "BoxPredictionTower/") for key in shapes):
        return "separate"
    return None


def our_towers(head) -> str | None:
    """Which of the OD API's predictors `head` computes: `shared`
    (SharedTowerRetinaNetHead), `separate` (Model Garden's two towers, shared across
    levels, no attribute heads), or None."""
    if isinstance(head, SharedTowerRetinaNetHead):
        return "shared"
    if isinstance(head, dense_prediction_heads.RetinaNetHead) and \
            head.get_config()["share_level_convs"] and not head.get_config()["attribute_heads"]:
        return "separate"
    return None


def anchor_order(num_scales: int, num_aspect_ratios: int) -> list[int]:
    """For each of our anchors at a location (Model Garden's order: scale-major), the
    index of the same anchor among the OD API's (aspect-ratio-major)."""
    return [r * num_scales + s for s in range(num_scales) for r in range(num_aspect_ratios)]


def output_channels(order: list[int], width: int) -> np.ndarray:
    """The OD API's output channel of each of ours, `width` channels per anchor."""
    return np.array([a * width + c for a in order for c in range(width)])


def _layer_index(shapes, path: str) -> int | None:
    """The position of the one layer with variables under `path` (a list's)."""
    found = {int(key[len(path):].split("/")[0]) for key in shapes if key.startswith(path)}
    return min(found) if found else None


def layers(head, shapes, min_level: int) -> list[tuple[str, str, object]]:
    """Our head's layers with weights (its towers as our_towers says), each as (the
    checkpoint path of the OD API's layer it stands for, ending in '/'; its name in the
    OD API's box predictor; our layer), the towers first, then the box and the class
    predictor."""
    if our_towers(head) == "shared":
        tower_parts = [("PredictionTower", BOX_HEAD, head._tower_convs, head._tower_norms)]
    else:
        tower_parts = [("BoxPredictionTower", BOX_HEAD, head._box_convs, head._box_norms),
                       ("ClassPredictionTower", CLASS_HEAD, head._cls_convs, head._cls_norms)]
    places = []
    for tower, head_name, convs, norms_by_level in tower_parts:
        places += [(f"{TOWER_CONVS}{tower}/{i}/", f"{tower}/{i}", conv)
                   for i, conv in enumerate(convs)]
        for level, norms in enumerate(norms_by_level):
            for i, norm in enumerate(norms):
                places.append((f"{TOWER_NORMS}{head_name}/{level}/{3 * i + 1}/",
                               f"{tower}/conv2d_{i}/BatchNorm/feature_{level} (level "
                               f"{min_level + level})", norm))
    box, cls = _layer_index(shapes, BOX), _layer_index(shapes, CLASS)
    places.append((f"{BOX}{0 if box is None else box}/", "BoxPredictor", head._box_regressor))
    places.append((f"{CLASS}{0 if cls is None else cls}/", "ClassPredictor", head._classifier))
    return places


def checkpoint_levels(shapes) -> int:
    """How many levels the checkpoint's predictor has batch norms for."""
    path = f"{TOWER_NORMS}{BOX_HEAD}/"
    return len({key[len(path):].split("/")[0] for key in shapes if key.startswith(path)})
