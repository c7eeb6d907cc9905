"""Boxes and class names drawn on images, for TensorBoard and for people.

- `draw_boxes`: boxes in pixels, each with a "name" or "name: 0.87" label.
- `draw_detections`: a detector's output (normalised boxes, scores, classes) over
  a score threshold, on a picture enlarged when small (`readable_scale`).
- `plan_labels` / `layout_labels`: where the labels go. Every label lies inside
  the picture and no two labels overlap: each takes the first free place of:
  just above its box, inside its top, just below, inside its bottom (left-aligned
  with the box, else right-aligned), then the nearest free row; the best scores
  are placed first, and a label with no free place left is not drawn. The font
  is scaled to the picture (`font_size`) and shrunk until the widest label fits.

Each box and label is drawn in its class's colour with a thin edge of the
contrasting colour (`contrast_colour`: black on light colours, white on dark
ones) on both sides, so a box stays visible on a background of its own colour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230))
MIN_FONT_SIZE = 10  # pixels; below this labels are not readable
MIN_READABLE_SIDE = 256  # detect.py's pictures: smaller images are enlarged to at least this

Rect = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)


def font_size(width: int, height: int) -> int:
    """The label font's size in pixels for a picture of this size: 1/28 of its
    shorter side, at least MIN_FONT_SIZE."""
    return max(MIN_FONT_SIZE, round(min(width, height) / 28))


def readable_scale(height: int, width: int, min_side: int = MIN_READABLE_SIDE) -> int:
    """The integer factor that enlarges a picture to at least `min_side` pixels on its
    shorter side (1 when it is that large already)."""
    return max(1, math.ceil(min_side / max(1, min(height, width))))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _label_size(font, text: str, pad: int) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    ascent, descent = font.getmetrics()
    return right - min(left, 0) + 2 * pad, max(bottom, ascent + descent) + 2 * pad


def layout_labels(boxes: np.ndarray, sizes: Sequence[tuple[int, int]], width: int,
                  height: int) -> list[Rect | None]:
    """Places one label of size (w, h) per box (pixels ymin, xmin, ymax, xmax) in a
    `width` x `height` picture, in the given order (put the most important first).
    Returns each label's rectangle, inside the picture and overlapping no other, or
    None when it is larger than the picture or no free place is left."""
    placed = np.zeros((0, 4), np.int64)
    out: list[Rect | None] = []
    for (ymin, xmin, ymax, xmax), (w, h) in zip(np.asarray(boxes, np.float64).reshape(-1, 4),
                                                 sizes, strict=True):
        if w > width or h > height:
            out.append(None)
            continue
        xs = [int(np.clip(round(v), 0, width - w)) for v in (xmin, xmax - w)]
        near = [round(ymin) - h, round(ymin), round(ymax), round(ymax) - h]
        rows = sorted(range(0, height - h + 1), key=lambda y: abs(y - near[0]))
        ys = [int(np.clip(y, 0, height - h)) for y in near] + rows
        candidates = np.array([(x, y, x + w, y + h) for y in ys for x in xs], np.int64)
        free = np.ones(len(candidates), bool)
        if len(placed):
            free = ~((candidates[:, None, 0] < placed[None, :, 2])
                     & (placed[None, :, 0] < candidates[:, None, 2])
                     & (candidates[:, None, 1] < placed[None, :, 3])
                     & (placed[None, :, 1] < candidates[:, None, 3])).any(axis=1)
        if not free.any():
            out.append(None)
            continue
        rect = candidates[int(np.argmax(free))]
        placed = np.vstack([placed, rect])
        out.append(tuple(int(v) for v in rect))
    return out


def plan_labels(texts: Sequence[str], boxes: np.ndarray, width: int, height: int,
                order: Sequence[int] | None = None) -> tuple[int, list[Rect | None]]:
    """(font size, each label's rectangle or None) for `texts` on `boxes` (pixels) in a
    `width` x `height` picture; labels are placed in `order` (default: as given).
    The font is font_size(width, height), smaller if the widest label would not fit."""
    size = font_size(width, height)
    while True:
        pad = max(1, size // 8)
        font = _font(size)
        sizes = [_label_size(font, text, pad) for text in texts]
        if size <= MIN_FONT_SIZE or all(w <= width for w, _ in sizes):
            break
        size -= 1
    order = list(range(len(texts))) if order is None else list(order)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    rects = layout_labels(boxes[order], [sizes[i] for i in order], width, height)
    out: list[Rect | None] = [None] * len(texts)
    for i, rect in zip(order, rects, strict=True):
        out[i] = rect
    return size, out


def contrast_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black for a light colour, white for a dark one: the text on a label of that
    colour, and the edge around a box of it."""
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 110 else (255, 255, 255)


def label_texts(classes: np.ndarray, names: dict[int, str],
                scores: np.ndarray | None = None) -> list[str]:
    """"name" per class id (the id itself without a name), "name: 0.87" with scores."""
    texts = [names.get(int(c), str(int(c))) for c in np.asarray(classes).reshape(-1)]
    if scores is None:
        return texts
    return [f"{t}: {float(s):.2f}" for t, s in zip(texts, np.asarray(scores).reshape(-1),
                                                    strict=True)]


def draw_boxes(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
               names: dict[int, str], scores: np.ndarray | None = None,
               scale: int = 1) -> np.ndarray:
    """Returns a uint8 RGB copy of `image` (enlarged `scale` times) with each box
    (pixels of `image`, ymin, xmin, ymax, xmax) outlined and labelled "name" or
    "name: score" (two decimals) where plan_labels puts it."""
    picture = Image.fromarray(np.asarray(image, np.uint8))
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.NEAREST)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * scale
    classes = np.asarray(classes).reshape(-1)
    texts = label_texts(classes, names, scores)
    order = (np.argsort(-np.asarray(scores, np.float64).reshape(-1), kind="stable")
             if scores is not None else None)
    size, rects = plan_labels(texts, boxes, picture.width, picture.height, order)
    draw = ImageDraw.Draw(picture)
    line = max(1, scale, size // 10)
    colours = [COLOURS[int(c) % len(COLOURS)] for c in classes]
    edge = max(1, line // 2)  # the contrasting edge on each side of a box's line
    for (ymin, xmin, ymax, xmax), colour in zip(boxes, colours, strict=True):
        draw.rectangle([xmin - edge, ymin - edge, xmax + edge, ymax + edge],
                       outline=contrast_colour(colour), width=line + 2 * edge)
        draw.rectangle([xmin, ymin, xmax, ymax], outline=colour, width=line)
    font, pad = _font(size), max(1, size // 8)
    for text, rect, colour in zip(texts, rects, colours, strict=True):
        if rect is None:
            continue
        left, top, right, bottom = rect
        draw.rectangle([left, top, right - 1, bottom - 1], fill=colour,
                       outline=contrast_colour(colour), width=edge)
        draw.text((left + pad - min(font.getbbox(text)[0], 0), top + pad), text,
                  fill=contrast_colour(colour), font=font)
    return np.asarray(picture)


def draw_detections(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                    classes: np.ndarray, names: dict[int, str], min_score: float,
                    scale: int | None = None) -> tuple[np.ndarray, int]:
    """`image` (uint8 [H, W, 3]) with each detection scoring >= `min_score` drawn:
    its box (normalised ymin, xmin, ymax, xmax) and "class: score". The picture is
    enlarged `scale` times (default readable_scale(H, W): small images grow to
    MIN_READABLE_SIDE pixels). Returns (the picture, how many were drawn)."""
    keep = np.asarray(scores).reshape(-1) >= min_score
    height, width = image.shape[:2]
    pixels = np.asarray(boxes, np.float64).reshape(-1, 4)[keep] * [height, width, height,
                                                                    width]
    scale = readable_scale(height, width) if scale is None else scale
    drawn = draw_boxes(image, pixels, np.asarray(classes).reshape(-1)[keep], names,
                       scores=np.asarray(scores).reshape(-1)[keep], scale=scale)
    return drawn, int(keep.sum())
