"""The Faster R-CNN family end to end: it learns, its config keys are its own, its
checkpoints export, evaluate and fine-tune, and the other family's are refused.

One tiny trained run (conftest's trained_faster_rcnn_run: ResNet-18 x0.25, 64 px,
40 steps) serves every test that needs weights, in process; the one
subprocess is the fresh process that loads the export. The other family's run is a
RetinaNet with the same backbone, built, not trained (`retinanet_run`). The
SIGKILL-and-resume check (one kill) is in test_faults.py."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import make_tiny_faster_rcnn_config
from tests.test_export import _RUN_SAVED_MODEL, HEIGHT, WIDTH, _test_image, _write_record
from train_lib import families
from train_lib.config import ConfigError, config_from_dict, dump_config, load_config
from train_lib.data import inputs
from train_lib.evaluation.coco_metrics import METRIC_KEYS, boxes_to_original
from train_lib.evaluation.continuous import continuous_eval, load_model_weights, read_eval_records
from train_lib.export.saved_model import OUTPUT_KEYS, export_saved_model
from train_lib.training import fine_tune, workdir
from train_lib.training.trainer import TrainError


def test_a_few_steps_lower_the_loss(trained_faster_rcnn_run):
    result = trained_faster_rcnn_run["result"]
    history = [loss for _, loss in result.loss_history]
    assert result.stop_reason == "finished" and result.step == 40 and len(history) == 8
    assert all(np.isfinite(history))
    # One batch's loss is noisy (here 2.73, 2.52, 2.62, 2.78, then 2.26, 1.85, 2.48,
    # 2.20 on one CPU): the halves' means, not single values, show the learning.
    assert np.mean(history[4:]) < 0.9 * np.mean(history[:4]), history


def test_continuous_evaluation_writes_coco_metrics(trained_faster_rcnn_run, tmp_path):
    run_dir = trained_faster_rcnn_run["model_dir"]
    config = copy.deepcopy(trained_faster_rcnn_run["config"])
    out = str(tmp_path / "eval_out")
    result = continuous_eval(config, run_dir, out, eval_timeout=600, poll_seconds=0.5,
                             log=lambda _: None)
    assert result.stop_reason == "finished" and result.evaluated == [20, 40]
    records = read_eval_records(out)
    assert [(r["step"], r["num_images"]) for r in records] == [(20, 8), (40, 8)]
    for record in records:
        assert set(METRIC_KEYS) <= set(record["metrics"])
        # COCO gives -1 for an area range without objects (these images have no large ones).
        assert all(-1.0 <= record["metrics"][k] <= 1.0 for k in METRIC_KEYS)
        assert 0.0 <= record["metrics"]["AP50"] <= 1.0
    assert os.path.exists(os.path.join(out, "best", f"ckpt-{result.best_step}.index"))


def test_export_then_a_fresh_process_gives_the_checkpoints_detections(
        trained_faster_rcnn_run, tmp_path):
    config = copy.deepcopy(trained_faster_rcnn_run["config"])
    prefix = os.path.join(trained_faster_rcnn_run["model_dir"], "ckpt-40")
    saved_model = export_saved_model(config, prefix, str(tmp_path / "exported"))
    image = _test_image()
    np.save(tmp_path / "image.npy", image)
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_SAVED_MODEL, saved_model, str(tmp_path / "image.npy"),
         str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    signature = json.loads(proc.stdout.strip().splitlines()[-1])
    assert signature["inputs"] == {"input_tensor": [[1, None, None, 3], "uint8"]}
    # The OD API's eight outputs (tests/test_export_parity.py compares them with its).
    assert sorted(signature["outputs"]) == sorted(OUTPUT_KEYS)
    assert signature["modules"] == []  # it runs on TensorFlow alone
    got = np.load(tmp_path / "out.npz")

    # The reference: the checkpoint's model on the same image through the eval pipeline.
    record = str(tmp_path / "image.tfrecord")
    _write_record(image, record)
    images, info = next(iter(inputs.build_eval_dataset(config, [record])))
    model = families.build_model(config.model)
    load_model_weights(model, prefix, config)
    valid = tf.cast(info["original_size"], tf.float32) * info["image_scale"]
    ref = families.detect(model, images, valid)
    n = int(ref["num_detections"][0])
    assert n > 0 and int(got["num_detections"][0]) == n
    expected = boxes_to_original(ref["detection_boxes"][0, :n].numpy(),
                                 info["image_scale"][0].numpy(), [HEIGHT, WIDTH])
    expected /= [HEIGHT, WIDTH, HEIGHT, WIDTH]
    np.testing.assert_allclose(got["detection_boxes"][0, :n], expected, atol=1e-4)
    np.testing.assert_allclose(got["detection_scores"][0, :n],
                               ref["detection_scores"][0, :n].numpy(), atol=1e-5)
    np.testing.assert_array_equal(got["detection_classes"][0, :n],
                                  ref["detection_classes"][0, :n].numpy().astype(np.float32))
    assert set(np.unique(got["detection_classes"][0, :n])) <= {1.0, 2.0, 3.0}


@pytest.fixture(scope="module")
def retinanet_run(trained_faster_rcnn_run, tmp_path_factory) -> dict:
    """A RetinaNet with the trained Faster R-CNN's backbone config, as this trainer
    leaves it: ckpt-4 holding the model's (untrained) variables, and pipeline.yaml."""
    config = copy.deepcopy(trained_faster_rcnn_run["config"])
    config.model.architecture = "retinanet"
    model_dir = tmp_path_factory.mktemp("retinanet")
    model = families.build_model(config.model)
    prefix = tf.train.Checkpoint(model=model).write(str(model_dir / "ckpt-4"))
    dump_config(config, str(model_dir / workdir.PIPELINE_FILE))
    return {"model_dir": str(model_dir), "config": config, "prefix": prefix}


@pytest.fixture(scope="module")
def five_class_model(trained_faster_rcnn_run):
    """A fresh Faster R-CNN like the trained one but with 5 classes."""
    config = copy.deepcopy(trained_faster_rcnn_run["config"])
    config.model.num_classes = 5
    return families.build_model(config.model)


def test_detection_fine_tune_loads_all_but_the_class_and_box_layers(
        trained_faster_rcnn_run, five_class_model):
    prefix = os.path.join(trained_faster_rcnn_run["model_dir"], "ckpt-40")
    model = five_class_model
    count = fine_tune.apply(model, prefix, "detection").count
    reader = tf.train.load_checkpoint(prefix)
    head = model.detection_head[0]
    fc = head._fcs[0].kernel
    name = next(n for n in reader.get_variable_to_shape_map()
                if "detection_head/" in n and n.endswith("_fcs/0/kernel/.ATTRIBUTES/"
                                                         "VARIABLE_VALUE"))
    np.testing.assert_array_equal(fc.numpy(), reader.get_tensor(name))
    left_out = [*head._classifier.variables, *head._box_regressor.variables]
    assert head._classifier.kernel.shape[-1] == 6  # 5 classes and the background
    assert count == len(model.variables) - len(left_out)


def test_full_fine_tune_loads_the_class_and_box_layers_where_they_fit(
        trained_faster_rcnn_run, five_class_model):
    """full from this trainer's Faster R-CNN checkpoint: with its num_classes every
    variable loads, the class and box layers too; with 5 classes those keep their
    fresh values and the line says why, the rest loads as detection's."""
    prefix = os.path.join(trained_faster_rcnn_run["model_dir"], "ckpt-40")
    reader = tf.train.load_checkpoint(prefix)
    keys = reader.get_variable_to_shape_map()

    def checkpoint_value(layer: str, attribute: str) -> np.ndarray:
        name = next(n for n in keys if "detection_head/" in n and n.endswith(
            f"/{layer}/{attribute}/.ATTRIBUTES/VARIABLE_VALUE"))
        return reader.get_tensor(name)

    model = families.build_model(trained_faster_rcnn_run["config"].model)
    result = fine_tune.apply(model, prefix, "full")
    head = model.detection_head[0]
    for layer, name in ((head._classifier, "_classifier"), (head._box_regressor,
                                                            "_box_regressor")):
        np.testing.assert_array_equal(layer.kernel.numpy(), checkpoint_value(name, "kernel"))
    assert result.count == len(model.variables) and result.line.endswith("(full); 0 fresh")

    fresh = [v.numpy() for v in five_class_model.detection_head[0]._classifier.variables]
    result = fine_tune.apply(five_class_model, prefix, "full")
    head = five_class_model.detection_head[0]
    for variable, value in zip(head._classifier.variables, fresh, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)
    left_out = len(head._classifier.variables) + len(head._box_regressor.variables)
    assert result.count == len(five_class_model.variables) - left_out
    assert f"(full); {left_out} fresh (the layers sized by model.num_classes: its shape " \
           "follows model.num_classes, and the checkpoint's differs (" in result.line


def test_a_checkpoint_of_the_other_family(retinanet_run, five_class_model):
    """A RetinaNet checkpoint: its backbone loads (the same backbone config); as a
    detection fine-tune it is refused, naming both architectures."""
    prefix = retinanet_run["prefix"]
    model = five_class_model
    assert fine_tune.apply(model, prefix, "backbone").count == len(model.backbone.variables)
    reader = tf.train.load_checkpoint(prefix)
    saved = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
             if n.startswith("model/_backbone/") and n.endswith("VARIABLE_VALUE")]
    kernels = [v for v in model.backbone.variables if "kernel" in v.name]
    assert kernels and all(any(t.shape == v.shape and np.array_equal(t, v.numpy())
                               for t in saved) for v in kernels)
    with pytest.raises(TrainError) as err:
        fine_tune.apply(model, prefix, "detection")
    message = str(err.value)
    assert "train_config.fine_tune_checkpoint" in message
    assert "is a retinanet checkpoint, but model.architecture is faster_rcnn" in message
    assert "fine_tune_checkpoint_type: backbone" in message


def test_resuming_a_run_of_the_other_family_is_refused_as_drift(retinanet_run,
                                                                 trained_faster_rcnn_run,
                                                                 tmp_path):
    for source, other in ((retinanet_run, trained_faster_rcnn_run),
                          (trained_faster_rcnn_run, retinanet_run)):
        model_dir = tmp_path / source["config"].model.architecture
        model_dir.mkdir()
        shutil.copy(os.path.join(source["model_dir"], "pipeline.yaml"), model_dir)
        (model_dir / "ckpt-4.index").write_bytes(b"")  # a run with a checkpoint
        with pytest.raises(ConfigError) as err:
            workdir.check_config_drift(other["config"], str(model_dir), lambda _: None)
        assert "changes the model's structure (model.architecture" in str(err.value)


# ---------------------------------------------------------------- config (no model)


def test_keys_of_the_other_architecture_are_refused_with_the_key(tiny_dataset, tmp_path):
    path = str(tmp_path / "frcnn.yaml")
    dump_config(make_tiny_faster_rcnn_config(tiny_dataset), path)
    assert load_config(path).model.architecture == "faster_rcnn"
    with open(path) as f:
        text = f.read()
    assert "  head:" not in text and "focal_loss_alpha" not in text  # only its own keys
    with pytest.raises(ConfigError) as err:
        load_config(path, "model.loss.focal_loss_gamma=2.0")
    assert str(err.value) == (
        "--params_override: `model.loss.focal_loss_gamma` is a retinanet key, but "
        "model.architecture is faster_rcnn; remove it, or set model.architecture: retinanet")

    # model.rpn_head (model.initializers.rpn_head is indented deeper)
    text = text.replace("\n  rpn_head:\n", "\n  head:\n    num_convs: 2\n  rpn_head:\n", 1)
    with open(path, "w") as f:
        f.write(text)
    line = text.splitlines().index("  head:") + 1
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}:{line}: `model.head` is a retinanet key, but model.architecture is "
        "faster_rcnn; remove it, or set model.architecture: retinanet")

    retinanet = os.path.join(os.path.dirname(__file__), "..", "configs", "shapes_retinanet.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(retinanet, "model.roi_sampler.num_sampled_rois=64")
    assert str(err.value) == (
        "--params_override: `model.roi_sampler` is a faster_rcnn key, but model.architecture "
        "is retinanet; remove it, or set model.architecture: faster_rcnn")


def test_roi_sampler_batch_larger_than_the_proposals_is_refused():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"model": {"architecture": "faster_rcnn",
                                    "proposals": {"num_proposals": 100},
                                    "roi_sampler": {"num_sampled_rois": 128}}}, "x.yaml")
    assert str(err.value) == (
        "x.yaml: model.roi_sampler.num_sampled_rois is 128; must be in [1, "
        "model.proposals.num_proposals (100)]: the sampler picks its ROIs among the "
        "proposals; lower it or raise the proposals")


def test_without_fpn_the_backbones_one_map_trains(tiny_dataset, tmp_path):
    """`model.fpn.type: none`: the backbone's level-4 map as it is (stride 16, as the
    OD API's non-FPN Faster R-CNN): no decoder, no FPN layers, and a few steps train."""
    from train_lib.training.trainer import train

    config = make_tiny_faster_rcnn_config(tiny_dataset, num_steps=2, log_every_n=1)
    config.model.fpn.type = "none"
    config.model.min_level = config.model.max_level = 4
    model = families.build_model(config.model)
    assert model.decoder is None, model.decoder  # Model Garden's factory: no decoder
    assert not [v.name for v in model.variables if "fpn" in v.name.lower()]
    result = train(config, str(tmp_path / "run"), checkpoint_every_n=2, record_summaries=False)
    assert result.step == 2 and all(np.isfinite([loss for _, loss in result.loss_history]))


@pytest.mark.parametrize("model, message", [
    ({"fpn": {"type": "none"}, "min_level": 4, "max_level": 4},
     "x.yaml: model.fpn.type is 'none'; only model.architecture: faster_rcnn can do "
     "without the FPN (RetinaNet's head runs on the FPN's levels); set it to 'fpn'"),
    ({"architecture": "faster_rcnn", "fpn": {"type": "none"}},
     "x.yaml: model.fpn.type is 'none'; that is the backbone's one feature map: set "
     "model.min_level and model.max_level to its level (e.g. both 4, stride 16; now 3 and 5)"),
])
def test_fpn_none_needs_faster_rcnn_and_one_level(model, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"model": model}, "x.yaml")
    assert str(err.value) == message
