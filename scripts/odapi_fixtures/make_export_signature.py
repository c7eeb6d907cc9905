"""Writes tests/fixtures/odapi/export_signature.json: the serving signature of
SavedModels written by the real TF Object Detection API's exporter_main_v2.py
(`--input_type=image_tensor`), for tests/test_export_parity.py, which compares our
exporter's with it key by key: two SSDs and a Faster R-CNN.

Like make_odapi_fixtures.py (whose seeded weights and image it reuses), this
script imports the OD API and the tests never run it. Run it with the OD API's
Python (scripts/odapi_fixtures/README.md), from any directory:

    python scripts/odapi_fixtures/make_export_signature.py [--out tests/fixtures/odapi] \
        [--only NAME]

(`--only` exports one model of MODELS and rewrites its entry alone, keeping the
others as the file holds them.)

For each model in MODELS it builds the OD API's model from the config (its
model_builder), saves its weights (seeded random ones, the model's seeded initial
ones or a committed checkpoint: MODELS says which) as ckpt-0 where model_main_tf2.py would
(`tf.train.Checkpoint(model=...)`), runs the OD API's own exporter_main_v2.py on
them in a subprocess, loads the SavedModel and records:

- `command`: the exporter's command line (paths relative to their roots);
- `signature`: serving_default's inputs and outputs (name, dtype, static shape;
  null for a dimension the signature leaves open);
- `call`: each output's dtype and shape when called on a uint8 [1, 96, 160, 3]
  image, and the value conventions seen there (classes whole numbers in
  1..num_classes, boxes and scores in [0, 1]) and `raw_conventions` (which
  row of the raw outputs each detection is); export_checks.py computes the
  signature and both conventions, for this script and for the test alike;
- `client`: what scripts/odapi_client.py (the OD API tutorial's way of loading
  and calling a SavedModel) reported for it: each output's key, dtype and shape
  through the signature and through the loaded object's direct call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf
from export_checks import conventions, raw_conventions, signature_of
from google.protobuf import text_format
from make_odapi_fixtures import SEED, build_model, randomize
from object_detection.builders import model_builder
from object_detection.protos import pipeline_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "odapi")
IMAGE_SHAPE = (96, 160)  # not square, not a model's input size
NUM_CLASSES = 3
LABELS = ("square", "circle", "triangle")

# name -> (where its config comes from, the OD API's --config_override, the
# checkpoint: None to write the built model's seeded random weights, "initial" its
# initial weights under tf.keras.utils.set_random_seed(SEED)).
MODELS = {
    # The published config as a user downloads it, with three classes.
    "ssd_mobilenet_v2_320x320_coco17_tpu-8": dict(
        config="odapi:configs/tf2/ssd_mobilenet_v2_320x320_coco17_tpu-8.config",
        config_override=f"model {{ ssd {{ num_classes: {NUM_CLASSES} }} }}",
        checkpoint=None),
    # make_odapi_fixtures.py's small config and checkpoint (committed): the tests
    # fine-tune ours from that very checkpoint and export it.
    "fixture:ssd_mobilenet_v2_keras": dict(
        config="repo:tests/fixtures/odapi/ssd_mobilenet_v2_keras/pipeline.config",
        config_override="",
        checkpoint="repo:tests/fixtures/odapi/ssd_mobilenet_v2_keras/checkpoint"),
    # The published Faster R-CNN ResNet-50 with three classes at 96 px: the same
    # model as make_odapi_fixtures.py's faster_rcnn_resnet50_keras/pipeline.config,
    # which the tests export with ours (first_stage_max_proposals 300 proposals,
    # max_total_detections 300, one box shared across classes). Its initial weights:
    # with random ones (randomize) its full-width ResNet's features saturate the
    # second stage's softmax and boxes, and the image gets no detection at all.
    "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8": dict(
        config="odapi:configs/tf2/faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config",
        config_override=(f"model {{ faster_rcnn {{ num_classes: {NUM_CLASSES} "
                         "image_resizer { keep_aspect_ratio_resizer { "
                         "min_dimension: 96 max_dimension: 96 } } } }"),
        checkpoint="initial"),
}


def odapi_package() -> str:
    """The object_detection package's directory (research/object_detection)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(model_builder.__file__)))


def resolve(spec: str) -> str:
    root, path = spec.split(":", 1)
    return os.path.join(REPO if root == "repo" else odapi_package(), path)


def write_training_dir(config_path: str, config_override: str, directory: str,
                       randomized: bool = True) -> str:
    """ckpt-0 of the OD API's model of the config: seeded random weights, or (not
    `randomized`) the model's initial weights, seeded."""
    config = pipeline_pb2.TrainEvalPipelineConfig()
    with open(config_path) as f:
        text_format.Merge(f.read(), config)
    text_format.Merge(config_override, config)
    tf.keras.utils.set_random_seed(SEED)
    model = build_model(text_format.MessageToString(config))
    # preprocess resizes to the model's input: any image creates every variable.
    model.predict(*model.preprocess(tf.zeros([1, *IMAGE_SHAPE, 3])))
    if randomized:
        randomize(model.variables, np.random.default_rng(SEED))
    return tf.train.CheckpointManager(tf.train.Checkpoint(model=model), directory,
                                      max_to_keep=1).save(checkpoint_number=0)


def run_client(saved_model_dir: str, workdir: str) -> dict:
    """scripts/odapi_client.py on the SavedModel and a test image; its JSON output."""
    image = os.path.join(workdir, "image.png")
    rng = np.random.default_rng(SEED)
    pixels = rng.integers(0, 256, (*IMAGE_SHAPE, 3), dtype=np.uint8)
    tf.io.write_file(image, tf.io.encode_png(pixels))
    label_map = os.path.join(workdir, "label_map.pbtxt")
    with open(label_map, "w") as f:
        f.writelines(f"item {{ id: {i} name: '{name}' }}\n" for i, name in enumerate(LABELS, 1))
    output = os.path.join(workdir, "client.json")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO, *filter(None, [os.environ.get("PYTHONPATH")])]))
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "odapi_client.py"),
                    f"--saved_model_dir={saved_model_dir}", f"--label_map_path={label_map}",
                    f"--json_output={output}", image], check=True, env=env)
    with open(output) as f:
        return json.load(f)["outputs"]


def export(spec: dict, workdir: str) -> dict:
    config_path = resolve(spec["config"])
    if spec["checkpoint"] in (None, "initial"):
        checkpoint_dir = os.path.join(workdir, "train")
        write_training_dir(config_path, spec["config_override"], checkpoint_dir,
                           randomized=spec["checkpoint"] is None)
        shown_checkpoint = "TRAIN_DIR"  # where write_training_dir put ckpt-0
    else:
        checkpoint_dir = resolve(spec["checkpoint"])
        shown_checkpoint = spec["checkpoint"].split(":", 1)[1]
    output = os.path.join(workdir, "exported")
    arguments = ["--input_type=image_tensor", f"--pipeline_config_path={config_path}",
                 f"--trained_checkpoint_dir={checkpoint_dir}", f"--output_directory={output}",
                 f"--config_override={spec['config_override']}"]
    exporter = os.path.join(odapi_package(), "exporter_main_v2.py")
    subprocess.run([sys.executable, exporter, *arguments], check=True)
    shown_config = spec["config"].split(":", 1)[1]
    if spec["config"].startswith("odapi:"):
        shown_config = "object_detection/" + shown_config
    command = ("python object_detection/exporter_main_v2.py --input_type=image_tensor "
               f"--pipeline_config_path={shown_config} "
               f"--trained_checkpoint_dir={shown_checkpoint} --output_directory=OUT")
    if spec["config_override"]:
        command += f" --config_override='{spec['config_override']}'"
    saved_model_dir = os.path.join(output, "saved_model")
    saved_model = tf.saved_model.load(saved_model_dir)
    image = tf.zeros([1, *IMAGE_SHAPE, 3], tf.uint8) + 128
    outputs = {k: v.numpy() for k, v in saved_model.signatures["serving_default"](
        input_tensor=image).items()}
    return {
        "config": spec["config"],
        "config_override": spec["config_override"],
        "command": command,
        "signature": signature_of(saved_model),
        "call": {"input_shape": [1, *IMAGE_SHAPE, 3],
                 "outputs": {k: {"dtype": v.dtype.name, "shape": list(v.shape)}
                             for k, v in sorted(outputs.items())},
                 "conventions": conventions(outputs, NUM_CLASSES),
                 "raw_conventions": raw_conventions(outputs)},
        "client": run_client(saved_model_dir, workdir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=FIXTURES)
    parser.add_argument("--only", choices=sorted(MODELS),
                        help="export this model alone; the file's other entries stay")
    args = parser.parse_args()
    tf.keras.utils.set_random_seed(SEED)
    path = os.path.join(args.out, "export_signature.json")
    record = {"made_by": "scripts/odapi_fixtures/make_export_signature.py",
              "odapi_commit": _odapi_commit(), "num_classes": NUM_CLASSES, "models": {}}
    if args.only:
        with open(path) as f:
            kept = json.load(f)["models"]
        record["models"] = {name: kept[name] for name in MODELS if name in kept}
    for name, spec in MODELS.items():
        if args.only and name != args.only:
            continue
        with tempfile.TemporaryDirectory() as workdir:
            record["models"][name] = export(spec, workdir)
        print(f"{name}: " + ", ".join(
            f"{k} {v['dtype']}{v['shape']}"
            for k, v in record["models"][name]["signature"]["outputs"].items()))
    record["models"] = {name: record["models"][name] for name in MODELS
                        if name in record["models"]}
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(f"wrote {path}")


def _odapi_commit() -> str:
    """The upstream commit of the OD API source (its UPSTREAM_COMMIT file), if known."""
    path = os.path.join(os.path.dirname(os.path.dirname(odapi_package())),
                        "UPSTREAM_COMMIT")
    if os.path.isfile(path):
        with open(path) as f:
            return f.read().strip()
    return "unknown"


if __name__ == "__main__":
    main()
