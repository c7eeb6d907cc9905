"""The TF Object Detection API's TF2 checkpoints as starting weights: which of
their variables go into which of our model's, checked by shape, loaded by value.

An OD API checkpoint is object-based. A detector's (a TF2 model zoo `ckpt-0`,
written by its exporter as `tf.train.Checkpoint(model=detection_model)`, or one
its `model_main_tf2.py` saved) keeps its Keras feature extractor's backbone under
`model/_feature_extractor/classification_backbone/`; a classification checkpoint
(what the OD API loads for `fine_tune_checkpoint_type: classification`) keeps it
under `feature_extractor/`. Inside, a Keras functional model names its layers by
position: `layer_with_weights-<i>` is the i-th layer that has weights, in the
Keras application's order. This module knows that order for each backbone it
maps and pairs every such layer with the layer of our Model Garden backbone that
computes the same function.

Supported: Model Garden's MobileNetV2 from the OD API's Keras MobileNetV2
(`ssd_mobilenet_v2_keras`, `ssd_mobilenet_v2_fpn_keras`): 104 layers with weights
(52 convolutions, 52 batch norms). Both compute the same function (convolutions
padded 'same', ReLU6, batch norm with the config's epsilon, the same residuals)
when the widths agree; the OD API scales the last 1x1 convolution (1280) by a
depth_multiplier < 1, as Model Garden's MobileNet does with
finegrain_classification_mode off (model.backbone.width_multiplier 1.0, every zoo
model, needs nothing). The OD API's SSD feature maps after the backbone and its box
predictor compute other functions than our FPN and head: they are never loaded,
and the report says so.

Contract: `plan(model, prefix, kind)` checks everything before anything is loaded
and raises TrainError naming the first variable that does not fit (its checkpoint
key, the Keras layer, both shapes); `Plan.load()` then assigns every mapped value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf
from official.vision.modeling.backbones import mobilenet
from official.vision.modeling.layers import nn_blocks

from train_lib.training.failures import TrainError

KEY = "train_config.fine_tune_checkpoint"
DETECTION_BACKBONE = "model/_feature_extractor/classification_backbone/"
CLASSIFICATION_BACKBONE = "feature_extractor/"
FEATURE_MAPS = "model/_feature_extractor/"
BOX_PREDICTOR = "model/_box_predictor/"
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
# The variables of a Keras layer with weights, by the attribute a checkpoint names.
LAYER_ATTRIBUTES = ("kernel", "depthwise_kernel", "bias", "gamma", "beta", "moving_mean",
                    "moving_variance")


def is_odapi_checkpoint(names) -> bool:
    """Whether a checkpoint with these variable names was written by the OD API
    (a detector's or a classification checkpoint of a Keras feature extractor)."""
    return any(n.startswith((FEATURE_MAPS, BOX_PREDICTOR))
               or n.startswith(CLASSIFICATION_BACKBONE + "layer_with_weights-") for n in names)


@dataclass
class Mapped:
    """One variable of ours and the checkpoint value it takes."""
    variable: tf.Variable
    key: str  # the checkpoint key
    keras_name: str  # e.g. block_3_expand/kernel: the OD API's Keras layer and attribute


@dataclass
class Plan:
    """What an OD API checkpoint gives our model; `load()` assigns it."""
    prefix: str
    kind: str
    backbone_prefix: str
    mapped: list[Mapped]
    backbone_variables: int  # how many variables our backbone has
    fresh: list[tuple[str, str]] = field(default_factory=list)  # (our variable, why)
    unused: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint key, why)
    _reader: object = None

    def load(self) -> None:
        for m in self.mapped:
            m.variable.assign(self._reader.get_tensor(m.key))

    def summary(self) -> str:
        """The log line's words after 'fine-tune: '."""
        line = (f"{len(self.mapped)} of {self.backbone_variables} backbone variables from an "
                f"OD API checkpoint {self.prefix} ({self.kind})")
        parts = [part for part in ("FPN", "head")
                 if any(why.startswith(part + ":") for _, why in self.fresh)]
        if parts:
            why = ("fine_tune_checkpoint_type backbone loads the backbone only"
                   if self.kind == "backbone" else "ours compute other functions than the "
                   "OD API's SSD feature maps and box predictor")
            line += f"; {' and '.join(parts)} fresh ({why})"
        return line

    def report(self) -> dict:
        """model_dir/fine_tune_report.json's content."""
        return {
            "checkpoint": self.prefix,
            "source": "OD API",
            "fine_tune_checkpoint_type": self.kind,
            "checkpoint_backbone": self.backbone_prefix,
            "loaded": [{"variable": m.variable.name, "shape": m.variable.shape.as_list(),
                        "checkpoint_key": m.key, "odapi_layer": m.keras_name}
                       for m in self.mapped],
            "fresh": [{"variable": name, "reason": why} for name, why in self.fresh],
            "unused": [{"checkpoint_key": key, "reason": why} for key, why in self.unused],
        }


def plan(model, prefix: str, kind: str) -> Plan:
    """What of the OD API checkpoint `prefix` loads into `model` for `kind`
    (`backbone`: the OD API's classification; `detection`: its detection, full and
    fine_tune). TrainError, before anything is loaded, when it does not fit."""
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    backbone_prefix = _backbone_prefix(shapes, prefix)
    layers = _keras_layers(model.backbone, prefix)
    indices = {int(n[len(backbone_prefix) + len("layer_with_weights-"):].split("/")[0])
               for n in shapes if n.startswith(backbone_prefix + "layer_with_weights-")}
    mapped = []
    for index, (keras_name, layer) in enumerate(layers):
        for variable in layer.variables:
            attribute = variable.name.split("/")[-1].split(":")[0]
            key = f"{backbone_prefix}layer_with_weights-{index}/{attribute}{VALUE}"
            where = f"{keras_name}/{attribute}"
            if key not in shapes:
                raise TrainError(
                    f"{KEY} {prefix} does not fit this model's backbone: it has no {key} "
                    f"(the OD API's Keras layer {where}, shape {variable.shape.as_list()}); "
                    f"the checkpoint's backbone has {len(indices)} layers with weights, this "
                    f"model.backbone has {len(layers)}: it must come from an OD API model with "
                    "the same feature extractor and depth_multiplier")
            if list(shapes[key]) != variable.shape.as_list():
                raise TrainError(
                    f"{KEY} {prefix} does not fit this model's backbone: the first variable "
                    f"whose shape differs is {key} (the OD API's Keras layer {where}): "
                    f"{list(shapes[key])} in the checkpoint, {variable.shape.as_list()} in "
                    "this model. The checkpoint comes from another feature extractor or "
                    "depth_multiplier than model.backbone (type, model_id, width_multiplier)")
            mapped.append(Mapped(variable, key, where))
    if len(indices) != len(layers):
        raise TrainError(
            f"{KEY} {prefix} does not fit this model's backbone: its backbone has "
            f"{len(indices)} layers with weights, this model.backbone {len(layers)}; it must "
            "come from an OD API model with the same feature extractor")
    result = Plan(prefix, kind, backbone_prefix, mapped, len(model.backbone.variables),
                  _reader=reader)
    _explain_the_rest(result, model, shapes)
    return result


def _backbone_prefix(shapes: dict, prefix: str) -> str:
    for candidate in (DETECTION_BACKBONE, CLASSIFICATION_BACKBONE):
        if any(n.startswith(candidate + "layer_with_weights-") for n in shapes):
            return candidate
    raise TrainError(f"{KEY} {prefix} is an OD API checkpoint without a Keras backbone "
                     f"(nothing under {DETECTION_BACKBONE} or {CLASSIFICATION_BACKBONE}); "
                     "name a TF2 checkpoint of an OD API model with a Keras feature extractor "
                     "(a TF2 model zoo checkpoint/ckpt-0)")


def _keras_layers(backbone, prefix: str) -> list[tuple[str, object]]:
    """Our backbone's layers with weights, each with the name of the Keras layer in
    the OD API's backbone that it stands for, in the Keras application's order."""
    if isinstance(backbone, mobilenet.MobileNet) and \
            backbone.get_config()["model_id"] == "MobileNetV2":
        return _mobilenet_v2_layers(backbone)
    raise TrainError(f"{KEY} {prefix} is an OD API checkpoint; its weights load into a "
                     "MobileNetV2 backbone (model.backbone type: mobilenet, model_id: "
                     f"MobileNetV2) so far, and this model's backbone is "
                     f"{type(backbone).__name__}; start from a Model Garden or this trainer's "
                     "checkpoint instead")


def _mobilenet_v2_layers(backbone) -> list[tuple[str, object]]:
    """Keras' MobileNetV2 (tf_keras.applications) names: Conv1, bn_Conv1, then per
    inverted bottleneck <block>_expand (not in the first), _depthwise, _project
    (each followed by its _BN), the first block being `expanded_conv` and the
    others `block_<n>`; then Conv_1, Conv_1_bn. Model Garden's blocks come in the
    same order: its first and last Conv2DBNBlock and 17 InvertedBottleneckBlocks."""
    blocks = [layer for layer in backbone.layers
              if isinstance(layer, mobilenet.Conv2DBNBlock | nn_blocks.InvertedBottleneckBlock)]
    layers = []
    for i, block in enumerate(blocks):
        if isinstance(block, mobilenet.Conv2DBNBlock):
            conv, norm = ("Conv1", "bn_Conv1") if i == 0 else ("Conv_1", "Conv_1_bn")
            layers += [(conv, block._conv0), (norm, block._norm0)]
            continue
        name = "expanded_conv" if i == 1 else f"block_{i - 1}"
        if block._expand_ratio > 1:
            layers += [(f"{name}_expand", block._conv0), (f"{name}_expand_BN", block._norm0)]
        layers += [(f"{name}_depthwise", block._conv1), (f"{name}_depthwise_BN", block._norm1),
                   (f"{name}_project", block._conv2), (f"{name}_project_BN", block._norm2)]
    return layers


def _explain_the_rest(result: Plan, model, shapes: dict) -> None:
    """Our variables outside the backbone and the checkpoint's outside its
    backbone, each with why it is not loaded."""
    backbone_ids = {id(v) for v in model.backbone.variables}
    decoder = getattr(model, "decoder", None)
    decoder_ids = {id(v) for v in decoder.variables} if decoder is not None else set()
    classification = result.kind == "backbone"
    for variable in model.variables:
        if id(variable) in backbone_ids:
            continue
        part = "FPN" if id(variable) in decoder_ids else "head"
        why = (f"{part}: fine_tune_checkpoint_type backbone (the OD API's classification) "
               "loads the backbone only") if classification else (
            f"{part}: ours computes another function than the OD API's layers after its "
            "backbone (the SSD feature maps and box predictor), so nothing maps exactly")
        result.fresh.append((variable.name, why))
    for key in sorted(shapes):
        if key.startswith(result.backbone_prefix) or not key.endswith(VALUE):
            continue
        if key.startswith(FEATURE_MAPS):
            why = "the OD API's feature maps after its backbone: not our FPN's function"
        elif key.startswith(BOX_PREDICTOR):
            why = "the OD API's box predictor: not our head's function"
        else:
            why = "not part of the model (the checkpoint's step, optimizer or counter)"
        if classification and key.startswith((FEATURE_MAPS, BOX_PREDICTOR)):
            why = "fine_tune_checkpoint_type backbone loads the backbone only"
        result.unused.append((key, why))

