"""Faster R-CNN's own sections of the `model` config (`model_schema.ARCHITECTURE_KEYS`
lists them): the RPN head and its anchor sampling, the proposals, the ROI sampler
and aligner, the detection head. Each dataclass checks its own values."""

from __future__ import annotations

from dataclasses import dataclass

from train_lib.config.problems import Checks

__all__ = ["DetectionHeadConfig", "ProposalsConfig", "RoiAlignerConfig", "RoiSamplerConfig",
           "RpnConfig", "RpnHeadConfig"]


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
