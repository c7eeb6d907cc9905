"""COCO object-detection JSON -> per-image records.

The file holds `images` ({id, file_name, width, height}), `categories` ({id, name})
and `annotations` ({image_id, category_id, bbox: [x, y, width, height] in pixels from
the top-left corner, iscrowd}). Images keep the file's order and their COCO ids as
source ids; every image is kept, also one without boxes (a negative). Annotations
with `iscrowd` set are skipped with a count (a crowd region is not one object), as
are boxes of zero width or height; an annotation whose image or category id is not
in the file is an error.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any

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

__all__ = ["CROWD", "read_coco"]

CROWD = "iscrowd annotation"


def _load_json(path: str) -> Any:
    try:
        with reading_annotations("COCO annotations", path, "the JSON file"), \
                open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise ConvertError(f"COCO annotations {path}:{exc.lineno}:{exc.colno}: not valid "
                           f"JSON ({exc.msg}); fix the file") from None


def _field(path: str, where: str, entry: Any, key: str, kinds: tuple[type, ...]) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise ConvertError(f"COCO annotations {path}: {where} has no {key!r}; every entry "
                           "needs it (see the COCO format: cocodataset.org/#format-data)")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ConvertError(f"COCO annotations {path}: {where} {key!r} must be {names}, "
                           f"got {value!r}")
    return value


def _list(path: str, data: dict, key: str, required: bool) -> list:
    if key not in data:
        if required:
            raise ConvertError(f"COCO annotations {path}: no {key!r} list; is this a COCO "
                               "object-detection file (instances_*.json)?")
        return []
    if not isinstance(data[key], list):
        raise ConvertError(f"COCO annotations {path}: {key!r} must be a list")
    return data[key]


def _categories(path: str, data: dict) -> dict[int, str]:
    names: dict[int, str] = {}
    for i, cat in enumerate(_list(path, data, "categories", required=True)):
        where = f"categories[{i}]"
        cat_id = _field(path, where, cat, "id", (int,))
        name = _field(path, where, cat, "name", (str,))
        if cat_id < 1:
            raise ConvertError(f"COCO annotations {path}: {where} has id {cat_id}; category "
                               "ids start at 1 (0 is the background)")
        if cat_id in names:
            raise ConvertError(f"COCO annotations {path}: {where}: category id {cat_id} "
                               "appears twice; give each category its own id")
        if name in names.values():
            raise ConvertError(f"COCO annotations {path}: {where}: category name {name!r} "
                               "appears twice; give each category its own name")
        names[cat_id] = name
    if not names:
        raise ConvertError(f"COCO annotations {path}: 'categories' is empty; list the classes")
    return names


def read_coco(annotations_path: str, image_dir: str) -> Annotations:
    """The images and boxes of a COCO JSON file; image files are `image_dir/file_name`.

    Class ids are the COCO category ids (`Annotations.class_ids`). Raises
    ConvertError naming the file and the entry for a file that is not COCO JSON, an
    entry without its fields, duplicate ids, or an annotation whose image_id or
    category_id is not in the file, or whose box lies outside its image.
    """
    path = os.fspath(annotations_path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise ConvertError(f"COCO annotations {path}: the top level must be a JSON object "
                           "with 'images', 'annotations' and 'categories'")
    categories = _categories(path, data)

    images: dict[int, dict] = {}
    for i, image in enumerate(_list(path, data, "images", required=True)):
        where = f"images[{i}]"
        image_id = _field(path, where, image, "id", (int,))
        if image_id < 0:
            raise ConvertError(f"COCO annotations {path}: {where} has id {image_id}; image "
                               "ids must be non-negative integers")
        if image_id in images:
            raise ConvertError(f"COCO annotations {path}: {where}: image id {image_id} "
                               "appears twice; give each image its own id")
        images[image_id] = {
            "file_name": _field(path, where, image, "file_name", (str,)),
            "width": _field(path, where, image, "width", (int,)),
            "height": _field(path, where, image, "height", (int,)),
        }
        check_size(f"COCO annotations {path}: {where}", images[image_id]["width"],
                   images[image_id]["height"])

    skipped: collections.Counter = collections.Counter()
    objects: dict[int, list[ObjectRecord]] = collections.defaultdict(list)
    for i, ann in enumerate(_list(path, data, "annotations", required=False)):
        where = f"annotations[{i}]" + (f" (id {ann['id']})"
                                       if isinstance(ann, dict) and "id" in ann else "")
        image_id = _field(path, where, ann, "image_id", (int,))
        if image_id not in images:
            raise ConvertError(f"COCO annotations {path}: {where}: image_id {image_id} is "
                               "not among the file's images; fix the annotation or add the "
                               "image")
        category_id = _field(path, where, ann, "category_id", (int,))
        if category_id not in categories:
            raise ConvertError(f"COCO annotations {path}: {where}: category_id {category_id} "
                               f"is not among the file's categories ({sorted(categories)}); "
                               "fix the annotation or add the category")
        if ann.get("iscrowd"):
            skipped[CROWD] += 1
            continue
        bbox = _field(path, where, ann, "bbox", (list,))
        if len(bbox) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                     for v in bbox):
            raise ConvertError(f"COCO annotations {path}: {where}: bbox must be [x, y, width, "
                               f"height] in pixels, got {bbox!r}")
        info = images[image_id]
        box_where = f"COCO annotations {path}: {where} (image {info['file_name']})"
        x, y, w, h = (finite(box_where, f"bbox[{k}] ({name})", v)
                      for k, (name, v) in enumerate(zip(("x", "y", "width", "height"), bbox,
                                                        strict=True)))
        box = check_box(box_where, x, y, x + w, y + h, info["width"], info["height"])
        if box is None:
            skipped[EMPTY_BOX] += 1
            continue
        area = ann.get("area")
        if isinstance(area, int | float) and not isinstance(area, bool):
            area = finite(box_where, "area", area)
        objects[image_id].append(ObjectRecord(
            class_name=categories[category_id], xmin=box[0], ymin=box[1], xmax=box[2],
            ymax=box[3],
            area=area if isinstance(area, float) and area > 0 else None))

    records = [
        ImageRecord(path=os.path.join(image_dir, info["file_name"]),
                    filename=info["file_name"], source_id=image_id, width=info["width"],
                    height=info["height"], objects=tuple(objects[image_id]))
        for image_id, info in images.items()
    ]
    return Annotations(records, {name: cid for cid, name in categories.items()}, skipped)
