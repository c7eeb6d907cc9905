"""The TF Object Detection API's TF2 checkpoints as starting weights: which of
their variables go into which of our model's, checked by shape, loaded by value.

An OD API checkpoint is object-based. An SSD detector's (a TF2 model zoo `ckpt-0`,
written by its exporter as `tf.train.Checkpoint(model=detection_model)`, or one
its `model_main_tf2.py` saved) keeps its Keras feature extractor's backbone under
`model/_feature_extractor/classification_backbone/`; a Faster R-CNN's keeps the
Keras ResNet in two parts, its first three stages (conv1..conv4, the RPN's
features) under `model/_feature_extractor_for_proposal_features/` and the fourth
(conv5, run on each proposal by the box classifier) under
`model/_feature_extractor_for_box_classifier_features/`; a classification checkpoint
(what the OD API loads for `fine_tune_checkpoint_type: classification`, a Keras
application's weights) keeps the whole backbone under `feature_extractor/`. Inside,
a Keras functional model names its layers by position: `layer_with_weights-<i>`
is the i-th layer that has weights, in the Keras application's order. This module
knows that order for each backbone it maps and pairs every such layer with the
layer of our backbone that computes the same function.

Supported:
- Model Garden's MobileNetV2 from the OD API's Keras MobileNetV2
  (`ssd_mobilenet_v2_keras`, `ssd_mobilenet_v2_fpn_keras`): 104 layers with weights
  (52 convolutions, 52 batch norms). Both compute the same function (convolutions
  padded 'same', ReLU6, batch norm with the config's epsilon, the same residuals)
  when the widths agree; the OD API scales the last 1x1 convolution (1280) by a
  depth_multiplier < 1, as Model Garden's MobileNet does with
  finegrain_classification_mode off (model.backbone.scale_last_layer).
- Model Garden's MobileNetV1 from the OD API's Keras MobileNet v1
  (`ssd_mobilenet_v1_fpn_keras`): 54 layers with weights (27 convolutions, 27 batch
  norms), the same function (convolutions padded 'same', ReLU6 or the config's
  activation, batch norm with the config's epsilon). The OD API scales each layer's
  width twice by depth_multiplier d (Keras' alpha, then its layer override), so its
  widths are Model Garden's at width_multiplier d * d.
- Our Keras ResNet v1 (`model.backbone.resnet_variant: keras_v1`,
  families/keras_resnet.py) from the OD API's Keras ResNet-50/101/152 v1
  (`ssd_resnet<d>_v1_fpn_keras`, `faster_rcnn_resnet<d>_keras`, and
  `faster_rcnn_resnet<d>_fpn_keras`, whose whole ResNet is under
  `model/_feature_extractor_for_proposal_features/classification_backbone/`):
  106/208/310 layers with weights, by name. Model Garden's ResNet (v1.5) has the
  same variables but computes another function, so it is refused. A Faster R-CNN's
  conv5 loads into our backbone's level 5, which runs it on the whole image.
  A Keras application's convolutions have a bias, which the OD API's do not: a
  classification checkpoint's bias is folded into the following batch norm's moving
  mean (the same function in inference; in training, batch norm removes it anyway).

- Model Garden's EfficientNet-B<n> with swish inside squeeze-excitation
  (`model.backbone.se_activation: swish`) from the OD API's Keras EfficientNet
  (`ssd_efficientnet-b<n>_bifpn_keras`, EfficientDet), whose layers up to level 5 are
  under `model/_feature_extractor/_efficientnet/` (for B0 128 layers with weights, 304
  variables: stem, then per block expand, depthwise, squeeze-excitation reduce and
  expand, project): the same layers in the same order, the same function. Model
  Garden's default (ReLU inside squeeze-excitation) computes other feature maps with
  them (about 1% apart), so it is refused naming the key. Our EfficientNet's last 1x1
  convolution and its norm (Model Garden's classification head, beyond level 5, which
  our FPN does not read) stay fresh: the OD API's (under classification_backbone/)
  never runs in EfficientDet.

The OD API's layers after its backbone (SSD's feature maps or FPN and its box
predictor; Faster R-CNN's RPN and box predictor) compute other functions than our
FPN and heads: they are never loaded, and the report says so.

Contract: `plan(model, prefix, kind)` checks everything before anything is loaded
and raises TrainError naming the first variable that does not fit (its checkpoint
key, the Keras layer, both shapes); `Plan.load()` then assigns every mapped value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from official.vision.modeling.backbones import efficientnet, mobilenet, resnet
from official.vision.modeling.layers import nn_blocks

from train_lib.families import keras_resnet
from train_lib.training.failures import TrainError

KEY = "train_config.fine_tune_checkpoint"
DETECTION_BACKBONE = "model/_feature_extractor/classification_backbone/"
CLASSIFICATION_BACKBONE = "feature_extractor/"
PROPOSAL_BACKBONE = "model/_feature_extractor_for_proposal_features/"
BOX_CLASSIFIER_BACKBONE = "model/_feature_extractor_for_box_classifier_features/"
FPN_PROPOSAL_BACKBONE = PROPOSAL_BACKBONE + "classification_backbone/"  # _fpn_keras
# EfficientDet: its Keras EfficientNet up to level 5 (the rest, under
# classification_backbone/, is the top conv and the classifier it never runs).
EFFICIENTDET_BACKBONE = "model/_feature_extractor/_efficientnet/"
FEATURE_MAPS = "model/_feature_extractor/"
BOX_PREDICTOR = "model/_box_predictor/"
RPN = "model/_first_stage_box_predictor"  # and _first_stage_box_predictor_first_conv
SECOND_STAGE_PREDICTOR = "model/_mask_rcnn_box_predictor/"
LAYER = "layer_with_weights-"
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
# The variables of a Keras layer with weights, by the attribute a checkpoint names.
LAYER_ATTRIBUTES = ("kernel", "depthwise_kernel", "bias", "gamma", "beta", "moving_mean",
                    "moving_variance")


def is_odapi_checkpoint(names) -> bool:
    """Whether a checkpoint with these variable names was written by the OD API
    (a detector's or a classification checkpoint of a Keras feature extractor)."""
    return any(n.startswith((FEATURE_MAPS, BOX_PREDICTOR, PROPOSAL_BACKBONE, RPN))
               or n.startswith(CLASSIFICATION_BACKBONE + LAYER) for n in names)


def is_keras_weights_file(path: str) -> bool:
    """Whether `path` names a weights file as tf_keras writes it (HDF5)."""
    return path.endswith((".h5", ".hdf5", ".keras.h5"))


class KerasWeightsFile:
    """A Keras application's weights as tf_keras writes them (`save_weights('x.h5')`
    or `save('x.h5')`), read as the classification checkpoint they are: the file keeps
    its layers in the model's order, so its i-th layer with weights is
    `feature_extractor/layer_with_weights-<i>`."""

    def __init__(self, path: str):
        import h5py  # TensorFlow's dependency; only a .h5 needs it

        self._values: dict[str, np.ndarray] = {}
        try:
            with h5py.File(path, "r") as f:
                group = f["model_weights"] if "model_weights" in f else f
                if "layer_names" not in group.attrs:
                    raise TrainError(f"{KEY} {path} is an HDF5 file without Keras weights "
                                     "(no layer_names); name a weights file written by "
                                     "tf_keras' save_weights")
                index = 0
                for layer in group.attrs["layer_names"]:
                    layer = group[_text(layer)]
                    weights = [_text(w) for w in layer.attrs.get("weight_names", [])]
                    for weight in weights:
                        attribute = weight.split("/")[-1].split(":")[0]
                        key = f"{CLASSIFICATION_BACKBONE}{LAYER}{index}/{attribute}{VALUE}"
                        self._values[key] = np.asarray(layer[weight])
                    index += bool(weights)
        except OSError as err:
            raise TrainError(f"{KEY} {path} cannot be read as a Keras weights file "
                             f"({err}); name a file written by tf_keras' save_weights") from None

    def get_variable_to_shape_map(self) -> dict[str, list[int]]:
        return {key: list(value.shape) for key, value in self._values.items()}

    def get_tensor(self, key: str) -> np.ndarray:
        return self._values[key]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Mapped:
    """One variable of ours and the checkpoint value it takes."""
    variable: tf.Variable
    key: str  # the checkpoint key
    keras_name: str  # e.g. block_3_expand/kernel: the OD API's Keras layer and attribute
    minus_key: str | None = None  # a convolution's bias, folded into a moving mean

    def value(self, reader):
        value = reader.get_tensor(self.key)
        return value if self.minus_key is None else value - reader.get_tensor(self.minus_key)


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
            m.variable.assign(m.value(self._reader))

    def summary(self) -> str:
        """The log line's words after 'fine-tune: '."""
        line = (f"{len(self.mapped)} of {self.backbone_variables} backbone variables from an "
                f"OD API checkpoint {self.prefix} ({self.kind})")
        if any(m.key.startswith(BOX_CLASSIFIER_BACKBONE) for m in self.mapped):
            line += ("; the backbone's level 5 is the OD API's box-classifier stage (conv5), "
                     "run on the whole image instead of on each proposal")
        folded = sum(m.minus_key is not None for m in self.mapped)
        if folded:
            line += f"; {folded} convolution biases folded into batch-norm moving means"
        unmapped = sum(why.startswith("backbone:") for _, why in self.fresh)
        if unmapped and self.backbone_prefix == EFFICIENTDET_BACKBONE:
            line += (f"; the other {unmapped} (EfficientNet's last 1x1 convolution and norm, "
                     "after level 5, which our FPN does not read) fresh")
        elif unmapped:
            line += f"; the other {unmapped} fresh (no OD API layer maps onto them)"
        parts = [part for part in ("FPN", "head")
                 if any(why.startswith(part + ":") for _, why in self.fresh)]
        if parts:
            why = ("fine_tune_checkpoint_type backbone loads the backbone only"
                   if self.kind == "backbone" else "ours compute other functions than the "
                   f"OD API's {self._after_backbone()}")
            line += f"; {' and '.join(parts)} fresh ({why})"
        return line

    def _after_backbone(self) -> str:
        if self.backbone_prefix == EFFICIENTDET_BACKBONE:
            return "BiFPN (Model Garden has none) and box predictor"
        if self.backbone_prefix == PROPOSAL_BACKBONE:
            return "RPN and box predictor"
        if self.backbone_prefix == FPN_PROPOSAL_BACKBONE:
            return "FPN, RPN and box classifier"
        return "SSD feature maps and box predictor"

    def report(self) -> dict:
        """model_dir/fine_tune_report.json's content."""
        return {
            "checkpoint": self.prefix,
            "source": "OD API",
            "fine_tune_checkpoint_type": self.kind,
            "checkpoint_backbone": self.backbone_prefix,
            "loaded": [{"variable": m.variable.name, "shape": m.variable.shape.as_list(),
                        "checkpoint_key": m.key, "odapi_layer": m.keras_name}
                       | ({"minus_checkpoint_key": m.minus_key} if m.minus_key else {})
                       for m in self.mapped],
            "fresh": [{"variable": name, "reason": why} for name, why in self.fresh],
            "unused": [{"checkpoint_key": key, "reason": why} for key, why in self.unused],
        }


def plan(model, prefix: str, kind: str) -> Plan:
    """What of the OD API checkpoint `prefix` (or Keras weights file, `.h5`) loads
    into `model` for `kind` (`backbone`: the OD API's classification; `detection`: its
    detection, full and fine_tune). TrainError, before anything is loaded, when it
    does not fit."""
    reader = KerasWeightsFile(prefix) if is_keras_weights_file(prefix) else \
        tf.train.load_checkpoint(prefix)
    result = plan_shapes(model, reader.get_variable_to_shape_map(), prefix, kind)
    result._reader = reader
    return result


def plan_shapes(model, shapes: dict, prefix: str, kind: str) -> Plan:
    """`plan` on a checkpoint's variable names and shapes alone (`shapes`: key ->
    shape); the Plan it returns has no values to load."""
    layers = _keras_layers(model.backbone, prefix)
    segments = _segments(shapes, prefix, layers)
    mapped = []
    for backbone_prefix, part in segments:
        checkpoint_layers = _layer_indices(shapes, backbone_prefix)
        for index, (keras_name, layer) in enumerate(part):
            for variable in layer.variables:
                mapped.append(_map_variable(shapes, prefix, backbone_prefix, index, keras_name,
                                            variable, len(checkpoint_layers), len(part)))
        extra = sorted(checkpoint_layers - set(range(len(part))))
        if extra:
            raise TrainError(
                f"{KEY} {prefix} does not fit this model's backbone: {backbone_prefix} has "
                f"{len(checkpoint_layers)} layers with weights, this model.backbone "
                f"{len(part)} there, so {backbone_prefix}{LAYER}{extra[0]} has no place "
                "in it; it must come from an OD API model with the same feature extractor "
                "(type and depth) as model.backbone")
    _fold_biases(mapped, shapes)
    result = Plan(prefix, kind, segments[0][0], mapped, len(model.backbone.variables))
    _explain_the_rest(result, model, shapes)
    return result


def _map_variable(shapes: dict, prefix: str, backbone_prefix: str, index: int,
                  keras_name: str, variable, checkpoint_layers: int,
                  model_layers: int) -> Mapped:
    attribute = variable.name.split("/")[-1].split(":")[0]
    key = f"{backbone_prefix}{LAYER}{index}/{attribute}{VALUE}"
    where = f"{keras_name}/{attribute}"
    if key not in shapes:
        raise TrainError(
            f"{KEY} {prefix} does not fit this model's backbone: it has no {key} "
            f"(the OD API's Keras layer {where}, shape {variable.shape.as_list()}); "
            f"the checkpoint's {backbone_prefix} has {checkpoint_layers} layers with "
            f"weights, this model.backbone {model_layers}: it must come from an OD API "
            "model with the same feature extractor and depth_multiplier")
    if list(shapes[key]) != variable.shape.as_list():
        raise TrainError(
            f"{KEY} {prefix} does not fit this model's backbone: the first variable "
            f"whose shape differs is {key} (the OD API's Keras layer {where}): "
            f"{list(shapes[key])} in the checkpoint, {variable.shape.as_list()} in "
            "this model. The checkpoint comes from another feature extractor, depth or "
            "depth_multiplier than model.backbone (type, model_id, width_multiplier)")
    return Mapped(variable, key, where)


def _fold_biases(mapped: list[Mapped], shapes: dict) -> None:
    """A Keras application's convolution has a bias (the OD API's have none); each
    is followed by its batch norm, whose moving mean takes the bias off: BN(conv + b)
    with mean m is BN(conv) with mean m - b."""
    conv_of = {}
    for m in mapped:
        layer, attribute = m.keras_name.rsplit("/", 1)
        if attribute == "kernel" and layer.endswith("_conv"):
            bias = m.key.replace(f"/kernel{VALUE}", f"/bias{VALUE}")
            if bias in shapes:
                conv_of[layer[:-len("_conv")] + "_bn"] = bias
    for m in mapped:
        layer, attribute = m.keras_name.rsplit("/", 1)
        if attribute == "moving_mean" and layer in conv_of:
            m.minus_key = conv_of[layer]


def _layer_indices(shapes: dict, backbone_prefix: str) -> set[int]:
    start = len(backbone_prefix) + len(LAYER)
    return {int(n[start:].split("/")[0]) for n in shapes if n.startswith(backbone_prefix + LAYER)}


def _segments(shapes: dict, prefix: str, layers: list) -> list[tuple[str, list]]:
    """Where our backbone's layers are in the checkpoint: (the prefix of a Keras model
    in it, our layers that model holds, in its order). A Faster R-CNN's backbone is two
    models: conv1..conv4, and conv5 (the stage its box classifier runs)."""
    if any(n.startswith(PROPOSAL_BACKBONE + LAYER) for n in shapes):
        split = sum(1 for name, _ in layers if not name.startswith("conv5_"))
        return [(PROPOSAL_BACKBONE, layers[:split]), (BOX_CLASSIFIER_BACKBONE, layers[split:])]
    for candidate in (EFFICIENTDET_BACKBONE, DETECTION_BACKBONE, FPN_PROPOSAL_BACKBONE,
                      CLASSIFICATION_BACKBONE):
        if any(n.startswith(candidate + LAYER) for n in shapes):
            return [(candidate, layers)]
    raise TrainError(f"{KEY} {prefix} is an OD API checkpoint without a Keras backbone "
                     f"(nothing under {DETECTION_BACKBONE}, {PROPOSAL_BACKBONE} or "
                     f"{CLASSIFICATION_BACKBONE}); name a TF2 checkpoint of an OD API model "
                     "with a Keras feature extractor (a TF2 model zoo checkpoint/ckpt-0)")


def _keras_layers(backbone, prefix: str) -> list[tuple[str, object]]:
    """Our backbone's layers with weights, each with the name of the Keras layer in
    the OD API's backbone that it stands for, in the Keras application's order."""
    if isinstance(backbone, mobilenet.MobileNet) and \
            backbone.get_config()["model_id"] == "MobileNetV2":
        return _mobilenet_v2_layers(backbone)
    if isinstance(backbone, mobilenet.MobileNet) and \
            backbone.get_config()["model_id"] == "MobileNetV1":
        return _mobilenet_v1_layers(backbone)
    if isinstance(backbone, keras_resnet.KerasResNetV1):
        order = keras_resnet.keras_layer_order(backbone.get_config()["model_id"])
        return [(name, backbone.get_layer(name)) for name in order]
    if isinstance(backbone, efficientnet.EfficientNet):
        if backbone._se_inner_activation != "swish":
            raise TrainError(
                f"{KEY} {prefix} is an OD API checkpoint, and this model.backbone is Model "
                "Garden's EfficientNet, which activates inside its squeeze-excitation with "
                f"{backbone._se_inner_activation!r} (model.backbone.se_activation) where the "
                "OD API's Keras EfficientNet (EfficientDet) uses swish: with the same weights "
                "it computes other feature maps (about 1% apart with relu); set "
                "model.backbone.se_activation: swish")
        return _efficientnet_layers(backbone)
    if isinstance(backbone, resnet.ResNet):
        this = ("Model Garden's ResNet (resnet_variant: model_garden), which strides in "
                "another convolution than the OD API's ResNet and so computes another "
                "function with its weights; set model.backbone.resnet_variant: keras_v1")
    else:
        this = (f"{type(backbone).__name__}; start from a Model Garden or this trainer's "
                "checkpoint instead")
    raise TrainError(f"{KEY} {prefix} is an OD API checkpoint; its weights load into a "
                     "MobileNetV2 backbone or a MobileNetV1 one (model.backbone type: "
                     "mobilenet, model_id: MobileNetV2 or MobileNetV1), a "
                     "ResNet-50/101/152 (type: resnet, resnet_variant: keras_v1) or an "
                     "EfficientNet (type: efficientnet, se_activation: swish) so far, and "
                     f"this model.backbone is {this}")


def _efficientnet_layers(backbone) -> list[tuple[str, object]]:
    """The OD API's Keras EfficientNet's names up to level 5: stem_conv2d, stem_bn, then
    per block (`stack_<s>/block_<b>/`, s the block group, b its repeat) expand_conv2d
    and expand_bn (when the block expands), depthwise_conv2d, depthwise_bn,
    se_reduce_conv2d, se_expand_conv2d, project_conv2d, project_bn. Model Garden's
    EfficientNet has the same layers in the same order: its stem convolution and norm,
    then its InvertedBottleneckBlocks group by group (Model Garden's block specs give
    each group's repeats); its last 1x1 convolution and norm (after level 5) are left
    out, as the OD API's extractor leaves out its top."""
    scaling = efficientnet.SCALING_MAP[backbone.get_config()["model_id"]]
    specs = efficientnet.block_spec_decoder(efficientnet.EN_B0_BLOCK_SPECS,
                                            scaling["width_scale"], scaling["depth_scale"])
    names = [f"stack_{s}/block_{b}/" for s, spec in enumerate(specs)
             for b in range(spec.block_repeats)]
    blocks = [layer for layer in backbone.layers
              if isinstance(layer, nn_blocks.InvertedBottleneckBlock)]
    stem = [layer for layer in backbone.layers if layer.weights and layer not in blocks][:2]
    layers = [("stem_conv2d", stem[0]), ("stem_bn", stem[1])]
    for name, block in zip(names, blocks, strict=True):
        if block._expand_ratio > 1:
            layers += [(f"{name}expand_conv2d", block._conv0), (f"{name}expand_bn", block._norm0)]
        se = block._squeeze_excitation
        layers += [(f"{name}depthwise_conv2d", block._conv1), (f"{name}depthwise_bn", block._norm1),
                   (f"{name}se_reduce_conv2d", se._se_reduce),
                   (f"{name}se_expand_conv2d", se._se_expand),
                   (f"{name}project_conv2d", block._conv2), (f"{name}project_bn", block._norm2)]
    return layers


def _mobilenet_v1_layers(backbone) -> list[tuple[str, object]]:
    """Keras' MobileNet (v1, tf_keras.applications) names: conv1, conv1_bn, then per
    depthwise-separable block i = 1..13 conv_dw_<i>, conv_dw_<i>_bn, conv_pw_<i>,
    conv_pw_<i>_bn. Model Garden's MobileNetV1 has the same layers in the same order:
    a Conv2DBNBlock and 13 DepthwiseSeparableConvBlocks (depthwise, norm, 1x1, norm),
    all padded 'same' as the OD API's (it replaces the application's explicit
    zero padding before a stride-2 depthwise convolution by 'same')."""
    blocks = [layer for layer in backbone.layers
              if isinstance(layer, mobilenet.Conv2DBNBlock | nn_blocks.DepthwiseSeparableConvBlock)]
    layers = []
    for i, block in enumerate(blocks):
        if isinstance(block, mobilenet.Conv2DBNBlock):
            layers += [("conv1", block._conv0), ("conv1_bn", block._norm0)]
            continue
        layers += [(f"conv_dw_{i}", block._dwconv0), (f"conv_dw_{i}_bn", block._norm0),
                   (f"conv_pw_{i}", block._conv1), (f"conv_pw_{i}_bn", block._norm1)]
    return layers


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


def _unmapped_backbone_reason(result: Plan) -> str:
    if result.backbone_prefix == EFFICIENTDET_BACKBONE:
        return ("backbone: Model Garden's EfficientNet's last 1x1 convolution and norm, after "
                "level 5: our FPN does not read it, and the OD API's EfficientDet never runs "
                "its EfficientNet's")
    return "backbone: no layer of the OD API's backbone maps onto it"


def _explain_the_rest(result: Plan, model, shapes: dict) -> None:
    """Our variables that take no value (outside the backbone, or in it where no OD API
    layer maps) and the checkpoint's outside its backbone, each with why it is not
    loaded."""
    backbone_ids = {id(v) for v in model.backbone.variables}
    decoder = getattr(model, "decoder", None)
    decoder_ids = {id(v) for v in decoder.variables} if decoder is not None else set()
    classification = result.kind == "backbone"
    after = result._after_backbone()
    mapped_ids = {id(m.variable) for m in result.mapped}
    for variable in model.variables:
        if id(variable) in backbone_ids:
            if id(variable) not in mapped_ids:
                result.fresh.append((variable.name, _unmapped_backbone_reason(result)))
            continue
        part = "FPN" if id(variable) in decoder_ids else "head"
        why = (f"{part}: fine_tune_checkpoint_type backbone (the OD API's classification) "
               "loads the backbone only") if classification else (
            f"{part}: ours computes another function than the OD API's layers after its "
            f"backbone (the {after}), so nothing maps exactly")
        result.fresh.append((variable.name, why))
    used = {m.key for m in result.mapped} | {m.minus_key for m in result.mapped}
    for key in sorted(shapes):
        if key in used or not key.endswith(VALUE):
            continue
        if key.startswith(FEATURE_MAPS + "_bifpn_stage/"):
            why = "the OD API's BiFPN: Model Garden has no BiFPN, our FPN starts fresh"
        elif key.startswith(DETECTION_BACKBONE) and \
                result.backbone_prefix == EFFICIENTDET_BACKBONE:
            why = ("the OD API's EfficientNet after level 5 (top convolution, norm and "
                   "classifier), which EfficientDet never runs")
        elif key.startswith(FEATURE_MAPS):
            why = "the OD API's feature maps after its backbone: not our FPN's function"
        elif key.startswith(BOX_PREDICTOR):
            why = "the OD API's box predictor: not our head's function"
        elif key.startswith(PROPOSAL_BACKBONE):
            why = "the OD API's FPN after its backbone: not our FPN's function"
        elif key.startswith(BOX_CLASSIFIER_BACKBONE):
            why = "the OD API's box classifier: not our detection head's function"
        elif key.startswith(RPN):
            why = "the OD API's RPN: not our RPN head's function (it reads our FPN)"
        elif key.startswith(SECOND_STAGE_PREDICTOR):
            why = ("the OD API's second-stage box predictor: not our detection head's "
                   "function")
        elif key.startswith("model/"):
            why = "a part of the OD API's model that ours does not have"
        else:
            why = "not part of the model (the checkpoint's step, optimizer or counter)"
        if classification and key.startswith("model/"):
            why = "fine_tune_checkpoint_type backbone loads the backbone only"
        result.unused.append((key, why))
