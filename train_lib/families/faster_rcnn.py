"""Faster R-CNN: its model, input targets, losses and detections (the family seam,
families/__init__.py, calls these).

The model is Model Garden's `MaskRCNNModel` without masks, built by its factory
(`build_maskrcnn`): backbone -> FPN -> RPN head -> proposals (NMS over the
RPN's boxes) -> ROI sampler (training) -> ROI align -> detection head -> detection
generator (NMS). As with RetinaNet, its class outputs have `num_classes + 1`
columns (0 is the background) and its detections carry the label map's ids.

Input targets (`input_targets`): the RPN's score and box targets per level (Model
Garden's RPN anchor labeler with the anchors sampled by a stateless draw keyed by
the example's augmentation key, faster_rcnn_sampling.py), and the ground truth
padded to `max_boxes` with -1 (`gt_boxes` in model-input pixels, `gt_classes`),
which the model's ROI sampler matches its proposals against. The ROI sampler's
draw is made deterministic too, so a resumed run trains exactly as an
uninterrupted one.

Losses: Model Garden's RPN score and box losses and Fast R-CNN class and box
losses, weighted by `model.loss` (the OD API's first_stage_* and second_stage_*
weights), each replica's divided by the replica count (a share of the global mean).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.vision.configs import maskrcnn as maskrcnn_cfg
from official.vision.losses import maskrcnn_losses
from official.vision.modeling import factory, maskrcnn_model
from official.vision.ops import anchor, preprocess_ops
from official.vision.utils.object_detection import box_list

from train_lib.config import ModelConfig
from train_lib.families import backbones, initializers, regularizers
from train_lib.families.faster_rcnn_sampling import DeterministicBoxSampler, sample_anchors

NAME = "faster_rcnn"
LOSS_KEYS = ("rpn_score_loss", "rpn_box_loss", "frcnn_class_loss", "frcnn_box_loss",
             "regularization_loss", "total_loss")
CHECKPOINT_MARK = "model/rpn_head/"
# Detection head parts that do not depend on the number of classes.
HEAD_PARTS = ("_convs", "_conv_norms", "_fcs", "_fc_norms")


def model_garden_config(model: ModelConfig) -> maskrcnn_cfg.MaskRCNN:
    """Our `model` section as Model Garden's Mask R-CNN config, without masks."""
    proposals, sampler = model.proposals, model.roi_sampler
    head = model.detection_head
    return maskrcnn_cfg.MaskRCNN(
        include_mask=False,
        rpn_head=maskrcnn_cfg.RPNHead(
            num_convs=model.rpn_head.num_convs,
            num_filters=model.rpn_head.num_filters,
            use_separable_conv=model.rpn_head.use_separable_conv,
        ),
        detection_head=maskrcnn_cfg.DetectionHead(
            num_convs=head.num_convs,
            num_filters=head.num_filters,
            use_separable_conv=head.use_separable_conv,
            num_fcs=head.num_fcs,
            fc_dims=head.fc_dims,
            class_agnostic_bbox_pred=head.class_agnostic_bbox_pred,
        ),
        roi_generator=maskrcnn_cfg.ROIGenerator(
            pre_nms_top_k=proposals.pre_nms_top_k,
            nms_iou_threshold=proposals.nms_iou_threshold,
            num_proposals=proposals.num_proposals,
            test_pre_nms_top_k=proposals.test_pre_nms_top_k,
            test_nms_iou_threshold=proposals.nms_iou_threshold,
            test_num_proposals=proposals.test_num_proposals,
        ),
        roi_sampler=maskrcnn_cfg.ROISampler(
            mix_gt_boxes=sampler.mix_gt_boxes,
            num_sampled_rois=sampler.num_sampled_rois,
            foreground_fraction=sampler.foreground_fraction,
            foreground_iou_threshold=sampler.foreground_iou_threshold,
            background_iou_high_threshold=sampler.background_iou_high_threshold,
            background_iou_low_threshold=sampler.background_iou_low_threshold,
        ),
        roi_aligner=maskrcnn_cfg.ROIAligner(crop_size=model.roi_aligner.crop_size),
        **backbones.shared_fields(model, maskrcnn_cfg.Anchor, maskrcnn_cfg.DetectionGenerator),
    )


def build_model(model: ModelConfig, precision: str = "float32") -> tf_keras.Model:
    """Builds the Faster R-CNN with each part's L2 weight on its kernels
    (regularizers.py) and the deterministic ROI sampler; variables exist on return,
    each part's kernels drawn from `model.initializers` where it sets one
    (families/initializers.py). `precision`: see backbones.precision_policy."""
    height, width = model.input_size
    with backbones.precision_policy(precision):
        input_specs = tf_keras.layers.InputSpec(shape=[None, height, width, 3])
        l2_regularizer = regularizers.l2_regularizer(model)
        net = factory.build_maskrcnn(
            input_specs=input_specs,
            model_config=model_garden_config(model),
            l2_regularizer=l2_regularizer,
            **backbones.factory_parts(model, input_specs, l2_regularizer),
        )
        for sampler in net.roi_sampler:
            sampler._sampler = DeterministicBoxSampler(  # no variables: nothing to checkpoint
                model.roi_sampler.num_sampled_rois, model.roi_sampler.foreground_fraction)
        net(tf.zeros([1, height, width, 3]), image_shape=tf.constant([[height, width]],
                                                                     tf.float32),
            training=False)  # create every variable now
        initializers.draw(net, model)
        regularizers.assign_parts(net, model, l2_regularizer)
        regularizers.regularize_depthwise(net, model, l2_regularizer)
    return net


def is_model(model) -> bool:
    return isinstance(model, maskrcnn_model.MaskRCNNModel)


def _anchor_boxes(model: ModelConfig) -> dict:
    """The RPN's anchors per level (str), as the model generates them."""
    return anchor.Anchor(
        min_level=model.min_level,
        max_level=model.max_level,
        num_scales=model.anchor.num_scales,
        aspect_ratios=list(model.anchor.aspect_ratios),
        anchor_size=model.anchor.anchor_size,
        image_size=tuple(model.input_size),
    ).multilevel_boxes


def input_targets(model: ModelConfig, max_boxes: int):
    """The function of a batch's augmented boxes to its labels (families/__init__ states
    its arguments): per example, `rpn_score_targets` and `rpn_box_targets` per level
    (Model Garden's RpnAnchorLabeler with a stateless sample keyed by the example's
    key), and `gt_boxes` [max_boxes, 4] and `gt_classes` [max_boxes], padded with
    -1; each with the batch dimension first."""
    rpn = model.rpn
    labeler = anchor.AnchorLabeler(match_threshold=rpn.match_threshold,
                                   unmatched_threshold=rpn.unmatched_threshold)
    anchors = _anchor_boxes(model)
    flat_anchors = tf.concat([tf.reshape(a, [-1, 4]) for a in anchors.values()], axis=0)

    def example_targets(key: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor) -> dict:
        # Model Garden's RpnAnchorLabeler.label_anchors, with a stateless sample.
        similarity = labeler.similarity_calc(flat_anchors, boxes)
        match_indices, match_indicators = labeler.matcher(similarity)
        box_mask = tf.tile(tf.expand_dims(tf.less_equal(match_indicators, 0), -1), [1, 4])
        box_targets = labeler.target_gather(boxes, match_indices, box_mask)
        box_targets = labeler.box_coder.encode(box_list.BoxList(box_targets),
                                               box_list.BoxList(flat_anchors))
        matched = tf.expand_dims(tf.greater_equal(match_indicators, 0), -1)
        box_targets = tf.where(matched, box_targets, tf.zeros_like(box_targets))
        score_targets = sample_anchors(match_indicators, rpn.batch_size_per_image,
                                       rpn.foreground_fraction, key)
        pad = preprocess_ops.clip_or_pad_to_fixed_size
        return {
            "rpn_score_targets": anchor.unpack_targets(score_targets, anchors),
            "rpn_box_targets": anchor.unpack_targets(box_targets, anchors),
            "gt_boxes": pad(boxes, max_boxes, -1),
            "gt_classes": pad(tf.cast(classes, tf.int32), max_boxes, -1),
        }

    def level_specs(per_anchor: int, dtype) -> dict:
        return {level: tf.TensorSpec([a.shape[0], a.shape[1], a.shape[2] // 4 * per_anchor],
                                     dtype) for level, a in anchors.items()}
    signature = {"rpn_score_targets": level_specs(1, tf.int32),
                 "rpn_box_targets": level_specs(4, tf.float32),
                 "gt_boxes": tf.TensorSpec([max_boxes, 4], tf.float32),
                 "gt_classes": tf.TensorSpec([max_boxes], tf.int32)}

    def targets(keys: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor,
                num_boxes: tf.Tensor) -> dict:
        return tf.map_fn(lambda e: example_targets(e[0], e[1][:e[3]], e[2][:e[3]]),
                         (keys, boxes, classes, num_boxes), fn_output_signature=signature)

    return targets


def loss_normalizers(labels: dict) -> dict[str, tf.Tensor]:
    """None: Model Garden's losses average their normalisers over replicas themselves."""
    del labels
    return {}


def train_outputs(model, images: tf.Tensor, labels: dict) -> dict:
    """The training forward pass: proposals clipped to the model input, sampled
    against the padded ground truth."""
    batch = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1:3], tf.float32)
    return model(images, image_shape=tf.tile(size[tf.newaxis], [batch, 1]),
                 gt_boxes=labels["gt_boxes"], gt_classes=labels["gt_classes"], training=True)


def _float32(values):
    if isinstance(values, dict):
        return {k: tf.cast(v, tf.float32) for k, v in values.items()}
    return tf.cast(values, tf.float32)


def compute_losses(
    model: ModelConfig,
    outputs: dict,
    labels: dict,
    normalizers: dict[str, tf.Tensor],
    regularization: tf.Tensor,
    num_replicas: int = 1,
) -> dict[str, tf.Tensor]:
    """The RPN score (sigmoid cross-entropy over the sampled anchors) and box (Huber)
    losses and the Fast R-CNN class (softmax cross-entropy over the sampled ROIs) and
    box (Huber, positives only) losses, as Model Garden's Mask R-CNN task computes
    them, weighted by `model.loss`; each divided by `num_replicas`. Returns the terms
    named in LOSS_KEYS (`regularization` is already this replica's share)."""
    del normalizers
    cfg = model.loss
    rpn_score = maskrcnn_losses.RpnScoreLoss(model.rpn.batch_size_per_image)(
        _float32(outputs["rpn_scores"]), labels["rpn_score_targets"])
    rpn_box = maskrcnn_losses.RpnBoxLoss(cfg.rpn_huber_loss_delta)(
        _float32(outputs["rpn_boxes"]), labels["rpn_box_targets"])
    frcnn_class = maskrcnn_losses.FastrcnnClassLoss()(
        _float32(outputs["class_outputs"]), outputs["class_targets"])
    frcnn_box = maskrcnn_losses.FastrcnnBoxLoss(
        cfg.frcnn_huber_loss_delta, model.detection_head.class_agnostic_bbox_pred)(
        _float32(outputs["box_outputs"]), outputs["class_targets"],
        _float32(outputs["box_targets"]))
    share = 1.0 / num_replicas
    terms = {
        "rpn_score_loss": cfg.rpn_score_weight * share * rpn_score,
        "rpn_box_loss": cfg.rpn_box_weight * share * rpn_box,
        "frcnn_class_loss": cfg.frcnn_class_weight * share * frcnn_class,
        "frcnn_box_loss": cfg.frcnn_box_weight * share * frcnn_box,
        "regularization_loss": regularization,
    }
    terms["total_loss"] = tf.add_n(list(terms.values()))
    return terms


def detect(model, images: tf.Tensor, image_shape: tf.Tensor) -> dict:
    """The model's detections (boxes in model-input pixels) of `images`, proposals
    and boxes clipped to `image_shape` [B, 2], the image's area inside the input."""
    return model(images, image_shape=image_shape, training=False)


def backbone_target(backbone) -> tf.train.Checkpoint:
    """The backbone's place in this family's checkpoints."""
    return tf.train.Checkpoint(model=tf.train.Checkpoint(backbone=backbone))


def detection_target(model) -> tuple[dict, tf.train.Checkpoint, list]:
    """What a detection fine-tune loads: (the parts by name, their place in this
    family's checkpoints, the variables of those parts left out: the class and box
    layers, whose shapes follow the number of classes)."""
    head = model.detection_head[0]
    kept = tf.train.Checkpoint(**{part: getattr(head, part) for part in HEAD_PARTS})
    parts = {"backbone": model.backbone, "decoder": model.decoder,
             "rpn_head": model.rpn_head, "detection_head": head}
    target = tf.train.Checkpoint(model=tf.train.Checkpoint(
        backbone=model.backbone, decoder=model.decoder, rpn_head=model.rpn_head,
        detection_head=[kept]))
    return parts, target, [*head._classifier.variables, *head._box_regressor.variables]
