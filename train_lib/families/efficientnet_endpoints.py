"""Model Garden's EfficientNet with its levels where the OD API's EfficientDet reads
them: `model.backbone.efficientnet_endpoints: odapi`.

Model Garden's EfficientNet (the default, `model_garden`) outputs each level at the
end of a block group: level 2 after group 1, 3 after group 2, 4 after group 4, 5 after
group 6 (the groups that end a stride). The OD API's EfficientDet reads the same
groups, but at B0's block names for every size (its extractor's level endpoints
`stack_1/block_1/add`, `stack_2/block_1/add`, `stack_4/block_2/add`,
`stack_6/block_0/project_bn`): for B0 those blocks end their groups, for B1-B7 (whose
groups hold more blocks) they lie inside them, so with the same weights its levels
are other tensors than Model Garden's. Its EfficientNet also ends at level 5: the
later blocks of the last group and the top 1x1 convolution never run.

`OdapiEndpointsEfficientNet` is a functional model over a Model Garden EfficientNet
built with the same arguments: the same layers, up to the OD API's level 5, with
those tensors as its levels 2-5. Where the OD API's block ends its group (every level
of B0, none of B1-B7) the level is Model Garden's own endpoint tensor; so for B0 both
variants compute the same levels, and this one leaves out only the top 1x1
convolution and its norm, which no FPN reads. The layers it leaves out (the last
group's later blocks, the top) are not built into the model: no variables, no
parameters.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.vision.modeling.backbones import efficientnet
from official.vision.modeling.layers import nn_blocks

from train_lib.families.functional_backbone import FunctionalBackbone

# level: (block group, block within the group) the OD API's EfficientDet reads, for
# every size (B0's last block of each group that ends a stride).
ODAPI_LEVELS = {"2": (1, 1), "3": (2, 1), "4": (4, 2), "5": (6, 0)}


def group_repeats(model_id: str) -> list[int]:
    """Blocks per group of Model Garden's EfficientNet `model_id` (b0..b7)."""
    scaling = efficientnet.SCALING_MAP[model_id]
    specs = efficientnet.block_spec_decoder(efficientnet.EN_B0_BLOCK_SPECS,
                                            scaling["width_scale"], scaling["depth_scale"])
    return [spec.block_repeats for spec in specs]


def odapi_levels(garden: efficientnet.EfficientNet, model_id: str) -> dict[str, tf.Tensor]:
    """The tensors of `garden` (a built Model Garden EfficientNet `model_id`) that the
    OD API's EfficientDet reads as levels 2-5: the output of block ODAPI_LEVELS[level]
    of its group, which is Model Garden's endpoint (the group's end) when it is the
    group's last block."""
    repeats = group_repeats(model_id)
    outputs = [i for i, spec in enumerate(efficientnet.EN_B0_BLOCK_SPECS) if spec[-1]]
    assert [g for g, _ in ODAPI_LEVELS.values()] == outputs  # the same groups as Model Garden's
    blocks = [layer for layer in garden.layers
              if isinstance(layer, nn_blocks.InvertedBottleneckBlock)]
    assert len(blocks) == sum(repeats)
    first = [sum(repeats[:g]) for g in range(len(repeats))]
    levels = {}
    for level, (group, block) in ODAPI_LEVELS.items():
        if block == repeats[group] - 1:
            levels[level] = garden.output[level]
        else:
            levels[level] = blocks[first[group] + block].output
    return levels


class OdapiEndpointsEfficientNet(FunctionalBackbone):
    """Model Garden's EfficientNet up to the OD API's level 5, with the OD API's
    EfficientDet's levels (see the module docstring). Takes Model Garden's
    EfficientNet's arguments; outputs a dict of levels "2".."5", `output_specs` their
    shapes, as Model Garden's backbones."""

    def __init__(self, model_id: str, input_specs: tf_keras.layers.InputSpec | None = None,
                 se_ratio: float = 0.0, stochastic_depth_drop_rate: float = 0.0,
                 kernel_initializer: str = "VarianceScaling", kernel_regularizer=None,
                 bias_regularizer=None, activation: str = "relu",
                 se_inner_activation: str = "relu", use_sync_bn: bool = False,
                 norm_momentum: float = 0.99, norm_epsilon: float = 0.001, **kwargs):
        if input_specs is None:
            input_specs = tf_keras.layers.InputSpec(shape=[None, None, None, 3])
        config = dict(
            model_id=model_id, input_specs=input_specs, se_ratio=se_ratio,
            stochastic_depth_drop_rate=stochastic_depth_drop_rate,
            kernel_initializer=kernel_initializer, kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer, activation=activation,
            se_inner_activation=se_inner_activation, use_sync_bn=use_sync_bn,
            norm_momentum=norm_momentum, norm_epsilon=norm_epsilon)
        garden = efficientnet.EfficientNet(**config)
        self._model_id = model_id
        self._se_inner_activation = se_inner_activation
        super().__init__(config, garden.inputs, odapi_levels(garden, model_id), **kwargs)
