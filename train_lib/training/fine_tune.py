"""train_config.fine_tune_checkpoint: the starting weights of a run whose model_dir
has no checkpoint yet (a resume always uses model_dir's own checkpoints).

Contract:
- `resolve_checkpoint(path)` is the checkpoint prefix `path` names: a prefix, or
  a directory whose newest checkpoint is taken. ConfigError naming the key if neither.
- With neither, the run starts from random weights and says so (`RANDOM_START`).
- `apply(model, prefix, kind)` loads into `model`, as the OD API's types do:
  `backbone` (the OD API's classification) the backbone alone, from this
  trainer's checkpoints of either family, Model Garden's backbone checkpoints
  (`backbone`), an OD API checkpoint or a Keras application's weights file
  (`.h5`, as tf_keras writes it) (odapi_checkpoint/);
  `detection` (the OD API's detection and fine_tune) the whole detector of
  the same family but the layers whose shape follows the number of classes
  (families.detection_target: RetinaNet's class layer, Faster R-CNN's class and
  box layers), so the number of classes may change; from an OD API checkpoint,
  the backbone and the parts after it that compute the OD API's function (with
  `model.fpn.type: odapi`, the FPN; the report says why each other starts fresh);
  `full` (the OD API's full) what `detection` loads and the layers it leaves out
  too, where their shapes in the checkpoint are ours (the same num_classes), else
  those start fresh and the line and report say why (the OD API would fail there);
  from an OD API checkpoint, its box predictor too where our head computes its
  function (odapi_checkpoint/box_predictor.py: its weight-shared predictor, one tower
  or two, as `model.head.share_prediction_tower` says).
  Every variable of those parts must be in the checkpoint with its shape, else
  TrainError says which part (for an OD API checkpoint, which variable) does not
  fit, and nothing is loaded. The
  optimizer and the step start fresh. It returns a `FineTune`: the log line and
  the report that `write_report` puts in model_dir/fine_tune_report.json (every
  variable of the model, loaded or fresh and why).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from train_lib import families
from train_lib.config import ConfigError, ModelConfig
from train_lib.config.odapi.shared import ODAPI_PIXEL_NORMALIZATION
from train_lib.training import odapi_checkpoint
from train_lib.training.failures import TrainError

KEY = "train_config.fine_tune_checkpoint"

# Said once when a run starts with neither a checkpoint in model_dir nor a fine-tune one.
RANDOM_START = (f"training from random weights: model_dir has no checkpoint and {KEY} is "
                f"not set; to start from pretrained weights, set {KEY} (with "
                "train_config.fine_tune_checkpoint_type: backbone, detection or full)")
REPORT_FILE = "fine_tune_report.json"


@dataclass
class FineTune:
    """What a fine-tune loaded: how many variables, the log line, the report."""
    count: int
    line: str
    report: dict


def normalisation_warning(result: FineTune, model: ModelConfig) -> str | None:
    """A warning when `result` loaded OD API weights (an OD API checkpoint or a Keras
    weights file) into a model whose model.pixel_mean / pixel_stddev are not what the
    OD API's feature extractor feeds that backbone type (ODAPI_PIXEL_NORMALIZATION): the
    weights would see other inputs than they learnt on (a YAML config keeps Model
    Garden's statistics unless told). None otherwise."""
    expected = ODAPI_PIXEL_NORMALIZATION.get(model.backbone.type)
    if result.report.get("source") != "OD API" or expected is None:
        return None
    mean, stddev = expected
    if np.allclose(model.pixel_mean, mean) and np.allclose(model.pixel_stddev, stddev):
        return None
    return (f"WARNING: {KEY} holds the OD API's {model.backbone.type} weights, which learnt "
            f"on pixels normalised with mean {mean} and stddev {stddev} (its feature "
            f"extractor's preprocess); this config's model.pixel_mean "
            f"{list(model.pixel_mean)} and model.pixel_stddev {list(model.pixel_stddev)} "
            f"differ, so the weights see other inputs; set the two keys to those values "
            f"(an OD API pipeline.config does)")


def resolve_checkpoint(path: str) -> str:
    """The checkpoint prefix that `path` names (or a Keras weights file, `.h5`, as
    it is); ConfigError if there is none."""
    if odapi_checkpoint.is_keras_weights_file(path):
        if not os.path.isfile(path):
            raise ConfigError(f"{KEY} {path!r} does not exist; name a Keras weights file "
                              "(.h5) or a checkpoint prefix")
        return path
    if os.path.isdir(path):
        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            raise ConfigError(f"{KEY} {path!r} is a directory without a checkpoint state "
                              "file; name a checkpoint prefix such as <dir>/ckpt-3000")
        return prefix
    if not os.path.exists(path + ".index"):
        raise ConfigError(f"{KEY} {path!r} is not a checkpoint: there is no "
                          f"{path}.index; name a prefix such as <model_dir>/ckpt-3000 "
                          "(without .index) or a directory with a checkpoint state file")
    return path


def apply(model, prefix: str, kind: str) -> FineTune:
    """Loads the `kind` parts of `prefix` into `model` (see the module docstring)."""
    if odapi_checkpoint.is_keras_weights_file(prefix):
        if kind != "backbone":
            raise TrainError(f"{KEY} {prefix} is a Keras weights file: it holds a backbone "
                             "alone; use fine_tune_checkpoint_type: backbone (the OD API's "
                             "classification)")
        plan = odapi_checkpoint.plan(model, prefix, kind)
        plan.load()
        return FineTune(len(plan.mapped), "fine-tune: " + plan.summary(), plan.report())
    names = {name for name, _ in tf.train.list_variables(prefix)}
    if odapi_checkpoint.is_odapi_checkpoint(names):
        plan = odapi_checkpoint.plan(model, prefix, kind)
        plan.load()
        return FineTune(len(plan.mapped), "fine-tune: " + plan.summary(), plan.report())
    written_by = families.checkpoint_family(names)
    architecture = families.architecture_of(model)
    if kind == "backbone":
        parts = {"backbone": model.backbone}
        if written_by is not None:  # any family's: the backbone is the same
            target = families.backbone_target(written_by, model.backbone)
            source = f"a {written_by} checkpoint of this trainer"
        elif any(n.startswith("backbone/") for n in names):
            target = tf.train.Checkpoint(backbone=model.backbone)
            source = "a Model Garden backbone checkpoint"
        else:
            raise TrainError(f"{KEY} {prefix} holds no backbone (neither a detector "
                             "checkpoint of this trainer, nor a Model Garden backbone "
                             "checkpoint, nor a TF2 checkpoint of the TF Object Detection "
                             "API); name one of those")
        excluded: list = []
    else:
        if written_by is None:
            raise TrainError(f"{KEY} {prefix} is not a detector checkpoint of this trainer "
                             "nor of the TF Object Detection API; use "
                             "fine_tune_checkpoint_type: backbone for a backbone-only "
                             "checkpoint")
        if written_by != architecture:
            raise TrainError(
                f"{KEY} {prefix} is a {written_by} checkpoint, but model.architecture is "
                f"{architecture}: fine_tune_checkpoint_type: {kind} needs a checkpoint "
                "of the same architecture; use fine_tune_checkpoint_type: backbone to start "
                "from its backbone")
        parts, target, excluded = families.detection_target(model)
        source = f"a {written_by} checkpoint of this trainer"
    try:
        target.read(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise TrainError(
            f"{KEY} {prefix} does not fit this model's {' and '.join(parts)} ({first}); it "
            "must come from a model with the same model.backbone (and, for detection and "
            "full, fpn, heads and anchor) settings") from None
    why_fresh = "its shape follows model.num_classes"
    if kind == "full" and excluded:
        unfit = _load_class_layers(model, prefix, excluded)
        if unfit is None:
            excluded = []
        else:
            why_fresh = (f"its shape follows model.num_classes, and the checkpoint's differs "
                         f"({unfit}); fine_tune_checkpoint_type full loads it where it fits")
    return _own_result(model, prefix, kind, source, parts, excluded, why_fresh)


def _load_class_layers(model, prefix: str, layers_variables: list) -> str | None:
    """`full`: loads the variables a detection fine-tune leaves out (the layers sized
    by num_classes) from this trainer's checkpoint `prefix` of the same family, whose
    other variables are already loaded; returns None, or why they do not fit (then
    they keep their values). The whole model is read again: every other variable
    takes the value it already has."""
    before = [v.numpy() for v in layers_variables]
    try:
        tf.train.Checkpoint(model=model).read(prefix).expect_partial()
    except (ValueError, tf.errors.OpError) as err:
        for variable, value in zip(layers_variables, before, strict=True):
            variable.assign(value)
        message = str(err).strip().splitlines()[0]
        shapes = re.search(r"shape \(([^)]*)\) when attempting to restore variable with "
                           r"shape \(([^)]*)\)", message)
        if shapes:
            return f"[{shapes[1]}] in the checkpoint, [{shapes[2]}] in this model"
        return message[:300]
    return None


def _own_result(model, prefix: str, kind: str, source: str, parts: dict,
                excluded: list, why_excluded: str) -> FineTune:
    """The line and report of a load by tf.train.Checkpoint (this trainer's or
    Model Garden's checkpoints: the object graph pairs the variables)."""
    excluded_ids = {id(v) for v in excluded}
    part_of = {id(v): name for name, part in parts.items() for v in part.variables}
    loaded, fresh = [], []
    for variable in model.variables:
        if id(variable) in excluded_ids:
            fresh.append({"variable": variable.name, "reason": why_excluded})
        elif id(variable) in part_of:
            loaded.append({"variable": variable.name, "shape": variable.shape.as_list(),
                           "part": part_of[id(variable)]})
        else:
            fresh.append({"variable": variable.name,
                          "reason": f"fine_tune_checkpoint_type {kind} loads "
                                    f"{' and '.join(parts)} only"})
    line = (f"fine-tune: {len(loaded)} variables ({' and '.join(parts)}) from {source} "
            f"{prefix} ({kind}); {len(fresh)} fresh")
    if kind == "full" and excluded:
        line += f" (the layers sized by model.num_classes: {why_excluded})"
    report = {"checkpoint": prefix, "source": source, "fine_tune_checkpoint_type": kind,
              "loaded": loaded, "fresh": fresh, "unused": []}
    return FineTune(len(loaded), line, report)


def write_report(model_dir: str, result: FineTune) -> str:
    """Writes model_dir/fine_tune_report.json; returns its path."""
    path = os.path.join(model_dir, REPORT_FILE)
    with open(path, "w") as f:
        json.dump(result.report, f, indent=1)
    return path
