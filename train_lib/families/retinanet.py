"""The detection model and its losses, built from the pipeline config.

The model is Model Garden's RetinaNet (`official.vision.modeling.factory`):
backbone -> FPN -> class and box heads -> detection generator (NMS). Its
class outputs have `num_classes + 1` columns: column 0 is the background,
columns 1..num_classes are the label map's ids, as in the OD API.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.vision import registry_imports  # noqa: F401  (registers backbones)
from official.vision.configs import backbones, common, decoders
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.losses import focal_loss, loss_utils
from official.vision.modeling import factory

from train_lib.config import ModelConfig

LOSS_KEYS = ("classification_loss", "localization_loss", "regularization_loss", "total_loss")


def model_garden_config(model: ModelConfig) -> retinanet_cfg.RetinaNet:
    """Our `model` section as Model Garden's RetinaNet config."""
    bb = model.backbone
    if bb.type == "mobilenet":
        backbone = backbones.Backbone(
            type="mobilenet",
            mobilenet=backbones.MobileNet(
                model_id=bb.model_id, filter_size_scale=bb.width_multiplier
            ),
        )
    elif bb.type == "efficientnet":
        backbone = backbones.Backbone(
            type="efficientnet",
            efficientnet=backbones.EfficientNet(model_id=bb.model_id, se_ratio=0.25),
        )
    else:
        backbone = backbones.Backbone(
            type="resnet",
            resnet=backbones.ResNet(
                model_id=int(bb.model_id), depth_multiplier=bb.width_multiplier
            ),
        )
    post = model.post_processing
    return retinanet_cfg.RetinaNet(
        num_classes=model.num_classes + 1,
        input_size=[*model.input_size, 3],
        min_level=model.min_level,
        max_level=model.max_level,
        anchor=retinanet_cfg.Anchor(
            num_scales=model.anchor.num_scales,
            aspect_ratios=list(model.anchor.aspect_ratios),
            anchor_size=model.anchor.anchor_size,
        ),
        backbone=backbone,
        decoder=decoders.Decoder(
            type="fpn",
            fpn=decoders.FPN(
                num_filters=model.fpn.num_filters,
                use_separable_conv=model.fpn.use_separable_conv,
            ),
        ),
        head=retinanet_cfg.RetinaNetHead(
            num_convs=model.head.num_convs,
            num_filters=model.head.num_filters,
            use_separable_conv=model.head.use_separable_conv,
        ),
        detection_generator=retinanet_cfg.DetectionGenerator(
            pre_nms_top_k=post.pre_nms_top_k,
            pre_nms_score_threshold=post.score_threshold,
            nms_iou_threshold=post.iou_threshold,
            max_num_detections=post.max_detections,
        ),
        norm_activation=common.NormActivation(
            activation=model.norm.activation,
            use_sync_bn=model.norm.use_sync_bn,
            norm_momentum=model.norm.norm_momentum,
            norm_epsilon=model.norm.norm_epsilon,
        ),
    )


def build_model(model: ModelConfig, precision: str = "float32") -> tf_keras.Model:
    """Builds the RetinaNet with L2 regularisation on its weights; variables exist on return.

    `precision` is a Keras policy name (train_config.mixed_precision): with a mixed
    policy the layers compute in float16/bfloat16 and keep float32 variables, so
    checkpoints are the same either way. The global policy is restored on return.
    """
    height, width = model.input_size
    decay = model.loss.l2_weight_decay
    # Halved to match tf.nn.l2_loss, as Model Garden does.
    regularizer = tf_keras.regularizers.l2(decay / 2.0) if decay else None
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(precision)
    try:
        net = factory.build_retinanet(
            input_specs=tf_keras.layers.InputSpec(shape=[None, height, width, 3]),
            model_config=model_garden_config(model),
            l2_regularizer=regularizer,
        )
        net(tf.zeros([1, height, width, 3]), training=False)  # create every variable now
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
    return net


def compute_losses(
    model: ModelConfig,
    outputs: dict,
    labels: dict,
    num_positives: tf.Tensor,
    regularization: tf.Tensor,
) -> dict[str, tf.Tensor]:
    """RetinaNet's focal classification and Huber box losses.

    Both are summed over the batch and divided by `num_positives + 1` (the
    caller passes the count over the whole global batch, so every replica's
    loss is a share of the global mean). Returns the terms named in LOSS_KEYS.
    """
    loss_cfg = model.loss
    normalizer = num_positives + 1.0
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
    box_loss = loss_cfg.box_loss_weight * box_loss
    return {
        "classification_loss": cls_loss,
        "localization_loss": box_loss,
        "regularization_loss": regularization,
        "total_loss": cls_loss + box_loss + regularization,
    }
