"""The OD API `tf.train.Example` of one image: the one builder every dataset writer uses.

Keys (those of the OD API's dataset tools and Model Garden's `TfExampleDecoder`):
image/encoded (the file's bytes, not re-encoded), image/format (`jpeg` or `png`),
image/filename, image/source_id (a decimal integer as text: COCO evaluation needs
numeric image ids), image/key/sha256, image/height, image/width,
image/object/bbox/{ymin,xmin,ymax,xmax} (normalised to [0, 1] by the image's height
and width), image/object/class/label (label map ids) and /text (their names),
image/object/area (pixels), image/object/is_crowd and image/object/difficult (0/1).

`serialize` gives the record's bytes with the feature map sorted, so the same
example always gives the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

__all__ = ["IMAGE_FORMATS", "make_od_example", "serialize"]

IMAGE_FORMATS = ("jpeg", "png")


def _bytes(values: list[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _floats(values: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(
        value=np.asarray(values, np.float32).reshape(-1).tolist()))


def _ints(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def make_od_example(*, encoded: bytes, image_format: str, filename: str, source_id: int | str,
                    height: int, width: int, boxes: np.ndarray, labels: Sequence[int],
                    texts: Sequence[str], areas: np.ndarray | None = None,
                    is_crowd: Sequence[int] | None = None,
                    difficult: Sequence[int] | None = None) -> tf.train.Example:
    """The OD API example of one image.

    `boxes` is float [N, 4] (ymin, xmin, ymax, xmax), already normalised; `labels`,
    `texts` and the optional per-object `areas` (pixels; default: the normalised box
    area times height * width), `is_crowd` and `difficult` (default 0) have N entries.
    Stored as float32 / int64. Raises ValueError if the lengths differ, `image_format`
    is not jpeg or png, or `source_id` is not a non-negative integer.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    sid = str(source_id)
    if not sid.isdigit():
        raise ValueError(f"source_id must be a non-negative integer, got {source_id!r}")
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    num = len(boxes)
    if areas is None:
        areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
                 * np.float32(height) * np.float32(width))
    is_crowd = [0] * num if is_crowd is None else list(is_crowd)
    difficult = [0] * num if difficult is None else list(difficult)
    lengths = {len(labels), len(texts), len(np.asarray(areas).reshape(-1)), len(is_crowd),
               len(difficult)}
    if lengths != {num}:
        raise ValueError(f"per-object lists must all have {num} entries (one per box)")
    feature = {
        "image/encoded": _bytes([encoded]),
        "image/format": _bytes([image_format.encode()]),
        "image/filename": _bytes([filename.encode("utf-8")]),
        "image/source_id": _bytes([sid.encode()]),
        "image/key/sha256": _bytes([hashlib.sha256(encoded).hexdigest().encode()]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/object/bbox/ymin": _floats(boxes[:, 0]),
        "image/object/bbox/xmin": _floats(boxes[:, 1]),
        "image/object/bbox/ymax": _floats(boxes[:, 2]),
        "image/object/bbox/xmax": _floats(boxes[:, 3]),
        "image/object/class/label": _ints(labels),
        "image/object/class/text": _bytes([t.encode("utf-8") for t in texts]),
        "image/object/area": _floats(areas),
        "image/object/is_crowd": _ints(is_crowd),
        "image/object/difficult": _ints(difficult),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def serialize(example: tf.train.Example) -> bytes:
    """The record's bytes; deterministic (sorted feature map, never hash order)."""
    return example.SerializeToString(deterministic=True)
