"""What a conversion wrote and left out, and its report for the user."""

from __future__ import annotations

import collections
import dataclasses
import os

__all__ = ["Summary", "format_summary"]

_EXAMPLES = 3  # file names shown per skip reason


@dataclasses.dataclass
class Summary:
    """Counts of one conversion.

    `boxes` counts written boxes by class name; `skipped_annotations` and
    `skipped_images` count what was left out by reason, `skipped_examples` names the
    first few images of each image reason.
    """

    images: int = 0
    boxes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skipped_annotations: collections.Counter = dataclasses.field(
        default_factory=collections.Counter)
    skipped_images: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skipped_examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    class_ids: dict[str, int] = dataclasses.field(default_factory=dict)
    files: list[str] = dataclasses.field(default_factory=list)
    pattern: str = ""
    label_map_path: str = ""
    label_map_written: bool = False

    def skip_image(self, reason: str, filename: str) -> None:
        self.skipped_images[reason] += 1
        shown = self.skipped_examples.setdefault(reason, [])
        if len(shown) < _EXAMPLES:
            shown.append(filename)


def _counts(counter: collections.Counter) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counter.items()))


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def format_summary(summary: Summary) -> list[str]:
    """The lines printed at the end of a conversion."""
    size = sum(os.path.getsize(p) for p in summary.files if os.path.exists(p))
    total = sum(summary.boxes.values())
    lines = [f"wrote {summary.images} images with {total} boxes to {summary.pattern} "
             f"({len(summary.files)} file{'s' * (len(summary.files) > 1)}, "
             f"{_size(size)})"]
    per_class = ", ".join(f"{name} (id {summary.class_ids[name]}) {summary.boxes[name]}"
                          for name in sorted(summary.boxes, key=summary.class_ids.get))
    lines.append(f"boxes per class: {per_class or 'none'}")
    lines.append("skipped annotations: "
                 + (_counts(summary.skipped_annotations) or "none"))
    if summary.skipped_images:
        parts = []
        for reason, n in sorted(summary.skipped_images.items()):
            shown = summary.skipped_examples.get(reason, [])
            more = ", ..." if n > len(shown) else ""
            parts.append(f"{n} {reason} ({', '.join(shown)}{more})")
        lines.append("skipped images: " + "; ".join(parts)
                     + " - fix them, or use --strict to stop at the first")
    else:
        lines.append("skipped images: none")
    how = "written" if summary.label_map_written else "given, checked"
    top = max(summary.class_ids.values(), default=0)
    lines.append(f"label map: {summary.label_map_path} ({how}; {len(summary.class_ids)} "
                 f"classes, largest id {top}: use model.num_classes: {top})")
    return lines
