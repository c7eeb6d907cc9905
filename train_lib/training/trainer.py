"""train(): restore -> the loop with its hooks -> final save; the run's composition.

`train` prepares model_dir (lock, pipeline.yaml, drift check), builds the model,
optimizer, checkpoint and input stream, restores the newest valid checkpoint,
composes the hooks (`build_hooks`: the one place that decides which hooks run,
in which order) and runs `loop.run_loop`. How a run ends (the checkpoint
contract, docs/architecture.md):
- num_steps reached: final save unless that step is saved (reason `end`).
- SIGINT/SIGTERM: the handler only records the signal; the running call of the
  training function finishes, that step is saved (`signal`), and train() returns
  with `signal_number` set (the CLI exits 128 + signal).
- an exception in a step or a hook: the last completed step is saved if it is
  finite (`error`, "saved ckpt-N before failing"), then the error is raised again
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
import tempfile
from collections.abc import Callable

import tensorflow as tf
from absl import logging

from train_lib.checkpointing import CheckpointManager, CheckpointPolicy, RunLock
from train_lib.checkpointing.files import prefix as checkpoint_prefix
from train_lib.checkpointing.policy import StopReason
from train_lib.config import PipelineConfig, validate
from train_lib.data import example_checks, inputs
from train_lib.families import build_model
from train_lib.training import (
    distribute,
    graph_optimization,
    in_training_eval,
    input_stream,
    precision,
    workdir,
)
from train_lib.training import failures as train_errors
from train_lib.training import fine_tune as fine_tune_lib
from train_lib.training import hooks as hooks_lib
from train_lib.training.data_report import REPORT_FILE, DataReportHook
from train_lib.training.failures import TrainError
from train_lib.training.loop import run_loop
from train_lib.training.optimizer import (
    build_learning_rate,
    build_optimizer,
    warn_if_warmup_outlasts_run,
)
from train_lib.training.pictures import training_pictures
from train_lib.training.signals import StopSignals, agreed_signal
from train_lib.training.step_function import StepRunner, make_train_function, state_is_finite


@dataclasses.dataclass
class TrainResult:
    step: int  # global step at the end
    stop_reason: str  # finished | already_finished | signal
    signal_number: int | None = None
    last_checkpoint: str | None = None
    start_step: int = 0
    final_losses: dict[str, float] | None = None
    loss_history: list[tuple[int, float]] = dataclasses.field(default_factory=list)



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
    strategy = strategy or tf.distribute.get_strategy()
    role = distribute.role_of(strategy)
    _check_batch_size(config.train_config.batch_size, strategy.num_replicas_in_sync)
    progress = hooks_lib.ProgressLine(config.train_config.num_steps)
    log = progress.wrap(log)
    policy = CheckpointPolicy(checkpoint_every_n, max_to_keep, keep_checkpoint_every_n_hours)
    created = role.is_chief and not os.path.exists(model_dir)
    if role.is_chief:
        workdir.prepare_model_dir(model_dir)
    try:
        return _train_locked(config, model_dir, strategy, role, policy, progress, log,
                             async_checkpoint=async_checkpoint, deterministic=deterministic,
                             record_summaries=record_summaries)
    except BaseException:
        if created:  # a failed start leaves no model_dir of its own behind
            workdir.remove_if_unused(model_dir)
        raise


def _train_locked(config: PipelineConfig, model_dir: str, strategy, role: distribute.Role,
                  policy: CheckpointPolicy, progress: hooks_lib.ProgressLine,
                  log: Callable[[str], None], *, async_checkpoint: bool, deterministic: bool,
                  record_summaries: bool) -> TrainResult:
    """train() from the lock on: inputs, state, restore, the loop."""
    train_cfg = config.train_config
    num_steps = train_cfg.num_steps
    # Before anything is traced, so that every function of the run has one setting.
    graph_optimization.apply(train_cfg.graph_optimization)
    with RunLock(model_dir, log=log) if role.is_chief else contextlib.nullcontext():
        files = _prepare_inputs(config, model_dir, strategy, role, log)
        fine_tune = (fine_tune_lib.resolve_checkpoint(train_cfg.fine_tune_checkpoint)
                     if train_cfg.fine_tune_checkpoint else None)
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        tf.keras.utils.set_random_seed(train_cfg.seed)
        # Decodes the training records on a thread while the model is built and restored.
        with input_stream.CacheBuild(config, files, role, log) as cache:
            model, optimizer, position, data_counts, checkpoint, required = _build_state(
                config, strategy)
            worker_dir = None if role.is_chief else tempfile.mkdtemp(
                prefix=f"train_lib-worker{role.worker_index}-")
            if async_checkpoint and role.num_workers > 1:
                log("async checkpoints are off in multi-worker jobs: every worker saves together")
            manager = CheckpointManager(model_dir, checkpoint, policy,
                                        async_save=async_checkpoint and role.num_workers == 1,
                                        log=log, is_chief=role.is_chief, worker_tmp_dir=worker_dir,
                                        required=required)
            try:
                restored, start = _restore(manager, model, optimizer, fine_tune, config, strategy,
                                           role, log)
                if start >= num_steps:
                    log(f"training already finished: step {start} >= num_train_steps {num_steps}; "
                        "nothing to do (raise --num_train_steps to continue)")
                    return TrainResult(start, "already_finished", start_step=start,
                                       last_checkpoint=_prefix(model_dir, manager.latest_step))
                examples_per_step = train_cfg.batch_size // role.num_workers
                input_start = input_stream.start_position(_prefix(model_dir, restored), start,
                                           examples_per_step, log)
                position.assign([input_start.epoch, input_start.offset])
                data_counts.assign(input_stream.restored_data_counts(
                    _prefix(model_dir, restored), int(data_counts.shape[0])))
                iterator = input_stream.train_iterator(config, files, strategy, role, input_start,
                                                       log, cache)
                parts = _Parts(config, model_dir, files, strategy, role, model, optimizer,
                               iterator, position, data_counts, input_start, start,
                               examples_per_step, manager, policy, log, progress)
                return _run(parts, start, record_summaries)
            finally:
                manager.close()
                if worker_dir:
                    shutil.rmtree(worker_dir, ignore_errors=True)


def _prepare_inputs(config: PipelineConfig, model_dir: str, strategy, role: distribute.Role,
                    log: Callable[[str], None]) -> list[str]:
    """The training files (the chief first generates the shapes dataset if needed and
    records pipeline.yaml after the drift check; other workers wait for it)."""
    if role.is_chief:
        files = workdir.train_files(config, log)
        workdir.check_config_drift(config, model_dir, log)
    if role.num_workers > 1:
        distribute.gather_ints(strategy, [0])  # wait until the chief has prepared
    if not role.is_chief:
        files = workdir.train_files(config, log)
    return files


def _build_state(config: PipelineConfig, strategy):
    """The model, its optimizer, the input position, the data counts and the
    checkpoints over them: (model, optimizer, position, data counts, checkpoint that
    saves, checkpoint that must read back for a checkpoint to be valid).

    Every checkpoint holds the input position (two integers) and the data counts
    (example_checks.COUNTERS), saved alike by sync and async saves. All saved
    objects go into the constructor: TF's async checkpointer saves only those, not
    attributes set later. A checkpoint is valid when the model and optimizer read
    back (older ones hold no position or counts)."""
    with strategy.scope():
        model = build_model(config.model, config.train_config.mixed_precision)
        optimizer = build_optimizer(config.train_config)
        optimizer.build(model.trainable_variables)
    position = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="input_position")
    data_counts = tf.Variable(tf.zeros([len(example_checks.COUNTERS)], tf.int64),
                              trainable=False, name="data_counts")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, input_position=position,
                                     data_counts=data_counts)
    required = tf.train.Checkpoint(model=model, optimizer=optimizer)
    return model, optimizer, position, data_counts, checkpoint, required


def _restore(manager: CheckpointManager, model, optimizer, fine_tune: str | None,
             config: PipelineConfig, strategy, role: distribute.Role,
             log: Callable[[str], None]) -> tuple[int | None, int]:
    """Restores model_dir's newest valid checkpoint, or applies fine_tune_checkpoint
    to a new run; returns (the restored checkpoint's step or None, the global step)."""
    restored = manager.restore(expect_partial=True)
    if restored is None and fine_tune:
        kind = config.train_config.fine_tune_checkpoint_type
        count = fine_tune_lib.apply(model, fine_tune, kind)
        log(f"initialised {count} variables ({kind}) from fine_tune_checkpoint {fine_tune}")
    elif restored is None:
        log(fine_tune_lib.RANDOM_START)
    start = int(optimizer.iterations.numpy())
    if role.num_workers > 1:
        _check_same_step(strategy, role, start)
    if restored is not None:
        log(f"resumed from ckpt-{restored} at step {start}")
    return restored, start


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


def _prefix(model_dir: str, step: int | None) -> str | None:
    return None if step is None else checkpoint_prefix(model_dir, step)


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
    data_counts: tf.Variable
    input_start: inputs.InputPosition
    start_step: int
    examples_per_step: int
    manager: CheckpointManager
    policy: CheckpointPolicy
    log: Callable[[str], None]
    progress: hooks_lib.ProgressLine


def build_hooks(parts: _Parts, start: int, record_summaries: bool) -> list[hooks_lib.Hook]:
    """The hooks of a training run, in call order: logging first (its history feeds
    TrainResult), what the data checks did, then checkpoints (so an evaluation at the
    same step finds the checkpoint on disk, and the final save precedes anything that
    reads it), the progress line, in-training evaluation (every
    eval_config.eval_every_n steps and, with eval_config.eval_at_end, the final
    step), summaries."""
    train_cfg = parts.config.train_config
    reader = parts.config.train_input_reader
    role = parts.role
    hooks: list[hooks_lib.Hook] = [
        hooks_lib.LogHook(train_cfg.log_every_n, train_cfg.num_steps, train_cfg.batch_size,
                          start, parts.log),
        DataReportHook(train_cfg.log_every_n, parts.data_counts.numpy,
                       os.path.join(parts.model_dir, REPORT_FILE) if role.is_chief else None,
                       reader.bad_example_policy, reader.max_number_of_boxes, parts.log),
        hooks_lib.CheckpointHook(
            parts.manager, parts.policy, log=parts.log,
            state_is_finite=lambda: state_is_finite(parts.strategy, parts.model),
            # After an error only the chief saves, and not when a worker was lost
            # (a save needs every worker).
            may_save=lambda error: role.is_chief and not train_errors.worker_lost(
                error, role.num_workers)),
        parts.progress,
    ]
    eval_every_n, at_end = in_training_eval.plan(parts.config)
    if (eval_every_n or at_end) and role.num_workers > 1:
        what = (f"eval_config.eval_every_n ({eval_every_n})" if eval_every_n
                else "the final evaluation (eval_config.eval_at_end)")
        parts.log(f"{what} is ignored in a multi-worker "
                  "job (evaluation would stall every worker); evaluate alongside with "
                  f"model_main_tf2.py --checkpoint_dir={parts.model_dir} --model_dir=<dir>")
    elif eval_every_n or at_end:
        evaluate = in_training_eval.evaluation(parts.config, parts.model_dir, parts.model,
                                               parts.strategy, parts.manager, parts.log)
        hooks.append(hooks_lib.EvalHook(eval_every_n, evaluate,
                                        final_step=train_cfg.num_steps if at_end else None))
    if record_summaries and role.is_chief:
        writer = tf.summary.create_file_writer(os.path.join(parts.model_dir, "train"))
        hooks.append(hooks_lib.SummaryHook(
            writer, train_cfg.summary_every_n, train_cfg.batch_size, start,
            pictures=training_pictures(parts.config, parts.files)))
    return hooks


def _run(parts: _Parts, start: int, record_summaries: bool) -> TrainResult:
    """Runs the loop with the run's hooks; turns how it ended into a TrainResult or
    the error the user sees."""
    config, manager = parts.config, parts.manager
    train_function = make_train_function(parts.strategy, parts.model, parts.optimizer,
                                          config, parts.position, parts.input_start,
                                          parts.start_step, parts.examples_per_step,
                                          parts.data_counts)
    steps = StepRunner(train_function, parts.iterator, parts.optimizer,
                       build_learning_rate(config.train_config))
    hooks = build_hooks(parts, start, record_summaries)
    precision.warn_on_cpu(config.train_config.mixed_precision, parts.log)
    warn_if_warmup_outlasts_run(config.train_config, parts.log)
    parts.log(f"training from step {start} to {config.train_config.num_steps}")
    with StopSignals(parts.log) as stop:
        try:
            end = run_loop(steps, hooks, num_steps=config.train_config.num_steps,
                           steps_per_loop=config.train_config.steps_per_loop,
                           stop_requested=lambda step: agreed_signal(
                               parts.strategy, parts.role, stop.received, step, parts.log))
        except Exception as err:
            step = steps.step
            if train_errors.worker_lost(err, parts.role.num_workers):
                train_errors.ignore_pools_of_aborted_collectives()
                raise train_errors.worker_lost_error(
                    err, step, parts.role.name,
                    _prefix(parts.model_dir, manager.latest_step)) from err
            raise train_errors.translate_error(err, parts.files, config, step) from err
    if end.reason == StopReason.NON_FINITE:
        raise train_errors.non_finite_error(end.step, end.outputs,
                                            _prefix(parts.model_dir, manager.latest_step))
    if parts.role.num_workers > 1:
        distribute.gather_ints(parts.strategy, [end.step])  # every worker's save is done
    parts.progress.clear()
    last = _prefix(parts.model_dir, manager.latest_step)
    result = TrainResult(end.step, str(end.reason), signal_number=end.signal_number,
                         start_step=start, last_checkpoint=last, final_losses=end.outputs,
                         loss_history=hooks[0].history)
    if end.signal_number is None:
        parts.log(f"training finished at step {end.step}; last checkpoint {last}")
    else:
        parts.log(f"stopped by {signal.Signals(end.signal_number).name} at step {end.step}; "
                  f"last checkpoint {last}")
    return result
