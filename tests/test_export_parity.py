"""Our exported SavedModel against the real OD API's exporter_main_v2.py: the same
serving signature key by key, and the OD API tutorial's way of calling a SavedModel
(scripts/odapi_client.py) runs unchanged on ours.

The OD API's side is tests/fixtures/odapi/export_signature.json, written by
scripts/odapi_fixtures/make_export_signature.py with the real OD API: its
exporter on make_odapi_fixtures.py's small SSD MobileNetV2 config and checkpoint
(and on the published ssd_mobilenet_v2_320x320 config with three classes). Ours
is that same pipeline.config, fine-tuned one step from that same checkpoint and
exported by export_saved_model.

The same for Faster R-CNN: the OD API's exporter on the published
faster_rcnn_resnet50_v1_640x640 config with three classes at 96 px; ours on
make_odapi_fixtures.py's faster_rcnn_resnet50_keras/pipeline.config (that config
as the OD API read it) with the model's initial weights. Every output has the
OD API's shape there, the raw ones one row per proposal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

from scripts.odapi_fixtures import export_checks
from train_lib import families
from train_lib.config import load_config
from train_lib.data import shapes_dataset
from train_lib.export.saved_model import export_saved_model
from train_lib.training.trainer import train

FIXTURES = os.path.join(REPO, "tests", "fixtures", "odapi")
ODAPI_MODEL = os.path.join(FIXTURES, "ssd_mobilenet_v2_keras")
# Outputs whose shape differs from the OD API's in one dimension, kept (see
# docs/evaluation_and_export.md): the number of anchors, ours (Model Garden's FPN
# levels and anchors) against the OD API's SSD feature maps.
ANCHOR_DIMENSION = {"raw_detection_boxes": 1, "raw_detection_scores": 1}


FASTER_RCNN_MODEL = os.path.join(FIXTURES, "faster_rcnn_resnet50_keras")
FASTER_RCNN = "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8"
NUM_CLASSES = 3  # the fixtures' label map, and the OD API's models' num_classes
SERVING_INPUTS = {"input_tensor": {"dtype": "uint8", "shape": [1, None, None, 3]}}
# What one call shows of the outputs beside the four detection ones (see
# export_checks.raw_conventions); the ones compared with the OD API's.
# `anchor_indices_distinct` is left out: the OD API's per-class NMS may take two
# detections of different classes from one proposal, ours too.
RAW_CONVENTIONS = ("anchor_indices_whole_numbers_within_raw_rows", "box_is_its_rows_raw_box",
                   "score_is_its_rows_raw_score_of_its_class",
                   "multiclass_scores_are_its_rows_raw_scores", "padding_rows_zero",
                   "raw_scores_rows_sum_to_1", "raw_boxes_within_0_1")


def _odapi(name: str = "fixture:ssd_mobilenet_v2_keras") -> dict:
    with open(os.path.join(FIXTURES, "export_signature.json")) as f:
        return json.load(f)["models"][name]


@pytest.fixture(scope="module")
def ours(tiny_dataset, tmp_path_factory) -> dict:
    """The OD API fixture's pipeline.config fine-tuned one step from its ckpt-0 and
    exported; returns the config, the SavedModel directory and its anchor count."""
    readers = {"input_path": tiny_dataset["train_pattern"],
               "label_map_path": tiny_dataset["label_map_path"]}
    override = json.dumps({
        "train_config": {"fine_tune_checkpoint": os.path.join(ODAPI_MODEL, "checkpoint"),
                         "fine_tune_checkpoint_type": "detection", "num_steps": 1,
                         "batch_size": 2},
        "train_input_reader": readers,
        "eval_input_reader": {**readers, "input_path": tiny_dataset["val_pattern"]},
        "eval_config": {"eval_at_end": False}})
    config = load_config(os.path.join(ODAPI_MODEL, "pipeline.config"), override)
    root = tmp_path_factory.mktemp("parity")
    model_dir = str(root / "run")
    train(config, model_dir, record_summaries=False, log=lambda line: None)
    saved_model = export_saved_model(config, os.path.join(model_dir, "ckpt-1"),
                                     str(root / "exported"))
    model = config.model
    per_location = model.anchor.num_scales * len(model.anchor.aspect_ratios)
    anchors = sum(per_location * -(-model.input_size[0] // 2**level)
                  * -(-model.input_size[1] // 2**level)
                  for level in range(model.min_level, model.max_level + 1))
    return {"config": config, "saved_model": saved_model, "anchors": anchors}


@pytest.fixture(scope="module")
def ours_faster_rcnn(tiny_dataset, tmp_path_factory) -> dict:
    """faster_rcnn_resnet50_keras/pipeline.config (the published Faster R-CNN
    ResNet-50 config at 96 px, 3 classes) built with its initial weights, saved as
    ckpt-0 and exported; returns the config, the model and the SavedModel directory."""
    readers = {"input_path": tiny_dataset["train_pattern"],
               "label_map_path": tiny_dataset["label_map_path"]}
    override = json.dumps({
        "train_config": {"fine_tune_checkpoint": ""},
        "train_input_reader": readers,
        "eval_input_reader": {**readers, "input_path": tiny_dataset["val_pattern"]}})
    config = load_config(os.path.join(FASTER_RCNN_MODEL, "pipeline.config"), override)
    tf.keras.utils.set_random_seed(0)
    model = families.build_model(config.model)
    root = tmp_path_factory.mktemp("parity_faster_rcnn")
    prefix = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(root / "run"),
                                        max_to_keep=1).save(checkpoint_number=0)
    saved_model = export_saved_model(config, prefix, str(root / "exported"))
    return {"config": config, "model": model, "saved_model": saved_model, "anchors": None}


def _assert_same_outputs(ours: dict, theirs: dict, anchors: int | None) -> None:
    """Key by key: the same keys and dtypes, the same shapes but the anchor count
    (`anchors`; None: the same shapes)."""
    assert sorted(ours) == sorted(theirs)
    for key, spec in theirs.items():
        assert ours[key]["dtype"] == spec["dtype"], key
        expected = list(spec["shape"])
        if anchors is not None and key in ANCHOR_DIMENSION:
            assert expected[ANCHOR_DIMENSION[key]] != anchors  # a kept difference
            expected[ANCHOR_DIMENSION[key]] = anchors
        assert ours[key]["shape"] == expected, key


def _serving_outputs(saved_model: str, theirs: dict) -> dict:
    """The SavedModel's serving_default output specs (export_checks.signature_of),
    after checking its inputs are the OD API's (`theirs`) and the OD API's single
    uint8 image tensor, and that the OD API's has eight outputs."""
    signature = export_checks.signature_of(tf.saved_model.load(saved_model))
    assert signature["inputs"] == theirs["inputs"] == SERVING_INPUTS
    assert len(theirs["outputs"]) == 8
    return signature["outputs"]


def _call(saved_model: str, input_shape: list[int]) -> dict:
    """The SavedModel's serving_default on a grey uint8 image of `input_shape`, its
    outputs as numpy arrays, after checking that the loaded object, called
    directly as the OD API's is, gives the same values."""
    loaded = tf.saved_model.load(saved_model)
    image = tf.zeros(input_shape, tf.uint8) + 128
    outputs = {k: v.numpy() for k, v in loaded.signatures["serving_default"](
        input_tensor=image).items()}
    direct = loaded(image)
    for key, value in outputs.items():
        np.testing.assert_array_equal(direct[key].numpy(), value, err_msg=key)
    return outputs


def test_the_signature_is_the_odapi_exporters_key_by_key(ours):
    theirs = _odapi()["signature"]
    outputs = _serving_outputs(ours["saved_model"], theirs)
    _assert_same_outputs(outputs, theirs["outputs"], ours["anchors"])
    # The published config's export has the same signature but its anchor count.
    published = _odapi("ssd_mobilenet_v2_320x320_coco17_tpu-8")["signature"]
    assert published["inputs"] == theirs["inputs"]
    for key, spec in published["outputs"].items():
        assert spec["dtype"] == theirs["outputs"][key]["dtype"]
        if key not in ANCHOR_DIMENSION:
            assert spec["shape"] == theirs["outputs"][key]["shape"], key


def test_a_call_gives_the_odapi_shapes_and_conventions(ours):
    theirs = _odapi()["call"]
    outputs = _call(ours["saved_model"], theirs["input_shape"])
    _assert_same_outputs({k: {"dtype": v.dtype.name, "shape": list(v.shape)}
                          for k, v in outputs.items()}, theirs["outputs"], ours["anchors"])

    n = int(outputs["num_detections"][0])
    assert n > 0
    classes = outputs["detection_classes"][0, :n]
    boxes, scores = outputs["detection_boxes"][0, :n], outputs["detection_scores"][0, :n]
    seen = export_checks.conventions(outputs, NUM_CLASSES)
    del seen["num_detections"]
    assert seen == {k: v for k, v in theirs["conventions"].items() if k != "num_detections"}
    assert all(seen.values())

    # Each detection is its anchor's row of the raw outputs, as in the OD API's; one
    # anchor may give detections of several classes (per-class NMS, as the OD API's),
    # never two of one class.
    anchor = outputs["detection_anchor_indices"][0, :n]
    assert np.all(anchor == np.round(anchor))
    assert len(set(zip(anchor.tolist(), classes.tolist(), strict=True))) == n
    rows = anchor.astype(np.int64)
    raw_scores = outputs["raw_detection_scores"][0]
    np.testing.assert_array_equal(raw_scores[rows, classes.astype(np.int64)], scores)
    np.testing.assert_array_equal(outputs["raw_detection_boxes"][0][rows], boxes)
    np.testing.assert_array_equal(outputs["detection_multiclass_scores"][0, :n],
                                  raw_scores[rows])
    assert np.all(outputs["detection_multiclass_scores"][0, n:] == 0)
    assert np.all((raw_scores >= 0) & (raw_scores <= 1))
    # The same conventions as the OD API's SSD (sigmoid scores: rows do not sum to
    # 1), but the one difference kept: our raw boxes are clipped to the image (Model
    # Garden's decoding), so a detection's box is its row's; the OD API's are not.
    seen, recorded = export_checks.raw_conventions(outputs), theirs["raw_conventions"]
    clipped = ("box_is_its_rows_raw_box", "raw_boxes_within_0_1")
    assert {k: seen[k] for k in RAW_CONVENTIONS if k not in clipped} == {
        k: recorded[k] for k in RAW_CONVENTIONS if k not in clipped}
    assert not seen["raw_scores_rows_sum_to_1"]
    assert [seen[k] for k in clipped] == [True, True] and [recorded[k] for k in clipped] == [
        False, False]


def test_the_faster_rcnn_signature_is_the_odapi_exporters_key_by_key(ours_faster_rcnn):
    theirs = _odapi(FASTER_RCNN)["signature"]
    outputs = _serving_outputs(ours_faster_rcnn["saved_model"], theirs)
    assert outputs == theirs["outputs"]  # no difference kept: 300 proposals, 300 detections
    assert theirs["outputs"]["raw_detection_scores"]["shape"] == [1, 300, 4]


def test_a_faster_rcnn_call_gives_the_odapi_shapes_and_conventions(ours_faster_rcnn):
    theirs = _odapi(FASTER_RCNN)["call"]
    outputs = _call(ours_faster_rcnn["saved_model"], theirs["input_shape"])
    assert {k: {"dtype": v.dtype.name, "shape": list(v.shape)}
            for k, v in outputs.items()} == theirs["outputs"]
    n = int(outputs["num_detections"][0])
    assert n > 0
    raw = export_checks.raw_conventions(outputs)
    seen = {k: raw[k] for k in RAW_CONVENTIONS}
    assert seen == {k: theirs["raw_conventions"][k] for k in RAW_CONVENTIONS}
    assert all(seen.values())


def test_faster_rcnn_serving_outputs_hold_detects_detections(ours_faster_rcnn):
    """serving_detections' four detection outputs are detect's (the same forward
    pass, layer by layer), and the raw rows past the model's proposals are zeros."""
    model, config = ours_faster_rcnn["model"], ours_faster_rcnn["config"]
    height, width = config.model.input_size
    images = tf.random.stateless_uniform([1, height, width, 3], [1, 2], 0, 255)
    image_shape = tf.constant([[height * 0.6, width]])
    reference = families.detect(model, images, image_shape)
    served = families.serving_detections(model, images, image_shape)
    for key in ("detection_boxes", "detection_scores", "detection_classes", "num_detections"):
        np.testing.assert_array_equal(served[key].numpy(), reference[key].numpy(),
                                      err_msg=key)
    n = int(served["num_detections"][0])
    assert n > 0
    rows = served["detection_anchor_indices"][0, :n].numpy()
    classes = served["detection_classes"][0, :n].numpy()
    raw_scores = served["raw_detection_scores"][0].numpy()
    np.testing.assert_array_equal(raw_scores[rows, classes], served["detection_scores"][0, :n])
    np.testing.assert_array_equal(served["raw_detection_boxes"][0].numpy()[rows],
                                  served["detection_boxes"][0, :n])
    # 96 px: levels 4-7 have 150 anchors, so at most 150 proposals of the 300 rows.
    proposals = 3 * (6 * 6 + 3 * 3 + 2 * 2 + 1)
    assert raw_scores.shape == (300, 4) and np.all(raw_scores[proposals:] == 0)
    assert np.all(rows < proposals)
    np.testing.assert_allclose(raw_scores[:proposals].sum(-1), 1, atol=1e-5)  # softmax


def _run_client(saved_model: str, label_map: str, tmp_path) -> tuple[dict, str]:
    """scripts/odapi_client.py on a shapes image: (its JSON record, its stderr)."""
    image = str(tmp_path / "image.png")
    rendered = shapes_dataset.render_image(0, "val", 0, 96).image
    tf.io.write_file(image, tf.io.encode_png(rendered))
    output = str(tmp_path / "client.json")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "odapi_client.py"),
         f"--saved_model_dir={saved_model}", f"--label_map_path={label_map}",
         "--min_score_threshold=0", f"--json_output={output}", image],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(output) as f:
        record = json.load(f)
    assert record["images"][0]["image"] == image
    return record, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("family", ["retinanet", "faster_rcnn"])
def test_the_odapi_tutorial_client_runs_unchanged_on_ours(family, request, tiny_dataset,
                                                          tmp_path):
    ours = request.getfixturevalue("ours" if family == "retinanet" else "ours_faster_rcnn")
    record, stderr = _run_client(ours["saved_model"], tiny_dataset["label_map_path"], tmp_path)
    image = record["images"][0]["image"]
    theirs = _odapi("fixture:ssd_mobilenet_v2_keras" if family == "retinanet"
                    else FASTER_RCNN)["client"]
    for way in ("signature", "call"):
        _assert_same_outputs(record["outputs"][way], theirs[way], ours["anchors"])

    [result] = record["images"]
    assert result["shape"] == [96, 96, 3]
    detections = result["detections"]
    assert len(detections) == result["num_detections"] > 0
    names = {1: "square", 2: "circle", 3: "triangle"}  # the shapes label map
    for d in detections:
        assert d["name"] == names[d["class"]]
        ymin, xmin, ymax, xmax = d["box"]
        assert 0 <= ymin <= ymax <= 1 and 0 <= xmin <= xmax <= 1
    scores = [d["score"] for d in detections]
    assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1
    # One line per image and one per detection shown (all of them, at threshold 0).
    assert f"{image}: {len(detections)} detections" in stderr
    assert stderr.count(f"{names[detections[0]['class']]}: ") >= 1
