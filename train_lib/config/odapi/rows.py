"""The rows of the OD API mapping table (table.py) and the groups of rows that
several meta-architectures share (conv hyperparams, image resizers, multiscale
anchors, batch NMS), written once for any message prefix.

Each `Row` is one field path as written in a pipeline.config and its fate:

- `exact`: the same meaning under our key;
- `approximated`: the nearest thing Model Garden has; logged once, with why;
- `ignored`: harmless here; all of them are listed in one warning;
- `unsupported`: ignoring it would change what is trained; all of them are
  listed in one error.

`only` restricts a row to the values it holds for (`freeze_batchnorm` is exact
only when false); any other value is unsupported, with the row's `why`. `kind`
names the plain conversion of a scalar to `ours` (int, float, bool, str,
paths, floats); rows without it are computed from several fields
(ssd.py, shared.py, faster_rcnn.py, train.py).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["APPROX", "EXACT", "IGNORED", "ONE_NORM", "UNSUPPORTED", "Row", "hyperparams_rows",
           "multiscale_anchor_rows", "nms_rows", "resizer_rows"]

EXACT, APPROX, IGNORED, UNSUPPORTED = "exact", "approximated", "ignored", "unsupported"
ONE_NORM = "one norm/activation setting serves backbone, FPN and head"


@dataclass(frozen=True)
class Row:
    path: str
    status: str
    ours: str = ""
    why: str = ""
    only: tuple[str, ...] = ()  # the values (as written) the status holds for
    kind: str = ""  # int | float | bool | str | paths | floats: a plain conversion to `ours`


def hyperparams_rows(prefix: str, ours_too: bool, initializers: str = "",
                     l2_parts: str = "", tower_bias: str = "") -> list[Row]:
    """Rows of a conv_hyperparams block; `ours_too`: it sets our keys (else it is compared);
    `initializers`: the model.initializers keys its initializer sets (none: approximated);
    `l2_parts`: the model.loss.l2_weight_decay_by_part keys its L2 weight sets (a block
    compared with the feature extractor's; none: compared too); `tower_bias`: the key
    its force_use_bias sets (none: approximated)."""
    p = prefix + "conv_hyperparams."
    key = (lambda k: k) if ours_too else (lambda k: "")
    why = "" if ours_too else f"must agree with the feature extractor's: {ONE_NORM}"
    no_l2 = "absent (no regularizer): 0, no L2 loss, as the OD API's"

    def absent(default: str) -> str:
        """`why`, then what the OD API's message means where the block leaves it out."""
        return f"{why}; absent: {default}" if why else f"absent: {default}"

    return [
        Row(p + "activation", EXACT, key("model.norm.activation"),
            absent("RELU, the OD API's default"), only=("RELU_6", "RELU", "SWISH")),
        Row(p + "regularizer.l2_regularizer.weight", EXACT, l2_parts,
            "those parts' own L2 weight, as the OD API's (set where it differs from the "
            f"feature extractor's); {no_l2}")
        if l2_parts and not ours_too else
        Row(p + "regularizer.l2_regularizer.weight", EXACT, key("model.loss.l2_weight_decay"),
            no_l2 if ours_too else why),
        Row(p + "initializer", EXACT, initializers,
            "each of those parts' kernels is drawn from it, as the OD API's (a separable "
            "convolution's pointwise kernel: glorot_uniform, as the OD API's; a separable "
            "predictor's kernels: glorot_uniform); truncated_normal, random_normal, "
            "variance_scaling, keras_initializer_by_name: Keras' glorot, he, lecun "
            "(normal and uniform), variance_scaling, truncated_normal, random_normal, as "
            "Keras defines them; absent: "
            "glorot_uniform, Keras' default, which the OD API's layers given none take")
        if initializers else
        Row(p + "initializer", APPROX, "",
            "Model Garden's layers keep their own initializers (normal, stddev 0.01 in the "
            "head, as the OD API's; He/Glorot elsewhere)"),
        Row(p + "batch_norm.decay", EXACT, key("model.norm.norm_momentum"),
            absent("0.999, the OD API's default")),
        Row(p + "batch_norm.epsilon", EXACT, key("model.norm.norm_epsilon"),
            absent("0.001, the OD API's default (a Faster R-CNN feature extractor's: its "
                   "ResNet's 1e-5)")),
        Row(p + "batch_norm.scale", EXACT, "", "batch norm always scales (absent: the OD "
            "API's false, refused)", only=("true",)),
        Row(p + "batch_norm.center", EXACT, "", "batch norm always centers", only=("true",)),
        Row(p + "batch_norm.train", EXACT, "", "batch norm is always trained",
            only=("true",)),
        Row(p + "sync_batch_norm", EXACT, key("model.norm.use_sync_bn"), why,
            kind="bool" if ours_too else ""),
        Row(p + "force_use_bias", EXACT, tower_bias,
            "true, or no batch_norm: the tower's convolutions have a bias; false: none "
            "(each feeds a batch norm), as the OD API's; the predictors' always do")
        if tower_bias else
        Row(p + "force_use_bias", APPROX, "",
            "Model Garden decides per layer whether a conv before batch norm has a bias"),
        Row(p + "regularize_depthwise", IGNORED, "",
            "as by the OD API's TF2 models (its hyperparams builder does not read it): "
            "its Keras MobileNets "
            "regularise their depthwise kernels whatever it says, and so do ours "
            "(model.backbone.regularize_depthwise, set by the feature extractor's type); "
            "separable predictors and FPNs: see use_depthwise"),
        Row(p + "op", EXACT, "", "only convolutional hyperparams", only=("CONV",)),
    ]


def resizer_rows(prefix: str) -> list[Row]:
    """Rows of an `image_resizer` block under the meta-architecture `prefix`."""
    fixed = prefix + "image_resizer.fixed_shape_resizer."
    keep = prefix + "image_resizer.keep_aspect_ratio_resizer."
    return [
        Row(fixed + "height", APPROX, "model.input_size",
            "images are scaled keeping their aspect ratio and padded to input_size (the OD "
            "API stretches); rounded to a multiple of 2**min(max_level, 5)"),
        Row(fixed + "width", APPROX, "model.input_size", "as height"),
        Row(fixed + "resize_method", EXACT, "", "bilinear", only=("BILINEAR",)),
        Row(keep + "max_dimension", EXACT, "model.input_size",
            "scaled keeping the aspect ratio, padded to a square; rounded to a multiple of "
            "2**min(max_level, 5)"),
        Row(keep + "min_dimension", APPROX, "", "the longer side alone decides the scale"),
        Row(keep + "pad_to_max_dimension", EXACT, "", "inputs are padded to input_size",
            only=("true",)),
        Row(keep + "resize_method", EXACT, "", "bilinear", only=("BILINEAR",)),
    ]


def multiscale_anchor_rows(prefix: str) -> list[Row]:
    """Rows of a `multiscale_anchor_generator` block; `prefix` ends with its name and '.'."""
    return [
        Row(prefix + "min_level", EXACT, "model.min_level", "must equal the feature extractor's"),
        Row(prefix + "max_level", EXACT, "model.max_level", "must equal the feature extractor's"),
        Row(prefix + "anchor_scale", EXACT, "model.anchor.anchor_size", kind="float"),
        Row(prefix + "aspect_ratios", EXACT, "model.anchor.aspect_ratios", kind="floats"),
        Row(prefix + "scales_per_octave", EXACT, "model.anchor.num_scales",
            "absent: 2, the OD API's default", kind="int"),
        Row(prefix + "normalize_coordinates", EXACT, "",
            "anchors are in pixels internally; boxes come out normalised"),
    ]


def nms_rows(prefix: str) -> list[Row]:
    """Rows of a `batch_non_max_suppression` block; `prefix` is its post_processing's."""
    p = prefix + "batch_non_max_suppression."
    return [
        Row(p + "score_threshold", EXACT, "model.post_processing.score_threshold",
            "absent: 0.0, the OD API's default", kind="float"),
        Row(p + "iou_threshold", EXACT, "model.post_processing.iou_threshold",
            "absent: 0.6, the OD API's default", kind="float"),
        Row(p + "max_total_detections", EXACT, "model.post_processing.max_detections",
            kind="int"),
        Row(p + "max_detections_per_class", APPROX, "",
            "Model Garden's NMS keeps pre_nms_top_k candidates, then max_detections in all"),
        Row(p + "use_static_shapes", IGNORED, "", "an implementation choice"),
        Row(p + "use_combined_nms", IGNORED, "", "an implementation choice"),
        Row(p + "use_class_agnostic_nms", EXACT, "", "NMS is per class", only=("false",)),
        Row(p + "change_coordinate_frame", IGNORED, "", "boxes come out normalised to the image"),
    ]
