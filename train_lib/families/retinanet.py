"""RetinaNet: its model, input targets, losses and detections (the family seam,
families/__init__.py, calls these).

The model is Model Garden's RetinaNet (`official.vision.modeling.factory`):
backbone -> FPN -> class and box heads -> detection generator (NMS). Its
class outputs have `num_classes + 1` columns: column 0 is the background,
columns 1..num_classes are the label map's ids, as in the OD API. Its input
targets are the anchors' class and box targets (Model Garden's AnchorLabeler,
which makes no random choice).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.losses import focal_loss, loss_utils
from official.vision.modeling import factory, retinanet_model
from official.vision.ops import anchor
from official.vision.utils.object_detection import faster_rcnn_box_coder

from train_lib.config import ModelConfig
from train_lib.families import backbones, initializers, regularizers
from train_lib.families.anchors import batch_anchors
from train_lib.families.contract import POST_PROCESSING_SCOPE
from train_lib.families.shared_tower_head import SharedTowerRetinaNetHead
from train_lib.families.tower_bias_head import TowerBiasRetinaNetHead

NAME = "retinanet"
LOSS_KEYS = ("classification_loss", "localization_loss", "regularization_loss", "total_loss")
# A variable name only this family's checkpoints (of this trainer) hold.
CHECKPOINT_MARK = "model/_head/"
# Head parts that do not depend on the number of classes (kept by a detection fine-tune):
# Model Garden's head's; the shared-tower head's are its CLASS_INDEPENDENT_PARTS.
HEAD_PARTS = ("_cls_convs", "_cls_norms", "_box_convs", "_box_norms", "_box_regressor")


def model_garden_config(model: ModelConfig) -> retinanet_cfg.RetinaNet:
    """Our `model` section as Model Garden's RetinaNet config (its detection generator
    decodes with `model.anchor.box_coder_weights`, None when empty)."""
    config = retinanet_cfg.RetinaNet(
        head=retinanet_cfg.RetinaNetHead(
            num_convs=model.head.num_convs,
            num_filters=model.head.num_filters,
            use_separable_conv=model.head.use_separable_conv,
        ),
        **backbones.shared_fields(model, retinanet_cfg.Anchor, retinanet_cfg.DetectionGenerator),
    )
    config.detection_generator.box_coder_weights = box_coder_weights(model)
    return config


def box_coder_weights(model: ModelConfig) -> list[float] | None:
    """`model.anchor.box_coder_weights` as Model Garden takes them: None for unscaled."""
    return [float(w) for w in model.anchor.box_coder_weights] or None


def build_model(model: ModelConfig, precision: str = "float32") -> tf_keras.Model:
    """Builds the RetinaNet with each part's L2 weight on its kernels (regularizers.py);
    variables exist on return, each part's kernels drawn from `model.initializers`
    where it sets one (families/initializers.py). `precision`: see
    backbones.precision_policy."""
    height, width = model.input_size
    with backbones.precision_policy(precision):
        input_specs = tf_keras.layers.InputSpec(shape=[None, height, width, 3])
        l2_regularizer = regularizers.l2_regularizer(model)
        net = factory.build_retinanet(
            input_specs=input_specs,
            model_config=model_garden_config(model),
            l2_regularizer=l2_regularizer,
            **backbones.factory_parts(model, input_specs, l2_regularizer),
        )
        if model.head.share_prediction_tower or model.head.tower_conv_bias is False:
            net = _with_our_head(net, model)  # else the factory's is that head
        _create_variables(net, height, width)
        initializers.set_class_bias(net, model.initializers.class_bias)
        initializers.draw(net, model)
        regularizers.assign_parts(net, model, l2_regularizer)
        regularizers.regularize_depthwise(net, model, l2_regularizer)
    return net


def _create_variables(net: retinanet_model.RetinaNetModel, height: int, width: int) -> None:
    """Creates every variable of `net` now: one eager pass of a zero image through its
    backbone, decoder and head, the parts and order of RetinaNetModel.call, so the
    variables and their initial values are the same. Its post-processing (anchors, box
    decoding, NMS) has no variables and is skipped: a quarter of a second of every
    start-up (docs/performance.md, "Start-up")."""
    features = net.backbone(tf.zeros([1, height, width, 3]), training=False)
    if net.decoder:
        features = net.decoder(features, training=False)
    net.head(features, training=False)
    net.built = True


def _with_our_head(net: retinanet_model.RetinaNetModel,
                   model: ModelConfig) -> retinanet_model.RetinaNetModel:
    """`net` (as the factory built it, before its variables exist) with the head
    `model.head` asks for, of the factory head's arguments: a SharedTowerRetinaNetHead
    (`share_prediction_tower`) or a TowerBiasRetinaNetHead, each with
    `tower_conv_bias` (null: the shared tower without biases, two towers with, as
    before the key existed). The factory's head is dropped unused."""
    shared = model.head.share_prediction_tower
    bias = model.head.tower_conv_bias
    head_class = SharedTowerRetinaNetHead if shared else TowerBiasRetinaNetHead
    head = head_class.from_config({**net.head.get_config(),
                                   "tower_conv_bias": not shared if bias is None else bias})
    return retinanet_model.RetinaNetModel.from_config({**net.get_config(), "head": head})


def head_parts(head) -> tuple[str, ...]:
    """The names of `head`'s parts that do not depend on the number of classes."""
    return getattr(head, "CLASS_INDEPENDENT_PARTS", HEAD_PARTS)


def is_model(model) -> bool:
    return isinstance(model, retinanet_model.RetinaNetModel)


def input_targets(model: ModelConfig, max_boxes: int):
    """The function of a batch's augmented boxes to its labels (families/__init__ states
    its arguments): `cls_targets` [B, H_l, W_l, A_l] and `box_targets` [B, H_l, W_l,
    4 A_l] per level, `cls_weights` and `box_weights` [B, num_anchors].

    They are Model Garden's AnchorLabeler.label_anchors of each example (IoU
    matching with a forced match for each box; class -1 for negative and ignored
    anchors, box targets encoded by the Faster R-CNN box coder), vectorised over the
    batch: one set of ops for the batch, not one per example, which made anchor
    labelling about 70% of the input pipeline's time. Matches and weights are
    the labeler's exactly, box targets to within rounding (the labeler's with
    `box_coder_weights=model.anchor.box_coder_weights`: each code times its scale).
    The keys are unused (no random choice); `max_boxes` too."""
    del max_boxes
    anchors = anchor.build_anchor_generator(
        min_level=model.min_level,
        max_level=model.max_level,
        num_scales=model.anchor.num_scales,
        aspect_ratios=model.anchor.aspect_ratios,
        anchor_size=model.anchor.anchor_size,
    )(image_size=tuple(model.input_size))
    flat_anchors = tf.concat([tf.reshape(a, [-1, 4]) for a in anchors.values()], axis=0)
    num_anchors = int(flat_anchors.shape[0])
    anchor_centers_and_sizes = _centers_and_sizes(flat_anchors)
    scales = box_coder_weights(model)
    match_threshold = model.anchor.match_threshold
    unmatched_threshold = model.anchor.unmatched_threshold

    def targets(keys: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor,
                num_boxes: tf.Tensor) -> dict:
        del keys
        width = tf.maximum(tf.reduce_max(num_boxes), 1)  # the batch's most boxes
        boxes, classes = boxes[:, :width], classes[:, :width]
        valid = tf.range(width) < tf.expand_dims(num_boxes, 1)  # [B, M]
        # [B, M, anchors]; padding rows -1, below any IoU: never an anchor's best.
        similarity = tf.where(tf.expand_dims(valid, 2), _iou(boxes, flat_anchors), -1.0)
        matched, indicators = _match(similarity, valid, match_threshold,
                                     unmatched_threshold, num_anchors)
        negative = indicators <= 0
        # Each anchor's box, as a row of the batch's boxes flattened to [B * M].
        rows = matched + width * tf.range(tf.shape(boxes)[0])[:, tf.newaxis]
        cls_targets = tf.where(negative, tf.constant(-1, classes.dtype),
                               tf.gather(tf.reshape(classes, [-1]), rows))
        box_targets = tf.where(tf.expand_dims(negative, -1), 0.0,
                               tf.gather(tf.reshape(boxes, [-1, 4]), rows))
        return {
            "cls_targets": _unpack(cls_targets, anchors),
            "box_targets": _unpack(_encode(box_targets, anchor_centers_and_sizes, scales),
                                   anchors),
            "cls_weights": tf.cast(tf.not_equal(indicators, -2), tf.float32),
            "box_weights": tf.cast(tf.greater(indicators, 0), tf.float32),
        }

    return targets


def _centers_and_sizes(boxes: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """(y center, x center, height + EPSILON, width + EPSILON) of boxes [..., 4],
    as Model Garden's Faster R-CNN box coder computes them."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    height, width = ymax - ymin, xmax - xmin
    return (ymin + height / 2., xmin + width / 2., height + faster_rcnn_box_coder.EPSILON,
            width + faster_rcnn_box_coder.EPSILON)


def _encode(boxes: tf.Tensor, anchor_centers_and_sizes: tuple,
            scales: list[float] | None = None) -> tf.Tensor:
    """Model Garden's FasterRcnnBoxCoder(scale_factors=scales).encode of boxes [B,
    anchors, 4] against the anchors' `_centers_and_sizes`, computed once: [ty, tx,
    th, tw] per anchor, each times its scale (none: unscaled)."""
    ycenter_a, xcenter_a, ha, wa = anchor_centers_and_sizes
    ycenter, xcenter, h, w = _centers_and_sizes(boxes)
    codes = [(ycenter - ycenter_a) / ha, (xcenter - xcenter_a) / wa,
             tf.math.log(h / ha), tf.math.log(w / wa)]
    if scales:
        codes = [code * scale for code, scale in zip(codes, scales, strict=True)]
    return tf.stack(codes, axis=-1)


def _iou(boxes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """IoU [B, M, anchors] of boxes [B, M, 4] with anchors [anchors, 4], with Model
    Garden's arithmetic (iou_similarity.iou), so the same values, laid out with the
    anchors innermost: a broadcast over a few boxes runs vectorised, not per pair."""
    b_ymin, b_xmin, b_ymax, b_xmax = (boxes[..., i:i + 1] for i in range(4))  # [B, M, 1]
    a_ymin, a_xmin, a_ymax, a_xmax = (anchors[:, i] for i in range(4))  # [anchors]
    heights = tf.maximum(0.0, tf.minimum(a_ymax, b_ymax) - tf.maximum(a_ymin, b_ymin))
    widths = tf.maximum(0.0, tf.minimum(a_xmax, b_xmax) - tf.maximum(a_xmin, b_xmin))
    intersections = heights * widths
    unions = ((a_ymax - a_ymin) * (a_xmax - a_xmin)
              + (b_ymax - b_ymin) * (b_xmax - b_xmin)) - intersections
    return tf.where(tf.equal(intersections, 0.0), 0.0, intersections / unions)


def _match(similarity: tf.Tensor, valid: tf.Tensor, match_threshold: float,
           unmatched_threshold: float, num_anchors: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Model Garden's BoxMatcher (force_match_for_each_col) on a batch of [boxes,
    anchors] similarities whose rows past each example's boxes (`valid` False) are
    padding. Returns each anchor's matched box [B, anchors] and its indicator: 1
    positive (IoU >= match_threshold, or the best anchor of a box), -2 ignored
    (between the thresholds), -1 negative (below, or no box at all)."""
    matched = tf.argmax(similarity, axis=1, output_type=tf.int32)
    best = tf.reduce_max(similarity, axis=1)
    indicators = tf.where(best >= match_threshold, 1,
                          tf.where(best >= unmatched_threshold, -2, -1))
    # Each real box's best anchor is matched to it (the first such box wins): the
    # smallest box index scattered onto each anchor, past the last one for none.
    best_anchors = tf.argmax(similarity, axis=2, output_type=tf.int32)  # [B, M]
    batch, width = tf.shape(valid)[0], tf.shape(valid)[1]
    none = width  # no box forces this anchor
    rows = tf.broadcast_to(tf.range(batch)[:, tf.newaxis], [batch, width])
    box_index = tf.where(valid, tf.broadcast_to(tf.range(width), [batch, width]), none)
    forced_boxes = tf.tensor_scatter_nd_min(
        tf.fill([batch, num_anchors], none), tf.stack([rows, best_anchors], axis=-1),
        box_index)
    is_forced = forced_boxes < none
    return (tf.where(is_forced, forced_boxes, matched),
            tf.where(is_forced, 1, indicators))


def _unpack(targets: tf.Tensor, anchors: dict) -> dict:
    """[B, anchors, ...] targets as {level: [B, H_l, W_l, A_l * ...]} (Model Garden's
    unpack_targets with a batch dimension)."""
    per_anchor = 1 if targets.shape.rank == 2 else targets.shape[-1]
    levels, start = {}, 0
    for level, boxes in anchors.items():
        height, width, anchors_per_cell = boxes.shape[0], boxes.shape[1], boxes.shape[2] // 4
        count = height * width * anchors_per_cell
        levels[level] = tf.reshape(targets[:, start:start + count],
                                   [-1, height, width, anchors_per_cell * per_anchor])
        start += count
    return levels


def loss_normalizers(labels: dict) -> dict[str, tf.Tensor]:
    """This replica's share of what normalises the losses: its positive anchors."""
    return {"num_positives": tf.reduce_sum(labels["box_weights"])}


def train_outputs(model, images: tf.Tensor, labels: dict) -> dict:
    del labels
    return model(images, training=True)


def compute_losses(
    model: ModelConfig,
    outputs: dict,
    labels: dict,
    normalizers: dict[str, tf.Tensor],
    regularization: tf.Tensor,
    num_replicas: int = 1,
) -> dict[str, tf.Tensor]:
    """RetinaNet's focal classification and Huber box losses, times
    `model.loss.class_loss_weight` and `box_loss_weight`.

    Both are summed over the batch and divided by `model.loss.normalizer` of the
    positive anchors of the whole global batch (`normalizers["num_positives"]`, summed
    over replicas): their number + 1 (Model Garden's), max(their number, 1) (the OD
    API's), or 1. So every replica's loss is a share of the global one (`num_replicas`
    is not needed for that). Returns the terms named in LOSS_KEYS.
    """
    del num_replicas
    loss_cfg = model.loss
    normalizer = _normalizer(loss_cfg.normalizer, normalizers["num_positives"])
    cls_fn = focal_loss.FocalLoss(
        alpha=loss_cfg.focal_loss_alpha,
        gamma=loss_cfg.focal_loss_gamma,
        reduction=tf_keras.losses.Reduction.SUM,
    )
    box_fn = tf_keras.losses.Huber(
        loss_cfg.huber_loss_delta, reduction=tf_keras.losses.Reduction.SUM
    )
    num_columns = model.num_classes + 1
    y_true_cls = tf.one_hot(
        loss_utils.multi_level_flatten(labels["cls_targets"], last_dim=None), num_columns
    )
    y_pred_cls = loss_utils.multi_level_flatten(outputs["cls_outputs"], last_dim=num_columns)
    y_true_box = loss_utils.multi_level_flatten(labels["box_targets"], last_dim=4)
    y_pred_box = loss_utils.multi_level_flatten(outputs["box_outputs"], last_dim=4)

    cls_loss = cls_fn(y_true_cls, tf.cast(y_pred_cls, tf.float32),
                      sample_weight=labels["cls_weights"] / normalizer)
    box_loss = box_fn(y_true_box, tf.cast(y_pred_box, tf.float32),
                      sample_weight=labels["box_weights"] / normalizer)
    cls_loss = loss_cfg.class_loss_weight * cls_loss
    box_loss = loss_cfg.box_loss_weight * box_loss
    return {
        "classification_loss": cls_loss,
        "localization_loss": box_loss,
        "regularization_loss": regularization,
        "total_loss": cls_loss + box_loss + regularization,
    }


def _normalizer(kind: str, num_positives: tf.Tensor) -> tf.Tensor:
    """What the summed losses are divided by (loss_schema.LOSS_NORMALIZERS)."""
    if kind == "positives":
        return tf.maximum(num_positives, 1.0)
    if kind == "none":
        return tf.ones_like(num_positives)
    if kind == "positives_plus_one":
        return num_positives + 1.0
    raise ValueError(f"model.loss.normalizer: {kind!r}")


def detect(model, images: tf.Tensor, image_shape: tf.Tensor) -> dict:
    """The model's detections (boxes in model-input pixels) of `images`, clipped to
    `image_shape` [B, 2], the image's own area inside the padded input."""
    return model(images, image_shape=image_shape, training=False)


def decoded_detections(model, images: tf.Tensor,
                       image_shape: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Every anchor's box and class scores before NMS, as `detect` decodes them:
    (boxes [B, N, 4] in model-input pixels, clipped to `image_shape` [B, 2];
    scores [B, N, num_classes], column i for label map id i + 1). The same
    backbone, FPN, heads, anchors and Model Garden decoding as `detect`, whose
    detection generator then runs its NMS (in a loop) on these. The decoding's ops
    are in the name scope POST_PROCESSING_SCOPE."""
    features = model.backbone(images, training=False)
    if model.decoder:
        features = model.decoder(features, training=False)
    raw_scores, raw_boxes, _ = model.head(features, training=False)
    with tf.name_scope(POST_PROCESSING_SCOPE):
        anchors = batch_anchors(model, images)
        decoder = type(model.detection_generator).from_config(
            {**model.detection_generator.get_config(), "apply_nms": False})
        decoded = decoder(raw_boxes, raw_scores, anchors, image_shape)
        boxes = decoded["decoded_boxes"]  # [B, N, 1, 4]: RetinaNet's are class-agnostic
        return boxes[:, :, 0, :], decoded["decoded_box_scores"]


def backbone_target(backbone) -> tf.train.Checkpoint:
    """The backbone's place in this family's checkpoints."""
    return tf.train.Checkpoint(model=tf.train.Checkpoint(_backbone=backbone))


def detection_target(model) -> tuple[dict, tf.train.Checkpoint, list]:
    """What a detection fine-tune loads: (the parts by name, their place in this
    family's checkpoints, the variables of those parts left out: the class layer)."""
    head = {part: getattr(model.head, part) for part in head_parts(model.head)}
    parts = {"backbone": model.backbone, "decoder": model.decoder, "head": model.head}
    target = tf.train.Checkpoint(model=tf.train.Checkpoint(
        _backbone=model.backbone, _decoder=model.decoder,
        _head=tf.train.Checkpoint(**head)))
    return parts, target, list(model.head._classifier.variables)
