"""The optimizer: Adam's updates those of the fused kernel tf_keras' legacy Adam (and
Model Garden's trainer) runs, bit for bit, from a smaller graph than tf_keras' Adam."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras

from train_lib.config import TrainConfig
from train_lib.training import optimizer as optimizer_lib


def _train(optimizer, steps: int = 4):
    """Variables after `steps` tf.function steps on fixed gradients, and the number
    of ops in the traced step's graph."""
    rng = np.random.default_rng(0)
    variables = [tf.Variable(rng.normal(size=shape).astype(np.float32))
                 for shape in ([3, 3, 4, 8], [8], [5])]
    if hasattr(optimizer, "build"):  # the legacy optimizer builds its slots itself
        optimizer.build(variables)
    grads = [tf.constant(rng.normal(size=v.shape).astype(np.float32)) for v in variables]

    @tf.function
    def step():
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    for _ in range(steps):
        step()
    graph = step.get_concrete_function().graph
    return [v.numpy() for v in variables], len(graph.get_operations())


def test_adam_updates_are_the_fused_kernels_bit_for_bit_with_fewer_ops():
    train = TrainConfig()
    train.optimizer.type = "adam"
    train.optimizer.gradient_clip_norm = 1.0
    train.learning_rate.warmup_steps = 2
    ours, our_ops = _train(optimizer_lib.build_optimizer(train))
    schedule = optimizer_lib.build_learning_rate(train)
    hyper = {"learning_rate": schedule, "beta_1": train.optimizer.beta_1,
             "beta_2": train.optimizer.beta_2, "epsilon": train.optimizer.epsilon,
             "global_clipnorm": 1.0}
    legacy, _ = _train(tf_keras.optimizers.legacy.Adam(**hyper))
    unfused, unfused_ops = _train(tf_keras.optimizers.Adam(**hyper))
    for a, b, c in zip(ours, legacy, unfused, strict=True):
        np.testing.assert_array_equal(a, b)
        # The same update as tf_keras' op-by-op Adam, to within its rounding.
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(ours[0], _train(optimizer_lib.build_optimizer(train), 1)[0][0])
    assert our_ops < unfused_ops
