"""COCO box metrics of a model, a checkpoint, or each checkpoint of a training run.

    evaluator.py     Evaluator / evaluate_model on a built model, EvalError, eval_inputs,
                     eval_sampling (every how many examples an evaluation reads)
    continuous.py    evaluate_checkpoint, continuous_eval over a run's checkpoints,
                     load_model_weights
    recording.py     MetricsRecorder: log lines, TensorBoard, eval_metrics.jsonl, best/
    coco_metrics.py  the COCO evaluation itself (pycocotools; no TensorFlow)
    eval_files.py    what evaluation reads and writes on disk (no TensorFlow)

The public names below are attributes of this package too (`from train_lib import
evaluation; evaluation.Evaluator`); each module is imported on first use, so
importing eval_files or coco_metrics does not import TensorFlow.
"""

from __future__ import annotations

_PUBLIC = {
    "EvalError": "evaluator",
    "Evaluator": "evaluator",
    "eval_inputs": "evaluator",
    "eval_sampling": "evaluator",
    "evaluate_model": "evaluator",
    "ContinuousEvalResult": "continuous",
    "continuous_eval": "continuous",
    "evaluate_checkpoint": "continuous",
    "load_model_weights": "continuous",
    "MetricsRecorder": "recording",
    "summary_name": "recording",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
