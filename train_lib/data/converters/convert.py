"""One conversion: annotations (COCO, VOC or CSV) -> sharded OD API TFRecords + label map.

`convert` reads the annotations (every error in them is found before anything is
written), gives each class its id (labels.py), reads and checks the images in
parallel (images.py), builds each image's example (data/tf_example.py) and writes
the shards whole or not at all (writer.py); it writes `label_map.pbtxt` beside
the records unless a label map was given. The same input always gives the same
files: images keep the annotations' order and image i goes to shard i % N.
"""

from __future__ import annotations

import os

import numpy as np

from train_lib.data.converters import coco, csv_format, voc
from train_lib.data.converters.images import iter_loaded
from train_lib.data.converters.labels import class_ids
from train_lib.data.converters.progress import Progress
from train_lib.data.converters.records import Annotations, ConvertError, ImageRecord
from train_lib.data.converters.summary import Summary
from train_lib.data.label_map import load_label_map, write_label_map

__all__ = ["FORMATS", "LABEL_MAP_NAME", "convert", "read_annotations"]

FORMATS = ("coco", "voc", "csv")
LABEL_MAP_NAME = "label_map.pbtxt"  # written beside the records


def read_annotations(fmt: str, annotations_path: str, image_dir: str,
                     ignore_difficult: bool = False) -> Annotations:
    """The records of `annotations_path` in format `fmt` (one of FORMATS)."""
    if fmt == "coco":
        return coco.read_coco(annotations_path, image_dir)
    if fmt == "voc":
        return voc.read_voc(annotations_path, image_dir, ignore_difficult)
    if fmt == "csv":
        return csv_format.read_csv(annotations_path, image_dir)
    raise ConvertError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _output_label_map(output_path: str, ids: dict[str, int]) -> str:
    """Where the label map is written; refuses to replace one with other classes."""
    path = os.path.join(os.path.dirname(output_path), LABEL_MAP_NAME)
    if os.path.exists(path):
        existing = {name: i for i, name in load_label_map(path).items()}
        if existing != ids:
            raise ConvertError(
                f"{path} already exists with other classes or ids than these annotations "
                f"give; to convert another split of the same data pass "
                f"--label_map_path={path}, else write to another directory")
    return path


def _example_bytes(record: ImageRecord, encoded: bytes, image_format: str,
                   ids: dict[str, int]) -> bytes:
    from train_lib.data.tf_example import make_od_example, serialize

    w, h = float(record.width), float(record.height)
    objects = record.objects
    boxes = np.array([[o.ymin / h, o.xmin / w, o.ymax / h, o.xmax / w] for o in objects],
                     np.float64).reshape(-1, 4)
    areas = np.array([o.area if o.area is not None else (o.xmax - o.xmin) * (o.ymax - o.ymin)
                      for o in objects], np.float64)
    example = make_od_example(
        encoded=encoded, image_format=image_format, filename=record.filename,
        source_id=record.source_id, height=record.height, width=record.width, boxes=boxes,
        labels=[ids[o.class_name] for o in objects], texts=[o.class_name for o in objects],
        areas=areas, difficult=[int(o.difficult) for o in objects])
    return serialize(example)


def convert(fmt: str, annotations_path: str, image_dir: str, output_path: str,
            num_shards: int = 1, label_map_path: str | None = None, strict: bool = False,
            ignore_difficult: bool = False, num_workers: int | None = None,
            progress: Progress | None = None) -> Summary:
    """Converts one split; returns what was written and left out.

    Images that are missing, not JPEG/PNG, or of another size than annotated are
    skipped with a count, or with `strict` stop the conversion. Raises ConvertError
    (or LabelMapError) before writing anything for bad annotations, a class not in
    `label_map_path`, or an existing label map beside `output_path` with other
    classes; and, removing what it began, for a bad image under `strict` or when no
    image could be read. Local paths.
    """
    if num_shards < 1:
        raise ConvertError(f"--num_shards must be at least 1, got {num_shards}")
    if output_path.endswith(("/", os.sep)) or os.path.isdir(output_path):
        raise ConvertError(f"--output_path {output_path} is a directory; name the TFRecord "
                           "file to write, e.g. data/mine/train.record")
    if not os.path.isdir(image_dir):
        raise ConvertError(f"--image_dir {image_dir} is not a directory; point it at the "
                           "folder the annotations' file names are relative to")
    annotations = read_annotations(fmt, annotations_path, image_dir, ignore_difficult)
    if not annotations.images:
        raise ConvertError(f"{annotations_path}: the annotations list no images")
    ids = class_ids(annotations, label_map_path)
    out_label_map = None if label_map_path else _output_label_map(output_path, ids)

    from train_lib.data.converters.writer import ShardedWriter, shard_pattern

    summary = Summary(skipped_annotations=annotations.skipped, class_ids=ids,
                      pattern=shard_pattern(output_path, num_shards),
                      label_map_path=out_label_map or label_map_path,
                      label_map_written=out_label_map is not None)
    progress = progress or Progress(len(annotations.images))
    with ShardedWriter(output_path, num_shards) as writer:
        for record, loaded in iter_loaded(annotations.images, num_workers):
            progress.update()
            if loaded.problem is not None:
                if strict:
                    progress.close()
                    raise ConvertError(
                        f"image {record.path} (source id {record.source_id}): "
                        f"{loaded.problem}: {loaded.detail}; fix the file or its annotation, "
                        "or leave out --strict to skip such images with a count")
                summary.skip_image(loaded.problem, record.filename)
                continue
            writer.write(_example_bytes(record, loaded.encoded, loaded.image_format, ids))
            summary.boxes.update(o.class_name for o in record.objects)
        progress.close()
        if writer.count == 0:
            found = ", ".join(f"{n} {r}" for r, n in sorted(summary.skipped_images.items()))
            raise ConvertError(
                f"no image could be used ({found}); check --image_dir {image_dir}: the "
                "annotations' file names are relative to it")
        writer.commit()
    if out_label_map:
        write_label_map(out_label_map, {i: name for name, i in ids.items()})
    summary.images = writer.count
    summary.files = writer.paths
    return summary
