"""The exported SavedModel: OD API signature, the same detections as the checkpoint's model
through the eval pipeline, a clear error without a checkpoint, and the scripts."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import REPO
from train_lib.config import load_config
from train_lib.data import inputs, shapes_dataset
from train_lib.evaluation.coco_metrics import boxes_to_original
from train_lib.evaluation.continuous import load_model_weights
from train_lib.export.run_config import RunConfigError, run_config_path
from train_lib.export.saved_model import ExportError, export_saved_model, find_checkpoint
from train_lib.families import build_model

HEIGHT, WIDTH = 50, 90  # not the model's 64 x 64, nor its aspect ratio


@pytest.fixture
def exported(saved_model_export) -> str:
    """trained_run's ckpt-4 exported (conftest, once per session); the output directory."""
    return saved_model_export


def _test_image() -> np.ndarray:
    """A shapes image stretched to HEIGHT x WIDTH, uint8."""
    rendered = shapes_dataset.render_image(0, "val", 0, 64).image
    return np.asarray(Image.fromarray(rendered).resize((WIDTH, HEIGHT), Image.BILINEAR))


def _write_record(image: np.ndarray, path: str) -> None:
    """An OD API tf.Example of `image` (PNG, so decoding gives back the same pixels)."""
    example = shapes_dataset.make_example(0, "val", 0, 64)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    feature = example.features.feature
    feature["image/encoded"].bytes_list.value[:] = [buffer.getvalue()]
    feature["image/format"].bytes_list.value[:] = [b"png"]
    feature["image/height"].int64_list.value[:] = [HEIGHT]
    feature["image/width"].int64_list.value[:] = [WIDTH]
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(example.SerializeToString())


_RUN_SAVED_MODEL = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    saved_model, image_path, out_path = sys.argv[1:]
    detect = tf.saved_model.load(saved_model).signatures["serving_default"]
    inputs = detect.structured_input_signature[1]
    outputs = detect(input_tensor=tf.constant(np.load(image_path)[np.newaxis]))
    np.savez(out_path, **{k: v.numpy() for k, v in outputs.items()})
    print(json.dumps({
        "inputs": {k: [v.shape.as_list(), v.dtype.name] for k, v in inputs.items()},
        "outputs": {k: [v.shape.as_list(), v.dtype.name] for k, v in outputs.items()},
        "modules": sorted(m for m in sys.modules if m.startswith(("train_lib", "official"))),
    }))
""")


def test_saved_model_gives_the_checkpoint_models_detections(trained_run, trained_config,
                                                            exported, tmp_path):
    image = _test_image()
    np.save(tmp_path / "image.npy", image)
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_SAVED_MODEL, os.path.join(exported, "saved_model"),
         str(tmp_path / "image.npy"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    signature = json.loads(proc.stdout.strip().splitlines()[-1])
    assert signature["inputs"] == {"input_tensor": [[1, None, None, 3], "uint8"]}
    anchors = 9 * (8 * 8 + 4 * 4 + 2 * 2)  # 64 px, levels 3-5, 3 scales x 3 aspect ratios
    assert signature["outputs"] == {
        "detection_boxes": [[1, 100, 4], "float32"], "detection_scores": [[1, 100], "float32"],
        "detection_classes": [[1, 100], "float32"], "num_detections": [[1], "float32"],
        "detection_anchor_indices": [[1, 100], "float32"],
        "detection_multiclass_scores": [[1, 100, 4], "float32"],
        "raw_detection_boxes": [[1, anchors, 4], "float32"],
        "raw_detection_scores": [[1, anchors, 4], "float32"]}
    assert signature["modules"] == []  # it runs on TensorFlow alone
    got = np.load(tmp_path / "out.npz")

    # The reference: the checkpoint's model on the same image through the eval pipeline.
    record = str(tmp_path / "image.tfrecord")
    _write_record(image, record)
    images, info = next(iter(inputs.build_eval_dataset(trained_config, [record])))
    assert info["original_size"].numpy().tolist() == [[HEIGHT, WIDTH]]
    model = build_model(trained_config.model)
    load_model_weights(model, os.path.join(trained_run["model_dir"], "ckpt-4"), trained_config)
    valid = tf.cast(info["original_size"], tf.float32) * info["image_scale"]
    ref = model(images, image_shape=valid, training=False)
    n = int(ref["num_detections"][0])
    assert n > 0 and int(got["num_detections"][0]) == n
    expected_boxes = boxes_to_original(ref["detection_boxes"][0, :n].numpy(),
                                       info["image_scale"][0].numpy(), [HEIGHT, WIDTH])
    expected_boxes /= [HEIGHT, WIDTH, HEIGHT, WIDTH]
    np.testing.assert_allclose(got["detection_boxes"][0, :n], expected_boxes, atol=1e-4)
    np.testing.assert_allclose(got["detection_scores"][0, :n],
                               ref["detection_scores"][0, :n].numpy(), atol=1e-5)
    np.testing.assert_array_equal(got["detection_classes"][0, :n],
                                  ref["detection_classes"][0, :n].numpy().astype(np.float32))
    assert set(np.unique(got["detection_classes"][0, :n])) <= {1.0, 2.0, 3.0}
    assert got["detection_boxes"].min() >= 0.0 and got["detection_boxes"].max() <= 1.0


def test_export_writes_the_od_api_layout(trained_run, exported):
    assert load_config(os.path.join(exported, "pipeline.yaml")) == trained_run["config"]
    with open(os.path.join(exported, "label_map.pbtxt")) as f, \
            open(trained_run["config"].eval_input_reader.label_map_path) as g:
        assert f.read() == g.read()
    assert tf.train.latest_checkpoint(os.path.join(exported, "checkpoint")) == os.path.join(
        exported, "checkpoint", "ckpt-0")
    assert not [n for n in os.listdir(exported) if n.startswith(".")]


def test_export_without_a_checkpoint_is_a_clear_error(trained_config, tmp_path):
    empty = str(tmp_path / "run")
    os.makedirs(empty)
    with pytest.raises(ExportError, match=f"no checkpoint in {empty}"):
        find_checkpoint(trained_checkpoint_dir=empty)
    missing = str(tmp_path / "run" / "ckpt-9")
    with pytest.raises(ExportError, match=f"checkpoint {missing} not found"):
        export_saved_model(trained_config, missing, str(tmp_path / "out"))
    with pytest.raises(ExportError, match="'encoded_image_string_tensor' is not supported"):
        export_saved_model(trained_config, missing, str(tmp_path / "out"),
                           input_type="encoded_image_string_tensor")
    assert not os.path.exists(tmp_path / "out")


def test_the_exporters_config_is_the_runs_pipeline_yaml_or_the_flag(tmp_path):
    """Without --pipeline_config_path, the config is the run's pipeline.yaml; a directory
    without one is told apart by whether it holds checkpoints (an OD API model_dir)."""
    run = tmp_path / "run"
    with pytest.raises(RunConfigError, match="^give --trained_checkpoint_dir "):
        run_config_path(None, None)
    with pytest.raises(RunConfigError) as err:
        run_config_path(str(run), None)
    assert str(err.value) == (f"--trained_checkpoint_dir {run} is not a directory: give the "
                              "training model_dir")
    run.mkdir()
    with pytest.raises(RunConfigError) as err:
        run_config_path(str(run), None)
    assert str(err.value).startswith(f"no checkpoint in {run} (no pipeline.yaml")
    (run / "ckpt-5.index").write_bytes(b"")
    with pytest.raises(RunConfigError) as err:
        run_config_path(str(run), None)
    assert str(err.value).startswith(f"--trained_checkpoint_dir {run} holds checkpoints but "
                                     "no pipeline.yaml")
    assert str(err.value).endswith("give --pipeline_config_path")
    (tmp_path / "pipeline.config").write_text("model {}\n")  # a zoo tarball's layout
    with pytest.raises(RunConfigError) as err:
        run_config_path(str(run), None)
    assert str(err.value).endswith("give --pipeline_config_path (for instance "
                                   f"--pipeline_config_path={tmp_path}/pipeline.config)")
    assert run_config_path(str(run), "other.config") == "other.config"
    (run / "pipeline.yaml").write_text("model: {}\n")
    assert run_config_path(str(run), None) == str(run / "pipeline.yaml")


def test_exporter_on_a_directory_without_a_run_names_it(tmp_path):
    """exporter_main_v2.py without --pipeline_config_path on a directory that is no
    training run: one error line about that directory, not about a flag not given."""
    empty = tmp_path / "run"
    empty.mkdir()
    proc = _script("exporter_main_v2.py", "--input_type=image_tensor",
                   f"--trained_checkpoint_dir={empty}", f"--output_directory={tmp_path}/o")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: no checkpoint in {empty} (no pipeline.yaml, which the trainer "
                      "writes); train first, or give --pipeline_config_path and "
                      "--checkpoint_path"]
    assert not (tmp_path / "o").exists()


def _script(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs scripts/<name> as a user would (TF_CPP_MIN_LOG_LEVEL unset)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def test_exporter_refuses_other_input_types(tmp_path):
    proc = _script("exporter_main_v2.py", "--input_type=tf_example",
                   f"--trained_checkpoint_dir={tmp_path}", f"--output_directory={tmp_path}/o")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: --input_type='tf_example' is not supported; only image_tensor "
                      "(uint8 images [1, H, W, 3]) is"]


@pytest.mark.slow
def test_exporter_and_detect_scripts(trained_run, tiny_dataset, tmp_path):
    """The scripts work and are quiet: our lines only (no "Skipping full serialization"
    warnings, no TensorFlow start-up errors); --verbosity=1 shows the libraries' lines."""
    out = tmp_path / "exported"
    proc = _script("exporter_main_v2.py", "--input_type=image_tensor",
                   f"--trained_checkpoint_dir={trained_run['model_dir']}",
                   f"--output_directory={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr[-3000:]
    assert f"ckpt-4 with the config {trained_run['model_dir']}/pipeline.yaml" in lines[0]
    assert lines[1].endswith(f"wrote {out}/saved_model")
    assert (out / "saved_model" / "saved_model.pb").is_file()
    assert (out / "label_map.pbtxt").is_file() and (out / "pipeline.yaml").is_file()

    Image.fromarray(_test_image()).save(tmp_path / "shapes.jpg")
    proc = _script("detect.py", f"--saved_model_dir={out}/saved_model",
                   f"--output_dir={tmp_path}/drawn", "--min_score_threshold=0.0",
                   str(tmp_path / "shapes.jpg"),
                   f"--input_tfrecord={tiny_dataset['val_pattern']}", "--num_images=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""
    drawn = tmp_path / "drawn" / "shapes_detections.png"
    assert f"shapes.jpg: 100 detections with score >= 0 -> {drawn}" in proc.stdout
    with Image.open(drawn) as picture:
        assert picture.size == (WIDTH * 6, HEIGHT * 6)  # small images are drawn enlarged
        pixels = np.asarray(picture.convert("RGB"))
    assert not np.array_equal(pixels[::6, ::6], _test_image())  # boxes were drawn
    for source_id in ("1000001", "1000002"):  # the first two val records, by source id
        assert (f"{tiny_dataset['val_pattern']}[{source_id}]: 100 detections with score >= 0 "
                f"-> {tmp_path}/drawn/{source_id}_detections.png") in proc.stdout
        with Image.open(tmp_path / "drawn" / f"{source_id}_detections.png") as picture:
            assert picture.size == (256, 256)

    verbose = _script("detect.py", f"--saved_model_dir={out}/saved_model",
                      f"--output_dir={tmp_path}/drawn", str(tmp_path / "shapes.jpg"),
                      "--verbosity=1")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    files = set(re.findall(r"^[IWEF]\d{4} \S+\s+\d+ (\S+):\d+\]", verbose.stderr, re.M))
    assert files - {"detect.py"}, verbose.stderr  # library lines are back


@pytest.mark.slow
def test_detect_script_errors(tmp_path):
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(b"\x07" * 64)
    (tmp_path / "model" / "saved_model").mkdir(parents=True)
    (tmp_path / "model" / "saved_model" / "saved_model.pb").write_bytes(b"")
    for flag, expected in ((f"--input_tfrecord={tmp_path}/none-*.tfrecord", "matches no file"),
                           (f"--input_tfrecord={bad}", "cannot read --input_tfrecord")):
        proc = _script("detect.py", f"--saved_model_dir={tmp_path}/model/saved_model",
                       f"--output_dir={tmp_path}/drawn", flag)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and expected in errors[0], proc.stderr
