"""Evaluation checks the label map it is told: an eval label map that names the model's
classes otherwise (cat/dog/bird against square/circle/triangle), or names a class the
checkpoint does not have, is one error naming both files; a subset of the training
classes with the same ids and names is evaluated, and said once in the log."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import run_trainer
from train_lib.config import ConfigError, dump_config
from train_lib.data.label_map import write_label_map
from train_lib.evaluation import eval_files, label_maps
from train_lib.evaluation.label_maps import (
    LabelMapMismatchError,
    TrainedClasses,
    check_eval_label_map,
)

SHAPES = {1: "square", 2: "circle", 3: "triangle"}
ANIMALS = {1: "cat", 2: "dog", 3: "bird"}


def _trained(names=SHAPES, num_classes=3) -> TrainedClasses:
    return TrainedClasses(num_classes, "model.num_classes of run/pipeline.yaml", dict(names),
                          "train_map.pbtxt")


def _label_map(tmp_path, names: dict[int, str], name: str = "eval_map.pbtxt") -> str:
    path = str(tmp_path / name)
    write_label_map(path, names)
    return path


# ---------------------------------------------------------------- the decision


def test_the_training_label_map_itself_passes_without_a_word():
    assert check_eval_label_map(dict(SHAPES), "eval_map.pbtxt", _trained()) is None


def test_other_names_for_the_same_ids_name_both_files_and_the_first_id():
    with pytest.raises(LabelMapMismatchError) as err:
        check_eval_label_map(dict(ANIMALS), "eval_map.pbtxt", _trained())
    message = str(err.value)
    assert "eval label map eval_map.pbtxt" in message
    assert "training label map train_map.pbtxt" in message
    assert "id 1 is 'cat' there and is 'square' in the training label map" in message


def test_a_renumbered_map_is_refused_at_its_first_moved_id():
    moved = {1: "square", 2: "triangle", 3: "circle"}
    with pytest.raises(LabelMapMismatchError, match="id 2 is 'triangle' there and is 'circle'"):
        check_eval_label_map(moved, "eval_map.pbtxt", _trained())


def test_a_subset_with_the_same_ids_and_names_is_evaluated_and_said():
    note = check_eval_label_map({1: "square", 3: "triangle"}, "eval_map.pbtxt", _trained())
    assert note == ("the eval label map eval_map.pbtxt names 2 of the 3 classes of the "
                    "training label map train_map.pbtxt: only those are scored (not scored: "
                    "2 'circle')")


def test_an_id_beyond_the_checkpoints_classes_is_refused():
    with pytest.raises(LabelMapMismatchError) as err:
        check_eval_label_map({**SHAPES, 4: "star"}, "eval_map.pbtxt", _trained())
    assert str(err.value).startswith(
        "the eval label map eval_map.pbtxt has id 4 ('star'), but the model was trained on "
        "3 classes (model.num_classes of run/pipeline.yaml)")


def test_an_id_the_training_map_lacks_is_refused():
    with pytest.raises(LabelMapMismatchError,
                       match="id 3 is 'triangle' there and is not in the training label map"):
        check_eval_label_map(dict(SHAPES), "eval_map.pbtxt",
                             _trained({1: "square", 2: "circle"}, num_classes=3))


def test_unreadable_training_names_check_the_ids_and_say_so():
    trained = TrainedClasses(3, "model.num_classes of the config", None, None,
                             "the training label map /gone.pbtxt is not a file here")
    assert check_eval_label_map(dict(ANIMALS), "eval_map.pbtxt", trained) is None
    note = check_eval_label_map({1: "cat"}, "eval_map.pbtxt", trained)
    assert "names 1 of the model's 3 classes" in note and "/gone.pbtxt" in note


def test_classes_of_a_run_come_from_its_recorded_pipeline_yaml(tiny_config, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dump_config(tiny_config, str(run / "pipeline.yaml"))
    other = tiny_config.__class__()
    other.train_input_reader.label_map_path = _label_map(tmp_path, ANIMALS, "animals.pbtxt")
    trained = label_maps.classes_of_run(str(run), other)
    assert trained.names == SHAPES  # the run's, not the evaluation config's
    assert trained.names_from == tiny_config.train_input_reader.label_map_path
    assert trained.num_classes == 3 and str(run / "pipeline.yaml") in trained.num_classes_from
    # Without a record, the config's training label map.
    assert label_maps.classes_of_run(str(tmp_path / "none"), other).names == ANIMALS


def test_classes_of_a_tflite_come_from_its_model_json(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"input": {}, "label_map": SHAPES}))
    trained = label_maps.classes_of_tflite(str(tmp_path / "model.tflite"))
    assert trained.names == SHAPES and trained.num_classes == 3
    assert trained.names_from == str(tmp_path / "model.json")


# ---------------------------------------------------------------- every evaluation refuses it


def test_continuous_eval_refuses_another_label_map_and_records_nothing(trained_run,
                                                                       trained_config,
                                                                       tmp_path):
    from train_lib.evaluation.continuous import continuous_eval

    animals = _label_map(tmp_path, ANIMALS)
    trained_config.eval_input_reader.label_map_path = animals
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        continuous_eval(trained_config, trained_run["model_dir"], str(out), eval_timeout=0)
    message = str(err.value)
    assert animals in message and trained_run["config"].train_input_reader.label_map_path \
        in message and "id 1 is 'cat'" in message
    assert eval_files.read_eval_records(str(out)) == []


def test_continuous_eval_refuses_a_class_the_checkpoint_lacks(trained_run, trained_config,
                                                             tmp_path):
    """The config says 4 classes, the run's pipeline.yaml 3: the eval map's id 4 has no
    class in the checkpoint, whatever the config says."""
    from train_lib.evaluation.continuous import continuous_eval

    trained_config.model.num_classes = 4
    trained_config.eval_input_reader.label_map_path = _label_map(tmp_path,
                                                                 {**SHAPES, 4: "star"})
    with pytest.raises(LabelMapMismatchError) as err:
        continuous_eval(trained_config, trained_run["model_dir"], str(tmp_path / "out"),
                        eval_timeout=0)
    assert "has id 4 ('star')" in str(err.value)
    assert os.path.join(trained_run["model_dir"], "pipeline.yaml") in str(err.value)


def test_a_subset_is_evaluated_on_its_classes_alone(trained_run, trained_config, tmp_path):
    from train_lib.evaluation.continuous import continuous_eval

    subset = _label_map(tmp_path, {1: "square", 3: "triangle"})
    trained_config.eval_input_reader.label_map_path = subset
    lines: list[str] = []
    result = continuous_eval(trained_config, trained_run["model_dir"], str(tmp_path / "out"),
                             eval_timeout=0, log=lines.append)
    notes = [line for line in lines if "names 2 of the 3 classes" in line]
    assert len(notes) == 1 and "not scored: 2 'circle'" in notes[0]
    per_class = {k for k in result.metrics[4] if k.startswith("AP/")}
    assert per_class and per_class <= {"AP/square", "AP/triangle"}


def test_in_training_evaluation_refuses_it_before_the_first_step(tiny_dataset, tmp_path):
    from tests.conftest import make_tiny_config
    from train_lib.training.trainer import train

    config = make_tiny_config(tiny_dataset, num_steps=2)
    config.eval_config.eval_every_n = 1
    config.eval_input_reader.label_map_path = _label_map(tmp_path, ANIMALS)
    model_dir = tmp_path / "run"
    with pytest.raises(LabelMapMismatchError, match="id 1 is 'cat'"):
        train(config, str(model_dir), record_summaries=False, log=lambda line: None)
    assert not model_dir.exists()  # nothing trained, nothing left


def test_tflite_evaluation_refuses_a_map_other_than_model_json(trained_config, tmp_path):
    from train_lib.evaluation.tflite_eval import evaluate_tflite_file

    model = tmp_path / "exported" / "model.tflite"
    model.parent.mkdir()
    model.write_bytes(b"not read: the label maps are compared first")
    (model.parent / "model.json").write_text(json.dumps({"input": {}, "label_map": SHAPES}))
    trained_config.eval_input_reader.label_map_path = _label_map(tmp_path, ANIMALS)
    with pytest.raises(LabelMapMismatchError) as err:
        evaluate_tflite_file(str(model), trained_config, str(tmp_path / "out"))
    assert str(model.parent / "model.json") in str(err.value)
    assert not (tmp_path / "out").exists()


def test_cli_evaluation_with_another_label_map_is_one_error_line(trained_run, tmp_path):
    animals = _label_map(tmp_path, ANIMALS)
    proc = run_trainer(f"--pipeline_config_path={trained_run['model_dir']}/pipeline.yaml",
                       f"--checkpoint_dir={trained_run['model_dir']}",
                       f"--model_dir={tmp_path / 'out'}", "--eval_timeout=0",
                       f"--params_override=eval_input_reader.label_map_path={animals}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and animals in errors[0] and "id 1 is 'cat'" in errors[0], \
        proc.stderr[-3000:]
    assert not os.path.exists(tmp_path / "out" / "eval_metrics.jsonl")
