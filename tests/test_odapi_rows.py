"""Every row of the OD API mapping table (train_lib/config/odapi/table.py) is tested by
what it does.

For each row marked exact or approximated that names our key (or has a conversion
kind), the field is written with a value that is neither its default nor the base's
into a minimal valid pipeline.config of its meta-architecture (in its message's
context: the extractor, predictor, resizer, anchors, optimizer or schedule the field
belongs to), and the loaded PipelineConfig must differ from the one without that value
under the row's keys, and only there. A row with `only` must refuse another value with
a ConfigError naming the field. An approximated row that names no key must say so in
the log. Exact rows with no key and no `only` are statements ("IoU") and are counted.

The probes below give each field a legal value; a new row without one fails
`test_every_row_is_probed` until it gets one. The mapping tests are pure Python; two
tests build a handful of tiny models (64 px, RetinaNet and Faster R-CNN) to check that
structural rows change the Model Garden model itself (its parameter count).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

import pytest

from train_lib.config import ConfigError, load_config
from train_lib.config.odapi import map_pipeline_config
from train_lib.config.odapi.table import APPROX, EXACT, ROWS, Row
from train_lib.config.schema import to_dict

SSD = "model.ssd."
FR = "model.faster_rcnn."
FE = SSD + "feature_extractor."
FRFE = FR + "feature_extractor."
WS = SSD + "box_predictor.weight_shared_convolutional_box_predictor"
CB = SSD + "box_predictor.convolutional_box_predictor"
OPT = "train_config.optimizer."
AUG = "train_config.data_augmentation_options."

# A minimal valid pipeline.config of each meta-architecture, as nested fields:
# a dict is a message, a list of values a repeated scalar, a str a value as written.
COMMON = {
    "train_config": {
        "batch_size": "2", "num_steps": "100",
        "optimizer": {"momentum_optimizer": {"learning_rate": {"cosine_decay_learning_rate": {
            "learning_rate_base": "0.01", "total_steps": "100", "warmup_steps": "10"}}}},
    },
    "train_input_reader": {"label_map_path": '"data/label_map.pbtxt"',
                           "tf_record_input_reader": {"input_path": '"data/train.tfrecord"'}},
    "eval_config": {"batch_size": "1"},
    "eval_input_reader": {"label_map_path": '"data/label_map.pbtxt"',
                          "tf_record_input_reader": {"input_path": '"data/val.tfrecord"'}},
}
SSD_BASE = {
    "model": {"ssd": {
        "num_classes": "3",
        "image_resizer": {"fixed_shape_resizer": {"height": "256", "width": "256"}},
        "feature_extractor": {"type": "'ssd_resnet50_v1_fpn_keras'",
                              "fpn": {"min_level": "3", "max_level": "7"}},
        "box_coder": {"faster_rcnn_box_coder": {}},
        "matcher": {"argmax_matcher": {}},
        "similarity_calculator": {"iou_similarity": {}},
        "anchor_generator": {"multiscale_anchor_generator": {}},
        "box_predictor": {"weight_shared_convolutional_box_predictor": {}},
        "loss": {"classification_loss": {"weighted_sigmoid_focal": {}},
                 "localization_loss": {"weighted_smooth_l1": {}}},
        "post_processing": {"batch_non_max_suppression": {}, "score_converter": "SIGMOID"},
    }},
    **COMMON,
}
FASTER_RCNN_BASE = {
    "model": {"faster_rcnn": {
        "num_classes": "3",
        "image_resizer": {"keep_aspect_ratio_resizer": {
            "min_dimension": "256", "max_dimension": "256", "pad_to_max_dimension": "true"}},
        "feature_extractor": {"type": "'faster_rcnn_resnet50_fpn_keras'",
                              "fpn": {"min_level": "3", "max_level": "7"}},
        "first_stage_anchor_generator": {"multiscale_anchor_generator": {}},
        "second_stage_box_predictor": {"mask_rcnn_box_predictor": {}},
        "second_stage_post_processing": {"batch_non_max_suppression": {},
                                         "score_converter": "SOFTMAX"},
        "second_stage_classification_loss": {"weighted_softmax": {}},
    }},
    **COMMON,
}

# The message a field needs around it, by path prefix (the longest one applies): path ->
# value, applied to the config with and without the probed field alike. A value of None
# removes the field.
CONTEXTS: dict[str, dict[str, object]] = {
    **{fe + "override_base_feature_extractor_hyperparams": {
        fe + "conv_hyperparams": {"initializer": {
            "random_normal_initializer": {"stddev": "0.05"}}}} for fe in (FE, FRFE)},
    FE + "bifpn.": {FE + "type": "'ssd_efficientnet-b0_bifpn_keras'", FE + "fpn": None,
                    FE + "bifpn": {"min_level": "3", "max_level": "7"}},
    CB + ".": {WS: None, CB: {}},
    WS + ".conv_hyperparams.force_use_bias": {
        WS + ".conv_hyperparams.batch_norm": {"scale": "true"}},
    SSD + "anchor_generator.ssd_anchor_generator": {
        FE + "type": "'ssd_mobilenet_v2_keras'", FE + "fpn": None,
        SSD + "anchor_generator": {"ssd_anchor_generator": {}}},
    SSD + "image_resizer.keep_aspect_ratio_resizer.": {
        SSD + "image_resizer": {"keep_aspect_ratio_resizer": {}}},
    FR + "image_resizer.fixed_shape_resizer.": {
        FR + "image_resizer": {"fixed_shape_resizer": {}}},
    FR + "first_stage_anchor_generator.grid_anchor_generator": {
        FRFE + "type": "'faster_rcnn_resnet50_keras'", FRFE + "fpn": None,
        FR + "first_stage_anchor_generator": {"grid_anchor_generator": {}}},
    FR + "maxpool_stride": {FR + "initial_crop_size": "14"},
    # A batch_norm block says scale: true (the OD API's default, false, is refused).
    **{hp + "conv_hyperparams.batch_norm.": {hp + "conv_hyperparams.batch_norm.scale": "true"}
       for hp in (FE, FRFE, WS + ".", FR + "first_stage_box_predictor_")},
    CB + ".conv_hyperparams.batch_norm.": {WS: None, CB: {"conv_hyperparams": {
        "batch_norm": {"scale": "true"}}}},
    OPT + "adam_optimizer.": {OPT + "momentum_optimizer": None, OPT + "adam_optimizer": {
        "learning_rate": {"cosine_decay_learning_rate": {
            "learning_rate_base": "0.01", "total_steps": "100", "warmup_steps": "10"}}}},
    **{f"{OPT}{o}.learning_rate.{schedule}.": {
        OPT + "momentum_optimizer": None, OPT + "adam_optimizer": None,
        f"{OPT}{o}.learning_rate": {schedule: fields}}
       for o in ("momentum_optimizer", "adam_optimizer") for schedule, fields in (
        ("constant_learning_rate", {}),
        ("exponential_decay_learning_rate", {"initial_learning_rate": "0.01",
                                             "decay_steps": "50", "burnin_steps": "10"}),
        ("manual_step_learning_rate", {"initial_learning_rate": "0.01", "schedule": {
            "step": "50", "learning_rate": "0.001"}}))},
}


@dataclass(frozen=True)
class Probe:
    """A legal value of a field that is neither its default nor the base's (as written),
    `with_` the other fields that must change with it (a row that must agree with
    another field: alone it is refused), and `expect`, our values it must give."""

    value: object
    with_: dict = field(default_factory=dict)
    expect: dict = field(default_factory=dict)


# Probes by the path's tail (the part after the meta-architecture or section), then by
# the row's conversion kind.
_GENERIC = {"int": "7", "float": "0.37", "bool": "true", "str": '"probe/value"',
            "paths": ["'probe/a.tfrecord'", "'probe/b.tfrecord'"], "floats": ["1.5", "0.7"]}
_CONVERTED = {"7": 7, "0.37": 0.37, "true": True, '"probe/value"': "probe/value",
              "1.5": 1.5, "0.7": 0.7, "'probe/a.tfrecord'": "probe/a.tfrecord",
              "'probe/b.tfrecord'": "probe/b.tfrecord"}
_LR = "learning_rate."
# The feature extractor's initializer rows of both meta-architectures, by the tail
# after `feature_extractor.`.
_EXTRACTOR_INITIALIZER_PROBES = {
    "conv_hyperparams.initializer": Probe(
        {"random_normal_initializer": {"stddev": "0.05"}}, expect={
            "model.initializers.fpn.type": "random_normal",
            "model.initializers.fpn.stddev": 0.05}),
    # With an initializer in the feature extractor's conv_hyperparams (CONTEXTS).
    "override_base_feature_extractor_hyperparams": Probe(
        "true", expect={"model.initializers.backbone.type": "random_normal",
                        "model.initializers.backbone.stddev": 0.05}),
}
PROBES: dict[str, Probe] = {
    # ssd
    "ssd.feature_extractor.type": Probe("'ssd_mobilenet_v1_fpn_keras'", expect={
        "model.backbone.model_id": "MobileNetV1", "model.backbone.regularize_depthwise": True}),
    "ssd.feature_extractor.depth_multiplier": Probe("0.5", expect={
        "model.backbone.width_multiplier": 0.5, "model.fpn.num_filters": 128,
        "model.backbone.scale_last_layer": False}),
    "ssd.feature_extractor.fpn.min_level": Probe("4", expect={"model.min_level": 4}),
    "ssd.feature_extractor.fpn.max_level": Probe("6", expect={"model.max_level": 6}),
    "ssd.feature_extractor.bifpn.min_level": Probe("4", expect={"model.min_level": 4}),
    "ssd.feature_extractor.bifpn.max_level": Probe("6", expect={"model.max_level": 6}),
    # The base's ResNet FPN is the OD API's FPN; separable, it is Model Garden's.
    "ssd.feature_extractor.use_depthwise": Probe(
        "true", expect={"model.fpn.use_separable_conv": True, "model.fpn.type": "fpn"}),
    "ssd.feature_extractor.conv_hyperparams.activation": Probe(
        "RELU_6", expect={"model.norm.activation": "relu6"}),
    "ssd.feature_extractor.conv_hyperparams.regularizer.l2_regularizer.weight": Probe(
        "0.37", expect={"model.loss.l2_weight_decay": 0.37}),
    "ssd.feature_extractor.conv_hyperparams.batch_norm.decay": Probe(
        "0.37", expect={"model.norm.norm_momentum": 0.37}),
    "ssd.feature_extractor.conv_hyperparams.batch_norm.epsilon": Probe(
        "0.37", expect={"model.norm.norm_epsilon": 0.37}),
    **{f"{meta}.feature_extractor.{tail}": probe for meta in ("ssd", "faster_rcnn")
       for tail, probe in _EXTRACTOR_INITIALIZER_PROBES.items()},
    **{f"ssd.box_predictor.{predictor}.class_prediction_bias_init": Probe(
        "-4.6", expect={"model.initializers.class_bias": -4.6})
       for predictor in ("weight_shared_convolutional_box_predictor",
                         "convolutional_box_predictor")},
    "ssd.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams."
    "initializer": Probe({"truncated_normal_initializer": {"mean": "0.1", "stddev": "0.02"}},
                         expect={"model.initializers.head.type": "truncated_normal",
                                 "model.initializers.head.mean": 0.1,
                                 "model.initializers.predictors.stddev": 0.02}),
    "ssd.box_predictor.convolutional_box_predictor.conv_hyperparams.initializer": Probe(
        {"variance_scaling_initializer": {"factor": "1.0", "mode": "FAN_AVG",
                                          "uniform": "true"}},
        expect={"model.initializers.head.type": "variance_scaling",
                "model.initializers.head.factor": 1.0, "model.initializers.head.mode": "fan_avg",
                "model.initializers.predictors.uniform": True}),
    **{f"ssd.box_predictor.{predictor}.conv_hyperparams.regularizer.l2_regularizer.weight":
       Probe("0.37", expect={"model.loss.l2_weight_decay_by_part.head": 0.37,
                             "model.loss.l2_weight_decay_by_part.predictors": 0.37})
       for predictor in ("weight_shared_convolutional_box_predictor",
                         "convolutional_box_predictor")},
    # With a batch_norm (CONTEXTS) the predictor's tower has no biases, unless forced.
    "ssd.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams."
    "force_use_bias": Probe("true", expect={"model.head.tower_conv_bias": True}),
    "ssd.box_predictor.convolutional_box_predictor.max_depth": Probe(
        "64", expect={"model.head.num_filters": 64}),
    "ssd.box_predictor.convolutional_box_predictor.min_depth": Probe(
        "512", expect={"model.head.num_filters": 512}),
    "ssd.anchor_generator.multiscale_anchor_generator.min_level": Probe(
        "4", with_={FE + "fpn.min_level": "4"}, expect={"model.min_level": 4}),
    "ssd.anchor_generator.multiscale_anchor_generator.max_level": Probe(
        "6", with_={FE + "fpn.max_level": "6"}, expect={"model.max_level": 6}),
    "ssd.anchor_generator.ssd_anchor_generator": Probe({"min_scale": "0.3"}),
    "ssd.image_resizer.fixed_shape_resizer.height": Probe(
        "128", expect={"model.input_size": [128, 256]}),
    "ssd.image_resizer.fixed_shape_resizer.width": Probe(
        "128", expect={"model.input_size": [256, 128]}),
    "ssd.image_resizer.keep_aspect_ratio_resizer.max_dimension": Probe(
        "512", expect={"model.input_size": [512, 512]}),
    "ssd.normalize_loc_loss_by_codesize": Probe("true"),
    "ssd.normalize_loss_by_num_matches": Probe("false",
                                               expect={"model.loss.normalizer": "none"}),
    "ssd.box_coder.faster_rcnn_box_coder": Probe(
        {"y_scale": "5.0"}, expect={"model.anchor.box_coder_weights": [5.0, 10.0, 5.0, 5.0]}),
    "ssd.matcher.argmax_matcher.matched_threshold": Probe(
        "0.6", expect={"model.anchor.match_threshold": 0.6}),
    "ssd.matcher.argmax_matcher.unmatched_threshold": Probe(
        "0.3", expect={"model.anchor.unmatched_threshold": 0.3}),
    "ssd.loss.localization_loss.weighted_smooth_l1.delta": Probe(
        "0.5", expect={"model.loss.huber_loss_delta": 0.5}),
    "ssd.loss.classification_weight": Probe("2.0"),
    "ssd.loss.localization_weight": Probe("2.0"),
    # faster_rcnn
    "faster_rcnn.feature_extractor.type": Probe(
        "'faster_rcnn_resnet101_fpn_keras'", expect={"model.backbone.model_id": "101"}),
    "faster_rcnn.feature_extractor.fpn.min_level": Probe("4", expect={"model.min_level": 4}),
    "faster_rcnn.feature_extractor.fpn.max_level": Probe("6", expect={"model.max_level": 6}),
    "faster_rcnn.feature_extractor.conv_hyperparams.activation": Probe(
        "RELU_6", expect={"model.norm.activation": "relu6"}),
    "faster_rcnn.feature_extractor.conv_hyperparams.regularizer.l2_regularizer.weight":
        Probe("0.37", expect={"model.loss.l2_weight_decay": 0.37}),
    "faster_rcnn.feature_extractor.conv_hyperparams.batch_norm.decay": Probe(
        "0.37", expect={"model.norm.norm_momentum": 0.37}),
    "faster_rcnn.feature_extractor.conv_hyperparams.batch_norm.epsilon": Probe(
        "0.37", expect={"model.norm.norm_epsilon": 0.37}),
    "faster_rcnn.first_stage_box_predictor_conv_hyperparams.regularizer.l2_regularizer."
    "weight": Probe("0.37", expect={"model.loss.l2_weight_decay_by_part.rpn_head": 0.37}),
    "faster_rcnn.first_stage_box_predictor_conv_hyperparams.initializer": Probe(
        {"truncated_normal_initializer": {"stddev": "0.02"}}, expect={
            "model.initializers.rpn_head.type": "truncated_normal",
            "model.initializers.rpn_head.stddev": 0.02}),
    "faster_rcnn.first_stage_anchor_generator.multiscale_anchor_generator.min_level": Probe(
        "4", with_={FRFE + "fpn.min_level": "4"}, expect={"model.min_level": 4}),
    "faster_rcnn.first_stage_anchor_generator.multiscale_anchor_generator.max_level": Probe(
        "6", with_={FRFE + "fpn.max_level": "6"}, expect={"model.max_level": 6}),
    "faster_rcnn.first_stage_anchor_generator.grid_anchor_generator": Probe(
        {"scales": ["0.5", "1.0"]}),
    # The other side is the OD API's default 300, rounded to a multiple of 32.
    "faster_rcnn.image_resizer.fixed_shape_resizer.height": Probe(
        "128", expect={"model.input_size": [128, 288]}),
    "faster_rcnn.image_resizer.fixed_shape_resizer.width": Probe(
        "128", expect={"model.input_size": [288, 128]}),
    "faster_rcnn.image_resizer.keep_aspect_ratio_resizer.max_dimension": Probe(
        "512", expect={"model.input_size": [512, 512]}),
    "faster_rcnn.first_stage_max_proposals": Probe("100", expect={
        "model.proposals.num_proposals": 100, "model.proposals.test_num_proposals": 100}),
    "faster_rcnn.initial_crop_size": Probe("28", expect={"model.roi_aligner.crop_size": 28}),
    "faster_rcnn.maxpool_stride": Probe("2", expect={"model.roi_aligner.crop_size": 7}),
    # train_config
    "fine_tune_checkpoint_type": Probe('"detection"', expect={
        "train_config.fine_tune_checkpoint_type": "detection"}),
    "from_detection_checkpoint": Probe("true", expect={
        "train_config.fine_tune_checkpoint_type": "detection"}),
    "use_bfloat16": Probe("true", expect={
        "train_config.mixed_precision": "mixed_bfloat16_on_tpu"}),
    _LR + "constant_learning_rate.learning_rate": Probe("0.37"),
    _LR + "cosine_decay_learning_rate.learning_rate_base": Probe("0.37"),
    _LR + "cosine_decay_learning_rate.warmup_learning_rate": Probe("0.001"),
    _LR + "cosine_decay_learning_rate.warmup_steps": Probe("7"),
    _LR + "exponential_decay_learning_rate.initial_learning_rate": Probe("0.37"),
    _LR + "exponential_decay_learning_rate.decay_steps": Probe("30", expect={
        "train_config.learning_rate.boundaries": [30, 60, 90]}),
    _LR + "exponential_decay_learning_rate.decay_factor": Probe("0.37"),
    _LR + "exponential_decay_learning_rate.burnin_learning_rate": Probe("0.001"),
    _LR + "exponential_decay_learning_rate.burnin_steps": Probe("20"),
    _LR + "manual_step_learning_rate.initial_learning_rate": Probe("0.02"),
    _LR + "manual_step_learning_rate.schedule.step": Probe("70", expect={
        "train_config.learning_rate.boundaries": [70]}),
    _LR + "manual_step_learning_rate.schedule.learning_rate": Probe("0.002"),
    _LR + "manual_step_learning_rate.warmup": Probe("true", expect={
        "train_config.learning_rate.warmup_steps": 50}),
    "random_horizontal_flip": Probe({}, expect={
        "train_config.augmentation.random_horizontal_flip": True}),
    "random_scale_crop_and_pad_to_square.scale_min": Probe("0.5", expect={
        "train_config.augmentation.scale_min": 0.5}),
    "random_scale_crop_and_pad_to_square.scale_max": Probe("3.0", expect={
        "train_config.augmentation.scale_max": 3.0}),
    "random_image_scale": Probe({"min_scale_ratio": "0.8", "max_scale_ratio": "1.5"}),
    "ssd_random_crop": Probe({}),
    "random_crop_image": Probe({"min_area": "0.25"}, expect={
        "train_config.augmentation.scale_max": 1.6667}),
    # input readers
    "shuffle": Probe("false"),
}
# Values outside a row's `only`, by the allowed values.
REFUSED = {("false",): "true", ("true",): "false", ("1", "1.0"): "2.0", ("0", "0.0"): "0.5",
           ("0",): "5", ("1",): "2", ("0", "1"): "3", ("3",): "5", ("4",): "5", ("2",): "1",
           ("16",): "8",
           ("CONV",): "FC",
           ("BILINEAR",): "NEAREST_NEIGHBOR", ("IDENTITY",): "SIGMOID",
           ("SIGMOID",): "SOFTMAX", ("SOFTMAX",): "SIGMOID", ("V2",): "V1",
           ("RELU_6", "RELU", "SWISH"): "NONE",
           ("coco_detection_metrics",): '"pascal_voc_detection_metrics"',
           ("TF_EXAMPLE", "INPUT_DEFAULT"): "TF_SEQUENCE_EXAMPLE"}


def _tail(path: str) -> str:
    """The key of PROBES for `path`: the tail after the model prefix or the section."""
    if path.startswith("model."):
        return path.removeprefix("model.")
    for marker in (OPT + "momentum_optimizer.", OPT + "adam_optimizer.", AUG, "train_config.",
                   "train_input_reader.", "eval_input_reader.", "eval_config."):
        if path.startswith(marker):
            return path.removeprefix(marker)
    return path


def _base(path: str) -> dict:
    return copy.deepcopy(FASTER_RCNN_BASE if path.startswith(FR) else SSD_BASE)


def _set(tree: dict, path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    for name in parents:
        tree = tree.setdefault(name, {})
    if value is None:
        tree.pop(leaf, None)
    else:
        tree[leaf] = copy.deepcopy(value)


def _context(path: str) -> dict:
    """The base of `path`'s meta-architecture in `path`'s context, its parent message
    present."""
    tree = _base(path)
    prefixes = [p for p in CONTEXTS if path.startswith(p)]
    if prefixes:
        for key, value in CONTEXTS[max(prefixes, key=len)].items():
            _set(tree, key, value)
    parent, node = path.rsplit(".", 1)[0], tree
    for name in parent.split("."):
        node = node.setdefault(name, {})
    return tree


def _text(tree: dict, indent: int = 0) -> str:
    pad, lines = "  " * indent, []
    for name, value in tree.items():
        if isinstance(value, dict):
            lines += [f"{pad}{name} {{", _text(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list):
            lines.append(f"{pad}{name}: [{', '.join(value)}]")
        else:
            lines.append(f"{pad}{name}: {value}")
    return "\n".join(line for line in lines if line)


def _load(tree: dict, tmp_path, name: str = "pipeline.config"):
    path = tmp_path / name
    path.write_text(_text(tree) + "\n")
    return load_config(str(path))


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        out.update(_flat(value, path + ".") if isinstance(value, dict) else {path: value})
    return out


def _keys(row: Row) -> list[str]:
    """Our keys a row names ("a.b, a.c"; "x.scale_min/max" is two)."""
    keys = []
    for key in row.ours.split(", "):
        if key.endswith("_min/max"):
            keys += [key.removesuffix("/max"), key.removesuffix("_min/max") + "_max"]
        else:
            keys.append(key)
    return keys


def _under(key: str, ours: list[str]) -> bool:
    return any(key == o or key.startswith(o + ".") for o in ours)


EFFECT_ROWS = [r for r in ROWS if r.status in (EXACT, APPROX) and (r.ours or r.kind)]
ONLY_ROWS = [r for r in ROWS if r.status in (EXACT, APPROX) and r.only]
NOTED_ROWS = [r for r in ROWS if r.status == APPROX and not (r.ours or r.kind or r.only)]
STATEMENT_ROWS = [r for r in ROWS if r.status == EXACT and not (r.ours or r.kind or r.only)]


def _probe(row: Row) -> Probe | None:
    probe = PROBES.get(_tail(row.path))
    if probe is None and row.kind:
        value = _GENERIC[row.kind]
        converted = ([_CONVERTED[v] for v in value] if isinstance(value, list)
                     else _CONVERTED[value])
        probe = Probe(value, expect={row.ours: converted})
    return probe


def _category(row: Row) -> str:
    if row in EFFECT_ROWS:
        return "effect"
    return "only" if row in ONLY_ROWS else "noted" if row in NOTED_ROWS else "statement"


def test_every_row_is_probed():
    """Every row that claims an effect has a probe; the rows are counted by what is
    checked (run with -s to see the counts)."""
    assert all(r.ours or not r.kind for r in ROWS), [r.path for r in ROWS if r.kind
                                                     and not r.ours]
    missing = [r.path for r in EFFECT_ROWS if _probe(r) is None]
    assert not missing, f"add a probe (PROBES) for: {missing}"
    missing = [r.path for r in NOTED_ROWS if r.path.rsplit(".", 1)[1] not in NOTED_VALUES]
    assert not missing, f"add a value (NOTED_VALUES) for: {missing}"
    counts = Counter((r.status, _category(r)) for r in ROWS if r.status in (EXACT, APPROX))
    print("rows checked:", dict(counts), "of", len(ROWS))
    assert counts[(EXACT, "effect")] + counts[(APPROX, "effect")] == len(EFFECT_ROWS)


@pytest.mark.parametrize("row", EFFECT_ROWS, ids=lambda r: r.path)
def test_row_changes_our_config_as_it_says(row, tmp_path):
    probe = _probe(row)
    without = _context(row.path)
    given = copy.deepcopy(without)
    for key, value in probe.with_.items():
        _set(given, key, value)
    _set(given, row.path, probe.value)
    before = _flat(to_dict(_load(without, tmp_path, "without.config")))
    after = _flat(to_dict(_load(given, tmp_path, "with.config")))
    changed = sorted(k for k in after if after[k] != before.get(k))
    ours = _keys(row)
    assert changed, f"{row.path}: {probe.value} changes nothing (the row says {row.ours})"
    assert all(_under(k, ours) for k in changed), (
        f"{row.path} changed {changed}; the row names {ours}")
    for key, value in probe.expect.items():
        assert after[key] == value, (key, after[key], value)
    if probe.with_:  # alone, a value that disagrees with its companion is refused
        alone = copy.deepcopy(without)
        _set(alone, row.path, probe.value)
        with pytest.raises(ConfigError, match=row.path.replace(".", r"\.")):
            _load(alone, tmp_path, "alone.config")


@pytest.mark.parametrize("row", ONLY_ROWS, ids=lambda r: r.path)
def test_row_only_refuses_other_values(row, tmp_path):
    tree = _context(row.path)
    _set(tree, row.path, row.only[0])
    _load(tree, tmp_path, "allowed.config")  # the allowed value loads
    _set(tree, row.path, REFUSED[row.only])
    with pytest.raises(ConfigError) as err:
        _load(tree, tmp_path, "refused.config")
    assert f"{row.path}: {REFUSED[row.only].strip(chr(34))}" in str(err.value)


# A legal value of each approximated row that names no key, by the field's name.
NOTED_VALUES = {
    "min_depth": "16", "override_base_feature_extractor_hyperparams": "true",
    "num_iterations": "3", "combine_method": "'fast_attention'", "initializer": {},
    "force_use_bias": "true", "regularize_depthwise": "true",
    "kernel_size": "1", "min_dimension": "128",
    "max_detections_per_class": "50",
    "maxpool_kernel_size": "2", "fc_hyperparams": {}, "encode_background_as_zeros": "false",
    "add_background_class": "false", "clip_anchors_to_image": "true",
    "retain_original_images": "false",
}


@pytest.mark.parametrize("row", NOTED_ROWS, ids=lambda r: r.path)
def test_approximated_row_is_logged(row):
    tree = _context(row.path)
    _set(tree, row.path, NOTED_VALUES[row.path.rsplit(".", 1)[1]])
    notes = map_pipeline_config(_text(tree), "p.config").approximations.values()
    assert any(f" {row.path} approximated" in note for note in notes), list(notes)


# ---------------------------------------------------------------- rows decided by others


def _lr_config(tmp_path, schedule: dict, name: str = "lr.config"):
    tree = copy.deepcopy(SSD_BASE)
    _set(tree, OPT + "momentum_optimizer.learning_rate", schedule)
    return tree


def test_min_learning_rate_is_refused_only_where_it_is_reached(tmp_path):
    exponential = {"exponential_decay_learning_rate": {
        "initial_learning_rate": "0.01", "decay_steps": "50", "decay_factor": "0.5"}}
    tree = _lr_config(tmp_path, exponential)
    _set(tree, OPT + "momentum_optimizer.learning_rate.exponential_decay_learning_rate."
         "min_learning_rate", "0.001")  # the last rate is 0.005: never reached
    assert _load(tree, tmp_path).train_config.learning_rate.decay_factor == 0.5
    _set(tree, OPT + "momentum_optimizer.learning_rate.exponential_decay_learning_rate."
         "min_learning_rate", "0.008")
    with pytest.raises(ConfigError, match=r"min_learning_rate \(0.008 is above the rate "
                                          r"0.005 reached before num_steps"):
        _load(tree, tmp_path)


@pytest.mark.parametrize("field, value, note", [
    ("cosine_decay_learning_rate.total_steps", "200", "200 differs from num_steps 100"),
    ("exponential_decay_learning_rate.staircase", "false", "instead of continuously"),
])
def test_schedule_statements_note_their_approximation(field, value, note):
    schedule, name = field.split(".")
    tree = copy.deepcopy(SSD_BASE)
    _set(tree, OPT + "momentum_optimizer.learning_rate", {schedule: {name: value}})
    notes = map_pipeline_config(_text(tree), "p.config").approximations.values()
    assert any(note in n for n in notes), list(notes)


def test_predictor_hyperparams_that_differ_from_those_used_are_noted():
    """The box predictor's conv_hyperparams must agree with what the model uses: the
    feature extractor's, or where the feature extractor gives none, what the OD API
    then means (RELU) or our default."""
    tree = copy.deepcopy(SSD_BASE)
    _set(tree, WS + ".conv_hyperparams", {"activation": "SWISH", "sync_batch_norm": "true"})
    notes = map_pipeline_config(_text(tree), "p.config").approximations
    assert "swish differs from the value used relu;" in notes[WS + ".conv_hyperparams.activation"]
    assert "True differs from the value used False" in notes[
        WS + ".conv_hyperparams.sync_batch_norm"]
    _set(tree, FE + "conv_hyperparams", {"activation": "SWISH", "sync_batch_norm": "true"})
    assert not any(key.startswith(WS) for key in
                   map_pipeline_config(_text(tree), "p.config").approximations)
    # A field the predictor's block leaves out means the OD API's default (RELU): noted
    # on the block when it differs from the feature extractor's.
    _set(tree, WS + ".conv_hyperparams", {"sync_batch_norm": "true"})
    notes = map_pipeline_config(_text(tree), "p.config").approximations
    assert "no activation: the OD API's relu differs from the feature extractor's swish" in \
        notes[WS + ".conv_hyperparams"]


def test_only_values_compare_as_values(tmp_path):
    """`False` is `false` and `1.00` is `1`, as the OD API's text-format parser reads them."""
    tree = copy.deepcopy(SSD_BASE)
    _set(tree, SSD + "freeze_batchnorm", "False")
    _set(tree, SSD + "negative_class_weight", "1.00")
    _set(tree, SSD + "post_processing.logit_scale", "1")
    _load(tree, tmp_path)
    _set(tree, SSD + "negative_class_weight", "true")  # a bool is not the number 1
    with pytest.raises(ConfigError, match="negative_class_weight: true"):
        _load(tree, tmp_path)


# ---------------------------------------------------------------- the built model


def _tiny(**fields) -> dict:
    """A MobileNetV2 FPN at 64 px (levels 3..6) with `fields` set (path: value)."""
    tree = copy.deepcopy(SSD_BASE)
    _set(tree, FE + "type", "'ssd_mobilenet_v2_fpn_keras'")
    _set(tree, FE + "fpn", {"min_level": "3", "max_level": "6",
                            "additional_layer_depth": "32"})
    _set(tree, SSD + "image_resizer.fixed_shape_resizer", {"height": "64", "width": "64"})
    _set(tree, WS, {"depth": "32", "num_layers_before_predictor": "1"})
    for path, value in fields.items():
        _set(tree, path, value)
    return tree


_PARAMS: dict[str, int] = {}  # the base model's parameter count, built once


@pytest.mark.parametrize("path, value", [
    (FE + "depth_multiplier", "0.5"),
    (FE + "fpn.additional_layer_depth", "16"),
    (WS + ".depth", "16"),
    (WS + ".num_layers_before_predictor", "2"),
    (WS + ".share_prediction_tower", "true"),
    (SSD + "anchor_generator.multiscale_anchor_generator.scales_per_octave", "1"),
])
def test_structural_rows_change_the_built_model(path, value, tmp_path):
    from train_lib.families.retinanet import build_model

    if "base" not in _PARAMS:
        _PARAMS["base"] = build_model(_load(_tiny(), tmp_path, "base.config").model
                                      ).count_params()
    base = _PARAMS["base"]
    changed = build_model(_load(_tiny(**{path: value}), tmp_path).model).count_params()
    assert changed != base, f"{path}: {value} leaves the model at {base} parameters"


@pytest.mark.parametrize("path, value", [
    (FR + "first_stage_box_predictor_depth", "64"),
    (FR + "second_stage_box_predictor.mask_rcnn_box_predictor.share_box_across_classes",
     "true"),
])
def test_faster_rcnn_structural_rows_change_the_built_model(path, value, tmp_path):
    from train_lib import families

    def built(tree: dict, name: str) -> int:
        _set(tree, FR + "image_resizer", {"fixed_shape_resizer": {"height": "64",
                                                                  "width": "64"}})
        _set(tree, FRFE + "fpn.max_level", "6")
        return families.build_model(_load(tree, tmp_path, name).model).count_params()

    if "faster_rcnn" not in _PARAMS:
        _PARAMS["faster_rcnn"] = built(copy.deepcopy(FASTER_RCNN_BASE), "base.config")
    changed = copy.deepcopy(FASTER_RCNN_BASE)
    _set(changed, path, value)
    assert built(changed, "changed.config") != _PARAMS["faster_rcnn"], path


def test_depth_multiplier_narrows_mobilenet_v2s_last_layer_as_the_odapi(tmp_path):
    tree = _tiny(**{FE + "depth_multiplier": "0.5"})
    backbone = _load(tree, tmp_path).model.backbone
    assert (backbone.width_multiplier, backbone.scale_last_layer) == (0.5, True)
    _set(tree, FE + "depth_multiplier", "1.0")
    assert _load(tree, tmp_path).model.backbone.scale_last_layer is False
