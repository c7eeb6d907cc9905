"""The OD API's weight-shared box predictor with `share_prediction_tower: true`
(WeightSharedConvolutionalBoxPredictor, the FPN-lite configs') into our
`model.head.share_prediction_tower: true` (families/shared_tower_head.py,
SharedTowerRetinaNetHead), which computes its function: the tower's convolutions
shared across levels and without bias, each level's batch norms, the class and box
predictors shared across levels (plain or, with use_depthwise /
model.head.use_separable_conv, separable).

Where the OD API keeps it (under `model/_box_predictor/`; its layers are Python lists
and dicts, so the checkpoint numbers or names them):

- `_head_scope_conv_layers/PredictionTower/<i>`: the tower's i-th convolution (ours
  `_tower_convs[i]`);
- `_base_tower_layers_for_heads/box_encodings/<l>/<3 i + 1>`: the batch norm after it
  on the l-th level from min_level (the list holds convolution, batch norm and
  activation per layer; ours `_tower_norms[l][i]`);
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

PREDICTOR = "model/_box_predictor/"
TOWER_CONVS = PREDICTOR + "_head_scope_conv_layers/PredictionTower/"
SEPARATE_TOWERS = PREDICTOR + "_head_scope_conv_layers/BoxPredictionTower/"
TOWER_NORMS = PREDICTOR + "_base_tower_layers_for_heads/box_encodings/"
BOX = PREDICTOR + "_box_prediction_head/_box_encoder_layers/"
CLASS = PREDICTOR + "_prediction_heads/class_predictions_with_background/_class_predictor_layers/"
# A predictor's weights whose last axis is its output channels (a depthwise kernel's
# is its depth multiplier).
OUTPUT_AXIS_WEIGHTS = ("kernel", "pointwise_kernel", "bias")


def is_shared_tower(shapes) -> bool:
    """Whether the checkpoint (its keys `shapes`) holds a weight-shared box predictor
    with one tower for both predictors (share_prediction_tower: true)."""
    return any(key.startswith(TOWER_CONVS) for key in shapes)


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
    """Our SharedTowerRetinaNetHead's layers with weights, each as (the checkpoint path
    of the OD API's layer it stands for, ending in '/'; its name in the OD API's box
    predictor; our layer), the tower first, then the box and the class predictor."""
    places = [(f"{TOWER_CONVS}{i}/", f"PredictionTower/{i}", conv)
              for i, conv in enumerate(head._tower_convs)]
    for level, norms in enumerate(head._tower_norms):
        for i, norm in enumerate(norms):
            places.append((f"{TOWER_NORMS}{level}/{3 * i + 1}/",
                           f"PredictionTower/conv2d_{i}/BatchNorm/feature_{level} (level "
                           f"{min_level + level})", norm))
    box, cls = _layer_index(shapes, BOX), _layer_index(shapes, CLASS)
    places.append((f"{BOX}{0 if box is None else box}/", "BoxPredictor", head._box_regressor))
    places.append((f"{CLASS}{0 if cls is None else cls}/", "ClassPredictor", head._classifier))
    return places


def checkpoint_levels(shapes) -> int:
    """How many levels the checkpoint's predictor has batch norms for."""
    return len({key[len(TOWER_NORMS):].split("/")[0] for key in shapes
                if key.startswith(TOWER_NORMS)})
