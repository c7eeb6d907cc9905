"""ResNet v1 as Keras' application computes it inside the TF Object Detection API:
`model.backbone.resnet_variant: keras_v1`.

Model Garden's ResNet (the default, `model_garden`) is ResNet v1.5: a block that
downsamples does so in its 3x3 convolution, and its 7x7 stem pads 'same' (2 before,
3 after on an even input). The OD API's ResNet-50/101/152 v1 extractors wrap
tf_keras.applications' ResNet, which computes another function with the same
variables:

- the stem pads 3 pixels on every side before its stride-2 7x7 convolution (the
  OD API's fixed padding, the Keras application's ZeroPadding2D(3)), then batch
  norm, the activation, and a 3x3 stride-2 max pool padded 'same' (the OD API's);
- a block that downsamples does so in its first 1x1 convolution (and in the 1x1
  projection of its shortcut), not in its 3x3;
- every convolution is without bias, each followed by batch norm; the activation
  follows each batch norm but the block's last, and the residual sum.

This backbone computes exactly that, with the model's activation and batch-norm
settings (the OD API's SSD extractors use the config's conv_hyperparams, e.g.
ReLU6 and epsilon 0.001; its Faster R-CNN extractors ReLU and epsilon 1e-5). Its
layers carry the Keras application's names (`conv1_conv`, `conv2_block1_0_conv`,
...), and `keras_layer_order(model_id)` lists the layers with weights in the order
of the Keras functional model, which is how the OD API's checkpoints number them
(`layer_with_weights-<i>`). Widths are int(width * width_multiplier) of the Keras
application's, as the OD API's depth_multiplier scales them (its min_depth floor
is not applied). Endpoints: levels 2..5 (strides 4..32), as Model Garden's
ResNet's, so its FPN and heads take this backbone as they take that one.
"""

from __future__ import annotations

import tf_keras
from official.modeling import tf_utils

from train_lib.families.functional_backbone import FunctionalBackbone

# The bottleneck stages of Keras' ResNets: (filters of the 1x1/3x3 convs, blocks).
STAGES = {
    50: ((64, 3), (128, 4), (256, 6), (512, 3)),
    101: ((64, 3), (128, 4), (256, 23), (512, 3)),
    152: ((64, 3), (128, 8), (256, 36), (512, 3)),
}


def keras_layer_order(model_id: int) -> list[str]:
    """The names of the Keras ResNet's layers with weights, in the order its
    functional model (and so an OD API checkpoint's `layer_with_weights-<i>`)
    numbers them: the stem's conv and batch norm, then per block its 1x1 and 3x3
    (each with its batch norm), and, in a stage's first block, the shortcut's
    projection between the 3x3 and the last 1x1: `_0_conv, _3_conv, _0_bn, _3_bn`
    (Keras sorts the two branches' layers by their depth in the graph)."""
    names = ["conv1_conv", "conv1_bn"]
    for stage, (_, blocks) in enumerate(STAGES[model_id], start=2):
        for block in range(1, blocks + 1):
            p = f"conv{stage}_block{block}_"
            names += [p + "1_conv", p + "1_bn", p + "2_conv", p + "2_bn"]
            if block == 1:
                names += [p + "0_conv", p + "3_conv", p + "0_bn", p + "3_bn"]
            else:
                names += [p + "3_conv", p + "3_bn"]
    return names


def stage_of(layer_name: str) -> int:
    """The stage (level) a layer of this backbone belongs to: 1 for the stem,
    2..5 for conv2..conv5."""
    return int(layer_name[4])


class KerasResNetV1(FunctionalBackbone):
    """ResNet-50/101/152 v1 as the OD API's Keras extractors compute it (see the
    module docstring). Outputs a dict of levels "2".."5"; `output_specs` their
    shapes, as Model Garden's backbones."""

    def __init__(self, model_id: int, input_specs: tf_keras.layers.InputSpec | None = None,
                 depth_multiplier: float = 1.0, activation: str = "relu",
                 use_sync_bn: bool = False, norm_momentum: float = 0.99,
                 norm_epsilon: float = 0.001, kernel_initializer: str = "VarianceScaling",
                 kernel_regularizer=None, **kwargs):
        if model_id not in STAGES:
            raise ValueError(f"keras_v1 ResNet has depths {sorted(STAGES)}, not {model_id}")
        if input_specs is None:
            input_specs = tf_keras.layers.InputSpec(shape=[None, None, None, 3])
        config = dict(model_id=model_id, input_specs=input_specs,
                            depth_multiplier=depth_multiplier, activation=activation,
                            use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                            norm_epsilon=norm_epsilon, kernel_initializer=kernel_initializer,
                            kernel_regularizer=kernel_regularizer)
        layers = _Layers(config)
        inputs = tf_keras.Input(shape=input_specs.shape[1:])
        x = tf_keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
        x = layers.conv(64, 7, "conv1_conv", strides=2, padding="valid")(x)
        x = layers.activation("conv1_relu")(layers.norm("conv1_bn")(x))
        x = tf_keras.layers.MaxPool2D(3, strides=2, padding="same", name="pool1_pool")(x)
        endpoints = {}
        for stage, (filters, blocks) in enumerate(STAGES[model_id], start=2):
            for block in range(1, blocks + 1):
                strides = 2 if block == 1 and stage > 2 else 1
                x = layers.bottleneck(x, filters, strides, block == 1,
                                      f"conv{stage}_block{block}")
            endpoints[str(stage)] = x
        super().__init__(config, inputs, endpoints, **kwargs)


class _Layers:
    """Builds the named layers of one KerasResNetV1."""

    def __init__(self, config: dict):
        self._config = config

    def conv(self, filters: int, size: int, name: str, strides: int = 1,
             padding: str = "same") -> tf_keras.layers.Conv2D:
        c = self._config
        return tf_keras.layers.Conv2D(
            int(filters * c["depth_multiplier"]), size, strides=strides, padding=padding,
            use_bias=False, kernel_initializer=c["kernel_initializer"],
            kernel_regularizer=c["kernel_regularizer"], name=name)

    def norm(self, name: str) -> tf_keras.layers.BatchNormalization:
        c = self._config
        return tf_keras.layers.BatchNormalization(
            momentum=c["norm_momentum"], epsilon=c["norm_epsilon"],
            synchronized=c["use_sync_bn"], name=name)

    def activation(self, name: str):
        return tf_keras.layers.Activation(tf_utils.get_activation(self._config["activation"]),
                                          name=name)

    def bottleneck(self, x, filters: int, strides: int, project: bool, name: str):
        """Keras' ResNet v1 block: the stride in the first 1x1 convolution."""
        shortcut = x
        if project:
            shortcut = self.conv(4 * filters, 1, name + "_0_conv", strides=strides)(x)
            shortcut = self.norm(name + "_0_bn")(shortcut)
        x = self.conv(filters, 1, name + "_1_conv", strides=strides)(x)
        x = self.activation(name + "_1_relu")(self.norm(name + "_1_bn")(x))
        x = self.conv(filters, 3, name + "_2_conv")(x)
        x = self.activation(name + "_2_relu")(self.norm(name + "_2_bn")(x))
        x = self.norm(name + "_3_bn")(self.conv(4 * filters, 1, name + "_3_conv")(x))
        x = tf_keras.layers.Add(name=name + "_add")([shortcut, x])
        return self.activation(name + "_out")(x)
