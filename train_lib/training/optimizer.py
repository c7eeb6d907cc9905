"""The optimizer and its learning-rate schedule, from `train_config`.

The optimizer's `iterations` counter is the global step: it is saved in every
checkpoint and names the checkpoint files.

What the schedule means for a run is said here too, once each: the learning rate
at the resumed step when a resume changes the schedule (`resume_learning_rate_note`,
logged by workdir's drift check), a warmup as long as the run (`warmup_warning`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import tensorflow as tf
import tf_keras

from train_lib.config import TrainConfig


class WarmupSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from `warmup_start` to `after(0)` over `warmup_steps`, then
    `after(step - warmup_steps)`."""

    def __init__(self, after, warmup_steps: int, warmup_start: float):
        super().__init__()
        self._after = after
        self._warmup_steps = warmup_steps
        self._warmup_start = warmup_start

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        if not self._warmup_steps:
            return self._after(step)
        warmup_steps = float(self._warmup_steps)
        target = self._after(0.0)
        warm = self._warmup_start + (target - self._warmup_start) * step / warmup_steps
        after = self._after(tf.maximum(step - warmup_steps, 0.0))
        return tf.where(step < warmup_steps, warm, after)

    def get_config(self) -> dict:
        return {"warmup_steps": self._warmup_steps, "warmup_start": self._warmup_start}


def build_learning_rate(train: TrainConfig) -> tf_keras.optimizers.schedules.LearningRateSchedule:
    """The configured schedule (constant, cosine or step) behind a linear warmup."""
    lr = train.learning_rate
    decay_steps = max(train.num_steps - lr.warmup_steps, 1)
    schedules = tf_keras.optimizers.schedules
    if lr.schedule == "constant":
        after = schedules.PiecewiseConstantDecay([math.inf], [lr.base, lr.base])
    elif lr.schedule == "cosine":
        after = schedules.CosineDecay(lr.base, decay_steps, alpha=lr.cosine_alpha)
    else:  # step; boundaries count global steps, so shift them past the warmup
        boundaries = [float(b - lr.warmup_steps) for b in lr.boundaries]
        values = [lr.base * lr.decay_factor**i for i in range(len(boundaries) + 1)]
        after = schedules.PiecewiseConstantDecay(boundaries, values)
    return WarmupSchedule(after, lr.warmup_steps, lr.warmup_start)


class _Scalars:
    """Adam's per-step scalars while one apply_gradients is traced (untracked)."""

    def __init__(self) -> None:
        self.by_key: dict = {}


class Adam(tf_keras.optimizers.Adam):
    """tf_keras' Adam, with each dense update one fused `ResourceApplyAdam` op (the
    kernel tf_keras' legacy Adam and Model Garden's trainer run) and the step's
    scalars (learning rate, beta powers, epsilon) built once per `apply_gradients`
    and device instead of once per variable.

    The kernel's update is Adam's (m += (g - m)(1 - beta_1); v += (g^2 - v)(1 -
    beta_2); var -= alpha m / (sqrt(v) + epsilon), alpha = lr sqrt(1 - beta_2^t) /
    (1 - beta_1^t)) in one pass over each variable, not ~13 ops and 5 passes: the
    apply is that much less of a step, and the traced graph smaller. Its rounding
    may differ from the unfused ops in the last bit. Sparse gradients and amsgrad
    take tf_keras' own path. Slots, their names and checkpoints are tf_keras'.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A plain object: a dict attribute would be tracked into every checkpoint.
        self._step_scalars = _Scalars()

    def apply_gradients(self, *args, **kwargs):
        self._step_scalars.by_key.clear()
        try:
            return super().apply_gradients(*args, **kwargs)
        finally:
            self._step_scalars.by_key.clear()

    def _scalars(self, variable) -> tuple:
        """(lr, beta_1^t, beta_2^t, beta_1, beta_2, epsilon_hat) of this step for
        variables of `variable`'s dtype and device, built once per graph (an
        XLA-compiled update has its own)."""
        key = (id(tf.compat.v1.get_default_graph()), variable.device, variable.dtype)
        cache = self._step_scalars.by_key
        if key not in cache:
            dtype = variable.dtype
            local_step = tf.cast(self.iterations + 1, dtype)
            beta_1 = tf.cast(self.beta_1, dtype)
            beta_2 = tf.cast(self.beta_2, dtype)
            beta_2_power = tf.pow(beta_2, local_step)
            epsilon = tf.cast(self.epsilon, dtype)
            if self.adaptive_epsilon:
                epsilon = epsilon * tf.sqrt(1 - beta_2_power)
            cache[key] = (tf.cast(self.learning_rate, dtype), tf.pow(beta_1, local_step),
                          beta_2_power, beta_1, beta_2, epsilon)
        return cache[key]

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            super().update_step(gradient, variable)
            return
        lr, beta_1_power, beta_2_power, beta_1, beta_2, epsilon = self._scalars(variable)
        index = self._index_dict[self._var_key(variable)]
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=beta_1_power,
            beta2_power=beta_2_power, lr=lr, beta1=beta_1, beta2=beta_2, epsilon=epsilon,
            grad=tf.cast(gradient, variable.dtype))


def build_optimizer(train: TrainConfig) -> tf_keras.optimizers.Optimizer:
    """SGD with momentum or Adam, with optional global-norm gradient clipping; under
    mixed_float16 wrapped in a dynamic loss-scale optimizer (float16 gradients would
    underflow otherwise). `iterations` is the global step either way."""
    opt = train.optimizer
    schedule = build_learning_rate(train)
    clip = {"global_clipnorm": opt.gradient_clip_norm} if opt.gradient_clip_norm else {}
    if opt.type == "sgd":
        optimizer = tf_keras.optimizers.SGD(learning_rate=schedule, momentum=opt.momentum, **clip)
    else:
        optimizer = Adam(
            learning_rate=schedule, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon,
            **clip)
    if train.mixed_precision == "mixed_float16":
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


# ---------------------------------------------------------------- what the user is told


def learning_rate_at(train: TrainConfig, step: int) -> float:
    """The learning rate `train`'s schedule gives at global step `step`."""
    return float(build_learning_rate(train)(step))


def _schedule_changes(before: TrainConfig, after: TrainConfig) -> list[str]:
    """'key was -> now' of the schedule's settings that differ, num_steps first."""
    changes = [f"num_steps {before.num_steps} -> {after.num_steps}"] \
        if before.num_steps != after.num_steps else []
    for field in dataclasses.fields(before.learning_rate):
        old, new = getattr(before.learning_rate, field.name), getattr(after.learning_rate,
                                                                       field.name)
        if old != new:
            changes.append(f"learning_rate.{field.name} {old} -> {new}")
    return changes


def resume_learning_rate_note(before: TrainConfig, after: TrainConfig, step: int) -> str | None:
    """What resuming at `step` under `after` does to the learning rate that the run's
    recorded config `before` gave there, as one log line; None when the rate there is
    the same (or `step` is already past `after.num_steps`).

    The schedule is a function of the global step and num_steps: extending a finished
    cosine run (num_steps 3000 -> 5000) stretches the decay, so at step 3000 the rate
    jumps from about 0 back up (to about a third of learning_rate.base) and decays again.
    """
    if step >= after.num_steps:
        return None
    old, new = learning_rate_at(before, step), learning_rate_at(after, step)
    if math.isclose(old, new, rel_tol=1e-6, abs_tol=1e-12):
        return None
    end = learning_rate_at(after, after.num_steps)
    jump = "jumps up" if new > old else "drops"
    changes = ", ".join(_schedule_changes(before, after))
    return (f"learning rate on resume: at step {step} the run's recorded schedule gave "
            f"{old:.3g}, this config's gives {new:.3g} ({changes}): "
            f"the rate {jump} from {old:.3g} to {new:.3g} at step {step}, then follows the "
            f"{after.learning_rate.schedule} schedule to {end:.3g} at step {after.num_steps}")


def warmup_warning(train: TrainConfig) -> str | None:
    """A warning when the linear warmup lasts the whole run (learning_rate.warmup_steps
    >= num_steps): the rate never reaches learning_rate.base. None otherwise."""
    lr = train.learning_rate
    if not lr.warmup_steps or lr.warmup_steps < train.num_steps:
        return None
    last = learning_rate_at(train, train.num_steps - 1)
    return (f"WARNING: train_config.learning_rate.warmup_steps ({lr.warmup_steps}) >= "
            f"train_config.num_steps ({train.num_steps}): the whole run is warmup, so the "
            f"learning rate climbs from {lr.warmup_start:.3g} to only {last:.3g} and never "
            f"reaches learning_rate.base {lr.base:.3g}; set warmup_steps below num_steps "
            "(e.g. a tenth of it) if that is not intended")


def warn_if_warmup_outlasts_run(train: TrainConfig, log: Callable[[str], None]) -> None:
    """Logs `warmup_warning(train)`, if any."""
    line = warmup_warning(train)
    if line:
        log(line)
