"""train(): restore -> the loop with its hooks -> final save; the run's composition.

`train` prepares model_dir (lock, pipeline.yaml, drift check), builds the
`TrainState` (model, optimizer, input position, data counts, the checkpoint over
them: state.py) and the input stream, restores the newest valid checkpoint,
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
from train_lib.checkpointing.files import list_steps
from train_lib.checkpointing.files import prefix as checkpoint_prefix
from train_lib.checkpointing.policy import StopReason
from train_lib.config import PipelineConfig, validate
from train_lib.data import inputs
from train_lib.training import (
    distribute,
    fine_tune_checks,
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
from train_lib.training.loop import Hook, run_loop
from train_lib.training.optimizer import (
    build_learning_rate,
    warn_if_warmup_outlasts_run,
)
from train_lib.training.pictures import training_pictures
from train_lib.training.run_options import RunOptions
from train_lib.training.signals import StopSignals, agreed_signal
from train_lib.training.state import TrainState
from train_lib.training.step_function import StepRunner, make_train_function, state_is_finite


@dataclasses.dataclass
class TrainResult:
    """How a call of train() ended (an error is raised instead)."""

    step: int  # global step at the end
    stop_reason: StopReason  # FINISHED, ALREADY_FINISHED or SIGNAL
    signal_number: int | None = None
    last_checkpoint: str | None = None
    start_step: int = 0
    final_losses: dict[str, float] | None = None
    loss_history: list[tuple[int, float]] = dataclasses.field(default_factory=list)


def train(
    config: PipelineConfig,
    model_dir: str,
    options: RunOptions | None = None,
    *,
    strategy: tf.distribute.Strategy | None = None,
    log: Callable[[str], None] = logging.info,
    **option_fields,
) -> TrainResult:
    """Trains `config`'s detector into `model_dir`, resuming from its newest valid
    checkpoint, with the checkpoint and run flags `options` (RunOptions;
    `options.num_train_steps` overrides train_config.num_steps). Instead of
    `options` a caller may pass RunOptions' fields as keywords
    (`train(config, model_dir, checkpoint_every_n=2)`), not both.

    Under a multi-worker `strategy` every worker calls train() with the same
    arguments; the chief alone writes model_dir (checkpoints, events, summaries,
    pipeline.yaml), the others save into temporary directories they remove."""
    if options is None:
        options = RunOptions(**option_fields)
    elif option_fields:
        raise TypeError(f"train() takes `options` or RunOptions' fields, not both: "
                        f"{', '.join(sorted(option_fields))}")
    num_train_steps = options.num_train_steps
    if num_train_steps and num_train_steps != config.train_config.num_steps:
        config = copy.deepcopy(config)
        config.train_config.num_steps = num_train_steps
        validate(config)
    strategy = strategy or tf.distribute.get_strategy()
    role = distribute.role_of(strategy)
    _check_batch_size(config.train_config.batch_size, strategy.num_replicas_in_sync)
    progress = hooks_lib.ProgressLine(config.train_config.num_steps)
    log = progress.wrap(log)
    policy = options.checkpoint_policy()
    created = role.is_chief and not os.path.exists(model_dir)
    fine_tune_path = config.train_config.fine_tune_checkpoint
    if fine_tune_path and not (os.path.isdir(model_dir) and list_steps(model_dir)):
        # A fine-tune checkpoint that cannot be read stops the run before model_dir.
        fine_tune_checks.check_readable(fine_tune_checks.resolve(fine_tune_path))
    if role.is_chief:
        workdir.prepare_model_dir(model_dir)
    try:
        return _train_locked(config, model_dir, strategy, role, options, policy, progress, log)
    except BaseException:
        if created:  # a failed start leaves no model_dir of its own behind
            workdir.remove_if_unused(model_dir)
        raise


def _train_locked(config: PipelineConfig, model_dir: str, strategy, role: distribute.Role,
                  options: RunOptions, policy: CheckpointPolicy,
                  progress: hooks_lib.ProgressLine,
                  log: Callable[[str], None]) -> TrainResult:
    """train() from the lock on: inputs, state, restore, the loop."""
    train_cfg = config.train_config
    num_steps = train_cfg.num_steps
    # Before anything is traced, so that every function of the run has one setting.
    graph_optimization.apply(train_cfg.graph_optimization)
    with (RunLock(model_dir, log=log) if role.is_chief else contextlib.nullcontext(),
          workdir.undone_on_failed_start(model_dir, enabled=role.is_chief)):
        files = _prepare_inputs(config, model_dir, strategy, role, log)
        fine_tune = (fine_tune_lib.resolve_checkpoint(train_cfg.fine_tune_checkpoint)
                     if train_cfg.fine_tune_checkpoint else None)
        if options.deterministic:
            tf.config.experimental.enable_op_determinism()
        tf.keras.utils.set_random_seed(train_cfg.seed)
        # Decodes the training records on a thread while the model is built and restored.
        with input_stream.CacheBuild(config, files, role, log) as cache:
            state = TrainState.build(config, strategy)
            worker_dir = None if role.is_chief else tempfile.mkdtemp(
                prefix=f"train_lib-worker{role.worker_index}-")
            if options.async_checkpoint and role.num_workers > 1:
                log("async checkpoints are off in multi-worker jobs: every worker saves together")
            manager = CheckpointManager(model_dir, state.checkpoint, policy,
                                        async_save=options.async_checkpoint
                                        and role.num_workers == 1,
                                        log=log, is_chief=role.is_chief, worker_tmp_dir=worker_dir,
                                        required=state.required)
            try:
                restored, start = _restore(manager, state.model, state.optimizer, fine_tune,
                                           config, strategy, role, log)
                if start >= num_steps:
                    log(f"training already finished: step {start} >= num_train_steps {num_steps}; "
                        "nothing to do (raise --num_train_steps to continue)")
                    return TrainResult(start, StopReason.ALREADY_FINISHED, start_step=start,
                                       last_checkpoint=_prefix(model_dir, manager.latest_step))
                examples_per_step = train_cfg.batch_size // role.num_workers
                input_start = input_stream.start_position(_prefix(model_dir, restored), start,
                                           examples_per_step, log)
                state.input_position.assign([input_start.epoch, input_start.offset])
                state.data_counts.assign(input_stream.restored_data_counts(
                    _prefix(model_dir, restored), int(state.data_counts.shape[0])))
                iterator = input_stream.train_iterator(config, files, strategy, role, input_start,
                                                       log, cache)
                run = _Run(config, model_dir, files, strategy, role, options, state, manager,
                           log, progress)
                return _run(run, iterator, input_start, start, examples_per_step)
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


def _restore(manager: CheckpointManager, model, optimizer, fine_tune: str | None,
             config: PipelineConfig, strategy, role: distribute.Role,
             log: Callable[[str], None]) -> tuple[int | None, int]:
    """Restores model_dir's newest valid checkpoint, or applies fine_tune_checkpoint
    to a new run; returns (the restored checkpoint's step or None, the global step)."""
    restored = manager.restore(expect_partial=True)
    if restored is None and fine_tune:
        loaded = fine_tune_lib.apply(model, fine_tune,
                                     config.train_config.fine_tune_checkpoint_type)
        log(loaded.line)
        warning = fine_tune_lib.normalisation_warning(loaded, config.model)
        if warning:
            log(warning)
            loaded.report["warnings"] = [warning]
        if role.is_chief:
            fine_tune_lib.write_report(manager.model_dir, loaded)
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
class _Run:
    """A training run once model_dir is locked and restored: where it trains, with
    what and how (`state` is what it changes)."""

    config: PipelineConfig
    model_dir: str
    files: list[str]  # the training TFRecords
    strategy: tf.distribute.Strategy
    role: distribute.Role
    options: RunOptions
    state: TrainState
    manager: CheckpointManager
    log: Callable[[str], None]
    progress: hooks_lib.ProgressLine


def build_hooks(run: _Run, start: int) -> list[Hook]:
    """The hooks of a training run, in call order: logging (its history is
    TrainResult's loss_history), what the data checks did, then checkpoints (so an
    evaluation at the same step finds the checkpoint on disk, and the final save
    precedes anything that reads it), the progress line, in-training evaluation (every
    eval_config.eval_every_n steps and, with eval_config.eval_at_end, the final
    step), summaries."""
    train_cfg = run.config.train_config
    reader = run.config.train_input_reader
    role = run.role
    hooks: list[Hook] = [
        hooks_lib.LogHook(train_cfg.log_every_n, train_cfg.num_steps, train_cfg.batch_size,
                          start, run.log),
        DataReportHook(train_cfg.log_every_n, run.state.data_counts.numpy,
                       os.path.join(run.model_dir, REPORT_FILE) if role.is_chief else None,
                       reader.bad_example_policy, reader.max_number_of_boxes, run.log),
        hooks_lib.CheckpointHook(
            run.manager, run.manager.policy, log=run.log,
            state_is_finite=lambda: state_is_finite(run.strategy, run.state.model),
            # After an error only the chief saves, and not when a worker was lost
            # (a save needs every worker).
            may_save=lambda error: role.is_chief and not train_errors.worker_lost(
                error, role.num_workers)),
        run.progress,
    ]
    eval_every_n, at_end = in_training_eval.plan(run.config)
    if (eval_every_n or at_end) and role.num_workers > 1:
        what = (f"eval_config.eval_every_n ({eval_every_n})" if eval_every_n
                else "the final evaluation (eval_config.eval_at_end)")
        run.log(f"{what} is ignored in a multi-worker "
                "job (evaluation would stall every worker); evaluate alongside with "
                f"model_main_tf2.py --checkpoint_dir={run.model_dir} --model_dir=<dir>")
    elif eval_every_n or at_end:
        evaluate = in_training_eval.evaluation(run.config, run.model_dir, run.state.model,
                                               run.strategy, run.manager, run.log)
        hooks.append(hooks_lib.EvalHook(eval_every_n, evaluate,
                                        final_step=train_cfg.num_steps if at_end else None))
    if run.options.record_summaries and role.is_chief:
        writer = tf.summary.create_file_writer(os.path.join(run.model_dir, "train"))
        hooks.append(hooks_lib.SummaryHook(
            writer, train_cfg.summary_every_n, train_cfg.batch_size, start,
            pictures=training_pictures(run.config, run.files)))
    return hooks


def _run(run: _Run, iterator, input_start: inputs.InputPosition, start: int,
         examples_per_step: int) -> TrainResult:
    """Runs the loop from the global step `start` (the input stream `iterator` from
    `input_start`) with the run's hooks; turns how it ended into a TrainResult or
    the error the user sees."""
    config, manager, state = run.config, run.manager, run.state
    train_function = make_train_function(run.strategy, state.model, state.optimizer,
                                          config, state.input_position, input_start,
                                          start, examples_per_step, state.data_counts)
    steps = StepRunner(train_function, iterator, state.optimizer,
                       build_learning_rate(config.train_config))
    hooks = build_hooks(run, start)
    (log_hook,) = [hook for hook in hooks if isinstance(hook, hooks_lib.LogHook)]
    precision.log_on_start(config.train_config.mixed_precision, run.strategy, run.log)
    warn_if_warmup_outlasts_run(config.train_config, run.log)
    run.log(f"training from step {start} to {config.train_config.num_steps}")
    with StopSignals(run.log) as stop:
        try:
            end = run_loop(steps, hooks, num_steps=config.train_config.num_steps,
                           steps_per_loop=config.train_config.steps_per_loop,
                           stop_requested=lambda step: agreed_signal(
                               run.strategy, run.role, stop.received, step, run.log))
        except Exception as err:
            step = steps.step
            if train_errors.worker_lost(err, run.role.num_workers):
                train_errors.ignore_pools_of_aborted_collectives()
                raise train_errors.worker_lost_error(
                    err, step, run.role.name,
                    _prefix(run.model_dir, manager.latest_step)) from err
            raise train_errors.translate_error(err, run.files, config, step) from err
    if end.reason == StopReason.NON_FINITE:
        raise train_errors.non_finite_error(end.step, end.outputs,
                                            _prefix(run.model_dir, manager.latest_step))
    if run.role.num_workers > 1:
        distribute.gather_ints(run.strategy, [end.step])  # every worker's save is done
    run.progress.clear()
    last = _prefix(run.model_dir, manager.latest_step)
    result = TrainResult(end.step, end.reason, signal_number=end.signal_number,
                         start_step=start, last_checkpoint=last, final_losses=end.outputs,
                         loss_history=log_hook.history)
    if end.signal_number is None:
        run.log(f"training finished at step {end.step}; last checkpoint {last}")
    else:
        run.log(f"stopped by {signal.Signals(end.signal_number).name} at step {end.step}; "
                f"last checkpoint {last}")
    return result
