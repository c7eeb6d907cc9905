"""train(): restore -> steps -> checkpoints, summaries, logs -> final save.

Exits (the checkpoint contract in DESIGN.md):
- normal end at num_steps: final save unless that step is saved; `stop_reason` "finished".
- SIGINT/SIGTERM: the handler only records the signal; the running call of the
  training function finishes, the state is saved at that step, and train()
  returns with `signal_number` set (the CLI exits 128 + signal).
- an exception in a step: the state of the last completed step is saved if it is
  finite ("saved ckpt-N before failing"), then the error is raised again
  (input errors as a `TrainError` naming the file).
- non-finite loss: nothing is saved; `TrainError` names the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from train_lib import distribute, inputs, label_map, train_errors, visualize, workdir
from train_lib import fine_tune as fine_tune_lib
from train_lib import hooks as hooks_lib
from train_lib.checkpoints import CheckpointManager, CheckpointPolicy, RunLock
from train_lib.config import PipelineConfig, validate
from train_lib.model import LOSS_KEYS, build_model, compute_losses
from train_lib.optimizer import build_learning_rate, build_optimizer
from train_lib.train_errors import TrainError


@dataclasses.dataclass
class TrainResult:
    step: int  # global step at the end
    stop_reason: str  # finished | already_finished | signal
    signal_number: int | None = None
    last_checkpoint: str | None = None
    start_step: int = 0
    final_losses: dict[str, float] | None = None
    loss_history: list[tuple[int, float]] = dataclasses.field(default_factory=list)


class StopSignals:
    """Records SIGINT/SIGTERM instead of acting on them; restores handlers on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log: Callable[[str], None]):
        self.received: int | None = None
        self._log = log
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
            self._log(f"received {signal.Signals(signum).name}: stopping after the current "
                      "step and saving a checkpoint")
        else:
            self._log(f"received {signal.Signals(signum).name} again: already stopping")

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _make_train_function(strategy, model, optimizer, config: PipelineConfig,
                         position: tf.Variable, start: inputs.InputPosition,
                         start_step: int, examples_per_step: int):
    """A tf.function running `num_steps` steps; returns the last step's reduced
    losses and whether every step's loss was finite (it stops at the first
    non-finite one). After each step `position` holds the input position after it:
    with one replica the position its batch carries; with several (whose
    per-replica positions a worker cannot combine in order) `start` plus the
    `examples_per_step` each step since `start_step` took from this worker's stream.

    Each replica's loss is its share of the global batch's loss (normalised by the
    positives of the whole global batch; regularisation divided by the replica
    count), so the optimizer's summed gradients are those of the global mean and
    the SUM-reduced losses are the global batch's. With train_config.jit_compile
    the forward and backward pass of each replica is compiled with XLA."""
    train_cfg = config.train_config
    num_replicas = strategy.num_replicas_in_sync
    scaled = train_cfg.mixed_precision == "mixed_float16"

    def losses_and_gradients(images, labels, num_positives):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            regularization = (tf.add_n(model.losses) / num_replicas
                              if model.losses else tf.constant(0.0))
            losses = compute_losses(config.model, outputs, labels, num_positives,
                                    tf.cast(regularization, tf.float32))
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
        num_positives = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, tf.reduce_sum(labels["box_weights"]))
        losses, grads = losses_and_gradients(images, labels, num_positives)
        # Some backbone layers (e.g. MobileNet's last conv) feed no FPN level.
        pairs = [(g, v) for g, v in zip(grads, model.trainable_variables, strict=True)
                 if g is not None]
        # The step counter must advance only with a batch: without this, the
        # counter's update may run although fetching the batch failed.
        with tf.control_dependencies([images]):
            optimizer.apply_gradients(pairs)
        return losses

    def one_step(iterator):
        images, labels, batch_position = next(iterator)
        per_replica = strategy.run(replica_step, args=(images, labels))
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
            (tf.constant(0), {k: tf.constant(0.0) for k in LOSS_KEYS}, tf.constant(True)))
        return losses, finite

    return train_steps


def _state_is_finite(strategy, model) -> bool:
    """Whether this worker's copy of every variable is finite (local reads only: no
    collective, which may be what failed)."""
    return all(bool(np.all(np.isfinite(local.numpy())))
               for v in model.variables for local in strategy.experimental_local_results(v))


def train(
    config: PipelineConfig,
    model_dir: str,
    *,
    num_train_steps: int | None = None,
    checkpoint_every_n: int = 1000,
    max_to_keep: int = 7,
    keep_checkpoint_every_n_hours: float | None = None,
    record_summaries: bool = True,
    async_checkpoint: bool = False,
    deterministic: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    log: Callable[[str], None] = logging.info,
) -> TrainResult:
    """Trains `config`'s detector into `model_dir`, resuming from its newest valid
    checkpoint. `num_train_steps` overrides train_config.num_steps.

    Under a multi-worker `strategy` every worker calls train() with the same
    arguments; the chief alone writes model_dir (checkpoints, events, summaries,
    pipeline.yaml), the others save into temporary directories they remove."""
    if num_train_steps and num_train_steps != config.train_config.num_steps:
        config = copy.deepcopy(config)
        config.train_config.num_steps = num_train_steps
        validate(config)
    train_cfg = config.train_config
    num_steps = train_cfg.num_steps
    strategy = strategy or tf.distribute.get_strategy()
    role = distribute.role_of(strategy)
    _check_batch_size(train_cfg.batch_size, strategy.num_replicas_in_sync)
    progress = hooks_lib.ProgressLine(num_steps)
    log = progress.wrap(log)
    policy = CheckpointPolicy(checkpoint_every_n, max_to_keep, keep_checkpoint_every_n_hours)
    if role.is_chief:
        workdir.prepare_model_dir(model_dir)
    with RunLock(model_dir, log=log) if role.is_chief else contextlib.nullcontext():
        if role.is_chief:
            files = workdir.train_files(config, log)
            workdir.check_config_drift(config, model_dir, log)
        if role.num_workers > 1:
            distribute.gather_ints(strategy, [0])  # wait until the chief has prepared
        if not role.is_chief:
            files = workdir.train_files(config, log)
        fine_tune = (fine_tune_lib.resolve_checkpoint(train_cfg.fine_tune_checkpoint)
                     if train_cfg.fine_tune_checkpoint else None)
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        tf.keras.utils.set_random_seed(train_cfg.seed)
        with strategy.scope():
            model = build_model(config.model, train_cfg.mixed_precision)
            optimizer = build_optimizer(train_cfg)
            optimizer.build(model.trainable_variables)
        # Every checkpoint holds the input position: two integers, saved alike by sync
        # and async saves. All saved objects go into the constructor: TF's async
        # checkpointer saves only those, not attributes set later. A checkpoint is
        # valid when the model and optimizer read back (older ones hold no position).
        position = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="input_position")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                         input_position=position)
        required = tf.train.Checkpoint(model=model, optimizer=optimizer)
        worker_dir = None if role.is_chief else tempfile.mkdtemp(
            prefix=f"train_lib-worker{role.worker_index}-")
        if async_checkpoint and role.num_workers > 1:
            log("async checkpoints are off in multi-worker jobs: every worker saves together")
        manager = CheckpointManager(model_dir, checkpoint, policy,
                                    async_save=async_checkpoint and role.num_workers == 1,
                                    log=log, is_chief=role.is_chief, worker_tmp_dir=worker_dir,
                                    required=required)
        try:
            restored = manager.restore(expect_partial=True)
            if restored is None and fine_tune:
                count = fine_tune_lib.apply(model, fine_tune, train_cfg.fine_tune_checkpoint_type)
                log(f"initialised {count} variables ({train_cfg.fine_tune_checkpoint_type}) "
                    f"from fine_tune_checkpoint {fine_tune}")
            start = int(optimizer.iterations.numpy())
            if role.num_workers > 1:
                _check_same_step(strategy, role, start)
            if restored is not None:
                log(f"resumed from ckpt-{restored} at step {start}")
            if start >= num_steps:
                log(f"training already finished: step {start} >= num_train_steps {num_steps}; "
                    "nothing to do (raise --num_train_steps to continue)")
                return TrainResult(start, "already_finished", start_step=start,
                                   last_checkpoint=_prefix(model_dir, manager.latest_step))
            examples_per_step = train_cfg.batch_size // role.num_workers
            input_start = _input_start(_prefix(model_dir, restored), start,
                                       examples_per_step, log)
            position.assign([input_start.epoch, input_start.offset])
            iterator = _train_iterator(config, files, strategy, role, input_start, log)
            parts = _Parts(config, model_dir, files, strategy, role, model, optimizer,
                           iterator, position, input_start, start, examples_per_step,
                           manager, policy, log, progress)
            return _run(parts, start, record_summaries)
        finally:
            manager.close()
            if worker_dir:
                shutil.rmtree(worker_dir, ignore_errors=True)


def _check_batch_size(batch_size: int, num_replicas: int) -> None:
    if batch_size % num_replicas:
        raise TrainError(
            f"train_config.batch_size {batch_size} does not split evenly over the "
            f"{num_replicas} replicas of this job; make it a multiple of {num_replicas} "
            f"(e.g. {max(num_replicas, batch_size // num_replicas * num_replicas)})")


def _check_same_step(strategy, role: distribute.Role, start: int) -> None:
    """Every worker must resume from the same step, or the job would diverge."""
    steps = [row[0] for row in distribute.gather_ints(strategy, [start])]
    if len(set(steps)) > 1:
        raise TrainError(f"the workers restored different steps ({steps}); they must all "
                         "see the chief's model_dir on a shared filesystem. This is the "
                         f"{role.name}.")


POSITION_KEY = "input_position/.ATTRIBUTES/VARIABLE_VALUE"


def _input_start(restored: str | None, start: int, examples_per_step: int,
                 log: Callable[[str], None]) -> inputs.InputPosition:
    """Where this worker's input stream resumes: the `input_position` that the
    checkpoint `restored` holds; for a checkpoint without one (written by an
    earlier version of this trainer) the position after the examples of `start`
    steps, said in one log line."""
    if restored is None:
        return inputs.InputPosition()
    reader = tf.train.load_checkpoint(restored)
    if reader.has_tensor(POSITION_KEY):
        epoch, offset = (int(v) for v in reader.get_tensor(POSITION_KEY))
        return inputs.InputPosition(epoch, offset)
    skip = start * examples_per_step
    form = ("a tf.data iterator state" if any(name.startswith("iterator/") for name in
                                              reader.get_variable_to_shape_map())
            else "no input position")
    log(f"{os.path.basename(restored)} holds {form} (written by an earlier version of "
        f"this trainer): the input continues after the {skip} examples of {start} steps, "
        "in this version's data order")
    return inputs.InputPosition(0, skip)


def _train_iterator(config: PipelineConfig, files: list[str], strategy, role: distribute.Role,
                    start: inputs.InputPosition, log: Callable[[str], None]):
    """The training batches from input position `start` on: with one replica a
    plain tf.data iterator, with several tf.distribute's iterator over each
    worker's shard."""
    global_batch = config.train_config.batch_size
    if start != inputs.InputPosition():
        who, shard = ((f"{role.name} skips", "of its shard ") if role.num_workers > 1
                      else ("skipping", ""))
        log(f"input position: {who} the {start.offset} examples {shard}before the "
            f"position in epoch {start.epoch} (read, not decoded)")
    if strategy.num_replicas_in_sync == 1:
        return iter(inputs.build_train_dataset(config, files, global_batch, start=start))
    return iter(strategy.distribute_datasets_from_function(
        lambda ctx: inputs.build_train_dataset(
            config, files, ctx.get_per_replica_batch_size(global_batch), ctx, start=start)))


def _prefix(model_dir: str, step: int | None) -> str | None:
    return None if step is None else os.path.join(model_dir, f"ckpt-{step}")


@dataclasses.dataclass
class _Parts:
    """What the loop works with, built by train()."""

    config: PipelineConfig
    model_dir: str
    files: list[str]
    strategy: tf.distribute.Strategy
    role: distribute.Role
    model: object
    optimizer: object
    iterator: object
    position: tf.Variable
    input_start: inputs.InputPosition
    start_step: int
    examples_per_step: int
    manager: CheckpointManager
    policy: CheckpointPolicy
    log: Callable[[str], None]
    progress: hooks_lib.ProgressLine


def _hooks(parts: _Parts, start: int, record_summaries: bool) -> list[hooks_lib.Hook]:
    """Logging first (its history feeds TrainResult), then checkpoints, then summaries."""
    train_cfg = parts.config.train_config
    hooks: list[hooks_lib.Hook] = [
        hooks_lib.LogHook(train_cfg.log_every_n, train_cfg.num_steps, train_cfg.batch_size,
                          start, parts.log),
        hooks_lib.CheckpointHook(parts.manager, parts.policy),
        parts.progress,
    ]
    eval_every_n = parts.config.eval_config.eval_every_n
    if eval_every_n and parts.role.num_workers > 1:
        parts.log(f"eval_config.eval_every_n ({eval_every_n}) is ignored in a multi-worker "
                  "job (evaluation would stall every worker); evaluate alongside with "
                  f"model_main_tf2.py --checkpoint_dir={parts.model_dir} --model_dir=<dir>")
    elif eval_every_n:
        hooks.append(hooks_lib.EvalHook(eval_every_n, _in_training_eval(parts)))
    if record_summaries and parts.role.is_chief:
        writer = tf.summary.create_file_writer(os.path.join(parts.model_dir, "train"))
        hooks.append(hooks_lib.SummaryHook(
            writer, train_cfg.summary_every_n, train_cfg.batch_size, start,
            pictures=_training_pictures(parts.config, parts.files)))
    return hooks


def _run(parts: _Parts, start: int, record_summaries: bool) -> TrainResult:
    """The loop: run steps up to the nearest hook boundary, then the hooks; stop at
    num_steps or a signal (in a multi-worker job, a signal to any worker: they agree
    after each call of the training function, so all save the same step); on an
    exception save what was done and fail."""
    config, manager, optimizer = parts.config, parts.manager, parts.optimizer
    num_steps = config.train_config.num_steps
    steps_per_loop = config.train_config.steps_per_loop
    train_steps = _make_train_function(parts.strategy, parts.model, optimizer, config,
                                       parts.position, parts.input_start, parts.start_step,
                                       parts.examples_per_step)
    schedule = build_learning_rate(config.train_config)
    hooks = _hooks(parts, start, record_summaries)
    step, outputs, stop_signal = start, None, None
    parts.log(f"training from step {start} to {num_steps}")
    with StopSignals(parts.log) as stop:
        try:
            while step < num_steps and stop_signal is None:
                targets = [h.next_step(step) for h in hooks]
                target = min([t for t in targets if t] + [num_steps, step + steps_per_loop])
                losses, finite = train_steps(parts.iterator, tf.constant(target - step))
                step = int(optimizer.iterations.numpy())
                outputs = {k: float(v.numpy()) for k, v in losses.items()}
                if not bool(finite.numpy()):
                    raise train_errors.non_finite_error(
                        step, outputs, _prefix(parts.model_dir, manager.latest_step))
                outputs["learning_rate"] = float(schedule(step).numpy())
                stop_signal = _agreed_signal(parts, stop.received, step)
                for hook in hooks:
                    hook.after_steps(step, outputs)
        except TrainError:
            raise
        except Exception as err:  # save what was done, then fail
            step = int(optimizer.iterations.numpy())
            if train_errors.worker_lost(err, parts.role.num_workers):
                # Saving needs every worker: not possible now.
                _ignore_pools_of_aborted_collectives()
                raise train_errors.worker_lost_error(
                    err, step, parts.role.name,
                    _prefix(parts.model_dir, manager.latest_step)) from err
            if parts.role.is_chief:
                _save_before_failing(step, parts)
            raise train_errors.translate_error(err, parts.files, step) from err
        if parts.policy.needs_final_save(step, manager.latest_step):
            manager.save(step, "signal" if stop_signal is not None else "end")
    manager.sync()
    if parts.role.num_workers > 1:
        distribute.gather_ints(parts.strategy, [step])  # every worker's save is done
    parts.progress.clear()
    result = TrainResult(step, "finished" if stop_signal is None else "signal",
                         signal_number=stop_signal, start_step=start,
                         last_checkpoint=_prefix(parts.model_dir, manager.latest_step),
                         final_losses=outputs, loss_history=hooks[0].history)
    if stop_signal is None:
        parts.log(f"training finished at step {step}; last checkpoint {result.last_checkpoint}")
    else:
        parts.log(f"stopped by {signal.Signals(stop_signal).name} at step {step}; last "
                  f"checkpoint {result.last_checkpoint}")
    return result


def _agreed_signal(parts: _Parts, received: int | None, step: int) -> int | None:
    """The signal the job stops for: this process's, or in a multi-worker job any
    worker's (SIGTERM before SIGINT), agreed by all workers at the same step."""
    if parts.role.num_workers == 1:
        return received
    rows = distribute.gather_ints(parts.strategy, [received or 0])
    signals = {row[0] for row in rows if row[0]}
    if not signals:
        return None
    agreed = signal.SIGTERM if signal.SIGTERM in signals else min(signals)
    if received is None:
        parts.log(f"another worker received {signal.Signals(agreed).name}: the {parts.role.name} "
                  f"stops at step {step} and saves with it")
    return int(agreed)


def _in_training_eval(parts: _Parts):
    """evaluate(step): COCO metrics of the live model on the eval split, recorded as
    continuous evaluation records them (best/ only when the step was saved)."""
    from train_lib import evaluation  # imported only when evaluation is on

    files, names = evaluation.eval_inputs(parts.config)
    evaluator = evaluation.Evaluator(parts.model, parts.config, files, names,
                                     strategy=parts.strategy, log=parts.log)
    recorder = evaluation.MetricsRecorder(parts.config, parts.model_dir, "eval", parts.log)

    def evaluate(step: int) -> None:
        began = time.monotonic()
        metrics = evaluator.evaluate()
        saved = step in parts.manager.saved_steps()
        recorder.record(step, metrics, evaluator, time.monotonic() - began,
                        prefix=_prefix(parts.model_dir, step) if saved else None)
    return evaluate


def _training_pictures(config: PipelineConfig, files: list[str]):
    """A function of the step giving a few augmented training images with their
    ground-truth boxes and class names drawn, for TensorBoard."""
    count = config.eval_config.num_visualizations
    if not count:
        return None
    names = label_map.load_label_map(config.train_input_reader.label_map_path)

    def pictures(step: int) -> list:
        return [visualize.draw_boxes(image, boxes, classes, names, scale=2)
                for image, boxes, classes in inputs.training_examples(config, files, count,
                                                                      key_offset=step)]
    return pictures


def _ignore_pools_of_aborted_collectives() -> None:
    """An eager all-reduce that a lost worker aborted (e.g. in a save) leaves
    TensorFlow's thread pool unclosed, and its __del__ prints a traceback as the
    process exits. The error the user needs is ours; drop that one report."""
    default = sys.unraisablehook

    def hook(unraisable) -> None:
        if getattr(unraisable.object, "__qualname__", "") != "Pool.__del__":
            default(unraisable)
    sys.unraisablehook = hook


def _save_before_failing(step: int, parts: _Parts) -> None:
    manager = parts.manager
    if not parts.policy.needs_final_save(step, manager.latest_step):
        return
    try:
        if not _state_is_finite(parts.strategy, parts.model):
            parts.log(f"not saving step {step} before failing: the model state is not finite")
            return
        manager.save(step, "error")
        manager.sync()
        parts.log(f"saved ckpt-{step} before failing")
    except Exception as save_err:  # the original error matters more
        why = (train_errors.op_error_summary(save_err)
               if isinstance(save_err, tf.errors.OpError) else save_err)
        parts.log(f"could not save ckpt-{step} before failing: {why}")
