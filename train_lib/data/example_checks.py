"""The data contract: one OD API `tf.train.Example` decoded and checked, in-graph.

`decode_and_check(record, ...)` parses the OD API keys (image/encoded,
image/source_id, image/height, image/width, image/object/bbox/{ymin,xmin,ymax,xmax},
image/object/class/label, image/object/is_crowd) and applies the rules below, in
this order; the first that fails is the example's `rule` (0 when it is valid):

- no_image, not_an_image, truncated_image: image/encoded holds a whole JPEG,
  PNG, GIF or BMP file (1, 3 or 4 channels; decoded to RGB);
- count_mismatch: the four coordinate lists and the label list have one value
  per box;
- size_mismatch: image/height and image/width, when present, are the decoded
  image's;
- non_finite_box, pixel_coordinates, box_outside_image, inverted_box: box
  coordinates are finite, normalised to [0, 1] and ordered (ymin <= ymax,
  xmin <= xmax), within `TOLERANCE`;
- label_outside_label_map: labels are ids 1..num_classes.

A valid example is tidied, not refused, where the OD API's users expect it:
coordinates within `TOLERANCE` outside [0, 1] are clipped, boxes of zero area
dropped, boxes beyond `max_boxes` dropped; each is counted. Images with no box
are valid (negative examples). An invalid example keeps no box (its image is a
1x1 placeholder when it is not a decodable image), so the pipeline can drop it
(bad_example_policy: skip) or stop at it with `error_message` (error).

Every example also gets `counts`, int64 [len(COUNTERS)]: 1 for `examples`, 1 in
its rule's slot when invalid, and its tidied boxes. Summed over a stream they say
what the data contract did (logged by training, data_report.json).

What this cannot see in-graph: image data damaged inside a file whose start and
end look right; decoding it fails. `find_bad_record` finds such a record on the
host (after the pipeline failed), reading every record eagerly.
"""

from __future__ import annotations

import dataclasses
import re

import tensorflow as tf

# Coordinates this far outside [0, 1], or this much inverted, are rounding: tidied.
TOLERANCE = 0.01
# Coordinates reaching this are taken for pixel coordinates (the classic mistake).
PIXEL_HINT = 2.0
# The last bytes searched for an image's end marker (some writers pad after it).
_TAIL_BYTES = 256


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str  # the key in counts, logs and reports
    problem: str  # what is wrong, as a message says it
    fix: str  # what to do


RULES = (
    Rule("ok", "", ""),
    Rule("no_image", "has no image/encoded bytes",
         "write the encoded JPEG or PNG file into image/encoded"),
    Rule("not_an_image", "image/encoded is not a JPEG, PNG, GIF or BMP image",
         "write the image file's bytes (not its pixels or its path) into image/encoded"),
    Rule("truncated_image", "image/encoded is cut short (the image's end marker is missing)",
         "write the whole image file into image/encoded again"),
    Rule("count_mismatch", "the box and label lists differ in length",
         "write one value per box in each of image/object/bbox/ymin, xmin, ymax, xmax "
         "and image/object/class/label"),
    Rule("size_mismatch", "image/height or image/width disagrees with the decoded image",
         "correct image/height and image/width (or leave them out)"),
    Rule("non_finite_box", "a box coordinate is NaN or infinite", "fix or remove that box"),
    Rule("pixel_coordinates", "box coordinates go beyond 1: they look like pixel coordinates",
         "divide ymin and ymax by the image height and xmin and xmax by its width"),
    Rule("box_outside_image", "a box coordinate is outside [0, 1]",
         "box coordinates are fractions of the image size: clip them to [0, 1]"),
    Rule("inverted_box", "a box has ymin > ymax or xmin > xmax",
         "write each box as ymin <= ymax and xmin <= xmax"),
    Rule("label_outside_label_map", "a label id is outside the label map",
         "fix the labels, or model.num_classes and the label map"),
)
RULE_CODES = {rule.name: code for code, rule in enumerate(RULES)}
TIDY_COUNTERS = ("boxes_clipped", "zero_area_boxes_dropped", "boxes_over_max_dropped")
COUNTERS = ("examples", *(rule.name for rule in RULES[1:]), *TIDY_COUNTERS)
COUNTER_INDEX = {name: i for i, name in enumerate(COUNTERS)}
RULE_NAMES = tuple(rule.name for rule in RULES[1:])

_COORDS = ("ymin", "xmin", "ymax", "xmax")
_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
    **{f"image/object/bbox/{c}": tf.io.VarLenFeature(tf.float32) for c in _COORDS},
}


def describe_counts(counts: dict[str, int], max_boxes: int) -> str:
    """One line for the log, e.g. "2 examples skipped (inverted_box 1, not_an_image
    1); 5 boxes clipped into [0, 1]", or "" when the data needed nothing."""
    skipped = {name: counts[name] for name in RULE_NAMES if counts.get(name)}
    parts = []
    if skipped:
        total = sum(skipped.values())
        parts.append(f"{total} example{'s' * (total != 1)} skipped ("
                     + ", ".join(f"{name} {n}" for name, n in skipped.items()) + ")")
    wording = {"boxes_clipped": "boxes clipped into [0, 1]",
               "zero_area_boxes_dropped": "zero-area boxes dropped",
               "boxes_over_max_dropped": f"boxes beyond max_number_of_boxes ({max_boxes}) "
                                         "dropped"}
    parts += [f"{counts[name]} {wording[name]}" for name in TIDY_COUNTERS if counts.get(name)]
    return "; ".join(parts)


def _image_format(encoded: tf.Tensor) -> tf.Tensor:
    """0 unknown, 1 JPEG, 2 PNG, 3 GIF, 4 BMP, from the file's first bytes."""
    def starts(magic: bytes) -> tf.Tensor:
        return tf.equal(tf.strings.substr(encoded, 0, len(magic)), magic)
    return tf.where(starts(b"\xff\xd8\xff"), 1, tf.where(starts(b"\x89PNG"), 2, tf.where(
        starts(b"GIF8"), 3, tf.where(starts(b"BM"), 4, 0))))


def _has_end_marker(encoded: tf.Tensor, image_format: tf.Tensor) -> tf.Tensor:
    """Whether a JPEG's FF D9 or a PNG's IEND chunk is in the file's last bytes
    (a cut-short file lacks it); GIF and BMP are not checked."""
    length = tf.strings.length(encoded)
    tail = tf.io.decode_raw(tf.strings.substr(encoded, tf.maximum(length - _TAIL_BYTES, 0),
                                              _TAIL_BYTES), tf.uint8)
    tail = tf.cast(tail, tf.int32)
    pairs = tail[:-1] * 256 + tail[1:]  # each two consecutive bytes
    jpeg_end = tf.reduce_any(pairs == 0xFFD9)
    png_end = tf.reduce_any((pairs[:-2] == 0x4945) & (pairs[2:] == 0x4E44))  # "IEND"
    return tf.where(image_format == 1, jpeg_end, tf.where(image_format == 2, png_end, True))


def _first_failure(conditions: list[tuple[str, tf.Tensor]]) -> tf.Tensor:
    """The code of the first rule whose condition (a bool scalar: it failed) holds."""
    rule = tf.constant(0)
    for name, failed in reversed(conditions):
        rule = tf.where(failed, RULE_CODES[name], rule)
    return rule


def decode_and_check(record: tf.Tensor, num_classes: int, max_boxes: int) -> dict:
    """One serialized OD API example, decoded and checked (see the module docstring).

    Returns a dict: `image` uint8 [H, W, 3], `groundtruth_boxes` float32 [N, 4]
    (normalised ymin, xmin, ymax, xmax, tidied), `groundtruth_classes` int64 [N],
    `groundtruth_is_crowd` bool [N], `source_id` string, `rule` int32 (0: valid),
    `counts` int64 [len(COUNTERS)], and `facts` (what the rules saw, for
    `error_message`). Few branches: this runs for every record read.
    """
    parsed = tf.io.parse_single_example(record, _FEATURES)
    encoded = parsed["image/encoded"]
    coords = [tf.sparse.to_dense(parsed[f"image/object/bbox/{c}"]) for c in _COORDS]
    labels = tf.sparse.to_dense(parsed["image/object/class/label"])
    crowd = tf.sparse.to_dense(parsed["image/object/is_crowd"])

    image_format = _image_format(encoded)
    image_ok = (image_format > 0) & _has_end_marker(encoded, image_format)
    image = tf.cond(
        image_ok,
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False),
        lambda: tf.zeros([1, 1, 3], tf.uint8))
    image.set_shape([None, None, 3])
    shape = tf.cast(tf.shape(image)[:2], tf.int64)
    height, width = parsed["image/height"], parsed["image/width"]
    size_wrong = image_ok & (((height > 0) & (height != shape[0]))
                             | ((width > 0) & (width != shape[1])))

    sizes = tf.stack([tf.size(c) for c in coords] + [tf.size(labels)])
    counts_differ = tf.reduce_any(sizes != sizes[0])
    num = tf.reduce_min(sizes)
    boxes = tf.stack([c[:num] for c in coords], axis=1)
    labels = labels[:num]
    finite = tf.math.is_finite(boxes)
    safe = tf.where(finite, boxes, 0.0)
    flat = tf.concat([tf.reshape(safe, [-1]), [0.0]], 0)
    largest, smallest = tf.reduce_max(flat), tf.reduce_min(flat)
    inverted = tf.reduce_any((safe[:, 0] - safe[:, 2] > TOLERANCE)
                             | (safe[:, 1] - safe[:, 3] > TOLERANCE))
    rule = _first_failure([
        ("no_image", tf.strings.length(encoded) == 0),
        ("not_an_image", image_format == 0),
        ("truncated_image", ~image_ok),
        ("count_mismatch", counts_differ),
        ("size_mismatch", size_wrong),
        ("non_finite_box", ~tf.reduce_all(finite)),
        ("pixel_coordinates", largest >= PIXEL_HINT),
        ("box_outside_image", (largest > 1.0 + TOLERANCE) | (smallest < -TOLERANCE)),
        ("inverted_box", inverted),
        ("label_outside_label_map", tf.reduce_any((labels < 1) | (labels > num_classes))),
    ])
    valid = tf.equal(rule, 0)

    # Tidy a valid example: clip, drop zero-area boxes, keep at most max_boxes. An
    # invalid one keeps no box (it is dropped or stops the pipeline).
    clipped = tf.clip_by_value(safe, 0.0, 1.0)
    tidy = tf.cast(valid, tf.int64)
    area_ok = valid & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    keep = tf.where(area_ok)[:, 0]
    num_clipped = tidy * tf.reduce_sum(tf.cast(tf.reduce_any(clipped != safe, axis=1),
                                               tf.int64))
    num_zero_area = tidy * (tf.size(area_ok, tf.int64) - tf.size(keep, tf.int64))
    num_over = tf.maximum(tf.size(keep, tf.int64) - max_boxes, 0)
    keep = keep[:max_boxes]
    crowd = tf.pad(crowd, [[0, tf.maximum(num - tf.size(crowd), 0)]])[:num]
    one_hot = tf.one_hot(rule, len(RULES), dtype=tf.int64)[1:]
    return {
        "image": image,
        "groundtruth_boxes": tf.gather(clipped, keep),
        "groundtruth_classes": tf.gather(labels, keep),
        "groundtruth_is_crowd": tf.gather(crowd, keep) > 0,
        "source_id": parsed["image/source_id"],
        "rule": rule,
        "counts": tf.concat([[1], one_hot, tf.stack([num_clipped, num_zero_area, num_over])],
                            0),
        "facts": {"sizes": sizes, "height": height, "width": width, "shape": shape,
                  "largest": largest, "smallest": smallest, "labels": labels},
    }


def _detail(rule, sizes, height, width, shape, largest, smallest, labels) -> tf.Tensor:
    """What the failed rule saw, e.g. "largest coordinate 245"."""
    def s(value):
        return tf.strings.as_string(value, shortest=value.dtype.is_floating)

    lists = tf.strings.reduce_join(
        [tf.strings.join([s(sizes[i]), " ", name]) for i, name in
         enumerate(("ymin", "xmin", "ymax", "xmax", "labels"))], separator=", ")
    details = {
        "count_mismatch": lists,
        "size_mismatch": tf.strings.join(["image/height x image/width is ", s(height), "x",
                                          s(width), ", the image is ", s(shape[0]), "x",
                                          s(shape[1])]),
        "pixel_coordinates": tf.strings.join(["largest coordinate ", s(largest)]),
        "box_outside_image": tf.strings.join(["coordinates from ", s(smallest), " to ",
                                              s(largest)]),
        "label_outside_label_map": tf.strings.join(
            ["labels ", tf.strings.reduce_join(s(labels[:20]), separator=" ")]),
    }
    out = tf.constant("")
    for name, text in details.items():
        out = tf.where(tf.equal(rule, RULE_CODES[name]), text, out)
    return out


def error_message(data: dict, filename: tf.Tensor, record_index: tf.Tensor,
                  num_classes: int) -> tf.Tensor:
    """The message for an invalid example: file, record, source id, rule, what to do.
    (Empty for a valid one.)"""
    rule = data["rule"]
    problems = tf.constant([r.problem for r in RULES])
    fixes = tf.constant([r.fix for r in RULES])
    detail = _detail(rule, **data["facts"])
    label_range = f" (ids 1..{num_classes})"
    return tf.strings.join([
        filename, " record ", tf.strings.as_string(record_index),
        " (image/source_id '", data["source_id"], "'): ", tf.gather(problems, rule),
        tf.where(tf.equal(rule, RULE_CODES["label_outside_label_map"]), label_range, ""),
        tf.where(tf.strings.length(detail) > 0, tf.strings.join([" (", detail, ")"]), ""),
        "; ", tf.gather(fixes, rule), " (rule ", tf.gather(tf.constant(
            [r.name for r in RULES]), rule), ")"])


def explain_record(path: str, index: int, record: tf.Tensor, num_classes: int,
                   max_boxes: int) -> str | None:
    """Why record `index` of `path` fails (its rule's message after the source id,
    or why it cannot be parsed or decoded), or None when it passes. Eager."""
    try:
        data = decode_and_check(record, num_classes, max_boxes)
    except tf.errors.OpError as err:
        return (f"the record cannot be parsed or its image decoded ({first_line(err)}); "
                "write it again or remove it (rule undecodable)")
    except UnicodeDecodeError:  # TensorFlow's message quoted the record's non-UTF-8 bytes
        return ("the record cannot be parsed: it is not a tf.train.Example; write it again "
                "or remove it (rule undecodable)")
    if int(data["rule"]) == 0:
        return None
    message = error_message(data, tf.constant(path), tf.constant(index, tf.int64), num_classes)
    return message.numpy().decode(errors="replace").split("): ", 1)[-1]


def find_bad_record(files: list[str], num_classes: int, max_boxes: int
                    ) -> tuple[str, int, str, str] | None:
    """(file, record index, source id, reason) of the first record of `files` that
    cannot be read, parsed or decoded, or that breaks a rule; None when all pass.
    Eager and slow: for explaining a pipeline failure after the fact."""
    for path in files:
        records = iter(tf.data.TFRecordDataset(path))
        index = 0
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except tf.errors.OpError as err:
                return path, index, "", f"the record cannot be read ({first_line(err)})"
            reason = explain_record(path, index, record, num_classes, max_boxes)
            if reason is not None:
                return path, index, source_id_of(record), reason
            index += 1
    return None


def source_id_of(record: tf.Tensor) -> str:
    """The image/source_id of a serialized example ("" if it has none or does not parse)."""
    try:
        example = tf.train.Example.FromString(record.numpy())
        values = example.features.feature["image/source_id"].bytes_list.value
        return values[0].decode(errors="replace") if values else ""
    except Exception:  # a record that does not even parse has no id to show
        return ""


def first_line(err: tf.errors.OpError) -> str:
    """The gist of a TensorFlow error: its last line without the graph context."""
    lines = [ln.strip() for ln in err.message.splitlines() if ln.strip()]
    text = lines[-1] if lines else type(err).__name__
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text.split("}}", 1)[-1].strip())
    return text.rstrip(".")[:200]
