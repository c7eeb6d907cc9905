"""TrainState: what a training run changes and a checkpoint holds.

The model, its optimizer (whose `iterations` are the global step), the input
position (epoch, offset: where the input stream resumes) and the data counts
(example_checks.COUNTERS), with the two checkpoints over them: `checkpoint`,
which every save writes, and `required`, what must read back for a checkpoint to
be valid (older checkpoints hold no position or counts).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tf_keras

from train_lib.config import PipelineConfig
from train_lib.data import example_checks
from train_lib.families import build_model
from train_lib.training import precision
from train_lib.training.optimizer import build_optimizer


@dataclasses.dataclass
class TrainState:
    """The state of a training run (module docstring); built by `TrainState.build`."""

    model: tf_keras.Model
    optimizer: tf_keras.optimizers.Optimizer
    input_position: tf.Variable  # int64 [epoch, offset]
    data_counts: tf.Variable  # int64, one per example_checks.COUNTERS
    checkpoint: tf.train.Checkpoint  # everything above: what a save writes
    required: tf.train.Checkpoint  # the model and optimizer: what must read back

    @classmethod
    def build(cls, config: PipelineConfig, strategy: tf.distribute.Strategy) -> TrainState:
        """A new state for `config`: the model and optimizer built under `strategy`,
        the position and counts at zero.

        All saved objects go into the checkpoint's constructor: TF's async
        checkpointer saves only those, not attributes set later, so sync and async
        saves hold the same. The model's Keras policy is train_config.mixed_precision
        under `strategy` (precision.effective)."""
        policy = precision.effective(config.train_config.mixed_precision,
                                     precision.is_tpu(strategy))
        with strategy.scope():
            model = build_model(config.model, policy)
            optimizer = build_optimizer(config.train_config)
            optimizer.build(model.trainable_variables)
        position = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="input_position")
        data_counts = tf.Variable(tf.zeros([len(example_checks.COUNTERS)], tf.int64),
                                  trainable=False, name="data_counts")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                         input_position=position, data_counts=data_counts)
        required = tf.train.Checkpoint(model=model, optimizer=optimizer)
        return cls(model, optimizer, position, data_counts, checkpoint, required)

    @property
    def step(self) -> int:
        """The global step: the optimizer's iterations."""
        return int(self.optimizer.iterations.numpy())
