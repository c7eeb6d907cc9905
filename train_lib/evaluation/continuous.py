"""Evaluating checkpoints: one (`evaluate_checkpoint`), or each of a training run.

- `load_model_weights`: reads a checkpoint's model part into a built model
  (EvalError if the checkpoint is from another model).
- `evaluate_checkpoint`: builds the config's model, loads a checkpoint, evaluates.
- `continuous_eval`: as the OD API's `model_main_tf2.py --checkpoint_dir`: each
  checkpoint of checkpoint_dir once, in step order, as they appear. Writes into
  model_dir (recording.py):

      eval/ (eval_train/)    TensorBoard scalars, named as the OD API names them
      eval_metrics.jsonl     one line per evaluation: step, checkpoint, split,
                             metrics, wall_time, seconds, num_images
      best/                  the best checkpoint by eval_config.metric_for_best
                             (eval_files.py; eval split only)

  It stops after evaluating the final checkpoint of a finished run (step >=
  train_config.num_steps in checkpoint_dir/pipeline.yaml), or when no new
  checkpoint came for `eval_timeout` seconds.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import shutil
import time
from collections.abc import Callable

import tensorflow as tf
from absl import logging

from train_lib import config as config_lib
from train_lib.checkpointing import pid_alive, verify_checkpoint
from train_lib.checkpointing.files import prefix as checkpoint_prefix
from train_lib.config import ConfigError, PipelineConfig
from train_lib.evaluation import eval_files, label_maps
from train_lib.evaluation.eval_files import (
    EVAL_METRICS_FILE,
    PIPELINE_FILE,
    checkpoint_steps,
    read_eval_records,
    recorded_num_steps,
)
from train_lib.evaluation.evaluator import (
    EvalError,
    Evaluator,
    eval_inputs,
    eval_sampling,
    evaluate_model,
)
from train_lib.evaluation.recording import MetricsRecorder, metrics_lines
from train_lib.families import build_model
from train_lib.training import graph_optimization

_STAGING_PREFIX = ".eval_tmp-"  # checkpoint files linked here while being evaluated


def _structural_mismatch(config: PipelineConfig, checkpoint_dir: str) -> list[str]:
    """Model keys that differ from the run's recorded pipeline.yaml (input size aside:
    evaluating at another resolution is legitimate); [] when there is no record."""
    path = os.path.join(checkpoint_dir, PIPELINE_FILE)
    if not os.path.isfile(path):
        return []
    try:
        recorded = config_lib.load_config(path)
    except ConfigError:
        return []
    return config_lib.model_weight_differences(recorded, config)


def load_model_weights(model, prefix: str, config: PipelineConfig,
                       read_from: str | None = None) -> None:
    """Reads the model part of the checkpoint at `prefix` (from the files at `read_from`,
    default `prefix`) into `model`, which must be built from `config.model`.

    Raises EvalError naming the checkpoint when it does not fit the model: a
    structural difference with the run's pipeline.yaml beside it, a variable the
    checkpoint lacks or holds in another shape, or more model variables in the
    checkpoint than the model has.
    """
    checkpoint_dir = os.path.dirname(os.path.abspath(prefix))
    recorded = os.path.join(checkpoint_dir, PIPELINE_FILE)

    def mismatch(detail: str) -> EvalError:
        hint = (f"--pipeline_config_path={recorded}, the config it was trained with"
                if os.path.isfile(recorded) else "the pipeline config it was trained with")
        return EvalError(f"checkpoint {prefix} does not fit the config's model ({detail}); "
                         f"use {hint}")

    keys = _structural_mismatch(config, checkpoint_dir)
    if keys:
        raise mismatch(f"it was trained with other {', '.join(keys)}; see {recorded}")
    read_from = read_from or prefix
    try:
        status = tf.train.Checkpoint(model=model).read(read_from)
        status.assert_existing_objects_matched()
        status.expect_partial()  # the optimizer and input position are not needed here
    except (AssertionError, ValueError) as err:
        raise mismatch(_first_line(err)) from None
    except tf.errors.NotFoundError as err:
        raise EvalError(f"checkpoint {prefix} cannot be read: {_first_line(err)}") from None
    saved = [name for name, _ in tf.train.list_variables(read_from)
             if name.startswith("model/")]
    if len(saved) != len(model.variables):
        raise mismatch(f"it holds {len(saved)} model variables, the config's model "
                       f"{len(model.variables)}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def evaluate_checkpoint(prefix: str, config: PipelineConfig, files: list[str] | None = None,
                        label_map: dict[int, str] | None = None,
                        sample_1_of_n: int | None = None, eval_on_train_data: bool = False,
                        strategy: tf.distribute.Strategy | None = None) -> dict[str, float]:
    """COCO metrics of the checkpoint at `prefix` (or the newest checkpoint in the
    directory `prefix`). Files and label map default to `eval_inputs(config, ...)`, the
    label map checked against the classes of the run beside the checkpoint; every
    `eval_sampling(config, sample_1_of_n, eval_on_train_data)`-th example is read.
    Raises EvalError (no checkpoint, or one from another model) or ConfigError."""
    graph_optimization.apply(config.train_config.graph_optimization)
    if os.path.isdir(prefix):
        latest = tf.train.latest_checkpoint(prefix)
        if latest is None:
            raise EvalError(f"no checkpoint in {prefix}")
        prefix = latest
    if not os.path.exists(prefix + ".index"):
        raise EvalError(f"checkpoint {prefix} not found (no {prefix}.index)")
    if files is None or label_map is None:
        default_files, default_map = eval_inputs(
            config, eval_on_train_data, label_maps.classes_of_run(os.path.dirname(prefix), config))
        files, label_map = files or default_files, label_map or default_map
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build_model(config.model)
    load_model_weights(model, prefix, config)
    return evaluate_model(model, config, files, label_map,
                          eval_sampling(config, sample_1_of_n, eval_on_train_data), strategy)


# ---------------------------------------------------------------- a run's checkpoints


@dataclasses.dataclass
class ContinuousEvalResult:
    stop_reason: str  # finished | timeout
    evaluated: list[int] = dataclasses.field(default_factory=list)
    skipped: list[int] = dataclasses.field(default_factory=list)
    metrics: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)
    best_step: int | None = None


class _RunEvaluator:
    """The file work of continuous_eval for one checkpoint: stage, check, evaluate, record."""

    def __init__(self, config, checkpoint_dir, model_dir, files, label_map, sample_1_of_n,
                 split, strategy, log):
        self.config, self.files, self.label_map = config, files, label_map
        self.checkpoint_dir, self.model_dir, self.split = checkpoint_dir, model_dir, split
        self.sample_1_of_n, self.strategy, self._log = sample_1_of_n, strategy, log
        self.staging = os.path.join(model_dir, f"{_STAGING_PREFIX}{os.getpid()}")
        for leftover in glob.glob(os.path.join(glob.escape(model_dir), _STAGING_PREFIX + "*")):
            pid = leftover.rsplit("-", 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):  # left by a killed evaluator
                shutil.rmtree(leftover, ignore_errors=True)
        self._evaluator: Evaluator | None = None
        self._recorder = MetricsRecorder(config, model_dir, split, log)

    def _get_evaluator(self) -> Evaluator:
        if self._evaluator is None:  # built at the first checkpoint: waiting stays cheap
            with self.strategy.scope():
                model = build_model(self.config.model)
            self._evaluator = Evaluator(model, self.config, self.files, self.label_map,
                                        self.sample_1_of_n, self.strategy, self._log)
        return self._evaluator

    def run(self, step: int) -> dict[str, float] | None:
        """Evaluates ckpt-<step>; None if it was skipped (gone or invalid)."""
        prefix = checkpoint_prefix(self.checkpoint_dir, step)
        staged = eval_files.copy_checkpoint(prefix, self.staging)
        if staged is None:
            self._log(f"skipping ckpt-{step}: it was removed from {self.checkpoint_dir} before "
                      "it could be evaluated (rotated away by the trainer's max_to_keep)")
            return None
        try:
            problem = verify_checkpoint(staged)
            if problem is not None:
                self._log(f"skipping ckpt-{step}: invalid checkpoint {prefix} ({problem})")
                return None
            return self._evaluate(step, prefix, staged)
        finally:
            eval_files.remove_checkpoint(staged)

    def _evaluate(self, step: int, prefix: str, staged: str) -> dict[str, float]:
        evaluator = self._get_evaluator()
        start = time.monotonic()
        load_model_weights(evaluator.model, prefix, self.config, read_from=staged)
        metrics = evaluator.evaluate()
        self._recorder.record(step, metrics, evaluator, time.monotonic() - start,
                              prefix=prefix, copy_from=staged)
        return metrics

    def close(self) -> None:
        self._recorder.close()
        shutil.rmtree(self.staging, ignore_errors=True)


def continuous_eval(
    config: PipelineConfig,
    checkpoint_dir: str,
    model_dir: str,
    eval_timeout: float = 3600,
    sample_1_of_n: int | None = None,
    eval_on_train_data: bool = False,
    poll_seconds: float = 10.0,
    strategy: tf.distribute.Strategy | None = None,
    log: Callable[[str], None] = logging.info,
) -> ContinuousEvalResult:
    """Evaluates each checkpoint of `checkpoint_dir` once, oldest first, then each new
    one as it appears, writing metrics under `model_dir` (see the module docstring),
    reading every `eval_sampling(config, sample_1_of_n, eval_on_train_data)`-th example.

    Checkpoints already recorded in eval_metrics.jsonl (same dir and split) are not
    evaluated again. Returns after the checkpoint whose step reaches the run's
    num_steps ("finished"), or when no new checkpoint came for `eval_timeout`
    seconds ("timeout"); a finished run whose checkpoints were all evaluated before
    logs the final checkpoint's recorded metrics. Raises ConfigError (inputs; an eval
    label map that names other classes than the run's, label_maps.py) or
    EvalError (a checkpoint_dir that is not a training run's, see
    eval_files.training_run_problem; a checkpoint that does not fit the config's
    model; bad eval data).
    """
    graph_optimization.apply(config.train_config.graph_optimization)
    files, label_map = eval_inputs(config, eval_on_train_data,
                                   label_maps.classes_of_run(checkpoint_dir, config), log)
    split = "eval_train" if eval_on_train_data else "eval"
    problem = eval_files.training_run_problem(checkpoint_dir)
    if problem is not None:
        raise EvalError(problem)
    try:
        os.makedirs(model_dir, exist_ok=True)
    except OSError as err:
        raise EvalError(f"cannot create --model_dir {model_dir}: {err.strerror}") from None
    checkpoint_dir = os.path.abspath(checkpoint_dir)
    done = _evaluated_before(model_dir, checkpoint_dir, split, log)
    if eval_on_train_data:
        log("evaluating on the training data: the best checkpoint is not tracked")
    result = ContinuousEvalResult("timeout")
    runner = _RunEvaluator(config, checkpoint_dir, model_dir, files, label_map,
                           eval_sampling(config, sample_1_of_n, eval_on_train_data),
                           split, strategy or tf.distribute.get_strategy(), log)
    try:
        _watch(runner, done, result, eval_timeout, poll_seconds, log)
    finally:
        runner.close()
    best = eval_files.read_best(model_dir) if split == "eval" else None
    result.best_step = best.get("step") if best else None
    return result


def _evaluated_before(model_dir: str, checkpoint_dir: str, split: str,
                      log: Callable[[str], None]) -> set[int]:
    """Steps of checkpoint_dir already recorded in model_dir's eval_metrics.jsonl for
    `split` (said in the log, if any)."""
    done = {r["step"] for r in read_eval_records(model_dir)
            if r.get("split") == split and isinstance(r.get("step"), int)
            and os.path.dirname(str(r.get("checkpoint"))) == checkpoint_dir}
    if done:
        log(f"{len(done)} checkpoints of {checkpoint_dir} were evaluated before (see "
            f"{os.path.join(model_dir, EVAL_METRICS_FILE)}); not evaluating them again")
    return done


def _log_recorded(runner: _RunEvaluator, step: int, log: Callable[[str], None]) -> None:
    """Logs the metrics eval_metrics.jsonl holds for ckpt-<step> (evaluated before)."""
    prefix = checkpoint_prefix(runner.checkpoint_dir, step)
    record = eval_files.find_eval_record(runner.model_dir, prefix, runner.split)
    if record is None:
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("wall_time", 0)))
    headline, *per_class = metrics_lines(record["metrics"])
    log(f"ckpt-{step}, the final checkpoint, as evaluated at {when} (from "
        f"{os.path.join(runner.model_dir, EVAL_METRICS_FILE)}): {headline}")
    for line in per_class:
        log(line)


def _watch(runner: _RunEvaluator, done: set[int], result: ContinuousEvalResult,
           eval_timeout: float, poll_seconds: float, log: Callable[[str], None]) -> None:
    """Evaluates the checkpoints of runner.checkpoint_dir not in `done` as they come,
    into `result`, until the run is finished or `eval_timeout` passes without one."""
    checkpoint_dir = runner.checkpoint_dir
    deadline = time.monotonic() + eval_timeout
    waiting = False
    while True:
        pending = [s for s in checkpoint_steps(checkpoint_dir) if s not in done]
        for step in pending:
            metrics = runner.run(step)
            done.add(step)
            if metrics is None:
                result.skipped.append(step)
            else:
                result.evaluated.append(step)
                result.metrics[step] = metrics
        if pending:
            deadline, waiting = time.monotonic() + eval_timeout, False
            continue  # new checkpoints may have come meanwhile
        num_steps = recorded_num_steps(checkpoint_dir)
        if done and num_steps is not None and max(done) >= num_steps:
            log(f"training finished (ckpt-{max(done)} reaches num_steps {num_steps} of "
                f"{os.path.join(checkpoint_dir, PIPELINE_FILE)}): evaluation done")
            if max(done) not in result.evaluated:
                _log_recorded(runner, max(done), log)
            result.stop_reason = "finished"
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log(f"no new checkpoint in {checkpoint_dir} for {eval_timeout:g} s: stopping "
                "(timeout; raise --eval_timeout to wait longer)")
            return
        if not waiting:
            log(f"waiting for a new checkpoint in {checkpoint_dir} "
                f"(timeout in {math.ceil(remaining)} s)")
            waiting = True
        time.sleep(min(poll_seconds, remaining))
