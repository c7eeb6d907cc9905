"""The OD API's Keras FPN: `model.fpn.type: odapi`.

The OD API's FPN feature extractors (Faster R-CNN's `faster_rcnn_resnet*_fpn_keras`,
SSD's `ssd_resnet*_v1_fpn_keras` and `ssd_mobilenet_v1_fpn_keras`) build their
pyramid top-down over the backbone's levels and add the levels above the backbone's
with stride-2 convolutions. Model Garden's FPN (`type: fpn`, the default) computes
another function with more parameters. Level by level, with F = num_filters and
`top` the backbone's last level read (min(5, max_level)):

- lateral (each level min_level..top): a 1x1 convolution with bias to F channels;
  both alike.
- level `top`: the OD API's output is its lateral alone (no 3x3, no batch norm, no
  activation); Model Garden's, a 3x3 convolution with bias, then batch norm.
- each level below: the OD API's output is a 3x3 convolution without bias, batch
  norm and the activation, of (the 2x nearest upsampling of the level above's
  *output*, plus this level's lateral); Model Garden's, a 3x3 convolution with bias,
  then batch norm, of (the upsampled *sum* of the level above, before its 3x3, plus
  this level's lateral).
- each level above `top`: the OD API's is a 3x3 stride-2 convolution without bias,
  batch norm and the activation, the first of level `top`'s output, each next of the
  output below it; Model Garden's, a 3x3 stride-2 convolution with bias, then batch
  norm, the first of level `top`'s 3x3 (before its norm), each next of the activation
  of the one below (before its norm).

With `use_separable_conv` (the OD API's `use_depthwise`, its FPN-lite) each 3x3
convolution above, smoothing and stride-2 alike, is a separable one (a 3x3 depthwise
convolution, depth multiplier 1, then a 1x1 pointwise one to F channels), still
without bias and followed by batch norm and the activation; the laterals stay plain
1x1 convolutions with bias. As the OD API's (Keras' SeparableConv2D ignores the
`kernel_initializer` and `kernel_regularizer` its builder passes), the depthwise
kernel takes `kernel_initializer` and `kernel_regularizer`, the pointwise kernel
glorot_uniform (Keras' default) and no regulariser. Model Garden's separable FPN
makes the laterals separable too and keeps its extra 3x3 and biases. And over
MobileNetV2 the OD API's FPN reads the backbone's last 1x1 convolution (1280
channels at width 1) as level 5, where Model Garden's level 5 is block 16's
320-channel projection (`top_input_of`). At F = 128 on levels 3..7 over a full-width
MobileNetV2 (the published FPN-lite configs): 252,800 parameters here (251,776
trainable), as the OD API's, where Model Garden's separable FPN holds 149,056
(147,776 trainable).

So Model Garden's holds one 3x3 convolution more (level `top`'s: 9 F^2 + F, and its
batch norm's 4 F) and a bias on each other 3x3 (F each): with F = 256 on levels 2..6
(ResNet-50, the OD API's Faster R-CNN FPN configs), 592,128 parameters more than the
OD API's 3,347,456 (+17.7%). The batch norms and the activation are `model.norm`'s,
as Model Garden's FPN's (the OD API's are its feature extractor's conv_hyperparams,
which the OD API mappers make `model.norm`). The layers' names: `lateral_<level>`,
`smooth_<level>` and `smooth_<level>_norm` (levels below `top`), `coarse_<level>` and
`coarse_<level>_norm` (levels above `top`).
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf
import tf_keras
from official.modeling import tf_utils

from train_lib.families.functional_backbone import FunctionalBackbone

__all__ = ["OdapiFpn"]


class OdapiFpn(FunctionalBackbone):
    """The OD API's FPN (the module docstring) over the backbone levels `input_specs`
    ({level: shape}, Model Garden's `output_specs`): called on the backbone's dict of
    levels it returns levels min_level..max_level ("2".."7"), each of `num_filters`
    channels; `output_specs` their shapes, as Model Garden's decoders. min_level must
    be a backbone level. `use_separable_conv`: the 3x3 convolutions are the OD API's
    separable ones (the module docstring). `top_input`: the key of `input_specs` the
    top level's lateral reads where it is not that level's own (then that key is no
    level of the FPN's): MobileNetV2's last 1x1 convolution, Model Garden's endpoint
    after level 5 (`top_input_of`)."""

    def __init__(self, input_specs: Mapping[str, tf.TensorShape], min_level: int = 3,
                 max_level: int = 7, num_filters: int = 256, activation: str = "relu",
                 use_sync_bn: bool = False, norm_momentum: float = 0.99,
                 norm_epsilon: float = 0.001, kernel_initializer: str = "VarianceScaling",
                 kernel_regularizer=None, use_separable_conv: bool = False,
                 top_input: str | None = None, **kwargs):
        if str(min_level) not in input_specs:
            raise ValueError(f"the FPN's min_level {min_level} is not a backbone level "
                             f"({sorted(input_specs, key=int)})")
        config = dict(input_specs=input_specs, min_level=min_level, max_level=max_level,
                      num_filters=num_filters, activation=activation,
                      use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                      norm_epsilon=norm_epsilon, kernel_initializer=kernel_initializer,
                      kernel_regularizer=kernel_regularizer,
                      use_separable_conv=use_separable_conv, top_input=top_input)
        layers = _Layers(config)
        inputs = {level: tf_keras.Input(shape=spec[1:]) for level, spec in input_specs.items()}
        top = min(max(int(level) for level in inputs if level != top_input), max_level)
        x = layers.conv(1, f"lateral_{top}", use_bias=True)(inputs[top_input or str(top)])
        levels = {str(top): x}
        for level in range(top - 1, min_level - 1, -1):
            lateral = layers.conv(1, f"lateral_{level}", use_bias=True)(inputs[str(level)])
            x = tf_keras.layers.UpSampling2D(2, interpolation="nearest",
                                             name=f"upsample_{level}")(x)
            x = tf_keras.layers.Add(name=f"add_{level}")([x, lateral])
            x = layers.conv_norm_activation(x, f"smooth_{level}", strides=1)
            levels[str(level)] = x
        x = levels[str(top)]
        for level in range(top + 1, max_level + 1):
            x = layers.conv_norm_activation(x, f"coarse_{level}", strides=2)
            levels[str(level)] = x
        super().__init__(config, inputs, {str(level): levels[str(level)]
                                          for level in range(min_level, max_level + 1)},
                         **kwargs)


def top_input_of(backbone: tf_keras.Model, model_id: str, max_level: int
                 ) -> tuple[str, tf.TensorShape] | None:
    """The backbone output the OD API's FPN reads as its top level where Model Garden's
    level is another tensor, as (key, shape), else None: over Model Garden's MobileNetV2
    (`model_id`), when the FPN reads level 5 (max_level >= 5), its last 1x1
    convolution (1280 channels at width 1; the OD API's `out_relu`), which Model
    Garden's MobileNet returns after its levels (`output_specs` holds levels 2-5, level
    5 being block 16's 320-channel projection)."""
    if model_id != "MobileNetV2" or max_level < 5:
        return None
    outputs = backbone.output
    last = str(max(int(level) for level in backbone.output_specs) + 1)
    if not isinstance(outputs, Mapping) or last != "6" or last not in outputs:
        raise ValueError(f"MobileNetV2's outputs {sorted(outputs)} have no last "
                         "convolution after level 5")
    return last, outputs[last].shape


class _Layers:
    """Builds the named layers of one OdapiFpn."""

    def __init__(self, config: dict):
        self._config = config

    def conv(self, size: int, name: str, strides: int = 1,
             use_bias: bool = False) -> tf_keras.layers.Conv2D:
        c = self._config
        return tf_keras.layers.Conv2D(
            c["num_filters"], size, strides=strides, padding="same", use_bias=use_bias,
            kernel_initializer=c["kernel_initializer"],
            kernel_regularizer=c["kernel_regularizer"], name=name)

    def separable_conv(self, name: str, strides: int) -> tf_keras.layers.SeparableConv2D:
        """A 3x3 separable convolution without bias, as the OD API's: the depthwise
        kernel takes the initializer and regulariser, the pointwise one Keras' default
        initializer (glorot_uniform) and none."""
        c = self._config
        return tf_keras.layers.SeparableConv2D(
            c["num_filters"], 3, strides=strides, padding="same", depth_multiplier=1,
            use_bias=False, depthwise_initializer=c["kernel_initializer"],
            depthwise_regularizer=c["kernel_regularizer"],
            pointwise_initializer="glorot_uniform", pointwise_regularizer=None, name=name)

    def conv_norm_activation(self, x, name: str, strides: int):
        """A 3x3 convolution without bias (separable with use_separable_conv), batch
        norm, the activation."""
        c = self._config
        if c["use_separable_conv"]:
            x = self.separable_conv(name, strides=strides)(x)
        else:
            x = self.conv(3, name, strides=strides)(x)
        x = tf_keras.layers.BatchNormalization(
            momentum=c["norm_momentum"], epsilon=c["norm_epsilon"],
            synchronized=c["use_sync_bn"], name=name + "_norm")(x)
        return tf_keras.layers.Activation(tf_utils.get_activation(c["activation"]),
                                          name=name + "_activation")(x)
