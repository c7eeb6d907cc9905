"""A deterministic synthetic "shapes" detection dataset, written as OD API TFRecords.

Each image is RGB, `image_size` pixels square: a random background colour with per-pixel
noise and 1 to 4 solid shapes (square, circle, triangle) whose colours differ clearly
from the background and from each other. Later shapes may partly hide earlier ones, but
never more than `MAX_OCCLUDED_FRACTION` of any labelled shape's pixels. Boxes are the
tight boxes of the full drawn shapes, in pixel-edge coordinates normalised by the image
side (a shape covering pixel columns 3..9 has xmin = 3/S, xmax = 10/S).

Image `index` of `split` depends only on (seed, split, index, image_size), through
`np.random.default_rng([seed, split_id, index])`, so any image can be rebuilt alone and
the same arguments always give byte-identical files.
"""

from __future__ import annotations

import glob
import io
import math
import os
import shutil
import tempfile
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from train_lib.config import ConfigError
from train_lib.data.label_map import write_label_map
from train_lib.data.tf_example import make_od_example, serialize

__all__ = [
    "CLASS_NAMES",
    "MAX_OCCLUDED_FRACTION",
    "RenderedImage",
    "dataset_paths",
    "generate",
    "make_example",
    "read_examples",
    "render_image",
    "source_id",
]

CLASS_NAMES: dict[int, str] = {1: "square", 2: "circle", 3: "triangle"}
SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1}
# Source ids are numeric (COCO evaluation needs int image ids): train i -> i + 1,
# val i -> VAL_SOURCE_ID_OFFSET + i + 1.
VAL_SOURCE_ID_OFFSET = 1_000_000
MAX_OCCLUDED_FRACTION = 0.6
MIN_OBJECTS, MAX_OBJECTS = 1, 4
MIN_SIZE_FRACTION, MAX_SIZE_FRACTION = 0.15, 0.5
MIN_IMAGE_SIZE = 32
VAL_EXAMPLES_PER_SHARD = 1000
JPEG_QUALITY = 95
LABEL_MAP_NAME = "label_map.pbtxt"
SAMPLES_DIR = "samples"  # the first NUM_SAMPLES val images as JPEG files, for detect.py
NUM_SAMPLES = 4

_NOISE_STDDEV = 8.0
_MIN_BACKGROUND_DISTANCE = 120.0  # Euclidean RGB distance, object colour vs background
_MIN_OBJECT_DISTANCE = 60.0  # between object colours
_MAX_PLACEMENT_TRIES = 20
_MAX_COLOUR_TRIES = 100


class RenderedImage(NamedTuple):
    """One rendered image and the annotation the generator drew.

    image: uint8 [S, S, 3]; boxes: float32 [N, 4] normalised (ymin, xmin, ymax, xmax);
    labels: int64 [N] class ids; masks: bool [N, S, S], each shape's full drawn pixels
    (before occlusion by later shapes), in drawing order.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


def source_id(split: str, index: int) -> str:
    """The numeric `image/source_id` of image `index` of `split`, unique across splits."""
    _check_split(split)
    return str(index + 1 if split == "train" else VAL_SOURCE_ID_OFFSET + index + 1)


def _check_split(split: str) -> None:
    if split not in SPLIT_IDS:
        raise ValueError(f"split must be one of {sorted(SPLIT_IDS)}, got {split!r}")


def _shape_mask(label: int, x0: int, y0: int, size: int, orientation: int,
                image_size: int) -> np.ndarray:
    """Pixels of one shape whose bounding square covers [x0, x0+size) x [y0, y0+size)."""
    mask = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(mask)
    x1, y1 = x0 + size - 1, y0 + size - 1  # Pillow's corner coordinates are inclusive
    if label == 1:
        draw.rectangle([x0, y0, x1, y1], fill=255)
    elif label == 2:
        draw.ellipse([x0, y0, x1, y1], fill=255)
    else:
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        points = [  # apex up, right, down, left
            [(x0, y1), (x1, y1), (xm, y0)],
            [(x0, y0), (x0, y1), (x1, ym)],
            [(x0, y0), (x1, y0), (xm, y1)],
            [(x1, y0), (x1, y1), (x0, ym)],
        ][orientation]
        draw.polygon(points, fill=255)
    return np.asarray(mask) > 0


def _pick_colour(rng: np.random.Generator, background: np.ndarray,
                 others: list[np.ndarray]) -> np.ndarray:
    for _ in range(_MAX_COLOUR_TRIES):
        colour = rng.integers(0, 256, size=3).astype(np.float64)
        if np.linalg.norm(colour - background) < _MIN_BACKGROUND_DISTANCE:
            continue
        if all(np.linalg.norm(colour - o) >= _MIN_OBJECT_DISTANCE for o in others):
            return colour
    # Fallback: the far corner of the RGB cube from the background (distance >= 221).
    return np.where(background >= 128, 0.0, 255.0)


def _occlusion_ok(masks: list[np.ndarray], candidate: np.ndarray) -> bool:
    """Whether every earlier shape keeps > (1 - MAX_OCCLUDED_FRACTION) of its pixels visible."""
    covered_by_later = candidate.copy()
    for mask in reversed(masks):
        area = mask.sum()
        if (mask & covered_by_later).sum() > MAX_OCCLUDED_FRACTION * area:
            return False
        covered_by_later |= mask
    return True


def render_image(seed: int, split: str, index: int, image_size: int) -> RenderedImage:
    """Draws image `index` of `split`; a pure function of its arguments.

    Returns the uint8 image before JPEG encoding and the boxes, labels and masks drawn.
    """
    _check_split(split)
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    s = image_size
    background = rng.integers(0, 256, size=3).astype(np.float64)
    noise = rng.normal(0.0, _NOISE_STDDEV, size=(s, s, 3))
    image = np.clip(np.rint(background + noise), 0, 255).astype(np.uint8)

    min_size = max(4, round(MIN_SIZE_FRACTION * s))
    max_size = round(MAX_SIZE_FRACTION * s)
    num_objects = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    labels: list[int] = []
    masks: list[np.ndarray] = []
    colours: list[np.ndarray] = []
    for _ in range(num_objects):
        for _ in range(_MAX_PLACEMENT_TRIES):
            label = int(rng.integers(1, len(CLASS_NAMES) + 1))
            size = int(rng.integers(min_size, max_size + 1))
            x0 = int(rng.integers(0, s - size + 1))
            y0 = int(rng.integers(0, s - size + 1))
            orientation = int(rng.integers(0, 4))
            mask = _shape_mask(label, x0, y0, size, orientation, s)
            if _occlusion_ok(masks, mask):
                break
        else:
            break  # no room for another visible shape: keep the ones placed so far
        colours.append(_pick_colour(rng, background, colours))
        labels.append(label)
        masks.append(mask)

    boxes = np.zeros((len(masks), 4), np.float32)
    for i, (mask, colour) in enumerate(zip(masks, colours, strict=True)):
        image[mask] = colour.astype(np.uint8)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes[i] = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.float64) / s
    mask_array = np.stack(masks) if masks else np.zeros((0, s, s), bool)
    return RenderedImage(image, boxes, np.array(labels, np.int64), mask_array)


def _encode_jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def make_example(seed: int, split: str, index: int, image_size: int) -> tf.train.Example:
    """The OD API `tf.train.Example` for image `index` of `split` (see render_image)."""
    rendered = render_image(seed, split, index, image_size)
    encoded = _encode_jpeg(rendered.image)
    sid = source_id(split, index)
    boxes = rendered.boxes
    # Box sides are whole pixels: recover them exactly rather than multiply rounded floats.
    heights = np.rint((boxes[:, 2] - boxes[:, 0]) * np.float64(image_size))
    widths = np.rint((boxes[:, 3] - boxes[:, 1]) * np.float64(image_size))
    areas = heights * widths
    return make_od_example(
        encoded=encoded, image_format="jpeg", filename=f"{split}_{index:06d}.jpg",
        source_id=sid, height=image_size, width=image_size, boxes=boxes,
        labels=rendered.labels.tolist(),
        texts=[CLASS_NAMES[int(c)] for c in rendered.labels], areas=areas)


def _num_val_shards(num_val: int) -> int:
    return max(1, math.ceil(num_val / VAL_EXAMPLES_PER_SHARD))


def _shard_name(split: str, shard: int, num_shards: int) -> str:
    return f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"


def dataset_paths(output_dir: str, num_shards: int = 4, num_val: int = 200) -> dict:
    """The paths `generate` writes for these arguments, without generating anything.

    Keys: 'train_pattern', 'val_pattern' (glob patterns), 'label_map_path',
    'samples' (the sample images: samples/val-00000.jpg, ..., the first
    NUM_SAMPLES val images, byte for byte the JPEGs of their records), and 'files'
    (every file path of the complete dataset, label map and samples included).
    """
    num_val_shards = _num_val_shards(num_val)
    files = [os.path.join(output_dir, _shard_name("train", k, num_shards))
             for k in range(num_shards)]
    files += [os.path.join(output_dir, _shard_name("val", k, num_val_shards))
              for k in range(num_val_shards)]
    files.append(os.path.join(output_dir, LABEL_MAP_NAME))
    samples = [os.path.join(output_dir, SAMPLES_DIR, _sample_name(i))
               for i in range(min(NUM_SAMPLES, num_val))]
    files += samples
    return {
        "train_pattern": os.path.join(output_dir, f"train-?????-of-{num_shards:05d}.tfrecord"),
        "val_pattern": os.path.join(output_dir, f"val-?????-of-{num_val_shards:05d}.tfrecord"),
        "label_map_path": os.path.join(output_dir, LABEL_MAP_NAME),
        "samples": samples,
        "files": files,
    }


def _sample_name(index: int) -> str:
    return f"val-{index:05d}.jpg"


def _write_samples(directory: str, count: int, seed: int, image_size: int) -> None:
    os.makedirs(os.path.join(directory, SAMPLES_DIR))
    for index in range(count):
        with open(os.path.join(directory, SAMPLES_DIR, _sample_name(index)), "wb") as f:
            f.write(_encode_jpeg(render_image(seed, "val", index, image_size).image))


def _write_split(directory: str, split: str, count: int, num_shards: int, seed: int,
                 image_size: int) -> None:
    writers = [tf.io.TFRecordWriter(os.path.join(directory, _shard_name(split, k, num_shards)))
               for k in range(num_shards)]
    try:
        for index in range(count):
            example = make_example(seed, split, index, image_size)
            writers[index % num_shards].write(serialize(example))
    finally:
        for writer in writers:
            writer.close()


def _is_dataset_file(name: str) -> bool:
    return name in (LABEL_MAP_NAME, SAMPLES_DIR) or (
        name.endswith(".tfrecord") and name.startswith(("train-", "val-"))
    )


def generate(output_dir: str, num_train: int = 2000, num_val: int = 200, image_size: int = 128,
             num_shards: int = 4, seed: int = 0) -> dict:
    """Writes the dataset to `output_dir` and returns dataset_paths(...) for it.

    Files: train-0000K-of-0000N.tfrecord (num_shards shards, image i in shard i % N),
    val-0000K-of-0000M.tfrecord (one shard per 1000 images), label_map.pbtxt and
    samples/val-0000K.jpg (the first NUM_SAMPLES val images as files).
    Everything is written to a temporary sibling directory that is renamed to
    `output_dir` only when complete. An existing `output_dir` is replaced if it is
    empty or holds only dataset files; otherwise FileExistsError. Bad arguments raise
    ConfigError (a ValueError). Local paths only.
    """
    for name, value, low in (("num_train", num_train, 1), ("num_val", num_val, 1),
                             ("num_shards", num_shards, 1),
                             ("image_size", image_size, MIN_IMAGE_SIZE)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"shapes dataset: {name} must be an integer >= {low}, got {value!r}")
    if num_shards > num_train:
        raise ConfigError(f"shapes dataset: num_shards ({num_shards}) must not exceed "
                          f"num_train ({num_train}); lower num_shards")
    if num_train > VAL_SOURCE_ID_OFFSET:
        raise ConfigError(f"shapes dataset: num_train must be <= {VAL_SOURCE_ID_OFFSET} so "
                          "train and val source ids stay distinct")

    output_dir = os.path.abspath(os.fspath(output_dir))
    if os.path.exists(output_dir):
        if not os.path.isdir(output_dir):
            raise FileExistsError(f"{output_dir} exists and is not a directory")
        foreign = [n for n in os.listdir(output_dir) if not _is_dataset_file(n)]
        if foreign:
            raise FileExistsError(
                f"{output_dir} already holds files that are not part of a shapes dataset "
                f"({', '.join(sorted(foreign)[:3])}...); choose an empty or new output_dir")
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)

    tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    try:
        _write_split(tmp_dir, "train", num_train, num_shards, seed, image_size)
        _write_split(tmp_dir, "val", num_val, _num_val_shards(num_val), seed, image_size)
        write_label_map(os.path.join(tmp_dir, LABEL_MAP_NAME), CLASS_NAMES)
        _write_samples(tmp_dir, min(NUM_SAMPLES, num_val), seed, image_size)
        os.chmod(tmp_dir, 0o755)  # mkdtemp makes it 0o700
        if os.path.exists(output_dir):
            old_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.old-",
                                       dir=parent)
            os.rename(output_dir, os.path.join(old_dir, "d"))
            os.rename(tmp_dir, output_dir)
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            os.rename(tmp_dir, output_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return dataset_paths(output_dir, num_shards, num_val)


def read_examples(pattern: str) -> list[dict]:
    """Parses every record of the files matching `pattern` (sorted by file name).

    Per example: source_id (str), height, width (int), boxes (float32 [N, 4] ymin, xmin,
    ymax, xmax), labels (int64 [N]), texts (list[str]), image (decoded uint8 [H, W, 3]).
    """
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files match {pattern}")
    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/source_id": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
        "image/object/class/text": tf.io.VarLenFeature(tf.string),
    }
    out = []
    for record in tf.data.TFRecordDataset(files):
        parsed = tf.io.parse_single_example(record, spec)

        def dense(key: str, parsed=parsed) -> np.ndarray:
            return tf.sparse.to_dense(parsed[key]).numpy()

        coords = [dense(f"image/object/bbox/{k}") for k in ("ymin", "xmin", "ymax", "xmax")]
        boxes = np.stack(coords, axis=-1).astype(np.float32).reshape(-1, 4)
        out.append({
            "source_id": parsed["image/source_id"].numpy().decode(),
            "height": int(parsed["image/height"].numpy()),
            "width": int(parsed["image/width"].numpy()),
            "boxes": boxes,
            "labels": dense("image/object/class/label").astype(np.int64),
            "texts": [t.decode() for t in dense("image/object/class/text")],
            "image": tf.io.decode_jpeg(parsed["image/encoded"], channels=3).numpy(),
        })
    return out
