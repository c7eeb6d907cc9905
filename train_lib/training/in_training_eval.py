"""Evaluation during training: when it runs, and what one evaluation does.

- `plan(config)`: (every n steps, at the final step): eval_config.eval_every_n,
  and eval_config.eval_at_end when an eval split is configured.
- `evaluation(...)`: the function of the step that computes the live model's COCO
  metrics on the eval split and records them as continuous evaluation records
  them (events under eval/, metrics files; best/ only when that step is saved).

`hooks.EvalHook` calls it at those steps; `trainer.build_hooks` composes the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from train_lib.checkpointing import CheckpointManager
from train_lib.checkpointing.files import prefix as checkpoint_prefix
from train_lib.config import PipelineConfig


def plan(config: PipelineConfig) -> tuple[int, bool]:
    """(evaluate every n steps, evaluate the final step)."""
    eval_cfg = config.eval_config
    return eval_cfg.eval_every_n, bool(eval_cfg.eval_at_end
                                       and config.eval_input_reader.input_path)


def evaluation(config: PipelineConfig, model_dir: str, model, strategy,
               manager: CheckpointManager, log: Callable[[str], None]) -> Callable[[int], None]:
    """evaluate(step): COCO metrics of `model` as it is now, recorded for `step`.

    The eval inputs are resolved here (a missing eval file, or an eval label map
    naming other classes than the training label map, is an error before the first
    step, not after the last)."""
    from train_lib import evaluation as evaluation_lib  # imported only when evaluation is on

    files, names = evaluation_lib.eval_inputs(config, log=log)
    evaluator = evaluation_lib.Evaluator(model, config, files, names,
                                         evaluation_lib.eval_sampling(config),
                                         strategy=strategy, log=log)
    recorder = evaluation_lib.MetricsRecorder(config, model_dir, "eval", log)

    def evaluate(step: int) -> None:
        began = time.monotonic()
        metrics = evaluator.evaluate()
        saved = step in manager.saved_steps()
        recorder.record(step, metrics, evaluator, time.monotonic() - began,
                        prefix=checkpoint_prefix(model_dir, step) if saved else None)
    return evaluate
