"""`model.initializers`: the distribution each part of a model starts from.

Model Garden's layers fix their own initializers (He-style variance scaling in the
backbone and the FPN; RetinaNet: normal(0.01) in the head's towers, normal(1e-5) in
its class and box predictors; Faster R-CNN: normal(0.01) in the RPN head, variance
scaling in the detection head's layers, normal(0.01) and normal(0.001) in its class
and box predictors), and several of them cannot be given another. The OD API draws
each part from its config's `initializer`s. So once the model's variables exist,
`draw` draws every kernel of each part whose `type` is set again, from that part's
distribution. The parts and their variables: parts.py.

And, for every part:

- A Conv2D's or Dense's `kernel` and a DepthwiseConv2D's or SeparableConv2D's
  `depthwise_kernel` take the part's distribution, as the OD API's layers do. A
  SeparableConv2D's `pointwise_kernel` takes Keras' default, glorot_uniform, also as
  the OD API's (Keras' SeparableConv2D ignores the `kernel_initializer` the OD API
  passes it).
- Biases and batch norms keep what they have.

The seeds come from TensorFlow's global random state (`train_config.seed`, set
before the model is built): the same seed gives the same weights. A part whose
`type` is empty is left exactly as Model Garden built it, so a config without
`model.initializers` builds the same weights as before this existed.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from train_lib.config import ModelConfig
from train_lib.config.initializer_schema import InitializerConfig
from train_lib.families.parts import kernel_kind, kernels_by_part

__all__ = ["draw", "keras_initializer", "set_class_bias"]


def keras_initializer(spec: InitializerConfig, seed: int) -> tf_keras.initializers.Initializer:
    """The tf_keras initializer of `spec` (its `type` set), seeded by `seed`, as the OD
    API's hyperparams_builder makes it (variance_scaling: scale `factor`, `mode`,
    uniform or truncated normal)."""
    if spec.type == "truncated_normal":
        return tf_keras.initializers.TruncatedNormal(spec.mean, spec.stddev, seed=seed)
    if spec.type == "random_normal":
        return tf_keras.initializers.RandomNormal(spec.mean, spec.stddev, seed=seed)
    if spec.type == "variance_scaling":
        return tf_keras.initializers.VarianceScaling(
            scale=spec.factor, mode=spec.mode,
            distribution="uniform" if spec.uniform else "truncated_normal", seed=seed)
    if spec.type == "glorot_uniform":
        return tf_keras.initializers.GlorotUniform(seed=seed)
    raise ValueError(f"no initializer of type {spec.type!r}")


def draw(net: tf_keras.Model, model: ModelConfig) -> int:
    """Draws again every kernel of each part of `net` whose `model.initializers` type is
    set (the module docstring says which distribution each kernel takes); returns how
    many kernels were drawn (0, and nothing touched, when no type is set). Only the
    parts of `net`'s architecture are read (a config gives no other's:
    model_schema.ARCHITECTURE_KEYS)."""
    parts = kernels_by_part(net)
    specs = {part: getattr(model.initializers, part) for part in parts}
    if not any(spec.type for spec in specs.values()):
        return 0
    # Drawn from the global random state that train_config.seed sets just before the
    # model is built: every worker of a multi-worker run reaches here with the same
    # state, so draws the same weights.
    base = int(tf.random.uniform([], maxval=2**31 - 1, dtype=tf.int64))
    glorot = InitializerConfig(type="glorot_uniform")
    drawn = 0
    for part, variables in parts.items():
        if not specs[part].type:
            continue
        for variable in variables:
            spec = glorot if kernel_kind(variable) == "pointwise_kernel" else specs[part]
            init = keras_initializer(spec, seed=(base + drawn) % (2**31 - 1))
            variable.assign(init(variable.shape, variable.dtype))
            drawn += 1
    return drawn


def set_class_bias(net: tf_keras.Model, value: float) -> None:
    """Sets every bias of the RetinaNet `net`'s class predictor to `value`
    (`model.initializers.class_bias`; its default is the value Model Garden's head
    starts from, so the default model is unchanged)."""
    bias = net.head._classifier.bias
    bias.assign(tf.fill(bias.shape, tf.constant(value, bias.dtype)))
