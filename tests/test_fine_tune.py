"""train_config.fine_tune_checkpoint: which parts load, from which checkpoints, and
that only a run without checkpoints of its own starts from it."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from train_lib.config import ConfigError
from train_lib.families import build_model, retinanet
from train_lib.training import fine_tune
from train_lib.training.trainer import TrainError, train


def _values(layer) -> list[np.ndarray]:
    return [v.numpy() for v in layer.variables]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_values(a), _values(b), strict=True))


@pytest.fixture(scope="module")
def source(trained_run):
    """The trained run's ckpt-4, and a model holding exactly its weights."""
    prefix = os.path.join(trained_run["model_dir"], "ckpt-4")
    model = build_model(trained_run["config"].model)
    tf.train.Checkpoint(model=model).read(prefix).expect_partial()
    return prefix, model


def test_backbone_loads_the_backbone_only(trained_config, source):
    prefix, reference = source
    model = build_model(trained_config.model)
    assert not _same(model.backbone, reference.backbone)
    count = fine_tune.apply(model, prefix, "backbone").count
    assert count == len(model.backbone.variables)
    assert _same(model.backbone, reference.backbone)
    assert not _same(model.decoder, reference.decoder)


def test_backbone_from_a_model_garden_backbone_checkpoint(trained_config, source, tmp_path):
    _, reference = source
    prefix = tf.train.Checkpoint(backbone=reference.backbone).write(str(tmp_path / "bb"))
    model = build_model(trained_config.model)
    fine_tune.apply(model, prefix, "backbone")
    assert _same(model.backbone, reference.backbone)


def test_detection_loads_all_but_the_class_layer_so_classes_may_change(trained_config,
                                                                        source):
    prefix, reference = source
    trained_config.model.num_classes = 5  # the source has 3
    model = build_model(trained_config.model)
    count = fine_tune.apply(model, prefix, "detection").count
    assert _same(model.backbone, reference.backbone) and _same(model.decoder, reference.decoder)
    for part in retinanet.HEAD_PARTS:
        assert _same(getattr(model.head, part), getattr(reference.head, part)), part
    classifier = model.head._classifier.variables
    assert classifier[0].shape[-1] != reference.head._classifier.variables[0].shape[-1]
    assert count == len(model.variables) - len(classifier)


def test_full_loads_the_class_layer_too_when_its_shape_fits(trained_config, source):
    """full: everything detection loads and the class layer, the same num_classes."""
    prefix, reference = source
    model = build_model(trained_config.model)
    assert not _same(model.head._classifier, reference.head._classifier)
    result = fine_tune.apply(model, prefix, "full")
    assert result.count == len(model.variables)
    for a, b in zip(model.variables, reference.variables, strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), a.name
    assert result.report["fresh"] == [] and result.report["fine_tune_checkpoint_type"] == "full"
    assert result.line.endswith("(full); 0 fresh")


def test_full_leaves_a_class_layer_of_another_shape_fresh_and_says_why(trained_config,
                                                                      source):
    """full with another num_classes: the class layer keeps its fresh values (the OD
    API's full would fail), the rest is detection's; the line and each row say why."""
    prefix, reference = source
    trained_config.model.num_classes = 5  # the source has 3
    model = build_model(trained_config.model)
    fresh = _values(model.head._classifier)
    result = fine_tune.apply(model, prefix, "full")
    assert all(np.array_equal(a, b) for a, b in zip(_values(model.head._classifier), fresh,
                                                    strict=True))
    assert _same(model.backbone, reference.backbone) and _same(model.decoder, reference.decoder)
    for part in retinanet.HEAD_PARTS:
        assert _same(getattr(model.head, part), getattr(reference.head, part)), part
    classifier = model.head._classifier.variables
    assert result.count == len(model.variables) - len(classifier)
    rows = result.report["fresh"]
    assert sorted(row["variable"] for row in rows) == sorted(v.name for v in classifier)
    kernel = next(row["reason"] for row in rows if "kernel" in row["variable"])
    assert kernel.startswith("its shape follows model.num_classes, and the checkpoint's "
                             "differs ([")
    assert "in the checkpoint, [" in kernel and kernel.endswith(
        "fine_tune_checkpoint_type full loads it where it fits")
    assert f"(full); {len(classifier)} fresh (the layers sized by model.num_classes: " \
        "its shape follows" in result.line


def test_a_checkpoint_of_another_backbone_is_refused(trained_config, source):
    prefix, _ = source
    trained_config.model.backbone.width_multiplier = 0.5  # the source has 0.25
    model = build_model(trained_config.model)
    with pytest.raises(TrainError) as err:
        fine_tune.apply(model, prefix, "detection")
    assert "train_config.fine_tune_checkpoint" in str(err.value)
    assert "does not fit this model's backbone and decoder and head" in str(err.value)


def test_the_path_is_a_prefix_or_a_directory(trained_run, tmp_path):
    model_dir = trained_run["model_dir"]
    assert fine_tune.resolve_checkpoint(model_dir) == os.path.join(model_dir, "ckpt-4")
    assert fine_tune.resolve_checkpoint(os.path.join(model_dir, "ckpt-2")).endswith("ckpt-2")
    for bad in (str(tmp_path), str(tmp_path / "ckpt-9")):
        with pytest.raises(ConfigError, match="train_config.fine_tune_checkpoint"):
            fine_tune.resolve_checkpoint(bad)


@pytest.mark.slow
def test_only_a_run_without_checkpoints_starts_from_it(trained_run, tmp_path):
    config = copy.deepcopy(trained_run["config"])
    config.train_config.fine_tune_checkpoint = trained_run["model_dir"]
    config.train_config.fine_tune_checkpoint_type = "detection"
    model_dir, lines = str(tmp_path / "run"), []
    train(config, model_dir, num_train_steps=1, record_summaries=False, log=lines.append)
    source = os.path.join(trained_run["model_dir"], "ckpt-4")
    assert any(ln.startswith("fine-tune: ") and f"checkpoint of this trainer {source} "
               "(detection)" in ln for ln in lines)
    with open(os.path.join(model_dir, fine_tune.REPORT_FILE)) as f:
        assert [row["reason"] for row in json.load(f)["fresh"]] == [
            "its shape follows model.num_classes"] * 2  # the class layer's kernel and bias
    lines.clear()
    result = train(config, model_dir, num_train_steps=2, record_summaries=False,
                   log=lines.append)
    assert result.start_step == 1
    assert not any(ln.startswith("fine-tune:") for ln in lines)
