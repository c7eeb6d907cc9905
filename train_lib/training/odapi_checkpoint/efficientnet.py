"""The OD API's Keras EfficientNet (`ssd_efficientnet-b<n>_bifpn_keras`, EfficientDet
D0-D7: B0-B6, D7 B6 too) into Model Garden's EfficientNet-B<n> with swish inside
squeeze-excitation (`model.backbone.se_activation: swish`). Both have the same layers
in the same order with the same shapes: stem, then per block expand (when the block
expands), depthwise, squeeze-excitation reduce and expand, project; Model Garden's
block specs give each group's repeats as the Keras model's (the same rounding).

The OD API keeps its EfficientNet in two parts. Its EfficientDet reads its levels at
B0's block names for every size (level 5: stack_6/block_0/project_bn), so
`model/_feature_extractor/_efficientnet/` holds the layers up to that one (for B0 128
layers with weights, 304 variables), and `model/_feature_extractor/classification_backbone/`
the rest, numbered on: for B1-B6 the later blocks of the last group (stack_6/block_1,
and block_2 for B5 and B6), which the OD API's EfficientDet never runs, then the top
1x1 convolution, its norm and the classifier. Model Garden's EfficientNet
(`efficientnet_endpoints: model_garden`) loads both parts: its level 5 is the end of
the last group. For B1-B6 the OD API's levels 2-4 are also inside a group
(stack_1/block_1/add, stack_2/block_1/add, stack_4/block_2/add) where Model Garden's
are at its end, so with the same weights its levels are other tensors than the ones
the OD API's BiFPN reads (for B0 they are the same: tests/test_fine_tune_odapi_efficientdet.py).
`efficientnet_endpoints: odapi` (what the OD API mapper sets) reads its levels at the
OD API's layers and ends at its level 5, so it loads the first part, all of it, and
computes the OD API's levels (tests/test_fine_tune_odapi_efficientdet_b1.py).
Model Garden's default (ReLU inside squeeze-excitation) computes other feature maps
with these weights (about 1% apart), so it is refused naming the key. Our
EfficientNet's last 1x1 convolution and its norm (Model Garden's classification head,
beyond level 5, which our FPN does not read) stay fresh: the OD API's never runs in
EfficientDet.
"""

from __future__ import annotations

from official.vision.modeling.backbones import efficientnet
from official.vision.modeling.layers import nn_blocks

from train_lib.families.efficientnet_endpoints import (
    OdapiEndpointsEfficientNet,
    group_repeats,
)
from train_lib.training.failures import TrainError
from train_lib.training.odapi_checkpoint.layout import (
    DETECTION_BACKBONE,
    EFFICIENTDET_BACKBONE,
    KEY,
)

# The Keras EfficientNet's layer the OD API's EfficientDet reads as level 5, for every
# size (its _EFFICIENTNET_LEVEL_ENDPOINTS): the last layer under EFFICIENTDET_BACKBONE.
LEVEL_5 = "stack_6/block_0/project_bn"


def matches(backbone) -> bool:
    """Whether `backbone` is Model Garden's EfficientNet, whole or up to the OD API's
    level 5 (efficientnet_endpoints: odapi), which these names fit."""
    return isinstance(backbone, efficientnet.EfficientNet | OdapiEndpointsEfficientNet)


def keras_layers(backbone, prefix: str) -> list[tuple[str, object]]:
    """The OD API's Keras EfficientNet's names up to our level 5: stem_conv2d, stem_bn, then
    per block (`stack_<s>/block_<b>/`, s the block group, b its repeat) expand_conv2d
    and expand_bn (when the block expands), depthwise_conv2d, depthwise_bn,
    se_reduce_conv2d, se_expand_conv2d, project_conv2d, project_bn. Model Garden's
    EfficientNet has the same layers in the same order: its stem convolution and norm,
    then its InvertedBottleneckBlocks group by group (Model Garden's block specs give
    each group's repeats); its last 1x1 convolution and norm (after level 5) are left
    out, as the OD API's extractor leaves out its top. With `efficientnet_endpoints:
    odapi` our EfficientNet ends at the OD API's level 5 (LEVEL_5's block), as the
    OD API's extractor does. TrainError naming
    model.backbone.se_activation when `backbone` activates inside its
    squeeze-excitation with other than swish (`prefix`: the checkpoint, for the
    message)."""
    if backbone._se_inner_activation != "swish":
        raise TrainError(
            f"{KEY} {prefix} is an OD API checkpoint, and this model.backbone is Model "
            "Garden's EfficientNet, which activates inside its squeeze-excitation with "
            f"{backbone._se_inner_activation!r} (model.backbone.se_activation) where the "
            "OD API's Keras EfficientNet (EfficientDet) uses swish: with the same weights "
            "it computes other feature maps (about 1% apart with relu); set "
            "model.backbone.se_activation: swish")
    names = [f"stack_{s}/block_{b}/"
             for s, repeats in enumerate(group_repeats(backbone.get_config()["model_id"]))
             for b in range(repeats)]
    if isinstance(backbone, OdapiEndpointsEfficientNet):
        names = names[:names.index(LEVEL_5.rsplit("/", 1)[0] + "/") + 1]
    blocks = [layer for layer in backbone.layers
              if isinstance(layer, nn_blocks.InvertedBottleneckBlock)]
    stem = [layer for layer in backbone.layers if layer.weights and layer not in blocks][:2]
    layers = [("stem_conv2d", stem[0]), ("stem_bn", stem[1])]
    for name, block in zip(names, blocks, strict=True):
        if block._expand_ratio > 1:
            layers += [(f"{name}expand_conv2d", block._conv0), (f"{name}expand_bn", block._norm0)]
        se = block._squeeze_excitation
        layers += [(f"{name}depthwise_conv2d", block._conv1), (f"{name}depthwise_bn", block._norm1),
                   (f"{name}se_reduce_conv2d", se._se_reduce),
                   (f"{name}se_expand_conv2d", se._se_expand),
                   (f"{name}project_conv2d", block._conv2), (f"{name}project_bn", block._norm2)]
    return layers


def segments(layers: list[tuple[str, object]]) -> list[tuple[str, list, int]]:
    """Where the OD API's checkpoint keeps `layers` (keras_layers'): (prefix, layers,
    index of the first in that Keras model's numbering) for those up to LEVEL_5 under
    EFFICIENTDET_BACKBONE, and for the rest under DETECTION_BACKBONE, numbered on (the
    whole EfficientNet's numbering, which goes on to its top and classifier). Layers
    without LEVEL_5 (another backbone) are all looked for under EFFICIENTDET_BACKBONE."""
    names = [name for name, _ in layers]
    end = names.index(LEVEL_5) + 1 if LEVEL_5 in names else len(layers)
    return [(EFFICIENTDET_BACKBONE, layers[:end], 0), (DETECTION_BACKBONE, layers[end:], end)]
