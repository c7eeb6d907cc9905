"""Boxes and class names drawn on images, for TensorBoard and for people."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230))


def draw_boxes(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
               names: dict[int, str], scores: np.ndarray | None = None,
               scale: int = 1) -> np.ndarray:
    """Returns a uint8 RGB copy of `image` (enlarged `scale` times) with each box
    (pixels, ymin, xmin, ymax, xmax) outlined and labelled "name" or "name: score"."""
    picture = Image.fromarray(np.asarray(image, np.uint8))
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    for i, (ymin, xmin, ymax, xmax) in enumerate(np.asarray(boxes, np.float64) * scale):
        class_id = int(classes[i])
        colour = COLOURS[class_id % len(COLOURS)]
        draw.rectangle([xmin, ymin, xmax, ymax], outline=colour, width=max(1, scale))
        text = names.get(class_id, str(class_id))
        if scores is not None:
            text = f"{text}: {float(scores[i]):.2f}"
        left, top, right, bottom = draw.textbbox((xmin, ymin), text)
        y = max(ymin - (bottom - top) - 2, 0)
        draw.rectangle([xmin, y, xmin + (right - left) + 2, y + (bottom - top) + 2], fill=colour)
        draw.text((xmin + 1, y), text, fill=(0, 0, 0))
    return np.asarray(picture)
