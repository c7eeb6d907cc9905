"""The `model.ssd` fields of a pipeline.config that combine into our `model` keys
(RetinaNet).

Called by pipeline.py after the plain fields are mapped: the backbone and levels
(from the feature extractor's type), its width (depth_multiplier), the anchors,
the input size, the one norm/activation setting, the head width, and the
box-loss scaling. Each approximation is noted with why; what cannot be honoured
is refused.
"""

from __future__ import annotations

import re

from train_lib.config.model_schema import MAX_LEVEL, FpnConfig
from train_lib.config.odapi.fields import SUPPORTED_EXTRACTORS
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

__all__ = ["map_model"]

M = "model.ssd."
FE = M + "feature_extractor."
SSD_ANCHORS = M + "anchor_generator.ssd_anchor_generator"
MULTISCALE = M + "anchor_generator.multiscale_anchor_generator."
PREDICTORS = tuple(f"{M}box_predictor.{p}.conv_hyperparams." for p in (
    "weight_shared_convolutional_box_predictor", "convolutional_box_predictor"))


def _backbone(m: Mapper) -> str:
    """Sets model.backbone from the feature extractor's type; returns the decoder kind."""
    kind = m.get(FE + "type", "")
    origin = FE + "type"
    fpn = _fpn(m)
    if match := re.fullmatch(r"ssd_resnet(50|101|152)_v1_fpn_keras", kind):
        m.set("model.backbone.type", "resnet", origin)
        pixel_normalization(m, "resnet", origin)
        m.set("model.backbone.model_id", match.group(1), origin)
        m.set("model.backbone.resnet_variant", "keras_v1", origin,
              f"the OD API's Keras ResNet-{match.group(1)} v1 (resnet_variant: keras_v1: the "
              f"same function, its checkpoints load exactly) with {fpn}")
        _width(m, fpn=True)
        return "fpn"
    if kind in ("ssd_mobilenet_v1_fpn_keras", "ssd_mobilenet_v2_fpn_keras"):
        version = "V1" if "v1" in kind else "V2"
        m.set("model.backbone.type", "mobilenet", origin)
        pixel_normalization(m, "mobilenet", origin)
        m.set("model.backbone.model_id", f"MobileNet{version}", origin,
              f"Model Garden's MobileNet{version} for the OD API's Keras MobileNet{version} "
              f"(the same layers, another implementation) with {fpn}")
        m.set("model.backbone.regularize_depthwise", True, origin)
        _width(m, fpn=True)
        return "fpn"
    if kind == "ssd_mobilenet_v2_keras":
        m.set("model.backbone.type", "mobilenet", origin)
        pixel_normalization(m, "mobilenet", origin)
        m.set("model.backbone.model_id", "MobileNetV2", origin,
              "Model Garden's MobileNetV2 with an FPN over levels 4 and up stands in for the "
              "OD API's SSD feature maps (stride 16 and 32 and extra stride-2 layers, no FPN)")
        m.set("model.backbone.regularize_depthwise", True, origin)
        _width(m, fpn=False)
        return "ssd"
    if match := re.fullmatch(r"ssd_efficientnet-(b[0-7])_bifpn_keras", kind):
        m.set("model.backbone.type", "efficientnet", origin)
        pixel_normalization(m, "efficientnet", origin)
        m.set("model.backbone.model_id", match.group(1), origin,
              f"Model Garden's EfficientNet-{match.group(1)} with swish inside "
              "squeeze-excitation and its levels at the OD API's layers (se_activation: "
              "swish, efficientnet_endpoints: odapi: the OD API's Keras EfficientNet's "
              "function, its checkpoints load exactly) with an FPN (Model Garden has no "
              "BiFPN: one top-down pass instead of repeated weighted BiFPN layers)")
        m.set("model.backbone.se_activation", "swish", origin)
        m.set("model.backbone.efficientnet_endpoints", "odapi", origin)
        if m.get(FE + "depth_multiplier", 1.0) != 1.0:
            m.refuse(FE + "depth_multiplier", "EfficientNet's width comes from b0..b7; only 1.0")
        return "bifpn"
    m.refuse(origin, f"feature extractor {kind!r} is not supported; supported: "
                     f"{', '.join(SUPPORTED_EXTRACTORS)}")
    return "none"


# The extractors whose FPN is the OD API's Keras FPN, which fpn.type: odapi builds;
# with use_depthwise (its separable 3x3s: use_separable_conv) MobileNetV2's only (the
# FPN-lite configs): the OD API's ResNet extractors refuse use_depthwise, and its
# MobileNet v1 one then narrows its backbone's last two layers too (512 and 256
# channels), which Model Garden's MobileNetV1 does not.
ODAPI_FPN_EXTRACTORS = re.compile(r"ssd_resnet(50|101|152)_v1_fpn_keras|"
                                  r"ssd_mobilenet_v(1|2)_fpn_keras")
ODAPI_DEPTHWISE_FPN_EXTRACTORS = re.compile(r"ssd_mobilenet_v2_fpn_keras")


def _fpn(m: Mapper) -> str:
    """Sets model.fpn.use_separable_conv from the feature extractor's use_depthwise, and
    model.fpn.type: odapi for the ODAPI_FPN_EXTRACTORS (with use_depthwise, those of
    ODAPI_DEPTHWISE_FPN_EXTRACTORS: the OD API's FPN with its separable 3x3s); returns
    which FPN it is, for the type's note."""
    path = FE + "use_depthwise"
    separable = bool(m.get(path, False))
    if m.one(path) is not None:
        m.set("model.fpn.use_separable_conv", separable, path)
    kind = m.get(FE + "type", "")
    odapi = ODAPI_DEPTHWISE_FPN_EXTRACTORS if separable else ODAPI_FPN_EXTRACTORS
    if not odapi.fullmatch(kind):
        return "Model Garden's separable FPN" if separable else "Model Garden's FPN"
    m.set("model.fpn.type", "odapi", FE + "type")
    if separable:
        return ("the OD API's depthwise FPN (fpn.type: odapi with use_separable_conv: "
                "the same function and parameters)")
    return "the OD API's FPN (fpn.type: odapi: the same function and parameters)"


def _width(m: Mapper, fpn: bool) -> None:
    """depth_multiplier scales the backbone's channels (MobileNet's alpha, ResNet's
    depth multiplier: model.backbone.width_multiplier; below 1, MobileNetV2's last
    layer too: scale_last_layer; MobileNet v1's twice, as the OD API's) and, as the OD API's FPN
    extractors do, the FPN's: max(int(additional_layer_depth * depth_multiplier),
    min_depth)."""
    path = FE + "depth_multiplier"
    if m.one(path) is None:
        return
    multiplier = float(m.get(path))
    if "mobilenet_v1" in m.get(FE + "type", ""):
        _mobilenet_v1_width(m, multiplier)
    else:
        m.set("model.backbone.width_multiplier", multiplier, path)
    if multiplier < 1.0 and "mobilenet_v2" in m.get(FE + "type", ""):
        # The OD API's MobileNetV2 narrows its last 1x1 conv (1280) too; Model Garden's
        # does so only with scale_last_layer.
        m.set("model.backbone.scale_last_layer", True, path)
    if fpn and multiplier != 1.0:
        depth = m.get(FE + "fpn.additional_layer_depth", 256)
        filters = max(int(depth * multiplier), m.get(FE + "min_depth", 0))
        m.set("model.fpn.num_filters", filters, path)


# The widths of MobileNet v1's stem and 13 pointwise convolutions (a depthwise one keeps
# its input's), before any multiplier.
MOBILENET_V1_FILTERS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)


def _mobilenet_v1_width(m: Mapper, multiplier: float) -> None:
    """The OD API's Keras MobileNet v1 scales each layer's width twice: the Keras
    application by alpha (int(filters * d)), then the OD API's layer override again
    (int(. * d), at least min_depth); Model Garden's MobileNetV1 once
    (max(8, round(filters * width_multiplier))). width_multiplier d * d gives the OD
    API's widths (for the published 1.0, for 0.75, and for 0.5 with min_depth <= 8);
    where they differ the note says which."""
    path = FE + "depth_multiplier"
    width = round(multiplier * multiplier, 6)
    min_depth = m.get(FE + "min_depth", 0) or 0
    theirs = [max(int(int(f * multiplier) * multiplier), min_depth) for f in
              MOBILENET_V1_FILTERS]
    ours = [max(8, int(f * width + 0.5)) for f in MOBILENET_V1_FILTERS]
    note = ""
    if theirs != ours:
        note = (f"the OD API's Keras MobileNet v1 has {sorted(set(theirs))} channels at "
                f"depth_multiplier {multiplier} (min_depth {min_depth}), Model Garden's "
                f"MobileNetV1 {sorted(set(ours))} at width_multiplier {width:g}: another "
                "width, its checkpoints do not load")
    m.set("model.backbone.width_multiplier", width, path, note)


def _levels(m: Mapper, decoder: str) -> tuple[int, int]:
    """Sets model.min_level / max_level; returns them."""
    if decoder in ("fpn", "bifpn"):
        block = FE + decoder
        low, high = m.get(block + ".min_level", 3), m.get(block + ".max_level", 7)
        m.set("model.min_level", low, block)
        m.set("model.max_level", high, block)
    elif decoder == "ssd":
        node = m.one(SSD_ANCHORS)
        layers = child_value(node, "num_layers", 6)
        low, high = 4, min(4 + layers - 1, MAX_LEVEL)
        note = (f"SSD's {layers} feature maps from stride 16 become levels {low}..{high}"
                + (f" (Model Garden's levels end at {MAX_LEVEL})" if 3 + layers > MAX_LEVEL
                   else ""))
        m.set("model.min_level", low, SSD_ANCHORS)
        m.set("model.max_level", high, SSD_ANCHORS, note)
    else:
        return 3, 5
    for name, level in (("min_level", low), ("max_level", high)):
        given = m.get(MULTISCALE + name)
        if given is not None and given != level:
            m.refuse(MULTISCALE + name, f"{given} differs from the feature extractor's {level}; "
                                        "anchors must be on the FPN's levels")
    return low, high


def _anchors(m: Mapper, min_level: int, image_height: int) -> None:
    node = m.one(SSD_ANCHORS)
    if node is None:
        return
    min_scale = child_value(node, "min_scale", 0.2)
    ratios = [float(r) for r in child_value(node, "aspect_ratios", [1.0, 2.0, 0.5, 3.0, 0.3333])]
    interpolated = child_value(node, "interpolated_scale_aspect_ratio", 1.0)
    size = round(min_scale * image_height / 2**min_level, 3)
    m.set("model.anchor.anchor_size", size, SSD_ANCHORS,
          f"min_scale {min_scale} of {image_height} px on level {min_level}")
    m.set("model.anchor.aspect_ratios", ratios, SSD_ANCHORS)
    m.set("model.anchor.num_scales", 2 if interpolated > 0 else 1, SSD_ANCHORS)


# The initializers of the OD API's Keras backbones when the feature extractor's
# conv_hyperparams do not override theirs (override_base_feature_extractor_hyperparams
# false), by the extractor type's prefix: its MobileNets' layer override's truncated
# normal, Keras' ResNet's variance scaling, its EfficientNet's.
BACKBONE_INITIALIZERS = {
    "ssd_mobilenet_": {"type": "truncated_normal", "mean": 0.0, "stddev": 0.09},
    "ssd_resnet": KERAS_RESNET_INITIALIZER,
    "ssd_efficientnet": {"type": "variance_scaling", "factor": 2.0, "mode": "fan_out",
                         "uniform": False},
}


def _initializers(m: Mapper) -> None:
    """Sets model.initializers: the FPN's from the feature extractor's conv_hyperparams;
    the backbone's from them too with override_base_feature_extractor_hyperparams, else
    (and always for EfficientNet, as the OD API's) the OD API's backbone's own; the
    head's towers and predictors from the box predictor's (a separable predictor's:
    glorot_uniform, which the OD API's SeparableConv2D heads get, as they ignore the
    kernel_initializer they are passed)."""
    path = FE + "conv_hyperparams.initializer"
    extractor = initializer(m, path)
    if extractor is not None:
        m.set("model.initializers.fpn", extractor, path)
    override = FE + "override_base_feature_extractor_hyperparams"
    kind = m.get(FE + "type", "")
    # The OD API's EfficientNet takes only the weight decay from the feature extractor's
    # conv_hyperparams, override or not: its kernels keep their own initializer.
    if m.get(override, False) and not kind.startswith("ssd_efficientnet"):
        if extractor is not None:
            m.set("model.initializers.backbone", extractor, override)
    else:
        for prefix, own in BACKBONE_INITIALIZERS.items():
            if kind.startswith(prefix):
                m.set("model.initializers.backbone", own, FE + "type")
    for hyperparams in PREDICTORS:
        predictor = hyperparams.removesuffix("conv_hyperparams.")
        path = hyperparams + "initializer"
        head = initializer(m, path) if m.one(predictor[:-1]) is not None else None
        if head is None:
            continue
        m.set("model.initializers.head", head, path)
        separable = m.get(predictor + "use_depthwise", False)
        m.set("model.initializers.predictors", GLOROT_UNIFORM if separable else head, path)
        if separable and "convolutional_box_predictor" in predictor \
                and "weight_shared" not in predictor:
            m.approx(path, "the OD API's depthwise class and box predictors end in a 1x1 "
                           "convolution drawn from it; ours are separable convolutions, "
                           "both of whose kernels start glorot_uniform")


# The L2 weight of the OD API's Keras EfficientNet (EfficientDet's backbone) unless
# override_base_feature_extractor_hyperparams gives it the feature extractor's: its
# builder's default weight_decay, 5e-6, a Keras L2 factor (applied as 5e-6 *
# sum(v**2)), so 1e-5 in the OD API's (and our) convention, which Keras' L2 is given
# halved.
EFFICIENTNET_L2_WEIGHT = 1e-5


def _backbone_l2(m: Mapper) -> None:
    """Sets the backbone's own L2 weight where the OD API's backbone has one: its
    EfficientNet's without override_base_feature_extractor_hyperparams."""
    override = FE + "override_base_feature_extractor_hyperparams"
    if m.get(FE + "type", "").startswith("ssd_efficientnet") and not m.get(override, False):
        m.set(L2_BY_PART + "backbone", EFFICIENTNET_L2_WEIGHT, FE + "type")


def _class_bias(m: Mapper) -> None:
    """Sets model.initializers.class_bias from the box predictor's
    class_prediction_bias_init, and to its default, 0.0, when the predictor does not
    give it (Model Garden's own, for a prior of 0.01, is -4.595)."""
    for hyperparams in PREDICTORS:
        predictor = hyperparams.removesuffix(".conv_hyperparams.")
        if m.one(predictor) is not None:
            path = predictor + ".class_prediction_bias_init"
            m.set("model.initializers.class_bias", float(m.get(path, 0.0)),
                  path if m.one(path) is not None else predictor)


def _tower_bias(m: Mapper) -> None:
    """Sets model.head.tower_conv_bias as the OD API's weight-shared predictor decides
    its tower's biases: none where its conv_hyperparams have a batch_norm, unless
    force_use_bias."""
    hp = M + "box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams."
    if m.one(hp[:-1]) is None:
        return
    forced, batch_norm = m.get(hp + "force_use_bias", False), m.one(hp + "batch_norm")
    origin = (hp + "force_use_bias" if forced else
              hp + "batch_norm" if batch_norm is not None else hp[:-1])
    m.set("model.head.tower_conv_bias", bool(forced or batch_norm is None), origin)


def _head(m: Mapper) -> None:
    cb = M + "box_predictor.convolutional_box_predictor."
    if m.one(cb[:-1]) is None:
        return
    m.set("model.head.num_convs", m.get(cb + "num_layers_before_predictor", 0),
          cb + "num_layers_before_predictor")
    # The OD API's layers before the predictor: max(min(input depth, max_depth), min_depth).
    fpn = m.out.data.get("model", {}).get("fpn", {}).get("num_filters", FpnConfig.num_filters)
    low, high = m.get(cb + "min_depth", 0), m.get(cb + "max_depth", 0)
    depth = max(min(fpn, high), low)
    if depth:
        m.set("model.head.num_filters", depth, cb + ("max_depth" if depth == high else
                                                     "min_depth"))
    m.approx(cb[:-1], "Model Garden's RetinaNet head shares its weights across levels (the "
                      "OD API's convolutional predictor has one per level)")


def _losses(m: Mapper) -> None:
    zeros = M + "encode_background_as_zeros"  # the proto's default: false
    if not m.get(zeros, False):
        m.approx(zeros, "Model Garden's class head has a background column 0, trained to 0 "
                        "for every anchor (the OD API trains it to 1 for negative anchors "
                        "with false)", absent_too=True)
    by_matches = M + "normalize_loss_by_num_matches"  # the proto's default: true
    m.set("model.loss.normalizer",
          "positives" if m.get(by_matches, True) else "none", by_matches)
    m.set("model.loss.class_loss_weight",
          float(m.get(M + "loss.classification_weight", 1.0)), M + "loss.classification_weight")
    focal = M + "loss.classification_loss.weighted_sigmoid_focal"
    if m.one(focal) is not None:
        if m.one(focal + ".alpha") is None:
            m.set("model.loss.focal_loss_alpha", 0.5, focal,
                  "no alpha: the OD API weighs positives and negatives alike; 0.5 does too "
                  "(at half the loss)")
        if m.one(focal + ".gamma") is None:
            m.set("model.loss.focal_loss_gamma", 2.0, focal)
    smooth = M + "loss.localization_loss.weighted_smooth_l1"
    if m.one(smooth) is None:
        return
    coder = M + "box_coder.faster_rcnn_box_coder"
    node = m.one(coder)
    if node is not None:
        # The OD API's box head learns the scaled codes: so does ours (the targets and
        # the decoding take the scales), rather than folding them into the loss, which
        # gives the same loss values but scales its gradients and learning rate.
        m.set("model.anchor.box_coder_weights", [float(child_value(node, n, d)) for n, d in (
            ("y_scale", 10.0), ("x_scale", 10.0), ("height_scale", 5.0),
            ("width_scale", 5.0))], coder)
    m.set("model.loss.huber_loss_delta", float(m.get(smooth + ".delta", 1.0)), smooth)
    per_code = 1.0 if m.get(M + "normalize_loc_loss_by_codesize", False) else 4.0
    # x 4 without normalize_loc_loss_by_codesize: Keras' Huber loss averages the 4 box
    # coordinates, the OD API then sums them.
    m.set("model.loss.box_loss_weight",
          round(float(m.get(M + "loss.localization_weight", 1.0)) * per_code, 6),
          M + "loss.localization_weight")


def map_model(m: Mapper) -> None:
    """Maps the combined `model.ssd` fields (see the module docstring)."""
    decoder = _backbone(m)
    min_level, max_level = _levels(m, decoder)
    height = input_size(m, max_level, M)
    _anchors(m, min_level, height)
    norm(m, FE, PREDICTORS, l2_parts={p: ("head", "predictors") for p in PREDICTORS})
    _backbone_l2(m)
    _initializers(m)
    _class_bias(m)
    _head(m)
    _tower_bias(m)
    _losses(m)
    absent_defaults(m, M + "post_processing.batch_non_max_suppression", NMS_ABSENT)
    absent_defaults(m, MULTISCALE[:-1], MULTISCALE_ABSENT)
    if m.one(M + "matcher.argmax_matcher") is not None and \
            m.one(M + "matcher.argmax_matcher.force_match_for_each_row") is None:
        m.approx(M + "matcher.argmax_matcher.force_match_for_each_row",
                 "the OD API's false leaves a box that no anchor matches above "
                 "matched_threshold unmatched; ours match every box to its best anchor (as "
                 "its true)", absent_too=True)
