r"""Runs an exported detector on images and draws what it finds.

    python scripts/detect.py --saved_model_dir=exported/shapes/saved_model \
        --output_dir=detections images/a.jpg images/b.png
    python scripts/detect.py --saved_model_dir=... --image_pattern='images/*.jpg' ...

For each image writes <output_dir>/<name>_detections.png with a box and
"class: score" for every detection scoring at least --min_score_threshold, and
prints one line per image. The label map defaults to the exporter's
label_map.pbtxt beside the saved_model directory. Exit codes: 0 done, 1 error
(one `error:` line).
"""

from __future__ import annotations

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from train_lib import cli  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

FLAGS = flags.FLAGS

flags.DEFINE_string("saved_model_dir", None,
                    "The exported SavedModel (exporter_main_v2.py's <output_directory>/"
                    "saved_model).")
flags.DEFINE_string("label_map_path", None,
                    "label_map.pbtxt for class names (default: label_map.pbtxt beside, or "
                    "inside, --saved_model_dir).")
flags.DEFINE_float("min_score_threshold", 0.5, "Draw detections scoring at least this.")
flags.DEFINE_string("output_dir", None, "Where <name>_detections.png files go.")
flags.DEFINE_string("image_pattern", None, "A glob of images, in addition to the arguments.")

def default_label_map_path(saved_model_dir: str) -> str | None:
    """label_map.pbtxt beside the saved_model directory (as the exporter writes it), else
    inside it; None if neither exists."""
    saved_model_dir = os.path.normpath(saved_model_dir)
    for path in (os.path.join(os.path.dirname(saved_model_dir), "label_map.pbtxt"),
                 os.path.join(saved_model_dir, "label_map.pbtxt")):
        if os.path.isfile(path):
            return path
    return None


def draw_detections(image, boxes, scores, classes, names: dict[int, str],
                    min_score: float):
    """A copy of `image` (uint8 [H, W, 3]) with each detection scoring >= `min_score`
    drawn: its box (normalised ymin, xmin, ymax, xmax) and "class: score".
    Returns (the drawing as uint8 [H, W, 3], how many were drawn)."""
    import numpy as np

    from train_lib.report.visualize import draw_boxes

    keep = np.asarray(scores) >= min_score
    height, width = image.shape[:2]
    pixels = np.asarray(boxes, np.float64)[keep] * [height, width, height, width]
    drawn = draw_boxes(image, pixels, np.asarray(classes)[keep], names,
                       scores=np.asarray(scores)[keep])
    return drawn, int(keep.sum())


def run(paths: list[str]) -> int:
    """Checks the flags, runs the model on each image, writes the drawings."""
    from train_lib.data.label_map import load_label_map

    if not FLAGS.saved_model_dir:
        return cli.fail("--saved_model_dir is required: the exported model's saved_model dir")
    if not os.path.isfile(os.path.join(FLAGS.saved_model_dir, "saved_model.pb")):
        return cli.fail(f"--saved_model_dir {FLAGS.saved_model_dir} holds no "
                        "saved_model.pb; give <output_directory>/saved_model of "
                        "exporter_main_v2.py")
    if not FLAGS.output_dir:
        return cli.fail("--output_dir is required: where the drawings go")
    if FLAGS.image_pattern:
        matched = sorted(glob.glob(FLAGS.image_pattern))
        if not matched:
            return cli.fail(f"--image_pattern {FLAGS.image_pattern!r} matches no file")
        paths = paths + matched
    if not paths:
        return cli.fail("no images: give image files as arguments or --image_pattern")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        return cli.fail(f"image not found: {missing[0]}")
    label_map_path = FLAGS.label_map_path or default_label_map_path(FLAGS.saved_model_dir)
    names: dict[int, str] = {}
    if label_map_path:
        names = load_label_map(label_map_path)
    else:
        logging.warning("no label map found beside %s: classes are shown as ids",
                        FLAGS.saved_model_dir)

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    detect = tf.saved_model.load(FLAGS.saved_model_dir).signatures["serving_default"]
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    written: set[str] = set()
    for path in paths:
        try:
            with Image.open(path) as opened:
                image = np.asarray(opened.convert("RGB"))
        except OSError as err:
            return cli.fail(f"cannot read image {path}: {err}")
        out = detect(input_tensor=tf.constant(image[np.newaxis], tf.uint8))
        num = int(out["num_detections"][0])
        drawn, count = draw_detections(
            image, out["detection_boxes"][0, :num].numpy(),
            out["detection_scores"][0, :num].numpy(),
            out["detection_classes"][0, :num].numpy(), names, FLAGS.min_score_threshold)
        name = os.path.splitext(os.path.basename(path))[0]
        target = os.path.join(FLAGS.output_dir, f"{name}_detections.png")
        for n in range(2, len(paths) + 2):  # two images of the same name
            if target not in written:
                break
            target = os.path.join(FLAGS.output_dir, f"{name}_{n}_detections.png")
        written.add(target)
        Image.fromarray(drawn).save(target)
        print(f"{path}: {count} detections with score >= {FLAGS.min_score_threshold:g} -> "
              f"{target}")
    return 0


if __name__ == "__main__":
    app.run(cli.main(run, positional=True))
