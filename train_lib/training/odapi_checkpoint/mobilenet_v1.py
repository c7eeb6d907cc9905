"""The OD API's Keras MobileNet v1 (`ssd_mobilenet_v1_fpn_keras`) into Model
Garden's MobileNetV1 (model.backbone type: mobilenet, model_id: MobileNetV1): 54
layers with weights (27 convolutions, 27 batch norms), the same function
(convolutions padded 'same', ReLU6 or the config's activation, batch norm with the
config's epsilon). The OD API scales each layer's width twice by depth_multiplier d
(Keras' alpha, then its layer override), so its widths are Model Garden's at
width_multiplier d * d.
"""

from __future__ import annotations

from official.vision.modeling.backbones import mobilenet
from official.vision.modeling.layers import nn_blocks


def matches(backbone) -> bool:
    """Whether `backbone` is Model Garden's MobileNetV1, which these names fit."""
    return isinstance(backbone, mobilenet.MobileNet) and \
        backbone.get_config()["model_id"] == "MobileNetV1"


def keras_layers(backbone) -> list[tuple[str, object]]:
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
