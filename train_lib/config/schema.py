"""The pipeline config schema: one dataclass per section, each checking its own values.

Sections: `model`, `train_config`, `train_input_reader`, `eval_config`,
`eval_input_reader`, and the optional `shapes_dataset` (how to generate the
built-in synthetic dataset when its files are absent). A field's default is
the value used when the YAML omits the key.

Every section has `problems(prefix)`: its invalid values, each as one
"dotted.key is value; what to do" line (problems.py). `PipelineConfig.problems()`
collects all of them, and `validate` raises them together in one ConfigError.

Class ids follow the OD API: `model.num_classes` counts the object classes,
whose ids in the label map are 1..num_classes; id 0 is the background.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from train_lib.config.coercion import PATHS, STRING_OR_INTEGER, Source, merge_into
from train_lib.config.problems import Checks, raise_problems

ARCHITECTURES = ("retinanet", "faster_rcnn")
# The `model` keys only one architecture reads (a trailing "." marks a whole
# section); every other `model` key is shared. A config that gives another
# architecture's key is refused (`architecture_key_problems`), and `to_dict`
# leaves them out, so model_dir/pipeline.yaml holds only what the model reads.
ARCHITECTURE_KEYS = {
    "retinanet": (
        "model.head.", "model.anchor.match_threshold", "model.anchor.unmatched_threshold",
        "model.loss.focal_loss_alpha", "model.loss.focal_loss_gamma",
        "model.loss.huber_loss_delta", "model.loss.box_loss_weight",
    ),
    "faster_rcnn": (
        "model.rpn_head.", "model.rpn.", "model.proposals.", "model.roi_sampler.",
        "model.roi_aligner.", "model.detection_head.", "model.loss.rpn_score_weight",
        "model.loss.rpn_box_weight", "model.loss.frcnn_class_weight",
        "model.loss.frcnn_box_weight", "model.loss.rpn_huber_loss_delta",
        "model.loss.frcnn_huber_loss_delta",
    ),
}
BACKBONE_MODEL_IDS = {
    "mobilenet": ("MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "MobileNetV1"),
    "resnet": ("18", "34", "50", "101", "152"),
    "efficientnet": tuple(f"b{i}" for i in range(8)),
}
ACTIVATIONS = ("relu", "relu6", "swish", "hard_swish")
OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
LR_SCHEDULES = ("constant", "cosine", "step")
FINE_TUNE_CHECKPOINT_TYPES = ("backbone", "detection")
BAD_EXAMPLE_POLICIES = ("error", "skip")
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
MIN_LEVEL, MAX_LEVEL = 2, 7


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

    def problems(self, prefix: str = "model.backbone") -> list[str]:
        c = Checks(prefix)
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
    num_filters: int = 256
    use_separable_conv: bool = False

    def problems(self, prefix: str = "model.fpn") -> list[str]:
        c = Checks(prefix)
        c.need(self.num_filters >= 1, "num_filters", self.num_filters, "must be >= 1")
        return c.problems


@dataclass
class HeadConfig:
    num_convs: int = 4
    num_filters: int = 256
    use_separable_conv: bool = False

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

    def problems(self, prefix: str = "model.anchor") -> list[str]:
        c = Checks(prefix)
        c.need(self.num_scales >= 1, "num_scales", self.num_scales, "must be >= 1")
        c.need(len(self.aspect_ratios) > 0 and all(r > 0 for r in self.aspect_ratios),
               "aspect_ratios", self.aspect_ratios,
               "must be a non-empty list of positive numbers, e.g. [0.5, 1.0, 2.0]")
        c.need(self.anchor_size > 0, "anchor_size", self.anchor_size, "must be > 0")
        if not 0 < self.unmatched_threshold <= self.match_threshold <= 1:
            c.problems.append(
                f"{c.path('unmatched_threshold')} is {self.unmatched_threshold} and "
                f"{c.path('match_threshold')} is {self.match_threshold}; they must satisfy "
                "0 < unmatched_threshold <= match_threshold <= 1"
            )
        return c.problems


@dataclass
class LossConfig:
    # retinanet
    focal_loss_alpha: float = 0.25
    focal_loss_gamma: float = 1.5
    huber_loss_delta: float = 0.1
    box_loss_weight: float = 50.0
    # both
    l2_weight_decay: float = 4e-5
    # faster_rcnn: the OD API's first_stage_* and second_stage_* loss weights
    rpn_score_weight: float = 1.0  # first_stage_objectness_loss_weight
    rpn_box_weight: float = 2.0  # first_stage_localization_loss_weight
    frcnn_class_weight: float = 1.0  # second_stage_classification_loss_weight
    frcnn_box_weight: float = 2.0  # second_stage_localization_loss_weight
    rpn_huber_loss_delta: float = 1.0 / 9.0
    frcnn_huber_loss_delta: float = 1.0

    def problems(self, prefix: str = "model.loss") -> list[str]:
        c = Checks(prefix)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            c.need(value >= 0, f.name, value, "must be >= 0")
        c.need(self.focal_loss_alpha <= 1, "focal_loss_alpha", self.focal_loss_alpha,
               "must be in [0, 1]")
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


# ---------------------------------------------------------------- faster_rcnn only


@dataclass
class RpnHeadConfig:
    num_convs: int = 1
    num_filters: int = 256
    use_separable_conv: bool = False

    def problems(self, prefix: str = "model.rpn_head") -> list[str]:
        c = Checks(prefix)
        c.need(self.num_filters >= 1, "num_filters", self.num_filters, "must be >= 1")
        c.need(self.num_convs >= 0, "num_convs", self.num_convs, "must be >= 0")
        return c.problems


@dataclass
class RpnConfig:
    """The RPN's anchor targets: which anchors are objects, which background, how
    many of them train the RPN per image (a stateless sample, like augmentation)."""

    match_threshold: float = 0.7
    unmatched_threshold: float = 0.3
    batch_size_per_image: int = 256
    foreground_fraction: float = 0.5

    def problems(self, prefix: str = "model.rpn") -> list[str]:
        c = Checks(prefix)
        if not 0 < self.unmatched_threshold <= self.match_threshold <= 1:
            c.problems.append(
                f"{c.path('unmatched_threshold')} is {self.unmatched_threshold} and "
                f"{c.path('match_threshold')} is {self.match_threshold}; they must satisfy "
                "0 < unmatched_threshold <= match_threshold <= 1")
        c.need(self.batch_size_per_image >= 1, "batch_size_per_image",
               self.batch_size_per_image, "must be >= 1")
        c.need(0 < self.foreground_fraction <= 1, "foreground_fraction",
               self.foreground_fraction, "must be in (0, 1]")
        return c.problems


@dataclass
class ProposalsConfig:
    """The region proposals (Model Garden's ROI generator): NMS over the RPN's boxes."""

    pre_nms_top_k: int = 2000
    nms_iou_threshold: float = 0.7
    num_proposals: int = 1000
    test_pre_nms_top_k: int = 1000  # at evaluation and export
    test_num_proposals: int = 1000

    def problems(self, prefix: str = "model.proposals") -> list[str]:
        c = Checks(prefix)
        for name in ("pre_nms_top_k", "num_proposals", "test_pre_nms_top_k",
                     "test_num_proposals"):
            c.need(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        c.need(0 < self.nms_iou_threshold <= 1, "nms_iou_threshold", self.nms_iou_threshold,
               "must be in (0, 1]")
        return c.problems


@dataclass
class RoiSamplerConfig:
    """Which proposals train the second stage, per image (the OD API's
    second_stage_batch_size and second_stage_balance_fraction)."""

    num_sampled_rois: int = 512
    foreground_fraction: float = 0.25
    foreground_iou_threshold: float = 0.5
    background_iou_high_threshold: float = 0.5
    background_iou_low_threshold: float = 0.0
    mix_gt_boxes: bool = True  # the ground-truth boxes join the proposals

    def problems(self, prefix: str = "model.roi_sampler", *, num_proposals: int = 1000,
                 proposals_key: str = "model.proposals.num_proposals") -> list[str]:
        c = Checks(prefix)
        c.need(1 <= self.num_sampled_rois <= num_proposals, "num_sampled_rois",
               self.num_sampled_rois,
               f"must be in [1, {proposals_key} ({num_proposals})]: the sampler picks its "
               "ROIs among the proposals; lower it or raise the proposals")
        c.need(0 < self.foreground_fraction <= 1, "foreground_fraction",
               self.foreground_fraction, "must be in (0, 1]")
        if not (0 <= self.background_iou_low_threshold <= self.background_iou_high_threshold
                <= self.foreground_iou_threshold <= 1):
            c.problems.append(
                f"{prefix}: background_iou_low_threshold "
                f"({self.background_iou_low_threshold}) <= background_iou_high_threshold "
                f"({self.background_iou_high_threshold}) <= foreground_iou_threshold "
                f"({self.foreground_iou_threshold}) must hold, all in [0, 1]")
        return c.problems


@dataclass
class RoiAlignerConfig:
    crop_size: int = 7  # the OD API's initial_crop_size / maxpool stride

    def problems(self, prefix: str = "model.roi_aligner") -> list[str]:
        c = Checks(prefix)
        c.need(self.crop_size >= 1, "crop_size", self.crop_size, "must be >= 1")
        return c.problems


@dataclass
class DetectionHeadConfig:
    """The second stage's box classifier: convs, then fully connected layers."""

    num_convs: int = 4
    num_filters: int = 256
    use_separable_conv: bool = False
    num_fcs: int = 1
    fc_dims: int = 1024
    class_agnostic_bbox_pred: bool = False

    def problems(self, prefix: str = "model.detection_head") -> list[str]:
        c = Checks(prefix)
        for name in ("num_convs", "num_fcs"):
            c.need(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")
        for name in ("num_filters", "fc_dims"):
            c.need(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        return c.problems


@dataclass
class ModelConfig:
    architecture: str = "retinanet"
    num_classes: int = 1
    input_size: list[int] = field(default_factory=lambda: [128, 128])  # [height, width]
    min_level: int = 3
    max_level: int = 5
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FpnConfig = field(default_factory=FpnConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
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
        c.problems += self._input_size_problems(prefix)
        shared = ("fpn", "anchor", "loss", "post_processing", "norm")
        for name in shared + (("head",) if self.architecture == "retinanet" else ()):
            c.problems += getattr(self, name).problems(c.path(name))
        if self.architecture == "faster_rcnn":
            for name in ("rpn_head", "rpn", "proposals", "roi_aligner", "detection_head"):
                c.problems += getattr(self, name).problems(c.path(name))
            c.problems += self.roi_sampler.problems(
                c.path("roi_sampler"), num_proposals=self.proposals.num_proposals,
                proposals_key=c.path("proposals.num_proposals"))
        return c.problems

    def _input_size_problems(self, prefix: str) -> list[str]:
        size, path = self.input_size, f"{prefix}.input_size"
        if len(size) != 2:
            return [f"{path} is {size}; must be [height, width]"]
        if not all(s > 0 for s in size):
            return [f"{path} is {size}; height and width must be positive"]
        if not MIN_LEVEL <= self.min_level <= self.max_level <= MAX_LEVEL:
            return []  # reported above; the stride is unknown
        stride = 2**self.max_level
        if any(s % stride for s in size):
            nearest = [max(stride, (s + stride // 2) // stride * stride) for s in size]
            return [f"{path} {size} must be a multiple of 2**max_level = {stride} "
                    f"({prefix}.max_level: {self.max_level}); try {nearest}"]
        return []


# ---------------------------------------------------------------- training


@dataclass
class OptimizerConfig:
    type: str = "sgd"  # sgd | adam
    momentum: float = 0.9  # sgd only
    beta_1: float = 0.9  # adam only
    beta_2: float = 0.999  # adam only
    epsilon: float = 1e-7  # adam only
    gradient_clip_norm: float = 0.0  # 0 disables clipping

    def problems(self, prefix: str = "train_config.optimizer") -> list[str]:
        c = Checks(prefix)
        c.choice("type", self.type, OPTIMIZERS)
        for name in ("momentum", "beta_1", "beta_2"):
            value = getattr(self, name)
            c.need(0 <= value < 1, name, value, "must be in [0, 1)")
        c.need(self.epsilon > 0, "epsilon", self.epsilon, "must be > 0")
        c.need(self.gradient_clip_norm >= 0, "gradient_clip_norm", self.gradient_clip_norm,
               "must be >= 0 (0 disables clipping)")
        return c.problems


@dataclass
class LearningRateConfig:
    schedule: str = "cosine"  # constant | cosine | step
    base: float = 0.01
    warmup_steps: int = 0
    warmup_start: float = 0.0  # learning rate at step 0 of the linear warmup
    cosine_alpha: float = 0.0  # cosine: final rate as a fraction of `base`
    boundaries: list[int] = field(default_factory=list)  # step: steps where the rate drops
    decay_factor: float = 0.1  # step: multiplier applied at each boundary

    def problems(self, prefix: str = "train_config.learning_rate", *,
                 num_steps: int = 1000) -> list[str]:
        """`num_steps` (train_config.num_steps) only shapes the suggested boundaries."""
        c = Checks(prefix)
        c.choice("schedule", self.schedule, LR_SCHEDULES)
        c.need(self.base > 0, "base", self.base, "must be > 0")
        # A warmup or boundary at or past num_steps is allowed: a short run (e.g.
        # --num_train_steps=200 on a config with 500 warmup steps) simply stops first.
        c.need(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0")
        c.need(self.warmup_start >= 0, "warmup_start", self.warmup_start, "must be >= 0")
        c.need(0 <= self.cosine_alpha <= 1, "cosine_alpha", self.cosine_alpha,
               "must be in [0, 1]")
        if self.schedule == "step":
            b = self.boundaries
            c.need(len(b) > 0, "boundaries", b,
                   "the step schedule needs at least one boundary step, e.g. "
                   f"[{num_steps * 2 // 3}, {num_steps * 8 // 9}]")
            c.need(all(x > 0 for x in b) and all(x < y for x, y in itertools.pairwise(b)),
                   "boundaries", b, "must be strictly increasing positive steps")
            c.need(0 < self.decay_factor <= 1, "decay_factor", self.decay_factor,
                   "must be in (0, 1]")
        return c.problems


@dataclass
class AugmentationConfig:
    random_horizontal_flip: bool = True
    scale_min: float = 1.0  # scale jitter range; 1.0 and 1.0 disable it
    scale_max: float = 1.0

    def problems(self, prefix: str = "train_config.augmentation") -> list[str]:
        if 0 < self.scale_min <= self.scale_max:
            return []
        return [f"{prefix}.scale_min is {self.scale_min} and scale_max is "
                f"{self.scale_max}; they must satisfy 0 < scale_min <= scale_max (1.0 and 1.0 "
                "disable scale jitter)"]


@dataclass
class TrainConfig:
    batch_size: int = 8
    num_steps: int = 1000
    seed: int = 42
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    learning_rate: LearningRateConfig = field(default_factory=LearningRateConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    steps_per_loop: int = 1  # training steps run inside one tf.function call
    log_every_n: int = 100  # OD API: a log line every 100 steps
    summary_every_n: int = 100
    fine_tune_checkpoint: str = ""
    fine_tune_checkpoint_type: str = "backbone"  # backbone | detection
    # Keras mixed precision: float32 | mixed_float16 (GPUs) | mixed_bfloat16 (TPUs, CPUs).
    mixed_precision: str = "float32"
    jit_compile: bool = False  # compile each replica's step with XLA

    def problems(self, prefix: str = "train_config") -> list[str]:
        c = Checks(prefix)
        for name in ("batch_size", "num_steps", "steps_per_loop", "log_every_n",
                     "summary_every_n"):
            c.need(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        c.problems += self.optimizer.problems(c.path("optimizer"))
        c.choice("mixed_precision", self.mixed_precision, PRECISIONS)
        c.problems += self.learning_rate.problems(c.path("learning_rate"),
                                                  num_steps=self.num_steps)
        c.problems += self.augmentation.problems(c.path("augmentation"))
        c.choice("fine_tune_checkpoint_type", self.fine_tune_checkpoint_type,
                 FINE_TUNE_CHECKPOINT_TYPES)
        return c.problems


# ---------------------------------------------------------------- inputs and eval


@dataclass
class InputReaderConfig:
    # Files or globs; YAML may give one string.
    input_path: list[str] = field(default_factory=list, metadata=PATHS)
    label_map_path: str = ""
    shuffle_buffer_size: int = 256
    num_parallel_calls: int = -1  # -1: tf.data.AUTOTUNE
    # As the OD API's input reader: boxes of an example beyond this many are dropped
    # (and counted in the log).
    max_number_of_boxes: int = 100
    # A record that breaks the data contract (data/example_checks.py): `error` stops
    # with a message naming the file, the record and the rule; `skip` drops it and
    # counts it by rule.
    bad_example_policy: str = "error"

    def problems(self, prefix: str) -> list[str]:
        """`prefix` is train_input_reader or eval_input_reader."""
        c = Checks(prefix)
        c.need(self.max_number_of_boxes >= 1, "max_number_of_boxes", self.max_number_of_boxes,
               "must be >= 1")
        c.choice("bad_example_policy", self.bad_example_policy, BAD_EXAMPLE_POLICIES)
        c.need(self.shuffle_buffer_size >= 1, "shuffle_buffer_size", self.shuffle_buffer_size,
               "must be >= 1 (1 disables shuffling)")
        c.need(self.num_parallel_calls == -1 or self.num_parallel_calls >= 1,
               "num_parallel_calls", self.num_parallel_calls, "must be -1 (autotune) or >= 1")
        return c.problems


@dataclass
class EvalConfig:
    batch_size: int = 8
    eval_every_n: int = 0  # in-process evaluation during training; 0 disables
    # Evaluate the final step of a run that reaches num_steps (eval split configured).
    eval_at_end: bool = True
    metric_for_best: str = "AP"
    num_visualizations: int = 4

    def problems(self, prefix: str = "eval_config") -> list[str]:
        c = Checks(prefix)
        c.need(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        c.need(self.eval_every_n >= 0, "eval_every_n", self.eval_every_n,
               "must be >= 0 (0 disables evaluation during training)")
        c.choice("metric_for_best", self.metric_for_best, COCO_METRICS)
        c.need(self.num_visualizations >= 0, "num_visualizations", self.num_visualizations,
               "must be >= 0")
        return c.problems


@dataclass
class ShapesDatasetConfig:
    """Where and how to generate the synthetic shapes dataset when it is absent."""

    output_dir: str = ""  # empty: no generation
    num_train: int = 2000
    num_val: int = 200
    image_size: int = 128
    num_shards: int = 4
    seed: int = 0

    def problems(self, prefix: str = "shapes_dataset") -> list[str]:
        """Checked only when `output_dir` is set (otherwise nothing is generated)."""
        c = Checks(prefix)
        if self.output_dir:
            for name in ("num_train", "num_val", "num_shards"):
                c.need(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
            c.need(self.image_size >= 16, "image_size", self.image_size, "must be >= 16")
        return c.problems


@dataclass
class PipelineConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train_config: TrainConfig = field(default_factory=TrainConfig)
    train_input_reader: InputReaderConfig = field(default_factory=InputReaderConfig)
    eval_config: EvalConfig = field(default_factory=EvalConfig)
    eval_input_reader: InputReaderConfig = field(default_factory=InputReaderConfig)
    shapes_dataset: ShapesDatasetConfig = field(default_factory=ShapesDatasetConfig)

    def problems(self) -> list[str]:
        """Every invalid value of a well-typed config, as 'path is value; what to do' lines."""
        return (self.model.problems("model")
                + self.train_config.problems("train_config")
                + self.train_input_reader.problems("train_input_reader")
                + self.eval_input_reader.problems("eval_input_reader")
                + self.eval_config.problems("eval_config")
                + self.shapes_dataset.problems("shapes_dataset"))


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


def to_dict(config: PipelineConfig) -> dict:
    """The config as plain YAML-ready data, without the `model` keys of the other
    architectures (ARCHITECTURE_KEYS)."""
    data = dataclasses.asdict(config)
    architecture = config.model.architecture

    def prune(node: dict, prefix: str) -> dict:
        out = {}
        for key, value in node.items():
            path = f"{prefix}.{key}"
            owner = belongs_to(path)
            if owner is not None and owner != architecture:
                continue
            out[key] = prune(value, path) if isinstance(value, dict) else value
        return out

    data["model"] = prune(data["model"], "model")
    return data


def validate(config: PipelineConfig) -> None:
    """Checks a config built in code by the same rules as a loaded one.

    Raises:
        ConfigError: a field of the wrong type (the first one found), else every
            invalid value at once, each with its key path, value and the fix.
    """
    typed = merge_into(PipelineConfig(), to_dict(config), Source("config"))
    raise_problems(typed.problems(), None)
