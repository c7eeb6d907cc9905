"""The plain per-image records every annotation reader produces, and their checks.

A reader (coco.py, voc.py, csv_format.py) turns its format into `Annotations`: one
`ImageRecord` per image, in a fixed order, each with its `ObjectRecord`s in pixel
coordinates, the classes the source declares, and the annotations it skipped by
reason. No TensorFlow here: bad annotations fail before the slow import.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
from collections.abc import Iterator

from train_lib.errors import UserError

__all__ = ["EMPTY_BOX", "MAX_IMAGE_SIDE", "Annotations", "ConvertError", "ImageRecord",
           "ObjectRecord", "check_box", "check_size", "finite", "reading_annotations"]

EMPTY_BOX = "box with zero width or height"
# A box may overhang its image by this many pixels (rounding in labelling tools);
# it is clipped to the image. Further out it is an error.
BOX_TOLERANCE_PX = 1.0
# The largest width or height an annotation may give (what an int32 holds, as the
# OD API's image/width and image/height do).
MAX_IMAGE_SIDE = 2**31 - 1


class ConvertError(UserError, ValueError):
    """Annotations or images that cannot be converted; names the file, the record and the fix."""


@contextlib.contextmanager
def reading_annotations(what: str, path: str, expected: str) -> Iterator[None]:
    """Turns the errors of opening and decoding an annotation file into a ConvertError.

    Args:
        what: the file's kind as the message names it ("COCO annotations").
        path: the file.
        expected: what --annotations_path should point at ("the JSON file").

    Raises:
        ConvertError: for a missing file, a directory, or bytes that are not UTF-8.
    """
    try:
        yield
    except FileNotFoundError:
        raise ConvertError(f"{what} {path}: file not found; check --annotations_path") from None
    except IsADirectoryError:
        raise ConvertError(f"{what} {path}: is a directory; point --annotations_path at "
                           f"{expected}") from None
    except UnicodeDecodeError as exc:
        raise ConvertError(f"{what} {path}: not UTF-8 text (byte {exc.start}); save the file "
                           "as UTF-8") from None
    except RecursionError:
        raise ConvertError(f"{what} {path}: nested too deeply to be read; is this "
                           f"{expected}?") from None


def finite(where: str, name: str, value: float | int) -> float:
    """`value` as a float; ConvertError naming `where` and `name` if it is NaN or infinite
    (or an integer too large for a float).

    Every comparison with NaN is false, so a NaN coordinate would pass every range
    check and be clipped into a box edge: numbers are checked here, before any use.
    """
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ConvertError(f"{where}: {name} is {value!r}, not a finite number; fix the "
                           "annotation (a NaN or infinite value cannot become a box)")
    return number


@dataclasses.dataclass(frozen=True)
class ObjectRecord:
    """One labelled box in pixels: 0 <= xmin < xmax <= width, 0 <= ymin < ymax <= height."""

    class_name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    area: float | None = None  # the source's area (COCO: the segment's), else the box's


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image: its file, its numeric source id, its annotated size and its boxes."""

    path: str  # the image file to embed
    filename: str  # as the annotations name it (image/filename)
    source_id: int
    width: int
    height: int
    objects: tuple[ObjectRecord, ...]


@dataclasses.dataclass
class Annotations:
    """What a reader returns.

    `images` in a fixed order (the output's order); `class_ids` the source's own
    {name: id} where it has one (COCO's categories), else None (ids are then given by
    name); `skipped` counts annotations left out, by reason.
    """

    images: list[ImageRecord]
    class_ids: dict[str, int] | None
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def check_size(where: str, width: int, height: int) -> None:
    """Raises ConvertError naming `where` unless 0 < width, height <= MAX_IMAGE_SIDE."""
    if width <= 0 or height <= 0:
        raise ConvertError(f"{where}: image size {width}x{height} is not positive; "
                           "fix the annotation's width and height")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise ConvertError(f"{where}: image size {width}x{height} is larger than any image "
                           f"(at most {MAX_IMAGE_SIDE} pixels a side); fix the annotation's "
                           "width and height")


def check_box(where: str, xmin: float, ymin: float, xmax: float, ymax: float,
              width: int, height: int) -> tuple[float, float, float, float] | None:
    """The box clipped to its image if it overhangs by at most BOX_TOLERANCE_PX;
    None if it has no area (the caller skips it with a count, reason EMPTY_BOX).

    Raises ConvertError naming `where` (file and record) if a coordinate is NaN or
    infinite, a box lies outside its image by more than the tolerance, a max is below
    its min (swapped coordinates), or the image size is not positive.
    """
    check_size(where, width, height)
    xmin, ymin, xmax, ymax = (finite(where, name, value) for name, value in
                              (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)))
    if xmax < xmin or ymax < ymin:
        raise ConvertError(
            f"{where}: box (xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, ymax {ymax:g}) has a "
            "max below its min; check the column order (xmin, ymin, xmax, ymax)")
    tol = BOX_TOLERANCE_PX
    if xmin < -tol or ymin < -tol or xmax > width + tol or ymax > height + tol:
        raise ConvertError(
            f"{where}: box (xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, ymax {ymax:g}) lies "
            f"outside its {width}x{height} image; fix the box or the image size "
            "(coordinates are pixels, origin at the top left)")
    xmin, ymin = max(0.0, xmin), max(0.0, ymin)
    xmax, ymax = min(float(width), xmax), min(float(height), ymax)
    if xmax <= xmin or ymax <= ymin:
        return None
    return xmin, ymin, xmax, ymax

