"""Which label id each class name gets: from a given label map, the source's own ids
(COCO categories), or numbered by name.

Classes are matched by name. With a label map given, every class the annotations use
must be in it (its ids are used; classes it has that the data lacks are fine). Without
one, COCO keeps its category ids and VOC / CSV classes are numbered 1, 2, ... in
sorted order of their names, so the same data always gets the same ids.
"""

from __future__ import annotations

from train_lib.data.converters.records import Annotations, ConvertError
from train_lib.data.label_map import load_label_map

__all__ = ["class_ids", "used_classes"]


def used_classes(annotations: Annotations) -> list[str]:
    """The class names of the kept boxes, sorted."""
    return sorted({o.class_name for image in annotations.images for o in image.objects})


def class_ids(annotations: Annotations, label_map_path: str | None) -> dict[str, int]:
    """{class name: label id} for the output (see the module docstring).

    Raises ConvertError naming every class not in the given label map, or when there
    is no label map and no box to name a class; LabelMapError for a bad label map.
    """
    used = used_classes(annotations)
    if label_map_path:
        ids = {name: i for i, name in load_label_map(label_map_path).items()}
        missing = [name for name in used if name not in ids]
        if missing:
            shown = ", ".join(repr(n) for n in missing)
            raise ConvertError(
                f"label map {label_map_path}: class{'es' * (len(missing) > 1)} {shown} of the "
                f"annotations {'are' if len(missing) > 1 else 'is'} not in it; add an item "
                "per class (item { id: N name: '...' }) or fix the annotations' class names")
        return ids
    if annotations.class_ids is not None:
        return dict(annotations.class_ids)
    if not used:
        raise ConvertError("the annotations have no boxes, so no classes to number; pass "
                           "--label_map_path with the project's label map")
    return {name: i + 1 for i, name in enumerate(used)}
