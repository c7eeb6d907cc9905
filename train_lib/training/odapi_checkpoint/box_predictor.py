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

Contract: `map_head` pairs each variable of our head with the checkpoint's, checks
every shape, and says why the class predictor starts fresh when its shape is not
ours (another num_classes, or no background column); any other misfit, or a weight of
the checkpoint's predictor that none of ours takes, is a TrainError naming it.
`check_towers` refuses `full` when the tower arrangements differ.
"""

from __future__ import annotations

import numpy as np
from official.vision.modeling.heads import dense_prediction_heads

from train_lib.families.shared_tower_head import SharedTowerRetinaNetHead
from train_lib.training.failures import TrainError
from train_lib.training.odapi_checkpoint.layout import VALUE
from train_lib.training.odapi_checkpoint.mapped import (
    Mapped,
    check_fits,
    checkpoint_key,
    does_not_fit,
)

PREDICTOR = "model/_box_predictor/"
TOWER_CONVS = PREDICTOR + "_head_scope_conv_layers/"
TOWER_NORMS = PREDICTOR + "_base_tower_layers_for_heads/"
BOX_HEAD, CLASS_HEAD = "box_encodings", "class_predictions_with_background"
BOX = PREDICTOR + "_box_prediction_head/_box_encoder_layers/"
CLASS = PREDICTOR + "_prediction_heads/class_predictions_with_background/_class_predictor_layers/"
# A predictor's weights whose last axis is its output channels (a depthwise kernel's
# is its depth multiplier).
OUTPUT_AXIS_WEIGHTS = ("kernel", "pointwise_kernel", "bias")
_PREDICTORS = ("BoxPredictor", "ClassPredictor")  # their names in layers()
# The report's note on a predictor variable whose output channels were permuted.
ANCHOR_ORDER = ("permuted from the OD API's anchor order at a location (aspect ratio by "
                "aspect ratio, each at its scales) to ours (scale by scale, each at its "
                "aspect ratios)")


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


def rows_in_our_order(theirs: np.ndarray, num_scales: int,
                      num_aspect_ratios: int) -> np.ndarray:
    """The OD API's per-anchor rows `theirs` ([..., N, k]: N anchors, location after
    location, each location's in its order, e.g. its box_encodings or anchors), each
    location's anchors put in ours: what our head computes for the same anchors."""
    order = anchor_order(num_scales, num_aspect_ratios)
    shape, count = theirs.shape, len(order)
    grouped = theirs.reshape(*shape[:-2], shape[-2] // count, count, shape[-1])
    return grouped[..., order, :].reshape(shape)


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


def check_towers(shapes, prefix: str, head) -> None:
    """For fine_tune_checkpoint_type full: TrainError when our head and the
    checkpoint's (`prefix`, its keys `shapes`) weight-shared box predictor both have
    towers but not the same arrangement (one shared tower against two), which
    model.head.share_prediction_tower sets: the head would start fresh where the user
    asked for it to load. Nothing otherwise."""
    ours, theirs = our_towers(head), towers(shapes)
    if ours is None or theirs is None or ours == theirs:
        return
    arrangement = {"shared": "one tower shared by its box and class predictors "
                             "(share_prediction_tower: true)",
                   "separate": "a box tower and a class tower (share_prediction_tower: false)"}
    setting = f"model.head.share_prediction_tower: {str(theirs == 'shared').lower()}"
    if theirs == "separate":  # Model Garden's two towers: their biases as the checkpoint's
        biases = any(key.startswith(TOWER_CONVS + "BoxPredictionTower/0/bias")
                     for key in shapes)
        setting += f" and model.head.tower_conv_bias: {str(biases).lower()}"
    this = does_not_fit(prefix, "this model's head under fine_tune_checkpoint_type full")
    raise TrainError(
        f"{this}: the checkpoint's box predictor has {arrangement[theirs]}, this model's head "
        f"{arrangement[ours]}; set {setting} to load it, or fine_tune_checkpoint_type: "
        "detection to start the head fresh")


def map_head(shapes: dict, prefix: str, model) -> tuple[list[Mapped], str | None]:
    """Each variable of `model`'s head paired with the checkpoint's (`prefix`, its keys
    and shapes `shapes`) weight-shared box predictor's with the same towers, checked by
    name and shape, and why the class predictor does not fit (another num_classes; it
    then starts fresh, its variables left out), or None. TrainError naming the first
    variable that does not fit otherwise, or the first weight of the checkpoint's
    predictor that none of ours takes."""
    head = model.head
    shared = our_towers(head) == "shared"
    this = does_not_fit(prefix, "this model's head (model.head.share_prediction_tower: "
                                f"{str(shared).lower()})")
    config = model.get_config()
    levels = config["max_level"] - config["min_level"] + 1
    theirs = checkpoint_levels(shapes)
    if theirs != levels:
        raise TrainError(
            f"{this}: the checkpoint's box predictor has batch "
            f"norms for {theirs} levels ({TOWER_NORMS}{BOX_HEAD}/<level>/), this model "
            f"{levels} (model.min_level {config['min_level']} to max_level "
            f"{config['max_level']}); it must come from an OD API model with the same levels")
    order = anchor_order(config["num_scales"], len(config["aspect_ratios"]))
    permute = order != sorted(order)
    mapped, class_unfit = [], None
    for path, odapi_name, layer in layers(head, shapes, config["min_level"]):
        for variable in layer.variables:
            attribute, key = checkpoint_key(path, variable)
            where = f"{odapi_name}/{attribute}"
            if odapi_name == "ClassPredictor" and key in shapes and \
                    list(shapes[key]) != variable.shape.as_list():
                # it starts fresh; the rest is checked all the same
                class_unfit = class_unfit_reason(key, list(shapes[key]),
                                                 variable.shape.as_list(), len(order))
                break
            check_fits(shapes, key, variable, this,
                       f"the OD API's box predictor layer {where}; our {layer.name}/"
                       f"{attribute}",
                       "it must come from an OD API weight-shared box predictor with the "
                       "same share_prediction_tower, num_layers_before_predictor (model.head."
                       "num_convs), batch norm, use_depthwise (model.head.use_separable_conv) "
                       "and tower biases (none unless force_use_bias: model.head."
                       "tower_conv_bias)",
                       "The checkpoint's box predictor has another depth (model.head."
                       "num_filters), input depth (model.fpn.num_filters) or number of "
                       "anchors per location (model.anchor.num_scales x aspect_ratios)")
            channels = None
            if permute and odapi_name in _PREDICTORS and attribute in OUTPUT_AXIS_WEIGHTS:
                # each anchor's box codes or class logits, anchor after anchor
                width = variable.shape[-1] // len(order)
                channels = output_channels(order, width)
            mapped.append(Mapped(variable, key, where, part="head", channels=channels))
    if class_unfit:
        mapped = [m for m in mapped if not m.keras_name.startswith("ClassPredictor/")]
    _no_predictor_weight_left(shapes, this, mapped)
    return mapped, class_unfit


def _no_predictor_weight_left(shapes: dict, this: str, mapped: list) -> None:
    """TrainError naming the first weight of the checkpoint's box predictor (but its
    class predictor's) that no variable of ours takes: the predictor computes another
    function than our head (more tower convolutions, tower biases)."""
    taken = {m.key for m in mapped}
    left = sorted(key for key in shapes if key.startswith(PREDICTOR)
                  and key.endswith(VALUE) and ".OPTIMIZER_SLOT" not in key
                  and not key.startswith(CLASS) and key not in taken)
    if left:
        raise TrainError(
            f"{this}: the checkpoint's box predictor has "
            f"{len(left)} weights no layer of ours computes with, the first {left[0]}; it "
            "has more tower convolutions (num_layers_before_predictor, ours "
            "model.head.num_convs) or tower biases (force_use_bias or no batch_norm, ours "
            "model.head.tower_conv_bias: true) than this model")


def class_unfit_reason(key: str, theirs: list[int], ours: list[int], anchors: int) -> str:
    """Why the checkpoint's class predictor (`key`, of shape `theirs`) does not fit ours
    (`ours`), whose outputs are `anchors` anchors' num_classes + 1 logits each."""
    shapes = f"the checkpoint's class predictor {key} has shape {theirs}, ours {ours}"
    if theirs[:-1] == ours[:-1] and theirs[-1] == ours[-1] - anchors:
        return (f"{shapes}: {theirs[-1] // anchors} logits per anchor where ours has "
                f"{ours[-1] // anchors}: no background column (the OD API's "
                "add_background_class: false, as its EfficientDet configs'), or one class "
                "fewer than model.num_classes")
    return f"{shapes}: another model.num_classes (the OD API's full would fail here)"
