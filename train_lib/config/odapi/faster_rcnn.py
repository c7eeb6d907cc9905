"""The `model.faster_rcnn` fields of a pipeline.config that combine into our `model`
keys (table_faster_rcnn.py has every field's row).

Called by pipeline.py after the plain fields are mapped: the architecture, the
backbone and levels (from the feature extractor's type and the anchors), the
input size, the norm and L2 weight, the initializers of each part, the ROI crop
size, the proposals, the box classifier, and the OD API's defaults where ours
differ (faster_rcnn.proto), so that a field the file leaves out means what it
means to the OD API.
"""

from __future__ import annotations

import math
import re

from train_lib.config.model_schema import MAX_LEVEL, MIN_LEVEL
from train_lib.config.odapi.fields import FASTER_RCNN_EXTRACTORS
from train_lib.config.odapi.mapper import Mapper, child_value
from train_lib.config.odapi.shared import (
    GLOROT_UNIFORM,
    KERAS_RESNET_INITIALIZER,
    L2_BY_PART,
    MULTISCALE_ABSENT,
    NMS_ABSENT,
    absent_defaults,
    initializer,
    input_size,
    norm,
    pixel_normalization,
)
from train_lib.config.odapi.table_faster_rcnn import CLIP_ANCHORS

__all__ = ["map_model"]

FR = "model.faster_rcnn."
FE = FR + "feature_extractor."
GRID = FR + "first_stage_anchor_generator.grid_anchor_generator"
MULTISCALE = FR + "first_stage_anchor_generator.multiscale_anchor_generator"
RPN = FR + "first_stage_box_predictor_conv_hyperparams."
MB = FR + "second_stage_box_predictor.mask_rcnn_box_predictor."
# The faster_rcnn message's fields whose OD API default is not our key's: (field, our
# key, the OD API's default), as shared.NMS_ABSENT; absent, the OD API's holds.
ODAPI_DEFAULTS = (
    ("first_stage_box_predictor_depth", "model.rpn_head.num_filters", 512),
    ("second_stage_batch_size", "model.roi_sampler.num_sampled_rois", 64),
    ("first_stage_localization_loss_weight", "model.loss.rpn_box_weight", 1.0),
    ("second_stage_localization_loss_weight", "model.loss.frcnn_box_weight", 1.0),
)


def _backbone(m: Mapper) -> bool | None:
    """Sets model.backbone and the box classifier from the feature extractor's type;
    returns whether it has an FPN (None: not supported)."""
    origin = FE + "type"
    kind = m.get(origin, "")
    match = re.fullmatch(r"faster_rcnn_resnet(50|101|152)(_fpn)?_keras", kind)
    if not match:
        m.refuse(origin, f"feature extractor {kind!r} is not supported; supported: "
                         f"{', '.join(FASTER_RCNN_EXTRACTORS)}")
        return None
    depth, fpn = match.group(1), match.group(2) is not None
    m.set("model.backbone.type", "resnet", origin)
    pixel_normalization(m, "resnet", origin)
    resnet = (f"the OD API's Keras ResNet-{depth} v1 (resnet_variant: keras_v1: the same "
              "function, its checkpoints load exactly)")
    if fpn:
        note = (f"{resnet} with the OD API's FPN (fpn.type: odapi: the same function and "
                "parameters); the box classifier is two fully connected layers of 1024, as "
                "the OD API's")
        m.set("model.fpn.type", "odapi", origin)
    else:
        note = (f"{resnet} with an FPN from level 4 (stride 16) for its stride-16 features "
                "without FPN; the box classifier is two fully connected layers of 1024 on "
                "ROI-aligned features, where the OD API runs ResNet's last stage (conv5, our "
                "level 5) on each ROI")
    m.set("model.backbone.model_id", depth, origin)
    m.set("model.backbone.resnet_variant", "keras_v1", origin, note)
    m.set("model.detection_head.num_convs", 0, origin)
    m.set("model.detection_head.num_fcs", 2, origin)
    m.set("model.detection_head.fc_dims", 1024, origin)
    return fpn


def _grid_anchors(m: Mapper) -> tuple[int, int] | None:
    """Sets the anchors and levels of a grid_anchor_generator (the OD API's anchors of a
    single stride-16 feature map); returns the levels, None when refused."""
    node = m.one(GRID)
    scales = sorted(float(s) for s in child_value(node, "scales", [0.5, 1.0, 2.0]))
    ratios = [float(r) for r in child_value(node, "aspect_ratios", [0.5, 1.0, 2.0])]
    height, width = child_value(node, "height", 256), child_value(node, "width", 256)
    stride = child_value(node, "height_stride", 16)
    level = math.log2(stride) if stride > 0 else -1.0
    if not level.is_integer() or not MIN_LEVEL <= level <= MAX_LEVEL:
        m.refuse(GRID, f"height_stride {stride} is not a power of 2 between 2**{MIN_LEVEL} "
                       f"and 2**{MAX_LEVEL}, the strides of Model Garden's levels")
        return None
    if child_value(node, "width_stride", stride) != stride or width != height:
        m.approx(GRID, "square anchors of the height and height_stride (the width and "
                       "width_stride differ)")
    octaves = math.log2(scales[-1] / scales[0]) if scales[0] > 0 else 0.0
    low = int(level)
    high = min(low + round(octaves), MAX_LEVEL)
    per_octave = max(1, round((len(scales) - 1) / octaves)) if octaves >= 1 else 1
    size = round(scales[0] * height / stride, 6)
    sizes = ", ".join(f"{s * height:g}" for s in scales)
    m.set("model.min_level", low, GRID)
    m.set("model.max_level", high, GRID,
          f"anchors of {sizes} px at stride {stride} become anchor_size {size:g} x "
          f"2**level on levels {low}..{high}, {per_octave} scale(s) a level")
    m.set("model.anchor.anchor_size", size, GRID)
    m.set("model.anchor.num_scales", per_octave, GRID)
    m.set("model.anchor.aspect_ratios", ratios, GRID)
    return low, high


def _levels(m: Mapper, fpn: bool) -> tuple[int, int] | None:
    """Sets model.min_level / max_level (and the grid's anchors); returns them."""
    grid, multiscale = m.one(GRID) is not None, m.one(MULTISCALE) is not None
    if not fpn:
        if multiscale:
            m.refuse(MULTISCALE, "a feature extractor without FPN has one feature map: use "
                                 "grid_anchor_generator, or a *_fpn_keras feature extractor")
            return None
        return _grid_anchors(m)
    if grid:
        m.refuse(GRID, "an FPN feature extractor takes multiscale_anchor_generator")
        return None
    low, high = m.get(FE + "fpn.min_level", 3), m.get(FE + "fpn.max_level", 7)
    m.set("model.min_level", low, FE + "fpn")
    m.set("model.max_level", high, FE + "fpn")
    for name, level in (("min_level", low), ("max_level", high)):
        given = m.get(f"{MULTISCALE}.{name}")
        if given is not None and given != level:
            m.refuse(f"{MULTISCALE}.{name}", f"{given} differs from the feature extractor's "
                                             f"{level}; anchors must be on the FPN's levels")
    return low, high


def _crop_size(m: Mapper) -> None:
    crop = m.get(FR + "initial_crop_size")
    if crop is None:
        return
    stride = m.get(FR + "maxpool_stride") or 1
    m.set("model.roi_aligner.crop_size", max(1, crop // stride), FR + "initial_crop_size")


def _defaults(m: Mapper) -> None:
    """The proposals, and the OD API's defaults of the fields the file leaves out."""
    origin = FR + "first_stage_max_proposals"
    proposals = m.get(origin, 300)
    m.set("model.proposals.num_proposals", proposals, origin)
    m.set("model.proposals.test_num_proposals", proposals, origin)
    absent_defaults(m, FR[:-1], ODAPI_DEFAULTS)


def _initializers(m: Mapper, fpn: bool) -> None:
    """Sets model.initializers as the OD API's Keras Faster R-CNN draws its parts.
    With an FPN extractor: the FPN from the feature extractor's conv_hyperparams, the
    backbone too with override_base_feature_extractor_hyperparams, else from its
    ResNet's own. Without: the backbone from its ResNet's own (the OD API passes it no
    conv_hyperparams); our FPN, which stands in for none of its layers, keeps Model
    Garden's. The RPN head (its convolution and predictors) from
    first_stage_box_predictor_conv_hyperparams. The box classifier's class and box
    predictors glorot_uniform: the OD API's are Dense layers given no initializer
    (Keras' default), whatever fc_hyperparams say; so are its fully connected layers
    with an FPN extractor; without one, ours stand in for ResNet's last stage, which
    starts from ResNet's own."""
    origin, path = FE + "type", FE + "conv_hyperparams.initializer"
    if fpn:
        extractor = initializer(m, path)
        if extractor is not None:
            m.set("model.initializers.fpn", extractor, path)
        override = FE + "override_base_feature_extractor_hyperparams"
        if not m.get(override, False):
            m.set("model.initializers.backbone", KERAS_RESNET_INITIALIZER, origin)
        elif extractor is not None:
            m.set("model.initializers.backbone", extractor, override)
        m.set("model.initializers.detection_head", GLOROT_UNIFORM, origin)
    else:
        m.approx(path, "the OD API's extractors without FPN take no conv_hyperparams: "
                       "the backbone starts from its ResNet's own initializer, and the FPN "
                       "that stands in for its stride-16 features keeps Model Garden's")
        m.set("model.initializers.backbone", KERAS_RESNET_INITIALIZER, origin)
        m.set("model.initializers.detection_head", KERAS_RESNET_INITIALIZER, origin)
    m.set("model.initializers.detection_predictors", GLOROT_UNIFORM, origin)
    rpn = initializer(m, RPN + "initializer")
    if rpn is not None:
        m.set("model.initializers.rpn_head", rpn, RPN + "initializer")


def _rpn_norm(m: Mapper) -> None:
    """Notes where the RPN head's convolution differs from the OD API's: it is batch-
    normalised and ends in model.norm.activation, where the OD API's is batch-normalised
    only with a batch_norm in its conv_hyperparams and always ends in relu6."""
    if m.one(RPN[:-1]) is None:
        return
    notes = []
    if m.one(RPN + "batch_norm") is None:
        notes.append("no batch_norm: the RPN head's convolution is batch-normalised all "
                     "the same (model.norm)")
    activation = m.out.data.get("model", {}).get("norm", {}).get("activation")
    if activation != "relu6":
        notes.append("the OD API's RPN convolution ends in relu6 whatever its "
                     f"conv_hyperparams say, ours in model.norm.activation ({activation})")
    if notes:
        m.approx(RPN[:-1], "; ".join(notes))


def map_model(m: Mapper) -> None:
    """Maps the combined `model.faster_rcnn` fields (see the module docstring)."""
    m.set("model.architecture", "faster_rcnn", FR[:-1])
    fpn = _backbone(m)
    levels = _levels(m, fpn) if fpn is not None else None
    if levels is not None:
        input_size(m, levels[1], FR)
    # Where the feature extractor gives none: the OD API's Keras ResNet's.
    resnet = {"activation": "relu", "batch_norm.epsilon": 1e-5,
              "regularizer.l2_regularizer.weight": 0.0}
    norm(m, FE, predictors=(RPN,), defaults=resnet, l2_parts={RPN: ("rpn_head",)})
    # The OD API's Keras box classifier: Dense layers given no regulariser, whatever
    # fc_hyperparams say (and, without FPN, ResNet's last stage, which ours stand in
    # for, built with a weight decay of 0).
    for part in ("detection_head", "detection_predictors"):
        m.set(L2_BY_PART + part, 0.0, FE + "type")
    fc = m.one(MB + "fc_hyperparams")
    if fc is not None and fc.fields("batch_norm"):
        m.approx(MB + "fc_hyperparams", "its batch_norm: the OD API batch-normalises the box "
                                        "classifier's class and box outputs; ours are not")
    if fpn is not None:
        _initializers(m, fpn)
    _rpn_norm(m)
    _crop_size(m)
    _defaults(m)
    absent_defaults(m, FR + "second_stage_post_processing.batch_non_max_suppression",
                     NMS_ABSENT)
    m.approx(FR + "clip_anchors_to_image", CLIP_ANCHORS, absent_too=True)
    absent_defaults(m, FR + "first_stage_anchor_generator.multiscale_anchor_generator",
                    MULTISCALE_ABSENT)
