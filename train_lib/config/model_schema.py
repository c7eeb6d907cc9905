"""The `model` section of the pipeline config: one dataclass per subsection, each
checking its own values, and which keys belong to which architecture.

`ModelConfig` holds the keys every family reads (backbone, FPN, anchors, the L2
weight, post-processing, normalisation) and each family's own sections:
RetinaNet's `head` and focal-loss keys, Faster R-CNN's `rpn_head`, `rpn`,
`proposals`, `roi_sampler`, `roi_aligner`, `detection_head` and its loss weights,
and each one's parts of `model.initializers` (`ARCHITECTURE_KEYS`). A config that
gives another architecture's key is refused (`architecture_key_problems`), naming
the key and both architectures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from train_lib.config.coercion import STRING_OR_INTEGER
from train_lib.config.faster_rcnn_schema import (
    DetectionHeadConfig,
    ProposalsConfig,
    RoiAlignerConfig,
    RoiSamplerConfig,
    RpnConfig,
    RpnHeadConfig,
)
from train_lib.config.initializer_schema import (
    ARCHITECTURE_PARTS,
    PARTS,
    InitializerConfig,
    InitializersConfig,
)
from train_lib.config.loss_schema import L2WeightsByPartConfig, LossConfig
from train_lib.config.problems import Checks

__all__ = [
    "ACTIVATIONS", "ARCHITECTURES", "ARCHITECTURE_KEYS", "ARCHITECTURE_PARTS",
    "BACKBONE_MAX_LEVEL",
    "BACKBONE_MODEL_IDS", "FPN_TYPES", "IMAGENET_PIXEL_MEAN", "IMAGENET_PIXEL_STDDEV",
    "MAX_LEVEL",
    "MIN_LEVEL", "AnchorConfig", "BackboneConfig", "DetectionHeadConfig", "FpnConfig",
    "HeadConfig", "InitializerConfig", "InitializersConfig", "L2WeightsByPartConfig",
    "LossConfig", "ModelConfig",
    "NormConfig", "PARTS", "PostProcessingConfig",
    "ProposalsConfig", "RoiAlignerConfig", "RoiSamplerConfig", "RpnConfig", "RpnHeadConfig",
    "architecture_key_problems", "belongs_to", "input_stride",
]

ARCHITECTURES = ("retinanet", "faster_rcnn")
FPN_TYPES = ("fpn", "none", "odapi")
# The `model` keys only one architecture reads (a trailing "." marks a whole
# section); every other `model` key is shared (model.initializers' backbone and fpn
# too; each architecture's own parts are here: initializer_schema.ARCHITECTURE_PARTS).
# A config that gives another architecture's key is refused
# (`architecture_key_problems`), and `to_dict` leaves them out, so
# model_dir/pipeline.yaml holds only what the model reads.
ARCHITECTURE_KEYS = {
    "retinanet": (
        "model.head.", "model.anchor.match_threshold", "model.anchor.unmatched_threshold",
        "model.anchor.box_coder_weights",
        "model.loss.focal_loss_alpha", "model.loss.focal_loss_gamma",
        "model.loss.huber_loss_delta", "model.loss.box_loss_weight",
        "model.loss.class_loss_weight", "model.loss.normalizer",
        "model.initializers.class_bias",
        *(f"model.initializers.{part}." for part in ARCHITECTURE_PARTS["retinanet"]
          if part not in ARCHITECTURE_PARTS["faster_rcnn"]),
        *(f"model.loss.l2_weight_decay_by_part.{part}" for part in ARCHITECTURE_PARTS[
            "retinanet"] if part not in ARCHITECTURE_PARTS["faster_rcnn"]),
    ),
    "faster_rcnn": (
        "model.rpn_head.", "model.rpn.", "model.proposals.", "model.roi_sampler.",
        "model.roi_aligner.", "model.detection_head.", "model.loss.rpn_score_weight",
        "model.loss.rpn_box_weight", "model.loss.frcnn_class_weight",
        "model.loss.frcnn_box_weight", "model.loss.rpn_huber_loss_delta",
        "model.loss.frcnn_huber_loss_delta",
        *(f"model.initializers.{part}." for part in ARCHITECTURE_PARTS["faster_rcnn"]
          if part not in ARCHITECTURE_PARTS["retinanet"]),
        *(f"model.loss.l2_weight_decay_by_part.{part}" for part in ARCHITECTURE_PARTS[
            "faster_rcnn"] if part not in ARCHITECTURE_PARTS["retinanet"]),
    ),
}
BACKBONE_MODEL_IDS = {
    "mobilenet": ("MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "MobileNetV1"),
    "resnet": ("18", "34", "50", "101", "152"),
    "efficientnet": tuple(f"b{i}" for i in range(8)),
}
RESNET_VARIANTS = ("model_garden", "keras_v1")
SE_ACTIVATIONS = ("relu", "swish")
EFFICIENTNET_ENDPOINTS = ("model_garden", "odapi")
ACTIVATIONS = ("relu", "relu6", "swish", "hard_swish")
MIN_LEVEL, MAX_LEVEL = 2, 7
# Model Garden's input normalisation (preprocess_ops.MEAN_RGB, STDDEV_RGB): the ImageNet
# statistics of RGB pixels 0..255, the defaults of model.pixel_mean and pixel_stddev.
# Written as the decimals they are (0.224 * 255 is 57.120000000000005 in floating point),
# so that a config giving the documented values equals the default; as float32, the
# values Model Garden normalises with, bit for bit.
IMAGENET_PIXEL_MEAN = (123.675, 116.28, 103.53)
IMAGENET_PIXEL_STDDEV = (58.395, 57.12, 57.375)
# The deepest level (stride 32) of every backbone here; the FPN makes the levels above
# it with stride-2 convolutions, which round odd sizes up, as the anchors do.
BACKBONE_MAX_LEVEL = 5


def input_stride(max_level: int) -> int:
    """What model.input_size must be a multiple of: the stride of the deepest backbone
    level the model reads, 2**min(max_level, BACKBONE_MAX_LEVEL), so that the FPN's
    upsampled maps meet the backbone's exactly (320 px for levels 3..7 is allowed:
    level 7 is 3x3)."""
    return 2 ** min(max_level, BACKBONE_MAX_LEVEL)


# ---------------------------------------------------------------- model


@dataclass
class BackboneConfig:
    type: str = "mobilenet"  # mobilenet | resnet | efficientnet
    # mobilenet: MobileNetV2 | MobileNetV3Small | MobileNetV3Large | MobileNetV1
    # resnet: 18 | 34 | 50 | 101 | 152 (given as a string or an int)
    # efficientnet: b0 .. b7 (its width and depth come from the model_id)
    model_id: str = field(default="MobileNetV2", metadata=STRING_OR_INTEGER)
    # MobileNet filter_size_scale / ResNet depth_multiplier; EfficientNet: 1.0 only.
    width_multiplier: float = 1.0
    # MobileNet V2/V3 with width_multiplier < 1: false keeps the last 1x1 convolution
    # at full width (Model Garden); true scales it too (the OD API's MobileNetV2).
    scale_last_layer: bool = False
    # resnet: model_garden (Model Garden's ResNet, v1.5: a block downsamples in its 3x3
    # convolution) | keras_v1 (Keras' ResNet v1 as the OD API's ResNet extractors
    # compute it: in its first 1x1; 50, 101, 152; their checkpoints load exactly).
    resnet_variant: str = "model_garden"
    # efficientnet: the activation inside squeeze-excitation, relu (Model Garden's
    # default) | swish (the OD API's Keras EfficientNet, EfficientDet's: its
    # checkpoints load exactly).
    se_activation: str = "relu"
    # efficientnet: where its levels 2-5 are: model_garden (Model Garden's: the end of
    # each block group) | odapi (the OD API's EfficientDet's: B0's block names for every
    # size, inside the groups of B1-B7; the layers after its level 5 are not built;
    # with se_activation swish, its checkpoints load exactly; its squeeze-excitation
    # biases carry the L2 loss too, as the OD API's). B0: the same levels.
    efficientnet_endpoints: str = "model_garden"
    # mobilenet: whether the L2 loss covers its depthwise kernels too (Model Garden's
    # default: false; the OD API's Keras MobileNets: true). Changes the loss only.
    regularize_depthwise: bool = False

    def problems(self, prefix: str = "model.backbone") -> list[str]:
        c = Checks(prefix)
        c.choice("resnet_variant", self.resnet_variant, RESNET_VARIANTS)
        c.choice("se_activation", self.se_activation, SE_ACTIVATIONS)
        c.need(self.se_activation != "swish" or self.type == "efficientnet", "se_activation",
               self.se_activation, "applies to type: efficientnet only (an OD API EfficientDet "
               "extractor sets it: with another backbone, set se_activation: relu)")
        c.choice("efficientnet_endpoints", self.efficientnet_endpoints, EFFICIENTNET_ENDPOINTS)
        c.need(self.efficientnet_endpoints != "odapi" or self.type == "efficientnet",
               "efficientnet_endpoints", self.efficientnet_endpoints,
               "applies to type: efficientnet only (an OD API EfficientDet extractor sets it: "
               "with another backbone, set efficientnet_endpoints: model_garden)")
        c.need(self.resnet_variant != "keras_v1" or (
            self.type == "resnet" and str(self.model_id) in ("50", "101", "152")),
            "resnet_variant", self.resnet_variant,
            "applies to type: resnet with model_id 50, 101 or 152 only (an OD API ResNet "
            "extractor sets it: with another backbone, set resnet_variant: model_garden)")
        c.need(not self.scale_last_layer or self.type == "mobilenet", "scale_last_layer",
               self.scale_last_layer, "applies to type: mobilenet only")
        c.need(not self.regularize_depthwise or self.type == "mobilenet",
               "regularize_depthwise", self.regularize_depthwise,
               "applies to type: mobilenet only")
        c.choice("type", self.type, tuple(BACKBONE_MODEL_IDS))
        if self.type in BACKBONE_MODEL_IDS:
            c.choice("model_id", self.model_id, BACKBONE_MODEL_IDS[self.type],
                     f" for {c.path('type')}: {self.type}")
        c.need(self.width_multiplier > 0, "width_multiplier", self.width_multiplier, "must be > 0")
        if self.type == "efficientnet":
            c.need(self.width_multiplier == 1.0, "width_multiplier", self.width_multiplier,
                   "must be 1.0 for efficientnet (the model_id sets its width)")
        return c.problems


@dataclass
class FpnConfig:
    # fpn: Model Garden's feature pyramid over the backbone's levels; odapi: the OD
    # API's Keras FPN (families/odapi_fpn.py: no 3x3 on the top backbone level, no
    # bias before a batch norm, the activation after each; with use_separable_conv its
    # 3x3s separable, its laterals plain, as the OD API's use_depthwise); none: the
    # backbone's own feature map at its one level (min_level = max_level; faster_rcnn
    # only).
    type: str = "fpn"
    num_filters: int = 256
    use_separable_conv: bool = False

    def problems(self, prefix: str = "model.fpn") -> list[str]:
        c = Checks(prefix)
        c.choice("type", self.type, FPN_TYPES)
        c.need(self.num_filters >= 1, "num_filters", self.num_filters, "must be >= 1")
        return c.problems


@dataclass
class HeadConfig:
    num_convs: int = 4
    num_filters: int = 256
    use_separable_conv: bool = False
    # true: one tower of num_convs convolutions feeds both the class and the box
    # predictor (the OD API's share_prediction_tower); false: one tower each.
    share_prediction_tower: bool = False
    # true: each tower convolution has a bias; false: none, as the OD API's weight-shared
    # box predictor's (each feeds a batch norm, whose offset makes a bias redundant);
    # null: the head's own, Model Garden's two towers with, the shared tower without.
    tower_conv_bias: bool | None = None

    def problems(self, prefix: str = "model.head") -> list[str]:
        c = Checks(prefix)
        c.need(self.num_filters >= 1, "num_filters", self.num_filters, "must be >= 1")
        c.need(self.num_convs >= 0, "num_convs", self.num_convs, "must be >= 0")
        return c.problems


@dataclass
class AnchorConfig:
    num_scales: int = 3
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    anchor_size: float = 4.0
    match_threshold: float = 0.5
    unmatched_threshold: float = 0.5
    # retinanet: the box targets' scales [y, x, height, width] against the anchors, as
    # the OD API's faster_rcnn_box_coder (y_scale, x_scale, height_scale, width_scale):
    # the box head learns the scaled codes and detections divide them out. Empty:
    # unscaled, as Model Garden's RetinaNet.
    box_coder_weights: list[float] = field(default_factory=list)

    def problems(self, prefix: str = "model.anchor") -> list[str]:
        c = Checks(prefix)
        c.need(self.num_scales >= 1, "num_scales", self.num_scales, "must be >= 1")
        c.need(len(self.aspect_ratios) > 0 and all(r > 0 for r in self.aspect_ratios),
               "aspect_ratios", self.aspect_ratios,
               "must be a non-empty list of positive numbers, e.g. [0.5, 1.0, 2.0]")
        c.need(self.anchor_size > 0, "anchor_size", self.anchor_size, "must be > 0")
        c.need(not self.box_coder_weights or (len(self.box_coder_weights) == 4 and all(
            w > 0 for w in self.box_coder_weights)), "box_coder_weights",
            self.box_coder_weights, "must be empty or 4 positive numbers [y, x, height, "
            "width], e.g. [10, 10, 5, 5]")
        if not 0 < self.unmatched_threshold <= self.match_threshold <= 1:
            c.problems.append(
                f"{c.path('unmatched_threshold')} is {self.unmatched_threshold} and "
                f"{c.path('match_threshold')} is {self.match_threshold}; they must satisfy "
                "0 < unmatched_threshold <= match_threshold <= 1"
            )
        return c.problems


@dataclass
class PostProcessingConfig:
    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    max_detections: int = 100
    pre_nms_top_k: int = 1000

    def problems(self, prefix: str = "model.post_processing") -> list[str]:
        c = Checks(prefix)
        c.need(0 <= self.score_threshold < 1, "score_threshold", self.score_threshold,
               "must be in [0, 1)")
        c.need(0 < self.iou_threshold <= 1, "iou_threshold", self.iou_threshold,
               "must be in (0, 1]")
        c.need(self.max_detections >= 1, "max_detections", self.max_detections, "must be >= 1")
        c.need(self.pre_nms_top_k >= self.max_detections, "pre_nms_top_k", self.pre_nms_top_k,
               f"must be >= {c.path('max_detections')} ({self.max_detections})")
        return c.problems


@dataclass
class NormConfig:
    activation: str = "relu6"
    use_sync_bn: bool = False
    norm_momentum: float = 0.99
    norm_epsilon: float = 0.001

    def problems(self, prefix: str = "model.norm") -> list[str]:
        c = Checks(prefix)
        c.choice("activation", self.activation, ACTIVATIONS)
        c.need(0 <= self.norm_momentum <= 1, "norm_momentum", self.norm_momentum,
               "must be in [0, 1]")
        c.need(self.norm_epsilon > 0, "norm_epsilon", self.norm_epsilon, "must be > 0")
        return c.problems


@dataclass
class ModelConfig:
    architecture: str = "retinanet"
    num_classes: int = 1
    input_size: list[int] = field(default_factory=lambda: [128, 128])  # [height, width]
    # The model sees (pixel - pixel_mean) / pixel_stddev per RGB channel, pixels 0..255
    # (inputs.normalize): Model Garden's ImageNet statistics by default, as its
    # checkpoints were trained; an OD API config maps its feature extractor's.
    pixel_mean: list[float] = field(default_factory=lambda: list(IMAGENET_PIXEL_MEAN))
    pixel_stddev: list[float] = field(default_factory=lambda: list(IMAGENET_PIXEL_STDDEV))
    min_level: int = 3
    max_level: int = 5
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FpnConfig = field(default_factory=FpnConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    initializers: InitializersConfig = field(default_factory=InitializersConfig)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    post_processing: PostProcessingConfig = field(default_factory=PostProcessingConfig)
    norm: NormConfig = field(default_factory=NormConfig)
    # faster_rcnn only (ARCHITECTURE_KEYS)
    rpn_head: RpnHeadConfig = field(default_factory=RpnHeadConfig)
    rpn: RpnConfig = field(default_factory=RpnConfig)
    proposals: ProposalsConfig = field(default_factory=ProposalsConfig)
    roi_sampler: RoiSamplerConfig = field(default_factory=RoiSamplerConfig)
    roi_aligner: RoiAlignerConfig = field(default_factory=RoiAlignerConfig)
    detection_head: DetectionHeadConfig = field(default_factory=DetectionHeadConfig)

    def problems(self, prefix: str = "model") -> list[str]:
        c = Checks(prefix)
        c.choice("architecture", self.architecture, ARCHITECTURES)
        c.problems += self.backbone.problems(c.path("backbone"))
        c.need(self.num_classes >= 1, "num_classes", self.num_classes,
               "must be >= 1 (the number of object classes; label map ids are 1..num_classes)")
        levels = f"must be in [{MIN_LEVEL}, {MAX_LEVEL}]"
        c.need(MIN_LEVEL <= self.min_level <= MAX_LEVEL, "min_level", self.min_level, levels)
        c.need(MIN_LEVEL <= self.max_level <= MAX_LEVEL, "max_level", self.max_level, levels)
        c.need(self.min_level <= self.max_level, "min_level", self.min_level,
               f"must be <= {c.path('max_level')} ({self.max_level})")
        if self.fpn.type == "none":
            c.need(self.architecture == "faster_rcnn", "fpn.type", self.fpn.type,
                   "only model.architecture: faster_rcnn can do without the FPN "
                   "(RetinaNet's head runs on the FPN's levels); set it to 'fpn'")
            c.need(self.min_level == self.max_level, "fpn.type", self.fpn.type,
                   f"that is the backbone's one feature map: set {c.path('min_level')} and "
                   f"{c.path('max_level')} to its level (e.g. both 4, stride 16; now "
                   f"{self.min_level} and {self.max_level})")
        c.problems += self._input_size_problems(prefix)
        c.problems += self._pixel_problems(prefix)
        # The shared sections and this architecture's own (ARCHITECTURE_KEYS); of
        # model.initializers, this architecture's parts.
        own = [key.removeprefix("model.").rstrip(".")
               for key in ARCHITECTURE_KEYS.get(self.architecture, ())
               if key.endswith(".") and key.count(".") == 2]
        c.problems += self.initializers.problems(
            c.path("initializers"), ARCHITECTURE_PARTS.get(self.architecture, PARTS))
        for name in ("fpn", "anchor", "loss", "post_processing", "norm", *own):
            if name == "roi_sampler":  # bounded by the proposals it samples from
                c.problems += self.roi_sampler.problems(
                    c.path(name), num_proposals=self.proposals.num_proposals,
                    proposals_key=c.path("proposals.num_proposals"))
            else:
                c.problems += getattr(self, name).problems(c.path(name))
        return c.problems

    def _pixel_problems(self, prefix: str) -> list[str]:
        """pixel_mean and pixel_stddev: 3 values each, on the 0..255 scale; stddev > 0."""
        problems = []
        for name, values in (("pixel_mean", self.pixel_mean),
                             ("pixel_stddev", self.pixel_stddev)):
            if len(values) != 3:
                problems.append(f"{prefix}.{name} is {values}; must be 3 values, one per "
                                f"RGB channel, on the 0..255 pixel scale")
        if len(self.pixel_stddev) == 3 and not all(v > 0 for v in self.pixel_stddev):
            problems.append(f"{prefix}.pixel_stddev is {self.pixel_stddev}; each value must "
                            f"be > 0 (1.0 leaves the channel unscaled)")
        return problems

    def _input_size_problems(self, prefix: str) -> list[str]:
        size, path = self.input_size, f"{prefix}.input_size"
        if len(size) != 2:
            return [f"{path} is {size}; must be [height, width]"]
        if not all(s > 0 for s in size):
            return [f"{path} is {size}; height and width must be positive"]
        if not MIN_LEVEL <= self.min_level <= self.max_level <= MAX_LEVEL:
            return []  # reported above; the stride is unknown
        stride = input_stride(self.max_level)
        if any(s % stride for s in size):
            nearest = [max(stride, (s + stride // 2) // stride * stride) for s in size]
            return [f"{path} {size} must be a multiple of {stride} (2**min(max_level, "
                    f"{BACKBONE_MAX_LEVEL}), the backbone's deepest stride; "
                    f"{prefix}.max_level: {self.max_level}); try {nearest}"]
        return []


def belongs_to(path: str) -> str | None:
    """The architecture that alone reads the dotted `model` key `path` (a section or a
    leaf), or None when it is shared (or not a model key)."""
    for architecture, keys in ARCHITECTURE_KEYS.items():
        for key in keys:
            section = key.endswith(".")
            if path == key.rstrip(".") or (section and path.startswith(key)):
                return architecture
    return None


def architecture_key_problems(architecture: str, paths: list[str]) -> list[tuple[str, str]]:
    """(key, problem) for each dotted key of `paths` (keys a config file gave) that
    belongs to another architecture than `architecture` (model.architecture); keys
    inside a refused section are not repeated."""
    problems, refused = [], []
    for path in paths:
        owner = belongs_to(path)
        if any(path.startswith(r + ".") for r in refused):
            continue  # a key inside a section already refused
        if owner is not None and owner != architecture and architecture in ARCHITECTURES:
            refused.append(path)
            problems.append((path,
                f"`{path}` is a {owner} key, but model.architecture is {architecture}; "
                f"remove it, or set model.architecture: {owner}"))
    return problems
