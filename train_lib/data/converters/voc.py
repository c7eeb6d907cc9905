"""Pascal VOC XML (one file per image, as labelImg, CVAT and the VOC devkit write) ->
per-image records.

Each `*.xml` of the folder is one `<annotation>` with `<filename>`, `<size>`
(`<width>`, `<height>`) and `<object>`s (`<name>`, `<difficult>`, `<bndbox>` with
xmin, ymin, xmax, ymax in pixels). As in the OD API's converter, coordinates are
divided by the image size as written. Images are taken in the order of their XML
file names and numbered 1, 2, ... as source ids. `difficult` is kept (or, with
`ignore_difficult`, such objects are left out with a count).
"""

from __future__ import annotations

import collections
import os
import xml.etree.ElementTree as ET

from train_lib.data.converters.records import (
    EMPTY_BOX,
    Annotations,
    ConvertError,
    ImageRecord,
    ObjectRecord,
    check_box,
    check_size,
    finite,
)

__all__ = ["DIFFICULT", "read_voc"]

DIFFICULT = "difficult object (--ignore_difficult_instances)"


def _text(xml_path: str, parent: ET.Element, tag: str, where: str) -> str:
    node = parent.find(tag)
    if node is None or node.text is None or not node.text.strip():
        raise ConvertError(f"VOC annotation {xml_path}: {where} has no <{tag}>; add it")
    return node.text.strip()


def _number(xml_path: str, parent: ET.Element, tag: str, where: str) -> float:
    text = _text(xml_path, parent, tag, where)
    try:
        number = float(text)
    except ValueError:
        raise ConvertError(f"VOC annotation {xml_path}: {where} <{tag}> must be a number, "
                           f"got {text!r}") from None
    return finite(f"VOC annotation {xml_path}: {where}", f"<{tag}>", number)


def _read_one(xml_path: str, image_dir: str, source_id: int, ignore_difficult: bool,
              skipped: collections.Counter) -> ImageRecord:
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        raise ConvertError(f"VOC annotation {xml_path}:{line}:{column}: not well-formed XML; "
                           "fix the file") from None
    except OSError as exc:
        raise ConvertError(f"VOC annotation {xml_path}: cannot be read ({exc})") from None
    if root.tag != "annotation":
        raise ConvertError(f"VOC annotation {xml_path}: the root element is <{root.tag}>, "
                           "not <annotation>; is this a Pascal VOC file?")
    filename = _text(xml_path, root, "filename", "<annotation>")
    size = root.find("size")
    if size is None:
        raise ConvertError(f"VOC annotation {xml_path}: <annotation> has no <size>; add "
                           "<size><width>..</width><height>..</height></size>")
    width = int(_number(xml_path, size, "width", "<size>"))
    height = int(_number(xml_path, size, "height", "<size>"))
    check_size(f"VOC annotation {xml_path}: <size>", width, height)
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where = f"object {k + 1}"
        name = _text(xml_path, obj, "name", where)
        difficult_node = obj.find("difficult")
        difficult = (difficult_node is not None and difficult_node.text is not None
                     and difficult_node.text.strip() not in ("", "0"))
        if difficult and ignore_difficult:
            skipped[DIFFICULT] += 1
            continue
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ConvertError(f"VOC annotation {xml_path}: {where} ({name!r}) has no "
                               "<bndbox>; add xmin, ymin, xmax, ymax")
        coords = [_number(xml_path, bndbox, t, f"{where} <bndbox>")
                  for t in ("xmin", "ymin", "xmax", "ymax")]
        box = check_box(f"VOC annotation {xml_path}: {where} ({name!r})", *coords,
                        width, height)
        if box is None:
            skipped[EMPTY_BOX] += 1
            continue
        objects.append(ObjectRecord(name, *box, difficult=difficult))
    return ImageRecord(path=os.path.join(image_dir, filename), filename=filename,
                       source_id=source_id, width=width, height=height,
                       objects=tuple(objects))


def read_voc(annotations_dir: str, image_dir: str, ignore_difficult: bool = False
             ) -> Annotations:
    """The images and boxes of every `*.xml` in `annotations_dir` (not its subfolders);
    image files are `image_dir/<filename>`.

    Raises ConvertError naming the file (and line, for XML syntax) for a folder with no
    XML files, a file that is not VOC, a missing field, a non-numeric coordinate, or a
    box outside its image.
    """
    annotations_dir = os.fspath(annotations_dir)
    if not os.path.isdir(annotations_dir):
        raise ConvertError(f"VOC annotations {annotations_dir}: not a directory; point "
                           "--annotations_path at the folder of .xml files")
    names = sorted(n for n in os.listdir(annotations_dir) if n.lower().endswith(".xml"))
    if not names:
        raise ConvertError(f"VOC annotations {annotations_dir}: no .xml files in the folder")
    skipped: collections.Counter = collections.Counter()
    images = [_read_one(os.path.join(annotations_dir, n), image_dir, i + 1, ignore_difficult,
                        skipped)
              for i, n in enumerate(names)]
    seen: dict[str, str] = {}
    for name, image in zip(names, images, strict=True):
        if image.filename in seen:
            raise ConvertError(f"VOC annotations {annotations_dir}: {name} and "
                               f"{seen[image.filename]} both annotate {image.filename}; "
                               "keep one annotation file per image")
        seen[image.filename] = name
    return Annotations(images, None, skipped)
