"""Property-based tests (hypothesis) of every reader of user input: any input gives a
result or one of our UserErrors, never another exception.

Readers fuzzed: the protobuf text-format reader and label maps, YAML loading with
the strict coercion and validation, `--params_override`, the COCO / VOC / CSV
annotation readers (arbitrary bytes, and structured files with wrong types, NaN,
infinity and huge numbers), and the data contract's record checks (arbitrary bytes
and random OD API examples). What a reader returns is checked too: boxes finite and
inside their image, a label map's ids in range.

The example budget is a hypothesis settings profile chosen by HYPOTHESIS_PROFILE:
`ci` (the default: few examples, derandomized, so the suite is the same every run)
or `large` (thousands, random: run it by hand, e.g.
`HYPOTHESIS_PROFILE=large .venv/bin/python -m pytest -p no:xdist tests/test_fuzz.py`).
No deadline: a slow example on a busy machine is not a failure.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from train_lib import textproto
from train_lib.config import PipelineConfig, config_from_dict, parse_yaml
from train_lib.config.coercion import fields_of, schema_paths
from train_lib.config.overrides import parse_params_override
from train_lib.data.converters.coco import read_coco
from train_lib.data.converters.csv_format import read_csv
from train_lib.data.converters.records import Annotations
from train_lib.data.converters.voc import read_voc
from train_lib.data.label_map import MAX_ID, load_label_map
from train_lib.errors import UserError

_COMMON = {"deadline": None, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much]}
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("large", max_examples=2000, **_COMMON)
FUZZ = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# The record checks run TensorFlow eagerly (a few ms an example): a quarter of the budget.
FUZZ_TF = settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 4))


def result_or_user_error(call, *args):
    """call(*args), or None when it raises one of our UserErrors; any other exception
    propagates and fails the test."""
    try:
        return call(*args)
    except UserError:
        return None


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as path:
        yield path


def write_bytes(folder: str, name: str, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# ---------------------------------------------------------------- value strategies

NUMBER_TEXTS = st.sampled_from([
    "0", "1", "-1", "12", "64", "0.5", "-0.0", "1e3", "1e999", "-1e999", "nan", "NaN", "inf",
    "-inf", "Infinity", "0x1F", "1" + "0" * 30, "9" * 5000, "1.5f", "", " ", "abc", "1,5"])
NUMBERS = st.one_of(
    st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, -1, 0.5, 10**20]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                           max_leaves=12)


# ---------------------------------------------------------------- protobuf text, label maps

TEXTPROTO_TOKENS = st.one_of(
    st.sampled_from(["{", "}", "<", ">", "[", "]", ":", ",", ";", "item", "id", "name",
                     "display_name", "model", "ssd", "num_classes", "train_config", "true",
                     "FREQUENT", "#comment\n", "\n", "'a'", '"b"', "'\\x'", "'\\377'",
                     "'\\u00e9'", "'\\U0010FFFF'", "'\\U00110000'", "'\\q'", "'\\'", '"',
                     "-", "+inf", "-nan", "1.0f", "0x", "08", "1e", ".5"]),
    NUMBER_TEXTS, st.text(max_size=4))
TEXTPROTO_TEXTS = st.one_of(st.text(), st.lists(TEXTPROTO_TOKENS, max_size=30).map(" ".join))


def _scalars(node: textproto.Node):
    for child in node.children:
        if child.kind in textproto.SCALAR_KINDS:
            yield child
        yield from _scalars(child)


@FUZZ
@given(TEXTPROTO_TEXTS)
def test_textproto_parses_or_names_the_problem(text):
    root = result_or_user_error(textproto.parse, text, "fuzz.pbtxt")
    if root is not None:
        for node in _scalars(root):
            value = textproto.scalar_value(node)
            assert not isinstance(value, float) or math.isfinite(value)


LABEL_MAP_TEXTS = st.one_of(TEXTPROTO_TEXTS, st.lists(
    st.tuples(st.one_of(NUMBER_TEXTS, st.sampled_from(["1", "2", "2147483647", "2147483648"])),
              st.sampled_from(["'cat'", "'dog'", "''", "cat", "'\\n'", "1"])),
    max_size=4).map(lambda items: "\n".join(f"item {{ id: {i} name: {n} }}" for i, n in items)))


@FUZZ
@given(st.one_of(LABEL_MAP_TEXTS.map(lambda t: t.encode("utf-8", "surrogatepass")),
                 st.binary(max_size=64)))
def test_label_map_loads_or_names_the_problem(workdir, data):
    names = result_or_user_error(load_label_map, write_bytes(workdir, "label_map.pbtxt", data))
    if names is not None:
        assert names and all(1 <= i <= MAX_ID for i in names)
        assert all(isinstance(n, str) and n for n in names.values())
        assert len(set(names.values())) == len(names)


# ---------------------------------------------------------------- YAML, coercion, overrides


def _leaf_types(cls=PipelineConfig, prefix="") -> dict[str, object]:
    out = {}
    for name, ftype in fields_of(cls).items():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(ftype, type) and hasattr(ftype, "__dataclass_fields__"):
            out.update(_leaf_types(ftype, path))
        else:
            out[path] = ftype
    return out


LEAVES = _leaf_types()
PATHS = sorted(schema_paths(PipelineConfig))


def _value_for(ftype) -> st.SearchStrategy:
    """Mostly values of the field's type (edge values included), sometimes anything."""
    right = {bool: st.booleans(), int: st.one_of(st.integers(-5, 5000), NUMBERS),
             float: st.one_of(st.floats(-2.0, 2.0), NUMBERS), str: st.text(max_size=10)}
    if ftype in right:
        return st.one_of(right[ftype], right[ftype], JSON_VALUES)
    return st.one_of(st.lists(st.one_of(NUMBERS, st.text(max_size=6)), max_size=5), JSON_VALUES)


@st.composite
def config_data(draw) -> dict:
    """A nested mapping of known (and sometimes unknown) keys with drawn values."""
    data: dict = {}
    for path in draw(st.lists(st.sampled_from(sorted(LEAVES) + PATHS + ["model.nope"]),
                              max_size=8, unique=True)):
        value = draw(_value_for(LEAVES.get(path)))
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
    return data


@FUZZ
@given(config_data())
def test_config_from_data_loads_or_names_the_problem(data):
    config = result_or_user_error(config_from_dict, data, "fuzz.yaml")
    assert config is None or isinstance(config, PipelineConfig)


YAML_TOKENS = st.one_of(
    st.sampled_from(["model:", "train_config:", "  batch_size:", "  num_steps:", "\n", "  ",
                     "- ", "[", "]", "{", "}", ",", ":", "&a", "*a", "!!python/object:os.system",
                     "!!binary", "<<:", "---", "...", "'", '"', "#", "\t", "2001-13-01",
                     "2024-01-01", "~", "null", "yes", "on", ".nan", ".inf", "-.inf", "1e999",
                     "0o17", "0x1F", "1_000", "? ", "|", ">"]),
    NUMBER_TEXTS, st.text(max_size=5))
YAML_TEXTS = st.one_of(st.text(), st.lists(YAML_TOKENS, max_size=25).map(" ".join))


@FUZZ
@given(YAML_TEXTS)
def test_yaml_loads_or_names_the_problem(text):
    parsed = result_or_user_error(parse_yaml, text, "fuzz.yaml")
    if parsed is not None:
        data, lines = parsed
        assert all(isinstance(line, int) and line >= 1 for line in lines.values())
        result_or_user_error(config_from_dict, data, "fuzz.yaml")


OVERRIDE_VALUES = st.one_of(NUMBER_TEXTS, st.text(alphabet="[]{},'\"=:.-_ aZ09\\", max_size=10),
                            st.sampled_from(["[64,64]", "{a: 1}", "true", "x*.tfrecord", ""]))
OVERRIDE_TEXTS = st.one_of(
    st.text(),
    st.lists(st.tuples(st.sampled_from(PATHS + ["a.b", "model..x", "9bad", ""]),
                       OVERRIDE_VALUES), max_size=5)
    .map(lambda pairs: ",".join(f"{k}={v}" for k, v in pairs)),
    config_data().map(lambda d: json.dumps(d, default=str)))


@FUZZ
@given(OVERRIDE_TEXTS)
def test_params_override_parses_or_names_the_problem(text):
    tree = result_or_user_error(parse_params_override, text)
    if tree is not None:
        assert isinstance(tree, dict)
        result_or_user_error(config_from_dict, tree, "--params_override")


# ---------------------------------------------------------------- annotation readers


def assert_sane(annotations: Annotations) -> None:
    """What a reader returns: positive image sizes and finite boxes inside their image."""
    for image in annotations.images:
        assert 0 < image.width and 0 < image.height
        for obj in image.objects:
            values = (obj.xmin, obj.ymin, obj.xmax, obj.ymax)
            assert all(math.isfinite(v) for v in values), obj
            assert 0 <= obj.xmin < obj.xmax <= image.width, obj
            assert 0 <= obj.ymin < obj.ymax <= image.height, obj
            assert obj.area is None or (math.isfinite(obj.area) and obj.area > 0)


# Files are drawn valid, then 0-2 of their values replaced by anything (a wrong type,
# NaN, infinity, a huge number, text): most examples reach the end of the reader, so
# that what it returns is checked too, and the rest each break one thing.
SIZES = {"a.jpg": (64, 48), "b.png": (32, 32)}
COORD = st.one_of(st.floats(-1.5, 70, allow_nan=False), st.floats(0, 30, allow_nan=False),
                  st.sampled_from([0, 1, 32, 48, 64]))
ODD_NUMBERS = st.one_of(NUMBERS, st.sampled_from([float("nan"), float("inf"), -float("inf"),
                                                  10**400, -1, 0]))
ODD_TEXTS = st.one_of(NUMBER_TEXTS, st.text(max_size=6))


@st.composite
def box(draw, width: int, height: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) in pixels: mostly inside the image and ordered, one time
    in five any coordinates (outside, inverted, overhanging by a rounding)."""
    if draw(st.integers(0, 4)) == 0:
        return tuple(draw(st.lists(COORD, min_size=4, max_size=4)))
    xs = sorted(draw(st.lists(st.floats(0, width), min_size=2, max_size=2)))
    ys = sorted(draw(st.lists(st.floats(0, height), min_size=2, max_size=2)))
    return xs[0], ys[0], xs[1], ys[1]


def _places(node):
    """Every (container, key) of a JSON-like tree, the containers included."""
    items = (node.items() if isinstance(node, dict)
             else enumerate(node) if isinstance(node, list) else ())
    for key, value in items:
        yield node, key
        yield from _places(value)


def mutate(draw, tree):
    """Replaces 0-2 values of `tree` in place by odd numbers or any JSON value."""
    for _ in range(draw(st.integers(0, 2))):
        places = list(_places(tree))
        if places:
            container, key = draw(st.sampled_from(places))
            container[key] = draw(st.one_of(ODD_NUMBERS, JSON_VALUES))


@st.composite
def coco_json(draw) -> bytes:
    files = draw(st.lists(st.sampled_from(sorted(SIZES)), min_size=1, max_size=3))
    images = [{"id": i, "file_name": name, "width": SIZES[name][0], "height": SIZES[name][1]}
              for i, name in enumerate(files)]
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    annotations = []
    for k in range(draw(st.integers(0, 4))):
        image_id = draw(st.integers(0, len(files) - 1))
        x0, y0, x1, y1 = draw(box(*SIZES[files[image_id]]))
        annotations.append({"id": k, "image_id": image_id, "category_id": draw(st.integers(1, 2)),
                            "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "iscrowd": draw(st.sampled_from([0, 0, 0, 1])), "area": draw(COORD)})
    data = {"images": images, "categories": categories, "annotations": annotations}
    mutate(draw, data)
    try:
        return json.dumps(data).encode()
    except ValueError:  # an integer of more digits than Python writes as text
        assume(False)


@FUZZ
@given(st.one_of(coco_json(), st.binary(max_size=200)))
def test_coco_reader_reads_or_names_the_problem(workdir, data):
    annotations = result_or_user_error(read_coco, write_bytes(workdir, "coco.json", data),
                                       workdir)
    if annotations is not None:
        assert_sane(annotations)


def _odd(draw, text: str) -> str:
    """`text`, or one time in twenty an odd number or any short text."""
    return draw(ODD_TEXTS) if draw(st.integers(0, 19)) == 0 else text


@st.composite
def voc_xml(draw) -> bytes:
    name = draw(st.sampled_from(sorted(SIZES)))
    width, height = SIZES[name]

    def tag(tag_name: str, text: str) -> str:
        if draw(st.integers(0, 19)) == 0:
            return ""  # the tag left out now and then
        return f"<{tag_name}>{escape(_odd(draw, text))}</{tag_name}>"

    objects = "".join(
        "<object>" + tag("name", draw(st.sampled_from(["cat", "dog"])))
        + tag("difficult", draw(st.sampled_from(["0", "1"])))
        + "<bndbox>" + "".join(tag(c, repr(v)) for c, v in
                               zip(("xmin", "ymin", "xmax", "ymax"), draw(box(width, height)),
                                   strict=True))
        + "</bndbox></object>" for _ in range(draw(st.integers(0, 3))))
    text = ("<annotation>" + tag("filename", name) + "<size>" + tag("width", str(width))
            + tag("height", str(height)) + "</size>" + objects + "</annotation>")
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(st.one_of(voc_xml(), st.binary(max_size=200)))
def test_voc_reader_reads_or_names_the_problem(workdir, data):
    folder = os.path.join(workdir, "voc")
    os.makedirs(folder, exist_ok=True)
    write_bytes(folder, "a.xml", data)
    annotations = result_or_user_error(read_voc, folder, workdir)
    if annotations is not None:
        assert_sane(annotations)


@st.composite
def csv_text(draw) -> bytes:
    header = draw(st.permutations(["filename", "width", "height", "class", "xmin", "ymin",
                                   "xmax", "ymax"]))
    if draw(st.integers(0, 9)) == 0:
        header = header[: draw(st.integers(0, len(header)))]  # a column missing
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(sorted(SIZES)))
        row = {"filename": name, "width": str(SIZES[name][0]), "height": str(SIZES[name][1]),
               "class": draw(st.sampled_from(["cat", "dog", "", "a,b", 'q"t'])),
               **{c: repr(v) for c, v in zip(("xmin", "ymin", "xmax", "ymax"),
                                             draw(box(*SIZES[name])), strict=True)}}
        rows.append({key: _odd(draw, value) for key, value in row.items() if key in header})
    out = io.StringIO()
    writer = csv.DictWriter(out, header)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


@FUZZ
@given(st.one_of(csv_text(), st.binary(max_size=200)))
def test_csv_reader_reads_or_names_the_problem(workdir, data):
    annotations = result_or_user_error(read_csv, write_bytes(workdir, "labels.csv", data),
                                       workdir)
    if annotations is not None:
        assert_sane(annotations)


# ---------------------------------------------------------------- the record checks (TF)


@pytest.fixture(scope="module")
def png_bytes() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


@st.composite
def od_example(draw, png: bytes) -> bytes:
    """A tf.train.Example of the OD API keys: mostly a real PNG and n boxes of
    coordinates in [0, 1]; each key sometimes left out, of another kind, of another
    length, or holding NaN, infinity, pixel coordinates or bad labels."""
    import tensorflow as tf

    n = draw(st.integers(0, 3))
    floats = st.one_of(st.floats(0, 1, width=32),
                       st.floats(allow_nan=True, allow_infinity=True, width=32))
    ints = st.one_of(st.integers(0, 4), st.integers(-(2**63), 2**63 - 1))
    unit = st.floats(0, 1, width=32)
    pairs = [sorted(draw(st.lists(unit, min_size=2, max_size=2))) for _ in range(2 * n)]
    good = {"ymin": [p[0] for p in pairs[:n]], "ymax": [p[1] for p in pairs[:n]],
            "xmin": [p[0] for p in pairs[n:]], "xmax": [p[1] for p in pairs[n:]],
            "label": draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))}

    def values(element) -> list:
        size = n if draw(st.integers(0, 9)) else draw(st.integers(0, 4))
        return draw(st.lists(element, min_size=size, max_size=size))

    def feature(kind: str) -> tf.train.Feature:
        if kind in good and draw(st.integers(0, 3)):  # a valid list, three times in four
            return (tf.train.Feature(int64_list=tf.train.Int64List(value=good[kind]))
                    if kind == "label" else
                    tf.train.Feature(float_list=tf.train.FloatList(value=good[kind])))
        kind = {"label": "int"}.get(kind, "float" if kind in good else kind)
        kind = kind if draw(st.integers(0, 19)) else draw(st.sampled_from(["float", "int",
                                                                            "bytes"]))
        if kind == "float":
            return tf.train.Feature(float_list=tf.train.FloatList(value=values(floats)))
        if kind == "int":
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values(ints)))
        if kind == "height" or kind == "width":  # one value, mostly the image's
            size = draw(st.sampled_from([6 if kind == "height" else 8] * 3 + [0, 7]))
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[size]))
        if kind == "id":
            return tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[draw(st.binary(max_size=8))]))
        if kind == "image":
            image = draw(st.sampled_from([png] * 4 + [png[: len(png) // 2], b"", b"GIF8"]))
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=draw(st.lists(st.binary(max_size=20), max_size=2))))

    keys = {"image/encoded": "image", "image/source_id": "id", "image/height": "height",
            "image/width": "width", "image/object/class/label": "label",
            "image/object/is_crowd": "int",
            **{f"image/object/bbox/{c}": c for c in ("ymin", "xmin", "ymax", "xmax")}}
    present = [key for key in sorted(keys) if draw(st.integers(0, 9))]
    example = tf.train.Example(features=tf.train.Features(
        feature={key: feature(keys[key]) for key in present}))
    return example.SerializeToString()


@FUZZ_TF
@given(data=st.data())
def test_record_checks_explain_or_pass_any_record(png_bytes, data):
    """explain_record: None or a reason for any bytes; a valid example's boxes are
    finite, in [0, 1] and ordered, its labels in the label map."""
    import numpy as np
    import tensorflow as tf

    from train_lib.data import example_checks

    record = data.draw(st.one_of(od_example(png_bytes), st.binary(max_size=100)))
    reason = example_checks.explain_record("fuzz.tfrecord", 0, tf.constant(record), 3, 5)
    assert reason is None or isinstance(reason, str)
    if reason is None:
        checked = example_checks.decode_and_check(tf.constant(record), 3, 5)
        boxes = checked["groundtruth_boxes"].numpy()
        assert np.isfinite(boxes).all() and (boxes >= 0).all() and (boxes <= 1).all()
        assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
        labels = checked["groundtruth_classes"].numpy()
        assert ((labels >= 1) & (labels <= 3)).all() and len(boxes) <= 5


# ---------------------------------------------------------------- what the fuzzing found


def test_yaml_control_character_is_a_config_error():
    """Found by test_yaml_loads_or_names_the_problem ('\\x08'): PyYAML's ReaderError was
    raised outside the error handling, a traceback."""
    with pytest.raises(UserError) as info:
        parse_yaml("model:\n  num_classes: 3\x08\n", "pipeline.yaml")
    assert str(info.value) == ("pipeline.yaml: YAML does not allow the character U+0008 "
                               "(line 2, column 17); remove it or save the file as plain text")


def test_a_record_that_is_not_an_example_is_explained(tmp_path):
    """Found by test_record_checks_explain_or_pass_any_record (b'\\x80'): TensorFlow's
    parse error quotes the record, and bytes that are not UTF-8 make it raise
    UnicodeDecodeError instead of an OpError: explain_record and check_data.py crashed."""
    import tensorflow as tf

    from train_lib.data import data_check, example_checks

    record = b"\x80\x81 not an example"
    reason = example_checks.explain_record("a.tfrecord", 0, tf.constant(record), 3, 5)
    assert reason.startswith("the record cannot be parsed: it is not a tf.train.Example")
    path = str(tmp_path / "a.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(record)
    report = data_check.check_files("train_input_reader", [path], 3, 5)
    assert report.records == 1 and list(report.problems) == ["undecodable"]
