r"""Runs an exported detector on images and draws what it finds.

    python scripts/detect.py --saved_model_dir=exported/shapes/saved_model \
        --output_dir=detections images/a.jpg images/b.png
    python scripts/detect.py --saved_model_dir=... --image_pattern='images/*.jpg' ...
    python scripts/detect.py --saved_model_dir=... --output_dir=detections \
        --input_tfrecord='data/shapes/val-*.tfrecord' --num_images=4
    python scripts/detect.py --tflite=exported/shapes_tflite/model.tflite \
        --output_dir=detections images/a.jpg

With --tflite (a model.tflite of scripts/export_tflite.py) the model runs on
LiteRT's interpreter (train_lib/export/tflite_runtime.py), as on a phone: image
files need only ai-edge-litert, numpy, pillow and absl-py, no TensorFlow (only
--input_tfrecord reads records with TensorFlow); class names come from its
model.json.

Images come from the arguments, --image_pattern, and the first --num_images
records of --input_tfrecord (OD API tf.Examples; named by image/source_id). The
shapes dataset generator also writes a few val images as files, in
data/shapes/samples/. For each image writes <output_dir>/<name>_detections.png
with a box and "class: score" for every detection scoring at least
--min_score_threshold (labels inside the picture, never over each other; an image
smaller than 256 px is drawn enlarged), and prints one line per image. The label
map defaults to the exporter's label_map.pbtxt beside the saved_model directory.
Exit codes: 0 done, 1 error (one `error:` line).
Logs: this repository's lines only (and any library's errors); --verbosity=1
(-v 1) adds the warnings, INFO and debug lines of TensorFlow and tf_keras.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable, Iterator

import numpy as np
from absl import app, flags, logging

from train_lib import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("saved_model_dir", None,
                    "The exported SavedModel (exporter_main_v2.py's <output_directory>/"
                    "saved_model).")
flags.DEFINE_string("tflite", None,
                    "Instead of --saved_model_dir: a model.tflite of export_tflite.py, run "
                    "with LiteRT's interpreter.")
flags.DEFINE_integer("num_threads", None, "With --tflite: the interpreter's threads "
                     "(default: LiteRT's).", lower_bound=1)
flags.DEFINE_string("label_map_path", None,
                    "label_map.pbtxt for class names (default: label_map.pbtxt beside, or "
                    "inside, --saved_model_dir; with --tflite, the names in its model.json).")
flags.DEFINE_float("min_score_threshold", 0.5, "Draw detections scoring at least this.")
flags.DEFINE_string("output_dir", None, "Where <name>_detections.png files go.")
flags.DEFINE_string("image_pattern", None, "A glob of images, in addition to the arguments.")
flags.DEFINE_string("input_tfrecord", None,
                    "TFRecords of OD API tf.Examples (a file or a glob, e.g. "
                    "'data/shapes/val-*.tfrecord'): detect on the images of their first "
                    "--num_images records too, named by image/source_id.")
flags.DEFINE_integer("num_images", 4, "With --input_tfrecord: how many records to use.",
                     lower_bound=1)

def default_label_map_path(saved_model_dir: str) -> str | None:
    """label_map.pbtxt beside the saved_model directory (as the exporter writes it), else
    inside it; None if neither exists."""
    saved_model_dir = os.path.normpath(saved_model_dir)
    for path in (os.path.join(os.path.dirname(saved_model_dir), "label_map.pbtxt"),
                 os.path.join(saved_model_dir, "label_map.pbtxt")):
        if os.path.isfile(path):
            return path
    return None


def tfrecord_images(pattern: str, count: int) -> list[tuple[str, bytes]]:
    """(name, encoded image) of the first `count` records of the files matching
    `pattern` (sorted); the name is the record's image/source_id, else tfrecord-<i>.
    Raises UserError for no file, unreadable records or records without an image."""
    import tensorflow as tf

    from train_lib.errors import UserError

    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise UserError(f"--input_tfrecord {pattern!r} matches no file")
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value="")}
    out = []
    try:
        for i, record in enumerate(tf.data.TFRecordDataset(files).take(count)):
            parsed = tf.io.parse_single_example(record, spec)
            encoded = parsed["image/encoded"].numpy()
            if not encoded:
                raise UserError(f"record {i} of --input_tfrecord {pattern!r} has no "
                                "image/encoded: give OD API tf.Example records")
            name = parsed["image/source_id"].numpy().decode("utf-8", "replace")
            out.append((name or f"tfrecord-{i}", encoded))
    except tf.errors.OpError as err:
        raise UserError(f"cannot read --input_tfrecord {pattern!r} ({', '.join(files)}): "
                        f"{err.message.splitlines()[0]}; give TFRecord files of OD API "
                        "tf.Examples") from None
    return out


@contextlib.contextmanager
def reading_image(shown: str) -> Iterator[None]:
    """Turns Pillow's errors for the image `shown` into one UserError: a file it cannot
    read, or one whose header claims more pixels than Pillow decodes (its
    decompression-bomb limit, about 179 million pixels)."""
    from PIL import Image

    from train_lib.errors import UserError

    try:
        yield
    except Image.DecompressionBombError as err:
        raise UserError(f"image {shown} is too large to read: {err} Resize it (its header "
                        "gives its size) or pass another image") from None
    except OSError as err:
        raise UserError(f"cannot read image {shown}: {err}") from None


Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def saved_model_detector(saved_model_dir: str) -> Detector:
    """image uint8 [H, W, 3] -> (boxes normalised [n, 4], scores [n], classes [n]) of
    the SavedModel's serving_default."""
    import tensorflow as tf

    serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]

    def detect(image: np.ndarray):
        out = serve(input_tensor=tf.constant(image[np.newaxis], tf.uint8))
        num = int(out["num_detections"][0])
        return (out["detection_boxes"][0, :num].numpy(), out["detection_scores"][0, :num].numpy(),
                out["detection_classes"][0, :num].numpy())

    return detect


def tflite_detector(model_path: str, num_threads: int | None) -> tuple[Detector, dict[int, str]]:
    """The same for a .tflite on LiteRT (no TensorFlow), and the class names of its
    model.json."""
    from train_lib.export.tflite_runtime import TFLiteDetector

    detector = TFLiteDetector(model_path, num_threads=num_threads)

    def detect(image: np.ndarray):
        found = detector.detect(image)
        return found.boxes, found.scores, found.classes

    return detect, detector.class_names


def run(paths: list[str]) -> int:
    """Checks the flags, runs the model on each image, writes the drawings."""
    if FLAGS.saved_model_dir and FLAGS.tflite:
        return cli.fail("give --saved_model_dir or --tflite, not both")
    if not FLAGS.saved_model_dir and not FLAGS.tflite:
        return cli.fail("--saved_model_dir (the exported model's saved_model dir) or --tflite "
                        "(a model.tflite of scripts/export_tflite.py) is required")
    if FLAGS.saved_model_dir and not os.path.isfile(
            os.path.join(FLAGS.saved_model_dir, "saved_model.pb")):
        return cli.fail(f"--saved_model_dir {FLAGS.saved_model_dir} holds no "
                        "saved_model.pb; give <output_directory>/saved_model of "
                        "exporter_main_v2.py")
    if not FLAGS.output_dir:
        return cli.fail("--output_dir is required: where the drawings go")
    from train_lib.output_paths import check_output_directory

    check_output_directory("--output_dir", FLAGS.output_dir)  # before the model is loaded
    if FLAGS.image_pattern:
        matched = sorted(glob.glob(FLAGS.image_pattern))
        if not matched:
            return cli.fail(f"--image_pattern {FLAGS.image_pattern!r} matches no file")
        paths = paths + matched
    if not paths and not FLAGS.input_tfrecord:
        return cli.fail("no images: give image files as arguments, --image_pattern or "
                        "--input_tfrecord")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        return cli.fail(f"image not found: {missing[0]}")
    import io

    from PIL import Image

    for path in paths:  # the headers only, before the model is loaded
        with reading_image(path), Image.open(path):
            pass

    from train_lib.report.visualize import draw_detections

    images: list[tuple[str, str, object]] = [  # (shown as, output name, file or bytes)
        (path, os.path.splitext(os.path.basename(path))[0], path) for path in paths]
    if FLAGS.input_tfrecord:  # TensorFlow (if at all) before LiteRT
        images += [(f"{FLAGS.input_tfrecord}[{name}]", name, io.BytesIO(encoded))
                   for name, encoded in tfrecord_images(FLAGS.input_tfrecord,
                                                        FLAGS.num_images)]
    if FLAGS.tflite:
        detect, names = tflite_detector(FLAGS.tflite, FLAGS.num_threads)
    else:
        detect, names = saved_model_detector(FLAGS.saved_model_dir), {}
    label_map_path = FLAGS.label_map_path or (
        None if FLAGS.tflite else default_label_map_path(FLAGS.saved_model_dir))
    if label_map_path:
        from train_lib.data.label_map import load_label_map

        names = load_label_map(label_map_path)
    elif not names:
        logging.warning("no label map found beside %s: classes are shown as ids",
                        FLAGS.saved_model_dir or FLAGS.tflite)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    written: set[str] = set()
    for shown, name, source in images:
        with reading_image(shown), Image.open(source) as opened:
            image = np.asarray(opened.convert("RGB"))
        boxes, scores, classes = detect(image)
        drawn, count = draw_detections(image, boxes, scores, classes, names,
                                       FLAGS.min_score_threshold)
        target = os.path.join(FLAGS.output_dir, f"{name}_detections.png")
        for n in range(2, len(images) + 2):  # two images of the same name
            if target not in written:
                break
            target = os.path.join(FLAGS.output_dir, f"{name}_{n}_detections.png")
        written.add(target)
        Image.fromarray(drawn).save(target)
        print(f"{shown}: {count} detections with score >= {FLAGS.min_score_threshold:g} -> "
              f"{target}")
    return 0


if __name__ == "__main__":
    app.run(cli.main(run, positional=True, library_warnings=False))
