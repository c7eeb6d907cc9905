"""Whether an evaluation's label map fits the classes the model was trained on. No TensorFlow.

A detector outputs class ids; what an id means is the name the *training* label
map gives it. Evaluating with a label map that names the ids otherwise (cat/dog/bird
against a model trained on square/circle/triangle) would score the model's
"square" as "cat" and record `AP/cat`. So an eval label map is accepted when:

- each of its ids is a class of the model: 1..num_classes of the checkpoint
  (the run's recorded pipeline.yaml), of the config, or of the .tflite's model.json;
- each of its ids has, where the training label map can be read, the same name
  there.

It may name only some of the training classes (a subset: an eval set that holds a
few of the classes): COCO then scores those classes alone (the eval map's are COCO's
categories; detections and ground truth of the others are not counted), which
`check_eval_label_map` returns as a note for the log. Anything else is a
`LabelMapMismatchError` naming both files and the first id that differs.

Where the training classes come from (`TrainedClasses`):
- `classes_of_config`: the config's train_input_reader label map and
  model.num_classes (evaluation during training);
- `classes_of_run`: a training model_dir's recorded pipeline.yaml (evaluating
  its checkpoints), else the config's;
- `classes_of_tflite`: the label map in model.json beside an exported .tflite.
"""

from __future__ import annotations

import dataclasses
import os

from train_lib.config import ConfigError, PipelineConfig
from train_lib.data import input_files
from train_lib.data.label_map import load_label_map
from train_lib.training.workdir import PIPELINE_FILE

__all__ = ["LabelMapMismatchError", "TrainedClasses", "check_eval_label_map",
           "checked_eval_label_map", "classes_of_config", "classes_of_run",
           "classes_of_tflite"]


class LabelMapMismatchError(ConfigError):
    """The eval label map names classes the model was not trained on; the message names
    the eval label map, the file of the training classes and the first id that differs."""


@dataclasses.dataclass(frozen=True)
class TrainedClasses:
    """The classes a model was trained on."""

    num_classes: int
    num_classes_from: str  # where num_classes was read, for messages
    names: dict[int, str] | None = None  # the training label map; None if unreadable
    names_from: str | None = None  # its file
    unknown_names_reason: str | None = None  # why `names` is None, for the log


def _read_names(path: str) -> tuple[dict[int, str] | None, str | None]:
    """(the label map at `path`, None) or (None, why it cannot be read)."""
    if not path:
        return None, "no train_input_reader.label_map_path is set"
    if not os.path.isfile(path):
        return None, f"the training label map {path} is not a file here"
    try:
        return load_label_map(path), None
    except ConfigError as err:
        return None, str(err)


def classes_of_config(config: PipelineConfig, source: str = "the config") -> TrainedClasses:
    """The classes `config` trains: model.num_classes and train_input_reader's label map."""
    path = config.train_input_reader.label_map_path
    names, reason = _read_names(path)
    return TrainedClasses(config.model.num_classes, f"model.num_classes of {source}",
                          names, path if names is not None else None, reason)


def classes_of_run(checkpoint_dir: str, config: PipelineConfig) -> TrainedClasses:
    """The classes the run in `checkpoint_dir` was trained on: its recorded pipeline.yaml
    (num_classes, and the label map it names when that file is readable here, else the
    config's training label map); the config's alone when there is no readable record."""
    from train_lib import config as config_lib

    recorded_path = os.path.join(checkpoint_dir, PIPELINE_FILE)
    try:
        recorded = config_lib.load_config(recorded_path) if os.path.isfile(recorded_path) \
            else None
    except ConfigError:
        recorded = None
    if recorded is None:
        return classes_of_config(config)
    trained = classes_of_config(recorded, recorded_path)
    if trained.names is None:  # the run's label map was moved: the config's may be it
        names, _ = _read_names(config.train_input_reader.label_map_path)
        if names is not None:
            return dataclasses.replace(trained, names=names,
                                       names_from=config.train_input_reader.label_map_path,
                                       unknown_names_reason=None)
    return trained


def classes_of_tflite(model_path: str) -> TrainedClasses:
    """The classes of an exported .tflite: the label map its model.json holds (the
    exporter checked its ids are 1..num_classes). TFLiteModelError without model.json."""
    from train_lib.export.tflite_runtime import METADATA_FILE, read_metadata

    where = os.path.join(os.path.dirname(os.path.abspath(model_path)), METADATA_FILE)
    names = {int(k): str(v) for k, v in read_metadata(model_path).get("label_map", {}).items()}
    if not names:
        raise ConfigError(f"{where} holds no label_map: export the model again with "
                          "scripts/export_tflite.py")
    return TrainedClasses(max(names), where, names, where)


def check_eval_label_map(eval_map: dict[int, str], eval_path: str,
                         trained: TrainedClasses) -> str | None:
    """Checks the eval label map `eval_map` (read from `eval_path`) against `trained`.

    Returns None when it names exactly the training classes, else a one-line note for
    the log (a subset; or training names that could not be read, so only ids were
    checked). Raises LabelMapMismatchError for an id beyond trained.num_classes, an id
    the training label map lacks, or an id named otherwise there (the first such id).
    """
    for class_id in sorted(eval_map):
        if class_id > trained.num_classes:
            raise LabelMapMismatchError(
                f"the eval label map {eval_path} has id {class_id} "
                f"({eval_map[class_id]!r}), but the model was trained on "
                f"{trained.num_classes} classes ({trained.num_classes_from}); evaluate with "
                "the training label map, or one holding some of its items unchanged")
    names = trained.names
    if names is None:
        if len(eval_map) == trained.num_classes:
            return None
        return (f"the eval label map {eval_path} names {len(eval_map)} of the model's "
                f"{trained.num_classes} classes: only those are scored (their names are not "
                f"checked: {trained.unknown_names_reason})")
    for class_id in sorted(eval_map):
        trained_name = names.get(class_id)
        if trained_name != eval_map[class_id]:
            there = (f"is {trained_name!r} in the training label map {trained.names_from}"
                     if trained_name is not None
                     else f"is not in the training label map {trained.names_from}")
            raise LabelMapMismatchError(
                f"the eval label map {eval_path} does not name the classes the model was "
                f"trained on: id {class_id} is {eval_map[class_id]!r} there and {there}; "
                "evaluate with the training label map, or one holding some of its items "
                "with the same ids and names")
    missing = sorted(set(names) - set(eval_map))
    if not missing:
        return None
    shown = ", ".join(f"{i} {names[i]!r}" for i in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return (f"the eval label map {eval_path} names {len(eval_map)} of the "
            f"{len(names)} classes of the training label map {trained.names_from}: only "
            f"those are scored (not scored: {shown}{more})")


def checked_eval_label_map(config: PipelineConfig, on_train_data: bool,
                           trained: TrainedClasses | None = None
                           ) -> tuple[dict[int, str], str | None]:
    """(the label map to evaluate with, a note for the log or None): the eval reader's
    label map (train_input_reader's with `on_train_data`), checked as the config's
    (input_files.check_label_map, any of ids 1..model.num_classes) and against
    `trained` (default: `classes_of_config(config)`). Raises ConfigError."""
    key = "train_input_reader" if on_train_data else "eval_input_reader"
    reader = getattr(config, key)
    label_map = input_files.check_label_map(config, reader, key, subset=True)
    note = check_eval_label_map(label_map, reader.label_map_path,
                                trained or classes_of_config(config))
    return label_map, note
