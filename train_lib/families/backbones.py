"""The parts every family builds alike: Model Garden's backbone, FPN and
normalisation configs from our `model` section (or the backbones and the FPN we build
ourselves where Model Garden's compute another function: `factory_parts`), and the
mixed-precision policy while a model is built (the L2 regulariser: regularizers.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tf_keras
from official.vision.configs import backbones, common, decoders
from official.vision.modeling.backbones import efficientnet, mobilenet
from official.vision.modeling.backbones import factory as backbone_factory

from train_lib.config import ModelConfig
from train_lib.families import efficientnet_endpoints, keras_resnet, odapi_fpn


def backbone_config(model: ModelConfig) -> backbones.Backbone:
    """`model.backbone` as Model Garden's backbone config."""
    bb = model.backbone
    if bb.type == "mobilenet":
        return backbones.Backbone(
            type="mobilenet",
            mobilenet=backbones.MobileNet(
                model_id=bb.model_id, filter_size_scale=bb.width_multiplier
            ),
        )
    if bb.type == "efficientnet":
        return backbones.Backbone(
            type="efficientnet",
            efficientnet=backbones.EfficientNet(model_id=bb.model_id, se_ratio=0.25),
        )
    return backbones.Backbone(
        type="resnet",
        resnet=backbones.ResNet(model_id=int(bb.model_id), depth_multiplier=bb.width_multiplier),
    )


def build_backbone(model: ModelConfig, input_specs: tf_keras.layers.InputSpec,
                   l2_regularizer) -> tf_keras.Model | None:
    """The backbone when Model Garden's factory cannot build it from
    `backbone_config` (pass it to the factory), else None (the factory builds it).
    Four so far, each with the same arguments as the factory's otherwise:
    `model.backbone.scale_last_layer`, Model Garden's MobileNet with
    finegrain_classification_mode off, whose last 1x1 convolution scales with
    width_multiplier < 1 as the OD API's MobileNetV2's does;
    `model.backbone.resnet_variant: keras_v1`, Keras' ResNet v1 as the OD API's
    ResNet extractors compute it (keras_resnet.py); and
    `model.backbone.se_activation: swish`, Model Garden's EfficientNet with swish
    inside squeeze-excitation as the OD API's Keras EfficientNet (EfficientDet), by
    Model Garden's own EfficientNet builder, whose se_inner_activation its factory
    config has no field for; and `model.backbone.efficientnet_endpoints: odapi`, that
    EfficientNet with its levels at the OD API's EfficientDet's layers
    (efficientnet_endpoints.py)."""
    norm = norm_activation(model)
    if model.backbone.type == "efficientnet" and \
            model.backbone.efficientnet_endpoints == "odapi":
        garden = backbone_config(model).efficientnet
        return efficientnet_endpoints.OdapiEndpointsEfficientNet(
            model_id=model.backbone.model_id,
            input_specs=input_specs,
            se_ratio=garden.se_ratio,
            stochastic_depth_drop_rate=garden.stochastic_depth_drop_rate,
            activation=norm.activation,
            se_inner_activation=model.backbone.se_activation,
            use_sync_bn=norm.use_sync_bn,
            norm_momentum=norm.norm_momentum,
            norm_epsilon=norm.norm_epsilon,
            kernel_regularizer=l2_regularizer,
            # The OD API's EfficientNet regularises its squeeze-excitation biases too.
            bias_regularizer=l2_regularizer,
        )
    if model.backbone.type == "efficientnet" and model.backbone.se_activation != "relu":
        return efficientnet.build_efficientnet(
            input_specs=input_specs,
            backbone_config=backbone_config(model),
            norm_activation_config=norm,
            l2_regularizer=l2_regularizer,
            se_inner_activation=model.backbone.se_activation,
        )
    if model.backbone.resnet_variant == "keras_v1":
        return keras_resnet.KerasResNetV1(
            model_id=int(model.backbone.model_id),
            input_specs=input_specs,
            depth_multiplier=model.backbone.width_multiplier,
            activation=norm.activation,
            use_sync_bn=norm.use_sync_bn,
            norm_momentum=norm.norm_momentum,
            norm_epsilon=norm.norm_epsilon,
            kernel_regularizer=l2_regularizer,
        )
    if not model.backbone.scale_last_layer:
        return None
    return mobilenet.MobileNet(
        model_id=model.backbone.model_id,
        filter_size_scale=model.backbone.width_multiplier,
        input_specs=input_specs,
        use_sync_bn=norm.use_sync_bn,
        norm_momentum=norm.norm_momentum,
        norm_epsilon=norm.norm_epsilon,
        kernel_regularizer=l2_regularizer,
        finegrain_classification_mode=False,
    )


def factory_parts(model: ModelConfig, input_specs: tf_keras.layers.InputSpec,
                  l2_regularizer) -> dict:
    """The `backbone` and `decoder` arguments of Model Garden's model factories
    (build_retinanet, build_maskrcnn): `build_backbone`'s backbone, and for
    `model.fpn.type: odapi` the OD API's FPN (odapi_fpn.py) over the backbone (over
    MobileNetV2 reading its last 1x1 convolution as level 5, as the OD API's; then
    built here when `build_backbone` leaves it to the factory, as the factory would
    build it). Otherwise no decoder: the factory builds Model Garden's of
    `fpn_config`."""
    backbone = build_backbone(model, input_specs, l2_regularizer)
    if model.fpn.type != "odapi":
        return {"backbone": backbone}
    norm = norm_activation(model)
    if backbone is None:
        backbone = backbone_factory.build_backbone(
            input_specs=input_specs, backbone_config=backbone_config(model),
            norm_activation_config=norm, l2_regularizer=l2_regularizer)
    levels = dict(backbone.output_specs)
    top = None
    if model.backbone.type == "mobilenet":
        top = odapi_fpn.top_input_of(backbone, model.backbone.model_id, model.max_level)
    if top is not None:  # the OD API's MobileNetV2 FPN reads its last 1x1 convolution
        levels[top[0]] = top[1]
    decoder = odapi_fpn.OdapiFpn(
        input_specs=levels,
        min_level=model.min_level,
        max_level=model.max_level,
        num_filters=model.fpn.num_filters,
        activation=norm.activation,
        use_sync_bn=norm.use_sync_bn,
        norm_momentum=norm.norm_momentum,
        norm_epsilon=norm.norm_epsilon,
        kernel_regularizer=l2_regularizer,
        use_separable_conv=model.fpn.use_separable_conv,
        top_input=top[0] if top is not None else None,
    )
    return {"backbone": backbone, "decoder": decoder}


def fpn_config(model: ModelConfig) -> decoders.Decoder:
    """`model.fpn` as Model Garden's decoder config: its FPN, or for `type: none` its
    identity decoder (the backbone's feature maps as they are). For `type: odapi` the
    factory is given the decoder (`factory_parts`) and builds none of this config."""
    if model.fpn.type == "none":
        return decoders.Decoder(type="identity")
    return decoders.Decoder(
        type="fpn",
        fpn=decoders.FPN(
            num_filters=model.fpn.num_filters,
            use_separable_conv=model.fpn.use_separable_conv,
        ),
    )


def shared_fields(model: ModelConfig, anchor_class: type, generator_class: type) -> dict:
    """The Model Garden config fields both families build alike from the shared `model`
    keys: input size, levels, anchors, backbone, decoder, detection generator and
    normalisation. `anchor_class` and `generator_class` are the family's own config
    classes for the anchors and the detection generator."""
    post = model.post_processing
    return dict(
        num_classes=model.num_classes + 1,
        input_size=[*model.input_size, 3],
        min_level=model.min_level,
        max_level=model.max_level,
        anchor=anchor_class(
            num_scales=model.anchor.num_scales,
            aspect_ratios=list(model.anchor.aspect_ratios),
            anchor_size=model.anchor.anchor_size,
        ),
        backbone=backbone_config(model),
        decoder=fpn_config(model),
        detection_generator=generator_class(
            pre_nms_top_k=post.pre_nms_top_k,
            pre_nms_score_threshold=post.score_threshold,
            nms_iou_threshold=post.iou_threshold,
            max_num_detections=post.max_detections,
        ),
        norm_activation=norm_activation(model),
    )


def norm_activation(model: ModelConfig) -> common.NormActivation:
    """`model.norm` as Model Garden's normalisation and activation config."""
    return common.NormActivation(
        activation=model.norm.activation,
        use_sync_bn=model.norm.use_sync_bn,
        norm_momentum=model.norm.norm_momentum,
        norm_epsilon=model.norm.norm_epsilon,
    )


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Keras' global policy is `precision` (a Keras policy name: the one
    train_config.mixed_precision runs as, training/precision.effective) inside, and
    restored on exit: with a mixed policy the layers compute in float16/bfloat16 and
    keep float32 variables, so checkpoints are the same either way."""
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
