"""Our exported SavedModel against the real OD API's exporter_main_v2.py: the same
serving signature key by key, and the OD API tutorial's way of calling a SavedModel
(scripts/odapi_client.py) runs unchanged on ours.

The OD API's side is tests/fixtures/odapi/export_signature.json, written by
scripts/odapi_fixtures/make_export_signature.py with the real OD API: its
exporter on make_odapi_fixtures.py's small SSD MobileNetV2 config and checkpoint
(and on the published ssd_mobilenet_v2_320x320 config with three classes). Ours
is that same pipeline.config, fine-tuned one step from that same checkpoint and
exported by export_saved_model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

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


def _spec(tensor) -> dict:
    return {"dtype": tensor.dtype.name, "shape": tensor.shape.as_list()}


def _assert_same_outputs(ours: dict, theirs: dict, anchors: int) -> None:
    """Key by key: the same keys and dtypes, the same shapes but the anchor count."""
    assert sorted(ours) == sorted(theirs)
    for key, spec in theirs.items():
        assert ours[key]["dtype"] == spec["dtype"], key
        expected = list(spec["shape"])
        if key in ANCHOR_DIMENSION:
            assert expected[ANCHOR_DIMENSION[key]] != anchors  # a kept difference
            expected[ANCHOR_DIMENSION[key]] = anchors
        assert ours[key]["shape"] == expected, key


def test_the_signature_is_the_odapi_exporters_key_by_key(ours):
    theirs = _odapi()["signature"]
    function = tf.saved_model.load(ours["saved_model"]).signatures["serving_default"]
    args, kwargs = function.structured_input_signature
    assert args == ()
    assert {name: _spec(spec) for name, spec in kwargs.items()} == theirs["inputs"] == {
        "input_tensor": {"dtype": "uint8", "shape": [1, None, None, 3]}}
    outputs = {key: _spec(spec) for key, spec in function.structured_outputs.items()}
    assert len(theirs["outputs"]) == 8
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
    loaded = tf.saved_model.load(ours["saved_model"])
    image = tf.zeros(theirs["input_shape"], tf.uint8) + 128
    outputs = {k: v.numpy() for k, v in loaded.signatures["serving_default"](
        input_tensor=image).items()}
    _assert_same_outputs({k: {"dtype": v.dtype.name, "shape": list(v.shape)}
                          for k, v in outputs.items()}, theirs["outputs"], ours["anchors"])
    direct = loaded(image)  # the loaded object is callable, as the OD API's
    for key, value in outputs.items():
        np.testing.assert_array_equal(direct[key].numpy(), value, err_msg=key)

    n = int(outputs["num_detections"][0])
    assert n > 0
    classes = outputs["detection_classes"][0, :n]
    boxes, scores = outputs["detection_boxes"][0, :n], outputs["detection_scores"][0, :n]
    seen = {
        "classes_are_whole_numbers": bool(np.all(classes == np.round(classes))),
        "classes_within_1_to_num_classes": bool(np.all((classes >= 1) & (classes <= 3))),
        "boxes_within_0_1": bool(np.all((boxes >= 0) & (boxes <= 1))),
        "scores_within_0_1_descending": bool(np.all((scores >= 0) & (scores <= 1))
                                             and np.all(np.diff(scores) <= 0)),
    }
    assert seen == {k: v for k, v in theirs["conventions"].items() if k != "num_detections"}
    assert all(seen.values())

    # Each detection is its anchor's row of the raw outputs, as in the OD API's.
    anchor = outputs["detection_anchor_indices"][0, :n]
    assert np.all(anchor == np.round(anchor)) and len(set(anchor)) == n
    rows = anchor.astype(np.int64)
    raw_scores = outputs["raw_detection_scores"][0]
    np.testing.assert_array_equal(raw_scores[rows, classes.astype(np.int64)], scores)
    np.testing.assert_array_equal(outputs["raw_detection_boxes"][0][rows], boxes)
    np.testing.assert_array_equal(outputs["detection_multiclass_scores"][0, :n],
                                  raw_scores[rows])
    assert np.all(outputs["detection_multiclass_scores"][0, n:] == 0)
    assert np.all((raw_scores >= 0) & (raw_scores <= 1))


@pytest.mark.slow
def test_the_odapi_tutorial_client_runs_unchanged_on_ours(ours, tiny_dataset, tmp_path):
    image = str(tmp_path / "image.png")
    rendered = shapes_dataset.render_image(0, "val", 0, 96).image
    tf.io.write_file(image, tf.io.encode_png(rendered))
    output = str(tmp_path / "client.json")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "odapi_client.py"),
         f"--saved_model_dir={ours['saved_model']}",
         f"--label_map_path={tiny_dataset['label_map_path']}", "--min_score_threshold=0",
         f"--json_output={output}", image],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(output) as f:
        record = json.load(f)
    theirs = _odapi()["client"]
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
    assert f"{image}: {len(detections)} detections" in proc.stderr
    assert proc.stderr.count(f"{names[detections[0]['class']]}: ") >= 1
