"""Detection pictures readable at any size: labels inside the picture, never over each
other, the font scaled to the picture, scores to two decimals; checked on the layout's
geometry and on pictures written and read back."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from train_lib.report import visualize

NAMES = {1: "square", 2: "circle", 3: "triangle"}
# Normalised boxes crowded in the top-left corner (the labels' first choices collide
# there), one at the bottom-right edge, one across the whole image.
BOXES = np.array([[0.0, 0.0, 0.3, 0.3], [0.02, 0.05, 0.35, 0.4], [0.05, 0.02, 0.25, 0.2],
                  [0.7, 0.6, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
SCORES = np.array([0.98, 0.87, 0.612, 0.55, 0.51])
CLASSES = np.array([3, 1, 2, 3, 2])


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _check_geometry(rects, width: int, height: int) -> None:
    for rect in rects:
        left, top, right, bottom = rect
        assert 0 <= left < right <= width and 0 <= top < bottom <= height, rect
    for a, b in itertools.combinations(rects, 2):
        assert not _overlap(a, b), (a, b)


@pytest.mark.parametrize("side", [64, 128, 640])
def test_layout_keeps_labels_inside_and_apart(side):
    rng = np.random.default_rng(side)
    corners = rng.uniform(0, side, size=(30, 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)[:, [0, 1, 2, 3]]
    sizes = [(int(w), int(h)) for w, h in rng.integers(8, max(9, side // 3), size=(30, 2))]
    rects = visualize.layout_labels(boxes, sizes, side, side)
    placed = [r for r in rects if r is not None]
    assert len(placed) >= 3
    _check_geometry(placed, side, side)
    for rect, (w, h) in zip(rects, sizes, strict=True):
        if rect is not None:
            assert (rect[2] - rect[0], rect[3] - rect[1]) == (w, h)


def test_layout_prefers_the_place_above_the_box_and_stays_in_the_picture():
    boxes = np.array([[40.0, 10.0, 60.0, 30.0], [0.0, 90.0, 20.0, 100.0]])
    rects = visualize.layout_labels(boxes, [(20, 8), (30, 8)], 100, 100)
    assert rects[0] == (10, 32, 30, 40)  # just above the box, left-aligned with it
    assert rects[1] == (70, 0, 100, 8)  # at the top edge: inside the box, moved left
    assert visualize.layout_labels(boxes[:1], [(101, 8)], 100, 100) == [None]  # too wide


def test_font_scales_with_the_picture():
    assert visualize.font_size(64, 64) == visualize.MIN_FONT_SIZE
    assert visualize.font_size(640, 480) > visualize.font_size(256, 256)
    assert visualize.readable_scale(64, 64) == 4 and visualize.readable_scale(640, 640) == 1


def test_label_texts_have_two_decimals():
    assert visualize.label_texts(np.array([1, 7]), NAMES, np.array([0.5, 0.987])) == [
        "square: 0.50", "7: 0.99"]


@pytest.mark.parametrize(("side", "picture_side"), [(64, 256), (640, 640)])
def test_detection_pictures_read_back(tmp_path, side, picture_side):
    """draw_detections as detect.py calls it, written as PNG and read back: every label
    is drawn where the layout put it (its class colour behind dark or light text),
    inside the picture, apart from the others."""
    image = np.full((side, side, 3), 200, np.uint8)
    drawn, count = visualize.draw_detections(image, BOXES, SCORES, CLASSES, NAMES,
                                             min_score=0.5)
    assert count == len(BOXES)
    path = tmp_path / f"detections_{side}.png"
    Image.fromarray(drawn).save(path)
    with Image.open(path) as opened:
        assert opened.size == (picture_side, picture_side)
        pixels = np.asarray(opened.convert("RGB"))

    scale = visualize.readable_scale(side, side)
    texts = visualize.label_texts(CLASSES, NAMES, SCORES)
    assert texts[2] == "circle: 0.61"
    size, rects = visualize.plan_labels(texts, BOXES * side * scale, picture_side,
                                        picture_side, order=np.argsort(-SCORES))
    assert size == visualize.font_size(picture_side, picture_side)
    assert all(rect is not None for rect in rects), rects
    _check_geometry(rects, picture_side, picture_side)
    for rect, class_id in zip(rects, CLASSES, strict=True):
        left, top, right, bottom = rect
        colour = np.array(visualize.COLOURS[class_id % len(visualize.COLOURS)])
        label = pixels[top:bottom, left:right].reshape(-1, 3).astype(int)
        background = np.all(label == colour, axis=1).mean()
        ink = np.array(visualize.contrast_colour(tuple(colour)))
        text = (np.linalg.norm(label - ink, axis=1) < 80).mean()  # anti-aliased glyphs
        assert background > 0.4 and text > 0.03, (rect, background, text)


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("class_id", range(len(visualize.COLOURS)))
def test_boxes_and_labels_show_on_a_background_of_their_colour(class_id, scale):
    """A box and its label drawn in the class colour on a picture of that very colour
    are still seen: across the box's top edge, and around the label, there are pixels
    of the contrasting colour on both sides of the box's line."""
    colour = visualize.COLOURS[class_id]
    image = np.full((96, 96, 3), colour, np.uint8)
    box = np.array([[40.0, 30.0, 80.0, 70.0]])  # ymin, xmin, ymax, xmax in pixels
    pixels = visualize.draw_boxes(image, box, np.array([class_id]), NAMES, scale=scale)
    edge = np.array(visualize.contrast_colour(colour))
    top, centre = 40 * scale, 50 * scale
    column = pixels[top - 4 * scale: top + 5 * scale, centre].astype(int)
    rows = np.flatnonzero(np.all(column == edge, axis=1)) + top - 4 * scale
    assert (rows < top).any() and (rows > top).any(), (colour, column)
    assert np.all(column[4 * scale] == colour)  # the box's own line, in its colour

    texts = visualize.label_texts(np.array([class_id]), NAMES)
    _, (rect,) = visualize.plan_labels(texts, box * scale, 96 * scale, 96 * scale)
    left, top, right, bottom = rect
    border = np.concatenate([pixels[top, left:right], pixels[bottom - 1, left:right],
                             pixels[top:bottom, left], pixels[top:bottom, right - 1]])
    assert np.all(border == edge), (colour, rect)
