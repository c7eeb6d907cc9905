"""The TFLite export: the three quantisations, the same detections as the SavedModel
(float) and overlapping ones (int8), on LiteRT without TensorFlow; the .tflite scored
on the eval split; a clear error for each bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import REPO
from train_lib.config import ModelConfig
from train_lib.data import shapes_dataset
from train_lib.evaluation.continuous import evaluate_checkpoint
from train_lib.evaluation.tflite_eval import TFLITE_METRICS_FILE, evaluate_tflite_file
from train_lib.export.saved_model import ExportError
from train_lib.export.tflite import QUANTIZATIONS, check_output_directory, export_tflite
from train_lib.export.tflite_runtime import (
    OUTPUT_NAMES,
    TENSOR_ORDER,
    TFLiteDetector,
    letterbox,
)

NUM_CALIBRATION = 8


@pytest.fixture(scope="module")
def tflite_models(trained_run, tmp_path_factory) -> dict[str, str]:
    """trained_run's ckpt-4 exported once per quantisation: {quantization: model.tflite}."""
    prefix = os.path.join(trained_run["model_dir"], "ckpt-4")
    root = tmp_path_factory.mktemp("tflite")
    return {q: export_tflite(trained_run["config"], prefix, str(root / q), q,
                             num_calibration_images=NUM_CALIBRATION)
            for q in QUANTIZATIONS}


def _images() -> list[np.ndarray]:
    """Three val-like shapes images at the model's 64 px."""
    return [shapes_dataset.render_image(0, "val", i, 64).image for i in range(3)]


def _stretched() -> np.ndarray:
    """A shapes image stretched to 50 x 90: the letterbox resizes it and pads."""
    return np.asarray(Image.fromarray(_images()[0]).resize((90, 50), Image.BILINEAR))


def _unmatched(got, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
               atol: float = 1e-3) -> list[int]:
    """The reference detections (boxes, scores, classes) that no detection of `got`
    matches (same class, score and box within `atol`), each match used once."""
    free = set(range(len(got.scores)))
    missing = []
    for j in range(len(scores)):
        match = next((k for k in sorted(free) if got.classes[k] == classes[j]
                      and abs(got.scores[k] - scores[j]) <= atol
                      and np.abs(got.boxes[k] - boxes[j]).max() <= atol), None)
        if match is None:
            missing.append(j)
        else:
            free.discard(match)
    return missing


def test_exports_all_three_with_the_documented_io(trained_run, tflite_models):
    sizes = {}
    for quantization, path in tflite_models.items():
        out = os.path.dirname(path)
        assert sorted(os.listdir(out)) == ["label_map.pbtxt", "model.json", "model.tflite"]
        with open(os.path.join(out, "model.json")) as f:
            info = json.load(f)
        assert info["quantization"] == quantization
        assert info["output_order"] == list(TENSOR_ORDER)
        assert info["label_map"] == {"1": "square", "2": "circle", "3": "triangle"}
        with open(os.path.join(out, "label_map.pbtxt")) as f, \
                open(trained_run["config"].eval_input_reader.label_map_path) as g:
            assert f.read() == g.read()

        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path)
        (tensor,) = interpreter.get_input_details()
        expected = np.uint8 if quantization == "int8" else np.float32
        assert list(tensor["shape"]) == [1, 64, 64, 3] and tensor["dtype"] == expected
        assert info["input"]["shape"] == [1, 64, 64, 3]
        assert info["input"]["dtype"] == np.dtype(expected).name
        # The output tensors are the signature's outputs in TENSOR_ORDER.
        named = interpreter.get_signature_runner("serving_default").get_output_details()
        assert sorted(named) == sorted(OUTPUT_NAMES)
        order = [d["index"] for d in interpreter.get_output_details()]
        assert [named[n]["index"] for n in TENSOR_ORDER] == order
        shapes = [list(d["shape"]) for d in interpreter.get_output_details()]
        assert shapes == [[1], [1, 100, 4], [1, 100], [1, 100]]
        sizes[quantization] = os.path.getsize(path)
    assert sizes["float16"] < sizes["none"] and sizes["int8"] < sizes["none"]


def test_float_tflite_gives_the_saved_models_detections(saved_model_export, tflite_models):
    serve = tf.saved_model.load(os.path.join(saved_model_export, "saved_model")
                                ).signatures["serving_default"]
    detector = TFLiteDetector(tflite_models["none"], num_threads=1)
    for image in _images():
        ref = serve(input_tensor=tf.constant(image[np.newaxis], tf.uint8))
        n = int(ref["num_detections"][0])
        got = detector.detect(image)
        assert n > 0 and len(got.scores) == n
        np.testing.assert_allclose(got.scores, ref["detection_scores"][0, :n].numpy(), atol=1e-3)
        # The 4-step model scores most boxes alike (about 0.0101), so detections whose
        # scores differ in the sixth digit may come in another order: each detection
        # must have its own counterpart.
        unmatched = _unmatched(got, ref["detection_boxes"][0, :n].numpy(),
                               ref["detection_scores"][0, :n].numpy(),
                               ref["detection_classes"][0, :n].numpy().astype(np.int64))
        assert unmatched == [], unmatched


def test_int8_quantises_the_network_and_keeps_post_processing_float(tflite_models):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=tflite_models["int8"])
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    computed = {}  # op type -> dtypes of its outputs, in the network / after it
    for op in interpreter._get_ops_details():
        for index in op["outputs"]:
            where = "post" if "post_processing/" in tensors[index]["name"] else "network"
            computed.setdefault((where, op["op_name"]), set()).add(tensors[index]["dtype"])
    assert np.int8 in computed[("network", "CONV_2D")]
    # Box decoding and scores are float; int8 after the network only where data moves
    # or is rescaled on its way to float.
    assert computed[("post", "EXP")] == {np.float32}
    int8_after = {op for (where, op), dtypes in computed.items()
                  if where == "post" and dtypes & {np.int8, np.uint8}}
    assert int8_after <= {"QUANTIZE", "SPLIT", "RESHAPE", "CONCATENATION", "STRIDED_SLICE"}

    # This 4-step model scores ~100 boxes alike, so which box comes first is noise;
    # the scores, sorted, must be the float model's within int8's error. (On the
    # trained shapes model the int8 AP50 equals the float model's: docs/performance.md's table.)
    floats = TFLiteDetector(tflite_models["none"])
    ints = TFLiteDetector(tflite_models["int8"])
    for image in _images():
        a, b = floats.detect(image), ints.detect(image)
        assert len(b.scores) == len(a.scores) > 0
        np.testing.assert_allclose(b.scores[:20], a.scores[:20], atol=5e-3)
        assert set(b.classes.tolist()) <= {1, 2, 3}
        assert (b.boxes[:, 2:] >= b.boxes[:, :2]).all()
        assert 0.0 <= b.boxes.min() and b.boxes.max() <= 1.0


def test_letterbox_is_the_eval_pipelines_resize():
    from train_lib.data import inputs

    image = _stretched()  # 50 x 90 -> 36 x 64, padded to 64 x 64
    pixels, scale = letterbox(image, (64, 64))
    model = ModelConfig(input_size=[64, 64])
    expected, expected_scale = inputs.preprocess_for_model(tf.constant(image), model)
    expected = inputs.denormalize(expected.numpy(), model)
    np.testing.assert_allclose(pixels, expected, atol=1e-3)
    np.testing.assert_allclose(scale, expected_scale.numpy(), rtol=1e-6)
    assert pixels[36:].max() == 0.0 and pixels[:36].max() > 0


def test_tflite_scored_on_the_eval_split_as_the_checkpoint(trained_run, trained_config,
                                                          tflite_models, tmp_path):
    metrics = evaluate_tflite_file(tflite_models["none"], trained_config, str(tmp_path))
    reference = evaluate_checkpoint(os.path.join(trained_run["model_dir"], "ckpt-4"),
                                    trained_config)
    # The same detections (test_float_tflite_gives_the_saved_models_detections), but
    # near-equal scores may rank in another order, which moves AP on this 4-step model;
    # recall at 100 detections does not depend on their order.
    for key in ("AR100",):
        assert metrics[key] == pytest.approx(reference[key], abs=1e-3), key
    (line,) = open(tmp_path / TFLITE_METRICS_FILE).read().splitlines()
    record = json.loads(line)
    assert record["quantization"] == "none" and record["num_images"] == 8
    assert record["metrics"]["AP50"] == metrics["AP50"] and record["split"] == "eval"


def test_tflite_eval_names_a_record_that_is_not_an_example(tiny_dataset, trained_config,
                                                          tflite_models, tmp_path):
    """As the checkpoint's evaluation: the file and the record, in one EvalError."""
    from tests.conftest import write_records_with_a_non_example
    from train_lib.evaluation.evaluator import EvalError

    bad = str(tmp_path / "val-not-an-example.tfrecord")
    write_records_with_a_non_example(tiny_dataset["val_pattern"], bad, 2)
    trained_config.eval_input_reader.input_path = [bad]
    with pytest.raises(EvalError) as info:
        evaluate_tflite_file(tflite_models["none"], trained_config, str(tmp_path / "out"))
    assert f"{bad} record 1" in str(info.value)
    assert "not a tf.train.Example" in str(info.value)


_RUN_WITHOUT_TENSORFLOW = textwrap.dedent("""
    import json, sys
    for name in ("tensorflow", "yaml", "absl", "official", "tf_keras"):
        sys.modules[name] = None  # importing any of them now fails
    import numpy as np
    from train_lib.export.tflite_runtime import TFLiteDetector
    image = np.load(sys.argv[2])
    found = TFLiteDetector(sys.argv[1], num_threads=1).detect(image)
    print(json.dumps({"n": len(found.scores), "box": found.boxes[0].tolist()}))
""")


@pytest.mark.slow
def test_runtime_needs_only_litert_numpy_and_pillow(tflite_models, tmp_path):
    image = _images()[0]
    np.save(tmp_path / "image.npy", image)
    proc = subprocess.run([sys.executable, "-c", _RUN_WITHOUT_TENSORFLOW,
                           tflite_models["int8"], str(tmp_path / "image.npy")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = TFLiteDetector(tflite_models["int8"]).detect(image)
    assert got["n"] == len(expected.scores) > 0
    np.testing.assert_allclose(got["box"], expected.boxes[0], atol=1e-6)


@pytest.mark.slow
def test_detect_script_with_tflite_runs_without_tensorflow(tflite_models, tmp_path):
    blocked = tmp_path / "blocked"
    for name in ("tensorflow", "yaml"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
    Image.fromarray(_images()[0]).save(tmp_path / "shapes.png")
    env = dict(os.environ, PYTHONPATH=str(blocked))
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "detect.py"),
         f"--tflite={tflite_models['none']}", f"--output_dir={tmp_path}/drawn",
         "--min_score_threshold=0.0", str(tmp_path / "shapes.png")],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    drawn = tmp_path / "drawn" / "shapes_detections.png"
    assert f"shapes.png: 100 detections with score >= 0 -> {drawn}" in proc.stdout
    with Image.open(drawn) as picture:
        assert picture.size == (256, 256)


# ---------------------------------------------------------------- bad input


def test_no_checkpoint_is_a_clear_error(trained_config, tmp_path):
    missing = str(tmp_path / "run" / "ckpt-9")
    with pytest.raises(ExportError, match=f"checkpoint {missing} not found"):
        export_tflite(trained_config, missing, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_architecture_that_does_not_convert_names_the_supported_ones(trained_run,
                                                                     trained_config, tmp_path):
    trained_config.model.architecture = "faster_rcnn"
    with pytest.raises(ExportError, match=r"`model.architecture: faster_rcnn` cannot be "
                                          r"exported to TFLite yet; supported: retinanet"):
        export_tflite(trained_config, os.path.join(trained_run["model_dir"], "ckpt-4"),
                      str(tmp_path / "out"))


def test_int8_without_training_records_is_a_clear_error(trained_run, trained_config, tmp_path):
    trained_config.train_input_reader.input_path = [str(tmp_path / "gone-*.tfrecord")]
    with pytest.raises(ExportError, match=r"--quantization=int8 calibrates on training "
                                          r"images, but `train_input_reader.input_path`"):
        export_tflite(trained_config, os.path.join(trained_run["model_dir"], "ckpt-4"),
                      str(tmp_path / "out"), "int8")
    assert not os.path.exists(tmp_path / "out")


def test_output_directory_with_files_needs_overwrite(trained_run, trained_config, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=f"--output_directory {out} already holds files "
                                          r"\(notes.txt\); .* or --overwrite"):
        export_tflite(trained_config, os.path.join(trained_run["model_dir"], "ckpt-4"),
                      str(out))
    assert os.listdir(out) == ["notes.txt"]
    check_output_directory(str(out), overwrite=True)  # allowed with --overwrite
    check_output_directory(str(tmp_path / "new"), overwrite=False)  # a new one is fine


@pytest.mark.slow
def test_export_script_errors_are_one_line(tmp_path):
    """No checkpoint in the directory: one `error:` line, exit 1, before TensorFlow."""
    empty = tmp_path / "run"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "export_tflite.py"),
         f"--trained_checkpoint_dir={empty}", f"--output_directory={tmp_path}/out"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: no checkpoint in {empty} (no pipeline.yaml, which the trainer "
                      "writes); train first, or give --pipeline_config_path and "
                      "--checkpoint_path"]
