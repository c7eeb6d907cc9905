"""The CSV that labelling tools export -> per-image records.

One row per box, with a header naming at least the columns
`filename,width,height,class,xmin,ymin,xmax,ymax` (any order; other columns are
ignored); coordinates in pixels from the top-left corner. A row whose class and
coordinates are all empty is an image without boxes. Rows of one image are grouped
by filename (its width and height must agree); images are ordered by filename and
numbered 1, 2, ... as source ids.
"""

from __future__ import annotations

import collections
import csv
import os

from train_lib.data.converters.records import (
    EMPTY_BOX,
    Annotations,
    ConvertError,
    ImageRecord,
    ObjectRecord,
    check_box,
    check_size,
    finite,
    reading_annotations,
)

__all__ = ["COLUMNS", "read_csv"]

COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
_COORDS = ("xmin", "ymin", "xmax", "ymax")


def _number(path: str, line: int, row: dict, column: str) -> float:
    text = (row.get(column) or "").strip()
    try:
        number = float(text)
    except ValueError:
        raise ConvertError(f"CSV annotations {path}:{line}: column {column!r} must be a "
                           f"number, got {text!r}; fix the row") from None
    return finite(f"CSV annotations {path}:{line}", f"column {column!r}", number)


def _open_rows(path: str) -> tuple[list[str], list[tuple[int, dict]]]:
    try:
        with reading_annotations("CSV annotations", path, "the .csv file"), \
                open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise ConvertError(f"CSV annotations {path}: not valid CSV ({exc})") from None
    return header, rows


def read_csv(csv_path: str, image_dir: str) -> Annotations:
    """The images and boxes of a labelling-tool CSV; image files are `image_dir/filename`.

    Raises ConvertError naming the file (and line) for a missing column, a value that
    is not a number, an image whose rows disagree on its size, or a box outside its
    image.
    """
    path = os.fspath(csv_path)
    header, rows = _open_rows(path)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        found = ",".join(header) if header else "nothing (the file is empty)"
        raise ConvertError(f"CSV annotations {path}: missing column{'s' * (len(missing) > 1)} "
                           f"{', '.join(missing)}; the header must name "
                           f"{','.join(COLUMNS)} (found: {found})")
    sizes: dict[str, tuple[int, int, int]] = {}  # filename -> (width, height, line)
    objects: dict[str, list[ObjectRecord]] = collections.defaultdict(list)
    skipped: collections.Counter = collections.Counter()
    for line, row in rows:
        filename = (row.get("filename") or "").strip()
        if not filename:
            raise ConvertError(f"CSV annotations {path}:{line}: empty filename; fix the row")
        width = int(_number(path, line, row, "width"))
        height = int(_number(path, line, row, "height"))
        check_size(f"CSV annotations {path}:{line} ({filename})", width, height)
        if filename in sizes and sizes[filename][:2] != (width, height):
            w0, h0, line0 = sizes[filename]
            raise ConvertError(f"CSV annotations {path}:{line}: {filename} is {width}x{height} "
                               f"here but {w0}x{h0} on line {line0}; make the rows agree")
        sizes.setdefault(filename, (width, height, line))
        name = (row.get("class") or "").strip()
        if not name and not any((row.get(c) or "").strip() for c in _COORDS):
            continue  # an image without boxes
        if not name:
            raise ConvertError(f"CSV annotations {path}:{line}: empty class; fix the row")
        coords = [_number(path, line, row, c) for c in _COORDS]
        box = check_box(f"CSV annotations {path}:{line} ({filename}, {name!r})", *coords,
                        width, height)
        if box is None:
            skipped[EMPTY_BOX] += 1
            continue
        objects[filename].append(ObjectRecord(name, *box))
    if not sizes:
        raise ConvertError(f"CSV annotations {path}: no rows below the header")
    images = [
        ImageRecord(path=os.path.join(image_dir, filename), filename=filename,
                    source_id=i + 1, width=sizes[filename][0], height=sizes[filename][1],
                    objects=tuple(objects[filename]))
        for i, filename in enumerate(sorted(sizes))
    ]
    return Annotations(images, None, skipped)
