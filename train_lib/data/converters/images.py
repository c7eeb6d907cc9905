"""Reading and checking the image files to embed, in parallel, in a fixed order.

An image is embedded as its file's bytes (JPEG or PNG, never re-encoded), after
Pillow has decoded it completely (a truncated or corrupt file is caught here, not
in the middle of training) and its size matched the annotation's. Pillow decodes
without holding Python's lock, so a thread pool uses every core.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import io
import os
from collections.abc import Iterable, Iterator

from PIL import Image

from train_lib.data.converters.records import ImageRecord

__all__ = ["MISSING_IMAGE", "NOT_AN_IMAGE", "SIZE_MISMATCH", "LoadedImage", "iter_loaded",
           "load_image"]

MISSING_IMAGE = "image file missing"
NOT_AN_IMAGE = "not a JPEG or PNG image"
SIZE_MISMATCH = "image size differs from its annotation"
_FORMATS = {"JPEG": "jpeg", "PNG": "png"}


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """The file's bytes and format ("jpeg" / "png"), or why it cannot be used:
    `problem` is one of the reasons above and `detail` says what was found."""

    encoded: bytes | None = None
    image_format: str | None = None
    problem: str | None = None
    detail: str = ""


def load_image(record: ImageRecord) -> LoadedImage:
    """Reads and decodes `record.path`; never raises for a bad file (see LoadedImage)."""
    try:
        with open(record.path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return LoadedImage(problem=MISSING_IMAGE, detail="no such file")
    except OSError as exc:
        return LoadedImage(problem=MISSING_IMAGE, detail=f"cannot be read ({exc.strerror})")
    try:
        with Image.open(io.BytesIO(data)) as image:
            found = image.format
            image.load()
            size = image.size
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a corrupt file
        return LoadedImage(problem=NOT_AN_IMAGE, detail=f"cannot be decoded ({exc})")
    if found not in _FORMATS:
        return LoadedImage(problem=NOT_AN_IMAGE, detail=f"a {found} image")
    if size != (record.width, record.height):
        return LoadedImage(problem=SIZE_MISMATCH,
                           detail=f"the file is {size[0]}x{size[1]}, the annotation says "
                                  f"{record.width}x{record.height}")
    return LoadedImage(encoded=data, image_format=_FORMATS[found])


def iter_loaded(records: Iterable[ImageRecord], num_workers: int | None = None
                ) -> Iterator[tuple[ImageRecord, LoadedImage]]:
    """(record, load_image(record)) for each record, in the records' order, loaded by
    `num_workers` threads (default: every core), at most a few per worker ahead."""
    workers = max(1, num_workers or os.cpu_count() or 1)
    ahead = 4 * workers
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: collections.deque = collections.deque()
        for record in records:
            pending.append((record, pool.submit(load_image, record)))
            if len(pending) >= ahead:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
