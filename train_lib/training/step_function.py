"""The training function: many steps per call, exact boundaries, one host sync.

`StepRunner(train_function, iterator, optimizer, ...)` is what the loop drives:
`run(n)` runs n steps in one tf.function call and returns the last step's losses
and whether every loss was finite; `step` is the global step (also after an
error, when a call stopped part-way).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from train_lib import families
from train_lib.config import PipelineConfig
from train_lib.data import inputs


def make_train_function(strategy, model, optimizer, config: PipelineConfig,
                         position: tf.Variable, start: inputs.InputPosition,
                         start_step: int, examples_per_step: int,
                         data_counts: tf.Variable | None = None):
    """A tf.function running `num_steps` steps; returns the last step's reduced
    losses and whether every step's loss was finite (it stops at the first
    non-finite one). After each step `position` holds the input position after it:
    with one replica the position its batch carries; with several (whose
    per-replica positions a worker cannot combine in order) `start` plus the
    `examples_per_step` each step since `start_step` took from this worker's stream.
    `data_counts` (if given) holds its value at the call of this function plus the
    data counts of this worker's stream so far (the running counts its batches
    carry; the largest of its replicas' is the latest).

    Each replica's loss is its share of the global batch's loss (normalised by the
    positives of the whole global batch; regularisation divided by the replica
    count), so the optimizer's summed gradients are those of the global mean and
    the SUM-reduced losses are the global batch's. With train_config.jit_compile
    the forward and backward pass of each replica is compiled with XLA."""
    num_replicas = strategy.num_replicas_in_sync
    replica_step = _replica_step(strategy, model, optimizer, config)
    counts_base = None if data_counts is None else tf.constant(data_counts.numpy())

    def one_step(iterator):
        images, labels, batch_position, batch_counts = next(iterator)
        per_replica = strategy.run(replica_step, args=(images, labels))
        if data_counts is not None:
            local = strategy.experimental_local_results(batch_counts)
            data_counts.assign(counts_base + tf.reduce_max(tf.stack(local), axis=0))
        if num_replicas == 1:
            position.assign(batch_position)
        else:
            done = tf.cast(optimizer.iterations, tf.int64) - start_step
            position.assign(tf.stack([tf.constant(start.epoch, tf.int64),
                                      start.offset + done * examples_per_step]))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    # autograph=False: the loop is written as a tf.while_loop, and without autograph
    # neither it nor the model's layers are source-transformed (~15 s of start-up).
    # One traced step inside the loop (not a first one before it): half the tracing.
    @tf.function(autograph=False)
    def train_steps(iterator, num_steps):
        def body(done, _, finite):
            losses = one_step(iterator)
            return done + 1, losses, tf.math.is_finite(losses["total_loss"])

        _, losses, finite = tf.while_loop(
            lambda done, _, finite: tf.logical_and(finite, done < num_steps), body,
            (tf.constant(0), {k: tf.constant(0.0) for k in families.loss_keys(config.model)},
             tf.constant(True)))
        return losses, finite

    return train_steps


def _replica_step(strategy, model, optimizer, config: PipelineConfig):
    """One replica's step on its batch: forward, losses, backward, apply; returns
    its losses (its share of the global batch's)."""
    train_cfg = config.train_config
    num_replicas = strategy.num_replicas_in_sync
    scaled = train_cfg.mixed_precision == "mixed_float16"

    def losses_and_gradients(images, labels, normalizers):
        with tf.GradientTape() as tape:
            outputs = families.train_outputs(config.model, model, images, labels)
            regularization = (tf.add_n(model.losses) / num_replicas
                              if model.losses else tf.constant(0.0))
            losses = families.compute_losses(config.model, outputs, labels, normalizers,
                                             tf.cast(regularization, tf.float32),
                                             num_replicas)
            loss = losses["total_loss"]
            if scaled:
                loss = optimizer.get_scaled_loss(loss)
        grads = tape.gradient(loss, model.trainable_variables)
        if scaled:
            grads = optimizer.get_unscaled_gradients(grads)
        return losses, grads

    if train_cfg.jit_compile:
        losses_and_gradients = tf.function(losses_and_gradients, jit_compile=True,
                                           autograph=False)

    def replica_step(images, labels):
        # The family's loss normalisers, summed over the global batch's replicas.
        context = tf.distribute.get_replica_context()
        normalizers = {k: context.all_reduce(tf.distribute.ReduceOp.SUM, v) for k, v in
                       families.loss_normalizers(config.model, labels).items()}
        losses, grads = losses_and_gradients(images, labels, normalizers)
        # Some backbone layers (e.g. MobileNet's last conv) feed no FPN level.
        pairs = [(g, v) for g, v in zip(grads, model.trainable_variables, strict=True)
                 if g is not None]
        # The step counter must advance only with a batch: without this, the
        # counter's update may run although fetching the batch failed.
        with tf.control_dependencies([images]):
            optimizer.apply_gradients(pairs)
        return losses

    return replica_step


def state_is_finite(strategy, model) -> bool:
    """Whether this worker's copy of every variable is finite (local reads only: no
    collective, which may be what failed)."""
    return all(bool(np.all(np.isfinite(local.numpy())))
               for v in model.variables for local in strategy.experimental_local_results(v))


class StepRunner:
    """Runs the training function; what `loop.run_loop` calls.

    Args:
      train_function: from `make_train_function`.
      iterator: the training batches.
      optimizer: its `iterations` is the global step.
      learning_rate: the schedule, a function of the step (for the outputs).
    """

    def __init__(self, train_function, iterator, optimizer, learning_rate) -> None:
        self._function = train_function
        self._iterator = iterator
        self._optimizer = optimizer
        self._learning_rate = learning_rate

    @property
    def step(self) -> int:
        """The global step now."""
        return int(self._optimizer.iterations.numpy())

    def run(self, num_steps: int) -> tuple[dict[str, float], bool]:
        """Runs `num_steps` steps (fewer if a loss is not finite: it stops there).

        Returns the last step's losses and `learning_rate` (floats), and whether
        every loss was finite. One host sync per call."""
        losses, finite = self._function(self._iterator, tf.constant(num_steps))
        outputs = {k: float(v.numpy()) for k, v in losses.items()}
        outputs["learning_rate"] = float(self._learning_rate(self.step).numpy())
        return outputs, bool(finite.numpy())
