"""The keys computed from the blocks both meta-architectures share: the image
resizer (model.input_size), the conv hyperparams (model.norm, the L2 weight and
the initializer) and the feature extractor's input normalisation (model.pixel_mean,
pixel_stddev). Their rows are rows.py's groups (the normalisation's: the feature
extractor's type row)."""

from __future__ import annotations

from typing import Any

from train_lib.config.model_schema import (
    IMAGENET_PIXEL_MEAN,
    IMAGENET_PIXEL_STDDEV,
    NormConfig,
    input_stride,
)
from train_lib.config.odapi.mapper import Mapper, child_value

__all__ = ["ACTIVATIONS", "GLOROT_UNIFORM", "KERAS_RESNET_INITIALIZER", "L2_BY_PART",
           "MULTISCALE_ABSENT", "NMS_ABSENT", "ODAPI_PIXEL_NORMALIZATION", "absent_defaults",
           "initializer", "input_size", "norm", "pixel_normalization"]

# Keras' default initializer, which the OD API's layers keep where they are given none
# or ignore the one given (SeparableConv2D, the box classifier's Dense layers).
GLOROT_UNIFORM = {"type": "glorot_uniform"}
# The OD API's Keras ResNet v1's own (SSD and Faster R-CNN alike):
# tf.variance_scaling_initializer()'s scale 1, fan_in, truncated normal.
KERAS_RESNET_INITIALIZER = {"type": "variance_scaling", "factor": 1.0, "mode": "fan_in",
                            "uniform": False}
# Each OD API feature extractor's preprocess (RGB pixels 0..255 to the backbone's input)
# as (model.pixel_mean, model.pixel_stddev), by backbone type: its MobileNets scale to
# [-1, 1] (2 / 255 x - 1); its ResNets subtract the VGG channel means and do not scale;
# its EfficientNets normalise with ImageNet's statistics, Model Garden's default.
ODAPI_PIXEL_NORMALIZATION = {
    "mobilenet": ([127.5] * 3, [127.5] * 3),
    "resnet": ([123.68, 116.779, 103.939], [1.0] * 3),
    "efficientnet": (list(IMAGENET_PIXEL_MEAN), list(IMAGENET_PIXEL_STDDEV)),
}


def pixel_normalization(m: Mapper, backbone_type: str, origin: str) -> None:
    """Sets model.pixel_mean and pixel_stddev to the preprocess of the OD API's feature
    extractor `origin` (its type) of `backbone_type`, so that its checkpoints see the
    inputs they were trained on."""
    mean, stddev = ODAPI_PIXEL_NORMALIZATION[backbone_type]
    m.set("model.pixel_mean", list(mean), origin)
    m.set("model.pixel_stddev", list(stddev), origin)


def _scaling(factor: float, mode: str, uniform: bool) -> dict:
    return {"type": "variance_scaling", "factor": factor, "mode": mode, "uniform": uniform}


# keras_initializer_by_name: the names Keras' initializers.get() takes that have a
# counterpart here, as tf_keras defines them (He, LeCun and Glorot are variance scaling
# with a truncated normal or uniform distribution; the normal ones have stddev 0.05).
KERAS_INITIALIZERS = {
    "glorot_uniform": GLOROT_UNIFORM,
    "glorot_normal": _scaling(1.0, "fan_avg", False),
    "he_normal": _scaling(2.0, "fan_in", False),
    "he_uniform": _scaling(2.0, "fan_in", True),
    "lecun_normal": _scaling(1.0, "fan_in", False),
    "lecun_uniform": _scaling(1.0, "fan_in", True),
    "variance_scaling": _scaling(1.0, "fan_in", False),
    "truncated_normal": {"type": "truncated_normal", "mean": 0.0, "stddev": 0.05},
    "random_normal": {"type": "random_normal", "mean": 0.0, "stddev": 0.05},
}
# Their class names, which Keras takes too (GlorotUniform, HeNormal, ...).
KERAS_INITIALIZERS |= {name.title().replace("_", ""): spec
                       for name, spec in KERAS_INITIALIZERS.items()}

ACTIVATIONS = {"RELU_6": "relu6", "RELU": "relu", "SWISH": "swish"}
# Our keys of a part's own L2 weight (model.loss.l2_weight_decay_by_part.<part>).
L2_BY_PART = "model.loss.l2_weight_decay_by_part."
_L2 = "regularizer.l2_regularizer.weight"


def input_size(m: Mapper, max_level: int, prefix: str) -> int:
    """Sets model.input_size from the image_resizer of the meta-architecture `prefix`,
    rounded to multiples of input_stride(max_level); returns the height."""
    stride = input_stride(max_level)
    fixed = prefix + "image_resizer.fixed_shape_resizer."
    keep = prefix + "image_resizer.keep_aspect_ratio_resizer."
    if m.one(fixed + "height") is not None or m.one(fixed[:-1]) is not None:
        size, origin = [m.get(fixed + "height", 300), m.get(fixed + "width", 300)], fixed + "height"
    elif m.one(keep[:-1]) is not None:
        side = m.get(keep + "max_dimension", 1024)
        size, origin = [side, side], keep + "max_dimension"
    else:
        return 128
    rounded = [max(stride, (s + stride // 2) // stride * stride) for s in size]
    note = (f"{size} rounded to {rounded}, multiples of {stride} (the backbone's deepest "
            "stride)"
            if rounded != size else "")
    m.set("model.input_size", rounded, origin, note)
    return size[0]


def _part_l2(m: Mapper, parts: tuple[str, ...], weight: float, base: float,
             origin: str) -> None:
    """Sets the L2 weight of each of `parts` (model.loss.l2_weight_decay_by_part) to
    `weight` where it differs from the model's, `base`."""
    if weight != base:
        for part in parts:
            m.set(L2_BY_PART + part, weight, origin)


def _absent_means(m: Mapper, hp: str) -> dict:
    """What the OD API's Hyperparams message means where the conv_hyperparams block `hp`
    (a prefix ending in '.') leaves a field out: RELU and no regulariser; in a
    batch_norm block, decay 0.999 and epsilon 0.001 (without one, no batch norm: noted
    by norm()). A batch_norm block without `scale` means none (no gamma), which is
    refused: ours always scale."""
    means = {"activation": "relu", _L2: 0.0}
    if m.one(hp + "batch_norm") is not None:
        means |= {"batch_norm.decay": 0.999, "batch_norm.epsilon": 0.001}
        if m.one(hp + "batch_norm.scale") is None:
            m.refuse(hp + "batch_norm", "no scale: the OD API's default, false, leaves out "
                                        "batch norm's gamma; ours always scale: set scale: "
                                        "true")
    return means


def norm(m: Mapper, fe: str, predictors: tuple[str, ...] = (),
         defaults: dict | None = None, l2_parts: dict[str, tuple[str, ...]] | None = None
         ) -> dict:
    """The conv_hyperparams of the feature extractor `fe` (a prefix ending in '.') set
    model.norm and the L2 weight; the `predictors`' conv_hyperparams (prefixes ending in
    '.') must agree with what is used (one setting serves all), else that is noted,
    but for their L2 weight where `l2_parts` names the parts it sets (by predictor
    prefix): that is those parts' own where it differs. What is used: the feature
    extractor's; for what it leaves out, `defaults` (by hyperparams field name), else
    what the OD API's message means then (_absent_means: no regulariser is an L2 weight
    of 0, as no activation is RELU); the same holds for a predictor's block that is
    given. Returns what the feature extractor set, by hyperparams field name."""
    hp = fe + "conv_hyperparams."
    keys = {"activation": "model.norm.activation", "batch_norm.decay": "model.norm.norm_momentum",
            "batch_norm.epsilon": "model.norm.norm_epsilon",
            _L2: "model.loss.l2_weight_decay"}
    ours = {}
    for name, key in keys.items():
        value = m.get(hp + name)
        if value is None:
            continue
        if name == "activation":
            value = ACTIVATIONS.get(value, value)
        else:
            value = float(value)
        ours[name] = value
        m.set(key, value, hp + name)
    absent = _absent_means(m, hp) | (defaults or {})
    origin = hp[:-1] if m.one(hp[:-1]) is not None else fe + "type"
    for name, value in absent.items():
        if name not in ours:
            m.set(keys[name], value, origin)
    if m.one(hp + "sync_batch_norm") is not None:  # set by its row (a bool)
        ours["sync_batch_norm"] = m.get(hp + "sync_batch_norm")
    if m.one(hp + "batch_norm") is None and m.one(hp[:-1]) is not None:
        m.approx(hp[:-1], "no batch_norm: batch norm is used all the same")
    used = {"activation": NormConfig.activation, "batch_norm.decay": NormConfig.norm_momentum,
            "batch_norm.epsilon": NormConfig.norm_epsilon,
            "sync_batch_norm": NormConfig.use_sync_bn} | absent | ours
    serves_all = "one norm/activation setting serves all (the feature extractor's " \
                 "conv_hyperparams)"
    for other in predictors:
        means = _absent_means(m, other) if m.one(other[:-1]) is not None else {}
        left_out = []  # the block's absent fields whose OD API meaning differs
        for name, value in used.items():
            theirs = m.get(other + name, means.get(name))
            if name == _L2 and other in (l2_parts or {}):
                if theirs is not None:
                    _part_l2(m, l2_parts[other], float(theirs), value, other + name)
                continue
            if name == "activation":
                theirs = ACTIVATIONS.get(theirs, theirs)
            if theirs is None or theirs == value:
                continue
            whose = "the feature extractor's" if name in ours else "the value used"
            if m.one(other + name) is not None:
                m.approx(other + name, f"{theirs} differs from {whose} {value}; {serves_all}")
            else:
                left_out.append(f"no {name}: the OD API's {theirs} differs from {whose} "
                                f"{value}")
        if left_out:
            m.approx(other[:-1], f"{'; '.join(left_out)}; {serves_all}")
    return ours


def initializer(m: Mapper, path: str) -> dict | None:
    """The OD API's `initializer` block at `path` (a conv_hyperparams.initializer) as a
    model.initializers entry, with the OD API's defaults for what it leaves out (mean
    0, stddev 1; factor 2, FAN_IN, not uniform); glorot_uniform when absent (the OD
    API's layers given no initializer take Keras' default); noted and None when its
    kind has no counterpart here (the part keeps Model Garden's initializer)."""
    node = m.one(path)
    if node is None:
        return GLOROT_UNIFORM
    for kind in node.children:
        if kind.name in ("truncated_normal_initializer", "random_normal_initializer"):
            return {"type": kind.name.removesuffix("_initializer"),
                    "mean": float(child_value(kind, "mean", 0.0)),
                    "stddev": float(child_value(kind, "stddev", 1.0))}
        if kind.name == "variance_scaling_initializer":
            mode = child_value(kind, "mode", "FAN_IN")
            modes = ("FAN_IN", "FAN_OUT", "FAN_AVG")  # the enum's names, by number too
            mode = modes[mode] if isinstance(mode, int) and 0 <= mode < len(modes) else mode
            # Text format's booleans: true / t / 1 (and false / f / 0).
            uniform = child_value(kind, "uniform", False) in (True, "t", 1)
            return {"type": "variance_scaling",
                    "factor": float(child_value(kind, "factor", 2.0)),
                    "mode": str(mode).lower(), "uniform": uniform}
        if kind.name == "keras_initializer_by_name" and \
                child_value(node, kind.name, "") in KERAS_INITIALIZERS:
            return dict(KERAS_INITIALIZERS[child_value(node, kind.name, "")])
    m.approx(path, "only truncated_normal_initializer, random_normal_initializer, "
                   "variance_scaling_initializer and keras_initializer_by_name: "
                   f"{', '.join(n for n in sorted(KERAS_INITIALIZERS) if n.islower())} "
                   "(or their class names) map; this part keeps Model Garden's initializer")
    return None


# The fields of a message whose OD API default differs from our key's, with that
# default: (field, our key, the OD API's default). Where the message is given but
# leaves the field out, the OD API's default holds (absent_defaults).
NMS_ABSENT = (("score_threshold", "model.post_processing.score_threshold", 0.0),
              ("iou_threshold", "model.post_processing.iou_threshold", 0.6))
MULTISCALE_ABSENT = (("scales_per_octave", "model.anchor.num_scales", 2),)


def absent_defaults(m: Mapper, block: str, fields: tuple[tuple[str, str, Any], ...]) -> None:
    """When the message `block` (its field path) is given: each of `fields` (as
    NMS_ABSENT) it leaves out sets our key to the OD API's default, not ours."""
    if m.one(block) is None:
        return
    for name, key, default in fields:
        if m.one(f"{block}.{name}") is None:
            m.set(key, default, block)
