"""The OD API's Keras MobileNetV2 (`ssd_mobilenet_v2_keras`,
`ssd_mobilenet_v2_fpn_keras`) into Model Garden's MobileNetV2 (model.backbone type:
mobilenet, model_id: MobileNetV2): 104 layers with weights (52 convolutions, 52 batch
norms). Both compute the same function (convolutions padded 'same', ReLU6, batch norm
with the config's epsilon, the same residuals) when the widths agree; the OD API
scales the last 1x1 convolution (1280) by a depth_multiplier < 1, as Model Garden's
MobileNet does with finegrain_classification_mode off
(model.backbone.scale_last_layer).
"""

from __future__ import annotations

from official.vision.modeling.backbones import mobilenet
from official.vision.modeling.layers import nn_blocks


def matches(backbone) -> bool:
    """Whether `backbone` is Model Garden's MobileNetV2, which these names fit."""
    return isinstance(backbone, mobilenet.MobileNet) and \
        backbone.get_config()["model_id"] == "MobileNetV2"


def keras_layers(backbone) -> list[tuple[str, object]]:
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
