"""Hand-made OD API records for data-contract tests: real encoded images, any fault."""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
from PIL import Image

GOOD_BOX = (0.2, 0.25, 0.7, 0.75)  # ymin, xmin, ymax, xmax


def encode(fmt: str = "JPEG", mode: str = "RGB", size: int = 64, seed: int = 0) -> bytes:
    """A real image file's bytes: `mode` RGB, L (grayscale) or RGBA, `fmt` JPEG or PNG."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def example(encoded: bytes | None = None, boxes=(GOOD_BOX,), labels=None, source_id: int = 1,
            height: int | None = None, width: int | None = None) -> bytes:
    """A serialized tf.train.Example with the OD API keys; `encoded` None leaves
    image/encoded out, `labels` None gives label 1 per box."""
    labels = [1] * len(boxes) if labels is None else list(labels)
    feature = {"image/source_id": _bytes(str(source_id).encode()),
               "image/format": _bytes(b"jpeg")}
    if encoded is not None:
        feature["image/encoded"] = _bytes(encoded)
    if height is not None:
        feature["image/height"] = _ints([height])
    if width is not None:
        feature["image/width"] = _ints([width])
    for i, name in enumerate(("ymin", "xmin", "ymax", "xmax")):
        feature[f"image/object/bbox/{name}"] = tf.train.Feature(
            float_list=tf.train.FloatList(value=[b[i] for b in boxes]))
    feature["image/object/class/label"] = _ints(labels)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def write(path: str, records: list[bytes]) -> str:
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def damaged_inside(encoded: bytes) -> bytes:
    """A JPEG whose start and end look right but whose data in between is garbage."""
    middle = len(encoded) // 2
    return encoded[:200] + b"\x00" * (middle - 200) + encoded[-64:]


def faulty_records() -> dict[str, bytes]:
    """One record per rule of the data contract, keyed by the rule's name."""
    jpeg = encode()
    return {
        "no_image": example(None, source_id=101),
        "not_an_image": example(b"definitely not an image", source_id=102),
        "truncated_image": example(jpeg[: len(jpeg) // 2], source_id=103),
        "count_mismatch": example(jpeg, labels=[1, 2], source_id=104),
        "size_mismatch": example(jpeg, height=480, width=64, source_id=105),
        "non_finite_box": example(jpeg, boxes=[(float("nan"), 0.1, 0.5, 0.5)], source_id=106),
        "pixel_coordinates": example(jpeg, boxes=[(12.0, 16.0, 40.0, 48.0)], source_id=107),
        "box_outside_image": example(jpeg, boxes=[(0.2, 0.2, 1.4, 0.6)], source_id=108),
        "inverted_box": example(jpeg, boxes=[(0.7, 0.2, 0.3, 0.6)], source_id=109),
        "label_outside_label_map": example(jpeg, labels=[7], source_id=110),
    }
