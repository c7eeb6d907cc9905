"""An OD API checkpoint's plan, the package's contract: `plan` pairs each variable
of our backbone with the checkpoint's (the layer names in order come from the
backbone's own module), and, for a detection checkpoint, each of our FPN's when it is
the OD API's (`model.fpn.type: odapi`, fpn.map_fpn), and for `full` each of our head's
when it computes the OD API's box predictor (box_predictor.map_head), and checks every
pair's shape before anything is loaded; `Plan.load` assigns the values (mapped.py's
`Mapped`, one per variable); `Plan.summary` and `Plan.report` say what loaded, and
why each of the rest (ours left fresh, the checkpoint's unused) is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import tensorflow as tf
from official.vision.modeling.backbones import resnet

from train_lib.families.odapi_fpn import OdapiFpn
from train_lib.training.failures import TrainError
from train_lib.training.odapi_checkpoint import (
    box_predictor,
    efficientnet,
    fpn,
    mobilenet_v1,
    mobilenet_v2,
    resnet_v1,
)
from train_lib.training.odapi_checkpoint.keras_weights import (
    KerasWeightsFile,
    is_keras_weights_file,
)
from train_lib.training.odapi_checkpoint.layout import (
    BOX_CLASSIFIER_BACKBONE,
    BOX_PREDICTOR,
    CLASSIFICATION_BACKBONE,
    DETECTION_BACKBONE,
    EFFICIENTDET_BACKBONE,
    FEATURE_MAPS,
    FPN_PROPOSAL_BACKBONE,
    KEY,
    LAYER,
    PROPOSAL_BACKBONE,
    RPN,
    SECOND_STAGE_PREDICTOR,
    VALUE,
)
from train_lib.training.odapi_checkpoint.mapped import (
    Mapped,
    check_fits,
    checkpoint_key,
    does_not_fit,
)

# fine_tune_checkpoint_type detection where our head computes the checkpoint's box
# predictor: it starts fresh, as the OD API's detection leaves its own.
HEAD_DETECTION = ("fine_tune_checkpoint_type detection loads the backbone and FPN only, as "
                  "the OD API's detection; full loads the box predictor too")

# A model with model.fpn.type: odapi computes the OD API's FPN, whose variables (under
# its feature extractor's fpn_features_generator and coarse_feature_layers) load into
# ours (fpn.py); a checkpoint of a model without that FPN leaves ours fresh.
ODAPI_FPN_ABSENT = ("ours is the OD API's FPN (model.fpn.type: odapi), but the checkpoint's "
                    "model has none (its feature extractor is not an FPN one)")
_ODAPI_FPN_KEY = re.compile(r"/_?(fpn_features_generator|coarse_feature_layers)/")


@dataclass
class Plan:
    """What an OD API checkpoint gives our model; `load()` assigns it."""
    prefix: str
    kind: str
    backbone_prefix: str
    mapped: list[Mapped]
    backbone_variables: int  # how many variables our backbone has
    odapi_fpn: bool = False  # our FPN is the OD API's (model.fpn.type: odapi)
    fpn_variables: int = 0  # how many variables our FPN has, when it is the OD API's
    # Our head computes the checkpoint's box predictor (box_predictor.py) and its
    # variables fit (`full` loads them), and how many it has; why its class predictor
    # starts fresh under `full`, if it does.
    head_fits: bool = False
    head_variables: int = 0
    class_unfit: str | None = None
    fresh: list[tuple[str, str]] = field(default_factory=list)  # (our variable, why)
    unused: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint key, why)
    _reader: object = None

    def load(self) -> None:
        for m in self.mapped:
            m.variable.assign(m.value(self._reader))

    def summary(self) -> str:
        """The log line's words after 'fine-tune: '."""
        backbone = sum(m.part == "backbone" for m in self.mapped)
        line = f"{backbone} of {self.backbone_variables} backbone variables"
        fpn_loaded = sum(m.part == "fpn" for m in self.mapped)
        if fpn_loaded:
            line += f" and {fpn_loaded} of {self.fpn_variables} FPN variables"
        head_loaded = sum(m.part == "head" for m in self.mapped)
        if head_loaded:
            line += (f"{',' if fpn_loaded else ''} and {head_loaded} of {self.head_variables} "
                     "head variables (the OD API's box predictor)")
        line += f" from an OD API checkpoint {self.prefix} ({self.kind})"
        if any(m.key.startswith(BOX_CLASSIFIER_BACKBONE) for m in self.mapped):
            line += ("; the backbone's level 5 is the OD API's box-classifier stage (conv5), "
                     "run on the whole image instead of on each proposal")
        folded = sum(m.minus_key is not None for m in self.mapped)
        if folded:
            line += f"; {folded} convolution biases folded into batch-norm moving means"
        after_level_5 = sum(m.key.startswith(DETECTION_BACKBONE) for m in self.mapped)
        if after_level_5 and self.backbone_prefix == EFFICIENTDET_BACKBONE:
            line += (f"; {after_level_5} of them (stack_6's blocks after block_0, where the OD "
                     "API's EfficientDet reads its level 5, so it never runs them) from its "
                     "classification_backbone; our levels are at the ends of the block groups, "
                     "not where the OD API's EfficientDet reads them (model.backbone."
                     "efficientnet_endpoints: odapi reads them there)")
        unmapped = sum(why.startswith("backbone:") for _, why in self.fresh)
        if unmapped and self.backbone_prefix == EFFICIENTDET_BACKBONE:
            line += (f"; the other {unmapped} (EfficientNet's last 1x1 convolution and norm, "
                     "after level 5, which our FPN does not read) fresh")
        elif unmapped:
            line += f"; the other {unmapped} fresh (no OD API layer maps onto them)"
        parts = [part for part in ("FPN", "head")
                 if any(why.startswith(part + ":") for _, why in self.fresh)]
        if "FPN" in parts and self.odapi_fpn and self.kind != "backbone":
            parts.remove("FPN")
            line += f"; FPN fresh ({ODAPI_FPN_ABSENT})"
        if "head" in parts and self.head_fits and self.kind == "detection":
            parts.remove("head")
            line += f"; head fresh ({HEAD_DETECTION})"
        if "head" in parts and head_loaded:
            parts.remove("head")
            line += f"; its class predictor fresh ({self.class_unfit})"
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
            return "RPN and box classifier" if self.odapi_fpn else "FPN, RPN and box classifier"
        return "box predictor" if self.odapi_fpn else "SSD feature maps and box predictor"

    def report(self) -> dict:
        """model_dir/fine_tune_report.json's content."""
        return {
            "checkpoint": self.prefix,
            "source": "OD API",
            "fine_tune_checkpoint_type": self.kind,
            "checkpoint_backbone": self.backbone_prefix,
            "loaded": [{"variable": m.variable.name, "shape": m.variable.shape.as_list(),
                        "checkpoint_key": m.key, "odapi_layer": m.keras_name,
                        "part": m.part}
                       | ({"minus_checkpoint_key": m.minus_key} if m.minus_key else {})
                       | ({"output_channels": box_predictor.ANCHOR_ORDER}
                          if m.channels is not None else {})
                       for m in self.mapped],
            "fresh": [{"variable": name, "reason": why} for name, why in self.fresh],
            "unused": [{"checkpoint_key": key, "reason": why} for key, why in self.unused],
        }


def plan(model, prefix: str, kind: str) -> Plan:
    """What of the OD API checkpoint `prefix` (or Keras weights file, `.h5`) loads
    into `model` for `kind` (`backbone`: the OD API's classification; `detection`: its
    detection, the backbone and, with `model.fpn.type: odapi`, the FPN; `full`: its
    full, those and the box predictor where our head computes it, box_predictor.py,
    its class predictor when its shape is ours). TrainError, before anything is
    loaded, when it does not fit (for `full`, also a head of the other tower
    arrangement than the checkpoint's predictor: box_predictor.check_towers)."""
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
    for backbone_prefix, part, first in segments:
        checkpoint_layers = _layer_indices(shapes, backbone_prefix)
        for index, (keras_name, layer) in enumerate(part, start=first):
            for variable in layer.variables:
                mapped.append(_map_variable(shapes, prefix, backbone_prefix, index, keras_name,
                                            variable, len(checkpoint_layers), len(part)))
        if first:
            continue  # it continues the model before it, whose layers after ours it holds
        extra = sorted(checkpoint_layers - set(range(len(part))))
        if extra:
            raise TrainError(
                f"{KEY} {prefix} does not fit this model's backbone: {backbone_prefix} has "
                f"{len(checkpoint_layers)} layers with weights, this model.backbone "
                f"{len(part)} there, so {backbone_prefix}{LAYER}{extra[0]} has no place "
                "in it; it must come from an OD API model with the same feature extractor "
                "(type and depth) as model.backbone")
    _fold_biases(mapped, shapes)
    decoder = getattr(model, "decoder", None)
    odapi_fpn = isinstance(decoder, OdapiFpn)
    if odapi_fpn and kind != "backbone":
        mapped += fpn.map_fpn(shapes, prefix, decoder)
    head = getattr(model, "head", None)
    if kind == "full":
        box_predictor.check_towers(shapes, prefix, head)
    ours = box_predictor.our_towers(head)
    head_fits = kind != "backbone" and ours is not None and ours == box_predictor.towers(shapes)
    class_unfit = None
    if head_fits:  # full loads it; detection says that full would (if it would)
        try:
            head_mapped, class_unfit = box_predictor.map_head(shapes, prefix, model)
        except TrainError:
            if kind == "full":
                raise
            head_fits = False
        else:
            if kind == "full":
                mapped += head_mapped
            else:
                class_unfit = None
    result = Plan(prefix, kind, segments[0][0], mapped, len(model.backbone.variables),
                  odapi_fpn=odapi_fpn,
                  fpn_variables=len(decoder.variables) if odapi_fpn else 0,
                  head_fits=head_fits,
                  head_variables=len(head.variables) if head_fits else 0,
                  class_unfit=class_unfit)
    _explain_the_rest(result, model, shapes)
    return result


def _map_variable(shapes: dict, prefix: str, backbone_prefix: str, index: int,
                  keras_name: str, variable, checkpoint_layers: int,
                  model_layers: int) -> Mapped:
    attribute, key = checkpoint_key(f"{backbone_prefix}{LAYER}{index}/", variable)
    where = f"{keras_name}/{attribute}"
    check_fits(shapes, key, variable, does_not_fit(prefix, "this model's backbone"),
               f"the OD API's Keras layer {where}",
               f"the checkpoint's {backbone_prefix} has {checkpoint_layers} layers with "
               f"weights, this model.backbone {model_layers}: it must come from an OD API "
               "model with the same feature extractor and depth_multiplier",
               "The checkpoint comes from another feature extractor, depth or "
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


def _segments(shapes: dict, prefix: str, layers: list) -> list[tuple[str, list, int]]:
    """Where our backbone's layers are in the checkpoint: (the prefix of a Keras model
    in it, our layers that model holds, in its order, and the index of the first of
    them in its numbering). A Faster R-CNN's backbone is two models: conv1..conv4, and
    conv5 (the stage its box classifier runs); an EfficientDet's, its EfficientNet up to
    level 5 and the rest of that EfficientNet, numbered on (efficientnet.segments)."""
    if any(n.startswith(PROPOSAL_BACKBONE + LAYER) for n in shapes):
        split = sum(1 for name, _ in layers if not name.startswith("conv5_"))
        return [(PROPOSAL_BACKBONE, layers[:split], 0),
                (BOX_CLASSIFIER_BACKBONE, layers[split:], 0)]
    if any(n.startswith(EFFICIENTDET_BACKBONE + LAYER) for n in shapes):
        return efficientnet.segments(layers)
    for candidate in (DETECTION_BACKBONE, FPN_PROPOSAL_BACKBONE, CLASSIFICATION_BACKBONE):
        if any(n.startswith(candidate + LAYER) for n in shapes):
            return [(candidate, layers, 0)]
    raise TrainError(f"{KEY} {prefix} is an OD API checkpoint without a Keras backbone "
                     f"(nothing under {DETECTION_BACKBONE}, {PROPOSAL_BACKBONE} or "
                     f"{CLASSIFICATION_BACKBONE}); name a TF2 checkpoint of an OD API model "
                     "with a Keras feature extractor (a TF2 model zoo checkpoint/ckpt-0)")


def _keras_layers(backbone, prefix: str) -> list[tuple[str, object]]:
    """Our backbone's layers with weights, each with the name of the Keras layer in
    the OD API's backbone that it stands for, in the Keras application's order."""
    if mobilenet_v2.matches(backbone):
        return mobilenet_v2.keras_layers(backbone)
    if mobilenet_v1.matches(backbone):
        return mobilenet_v1.keras_layers(backbone)
    if resnet_v1.matches(backbone):
        return resnet_v1.keras_layers(backbone)
    if efficientnet.matches(backbone):
        return efficientnet.keras_layers(backbone, prefix)
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
        if id(variable) in mapped_ids:  # our OdapiFpn's or head's, loaded
            continue
        part = "FPN" if id(variable) in decoder_ids else "head"
        if classification:
            why = (f"{part}: fine_tune_checkpoint_type backbone (the OD API's "
                   "classification) loads the backbone only")
        elif part == "FPN" and result.odapi_fpn:
            why = f"FPN: {ODAPI_FPN_ABSENT}"
        elif part == "head" and result.head_fits and result.kind == "detection":
            why = f"head: {HEAD_DETECTION}"
        elif part == "head" and result.class_unfit:
            why = f"head: its class predictor starts fresh: {result.class_unfit}"
        else:
            why = (f"{part}: ours computes another function than the OD API's layers after "
                   f"its backbone (the {after}), so nothing maps exactly")
        result.fresh.append((variable.name, why))
    used = {m.key for m in result.mapped} | {m.minus_key for m in result.mapped}
    for key in sorted(shapes):
        if key in used or not key.endswith(VALUE):
            continue
        if key.startswith(FEATURE_MAPS + "_bifpn_stage/"):
            why = "the OD API's BiFPN: Model Garden has no BiFPN, our FPN starts fresh"
        elif key.startswith(DETECTION_BACKBONE) and \
                result.backbone_prefix == EFFICIENTDET_BACKBONE:
            why = ("the OD API's EfficientNet after level 5 (its top convolution, norm and "
                   "classifier; for B1-B7 with efficientnet_endpoints: odapi, stack_6's later "
                   "blocks too), which EfficientDet never runs")
        elif result.odapi_fpn and _ODAPI_FPN_KEY.search(key):
            why = ("the OD API's FPN: a level ours does not have (model.min_level, "
                   "max_level)")
        elif key.startswith(FEATURE_MAPS):
            why = "the OD API's feature maps after its backbone: not our FPN's function"
        elif key.startswith(box_predictor.CLASS) and result.class_unfit:
            why = f"the OD API's class predictor: {result.class_unfit.split(': ', 1)[1]}"
        elif key.startswith(BOX_PREDICTOR) and result.head_fits and \
                result.kind == "detection":
            why = ("the OD API's box predictor: fine_tune_checkpoint_type detection does not "
                   "load it (full does)")
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
