r"""Runs a detection SavedModel the way the OD API's TF2 inference tutorial does.

    python scripts/odapi_client.py --saved_model_dir=exported/shapes/saved_model \
        --label_map_path=data/shapes/label_map.pbtxt data/shapes/samples/val-00000.jpg

The code below is what an OD API user already has (its tutorials
`inference_from_saved_model_tf2_colab.ipynb` and `object_detection_tutorial.ipynb`):
`tf.saved_model.load(path)`, then either the loaded object called directly on a
uint8 [1, H, W, 3] batch or its `signatures['serving_default']`; `num_detections`
says how many rows of `detection_boxes` (normalised ymin, xmin, ymax, xmax),
`detection_classes` (label-map ids, 1-based, as float32) and `detection_scores`
are detections; a category index `{id: {'id': id, 'name': name}}` (the OD API's
`label_map_util.create_category_index_from_labelmap`) names the classes. It runs
unchanged on a SavedModel of the OD API's exporter_main_v2.py and on one of this
repository's scripts/exporter_main_v2.py; it imports nothing of the OD API.

Prints one line per image, then one per detection scoring at least
--min_score_threshold (class name, score, box). --json_output=PATH also writes
what both ways of calling returned (each output's key, dtype and shape) and every
detection, for comparing two exporters (tests/test_export_parity.py).
Exit codes: 0 done, 1 error (one `error:` line).
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags, logging

from train_lib import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("saved_model_dir", None, "The exported model's saved_model directory.")
flags.DEFINE_string("label_map_path", None, "The label map (label_map.pbtxt) of its classes.")
flags.DEFINE_float("min_score_threshold", 0.5, "Print detections scoring at least this.")
flags.DEFINE_string("json_output", None, "Also write the outputs' keys, dtypes and shapes "
                    "and every detection to this JSON file.")


def category_index(label_map_path: str) -> dict[int, dict]:
    """{id: {'id': id, 'name': name}}, as label_map_util's
    create_category_index_from_labelmap returns it."""
    from train_lib.data.label_map import load_label_map

    return {i: {"id": i, "name": name} for i, name in load_label_map(label_map_path).items()}


def load_image_into_numpy_array(path: str) -> np.ndarray:
    """The image file at `path` as uint8 [height, width, 3] (RGB)."""
    import tensorflow as tf

    return tf.io.decode_image(tf.io.read_file(path), channels=3,
                              expand_animations=False).numpy()


def describe(outputs: dict) -> dict[str, dict]:
    """{key: {'dtype', 'shape'}} of a model's output dict."""
    return {key: {"dtype": value.dtype.name, "shape": value.shape.as_list()}
            for key, value in sorted(outputs.items())}


def run_inference_for_single_image(model, image: np.ndarray) -> tuple[dict, dict]:
    """(detections, what each way of calling returned) for one uint8 [H, W, 3] image.

    detections: num_detections (int) and the first num_detections rows of every
    other output, as numpy arrays; detection_classes as int64. The model is called
    both ways the OD API's tutorials call it; both must return the same."""
    import tensorflow as tf

    input_tensor = tf.convert_to_tensor(image)[tf.newaxis, ...]
    detect_fn = model.signatures["serving_default"]
    output_dict = detect_fn(input_tensor)
    direct = model(np.expand_dims(image, 0))  # the loaded object called on a numpy batch
    described = {"signature": describe(output_dict), "call": describe(direct)}
    for key, value in output_dict.items():
        np.testing.assert_allclose(direct[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{key}: the direct call differs from the signature")
    num_detections = int(output_dict.pop("num_detections")[0])
    detections = {key: value[0, :num_detections].numpy() for key, value in output_dict.items()}
    detections["num_detections"] = num_detections
    detections["detection_classes"] = detections["detection_classes"].astype(np.int64)
    return detections, described


def run(paths: list[str]) -> int:
    if not FLAGS.saved_model_dir or not FLAGS.label_map_path:
        return cli.fail("give --saved_model_dir and --label_map_path")
    if not os.path.isfile(os.path.join(FLAGS.saved_model_dir, "saved_model.pb")):
        return cli.fail(f"--saved_model_dir {FLAGS.saved_model_dir} holds no saved_model.pb")
    if not paths:
        return cli.fail("give image files as arguments")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        return cli.fail(f"image not found: {missing[0]}")
    import tensorflow as tf

    categories = category_index(FLAGS.label_map_path)
    model = tf.saved_model.load(FLAGS.saved_model_dir)
    record = {"saved_model_dir": FLAGS.saved_model_dir, "images": []}
    for path in paths:
        image = load_image_into_numpy_array(path)
        detections, record["outputs"] = run_inference_for_single_image(model, image)
        rows = []
        for box, cls, score in zip(detections["detection_boxes"],
                                   detections["detection_classes"],
                                   detections["detection_scores"], strict=True):
            name = categories.get(int(cls), {"name": f"id {int(cls)} (not in the label map)"})
            rows.append({"class": int(cls), "name": name["name"], "score": float(score),
                         "box": [round(float(v), 4) for v in box]})
        shown = [r for r in rows if r["score"] >= FLAGS.min_score_threshold]
        logging.info("%s: %d detections, %d scoring at least %.2f", path,
                     detections["num_detections"], len(shown), FLAGS.min_score_threshold)
        for r in shown:
            logging.info("  %s: %.2f at %s", r["name"], r["score"], r["box"])
        record["images"].append({"image": path, "shape": list(image.shape),
                                 "num_detections": detections["num_detections"],
                                 "detections": rows})
    if FLAGS.json_output:
        with open(FLAGS.json_output, "w") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    app.run(cli.main(run, positional=True, library_warnings=False))
