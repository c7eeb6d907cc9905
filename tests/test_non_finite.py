"""NaN and infinity are refused at every entrance: annotations, config values, label maps.

Every comparison with NaN is false, so a NaN passes every range check: before these
checks a COCO `"bbox": [NaN, 4, 20, 20]` became a box from 0 to 1. Each case is one
UserError naming the file and the annotation, line or key. (Records are checked by
the data contract: tests/test_data_contract.py, rule non_finite_box.)
"""

from __future__ import annotations

import json

import pytest

from train_lib import config as C
from train_lib.config import ConfigError
from train_lib.config.yaml_io import parse_yaml
from train_lib.data.converters.coco import read_coco
from train_lib.data.converters.csv_format import read_csv
from train_lib.data.converters.records import ConvertError
from train_lib.data.converters.voc import read_voc
from train_lib.data.label_map import LabelMapError, load_label_map, write_label_map
from train_lib.textproto import TextProtoError, parse

# ---------------------------------------------------------------- COCO


def _coco(tmp_path, bbox_text: str, extra: str = "") -> str:
    path = tmp_path / "instances.json"
    path.write_text(
        '{"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],'
        ' "categories": [{"id": 1, "name": "cat"}],'
        f' "annotations": [{{"id": 7, "image_id": 1, "category_id": 1, "bbox": {bbox_text}'
        f'{extra}}}]}}')
    return str(path)


@pytest.mark.parametrize("bbox, shown", [
    ("[NaN, 4, 20, 20]", "bbox[0] (x) is nan"),
    ("[4, NaN, 20, 20]", "bbox[1] (y) is nan"),
    ("[4, 4, Infinity, 20]", "bbox[2] (width) is inf"),
    ("[4, 4, 20, -Infinity]", "bbox[3] (height) is -inf"),
    ("[1e400, 4, 20, 20]", "bbox[0] (x) is inf"),
    ("[4, 4, 20, 1" + "0" * 400 + "]", "bbox[3] (height) is 1000"),  # beyond a float
])
def test_coco_non_finite_bbox_is_refused(tmp_path, bbox, shown):
    path = _coco(tmp_path, bbox)
    with pytest.raises(ConvertError) as info:
        read_coco(path, str(tmp_path))
    message = str(info.value)
    assert f"COCO annotations {path}: annotations[0] (id 7)" in message
    assert shown in message and "not a finite number" in message


def test_coco_non_finite_area_is_refused(tmp_path):
    path = _coco(tmp_path, "[4, 4, 20, 20]", ', "area": NaN')
    with pytest.raises(ConvertError, match=r"annotations\[0\] \(id 7\).*area is nan"):
        read_coco(path, str(tmp_path))


def test_coco_finite_box_still_converts(tmp_path):
    records = read_coco(_coco(tmp_path, "[4, 4, 20, 20]", ', "area": 300'), str(tmp_path))
    (obj,) = records.images[0].objects
    assert (obj.xmin, obj.ymin, obj.xmax, obj.ymax, obj.area) == (4, 4, 24, 24, 300.0)


def test_coco_image_size_beyond_int32_is_refused(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10**400, "height": 48}],
        "categories": [{"id": 1, "name": "cat"}], "annotations": []}))
    with pytest.raises(ConvertError, match=r"images\[0\]: image size .* is larger than any"):
        read_coco(str(path), str(tmp_path))


# ---------------------------------------------------------------- CSV


@pytest.mark.parametrize("row, column", [
    ("a.jpg,64,48,cat,nan,4,20,20", "xmin"),
    ("a.jpg,64,48,cat,4,4,inf,20", "xmax"),
    ("a.jpg,64,48,cat,4,4,20,-Infinity", "ymax"),
    ("a.jpg,nan,48,cat,4,4,20,20", "width"),  # was a ValueError traceback (int(nan))
    ("a.jpg,64,inf,cat,4,4,20,20", "height"),  # was an OverflowError traceback
])
def test_csv_non_finite_value_is_refused(tmp_path, row, column):
    path = tmp_path / "labels.csv"
    path.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                    "b.jpg,64,48,cat,1,1,9,9\n" + row + "\n")
    with pytest.raises(ConvertError) as info:
        read_csv(str(path), str(tmp_path))
    assert str(info.value).startswith(f"CSV annotations {path}:3")
    assert f"column {column!r} is " in str(info.value)
    assert "not a finite number" in str(info.value)


# ---------------------------------------------------------------- VOC


@pytest.mark.parametrize("size, box, tag", [
    ("<width>64</width><height>48</height>", "NaN", "<xmin>"),
    ("<width>inf</width><height>48</height>", "4", "<width>"),  # was an OverflowError
    ("<width>64</width><height>nan</height>", "4", "<height>"),  # was a ValueError
])
def test_voc_non_finite_value_is_refused(tmp_path, size, box, tag):
    folder = tmp_path / "ann"
    folder.mkdir()
    xml = folder / "a.xml"
    xml.write_text(f"<annotation><filename>a.jpg</filename><size>{size}</size>"
                   f"<object><name>cat</name><bndbox><xmin>{box}</xmin><ymin>4</ymin>"
                   "<xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>")
    with pytest.raises(ConvertError) as info:
        read_voc(str(folder), str(tmp_path))
    assert str(info.value).startswith(f"VOC annotation {xml}: ")
    assert f"{tag} is " in str(info.value) and "not a finite number" in str(info.value)


# ---------------------------------------------------------------- config values


@pytest.mark.parametrize("value, shown", [
    (".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf"), ("1e999", "inf"),
    ("1" + "0" * 400, "an integer beyond a float's range"),
])
def test_yaml_non_finite_float_is_refused(tmp_path, value, shown):
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"train_config:\n  optimizer:\n    momentum: {value}\n")
    with pytest.raises(ConfigError) as info:
        C.load_config(str(path))
    assert str(info.value).startswith(
        f"{path}:3: train_config.optimizer.momentum is {shown}; must be a finite number")


def test_yaml_non_finite_in_a_list_of_numbers(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("model:\n  anchor:\n    aspect_ratios: [0.5, .nan, 2.0]\n")
    with pytest.raises(ConfigError, match=r":3: model.anchor.aspect_ratios\[1\] is nan"):
        C.load_config(str(path))


def test_params_override_non_finite_is_refused(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("{}\n")
    with pytest.raises(ConfigError) as info:
        C.load_config(str(path), "train_config.learning_rate.base=.nan")
    assert str(info.value).startswith(
        "--params_override: train_config.learning_rate.base is nan; must be a finite number")
    with pytest.raises(ConfigError, match="train_config.learning_rate.base is inf"):
        C.config_from_dict({"train_config": {"learning_rate": {"base": float("inf")}}})


def test_integer_beyond_64_bits_is_refused(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("train_config:\n  num_steps: 99999999999999999999999\n")
    with pytest.raises(ConfigError, match=r":2: `train_config.num_steps` is too large.*64 bits"):
        C.load_config(str(path))


@pytest.mark.parametrize("text, problem", [
    ("a: " + "1" * 5000, "Exceeds the limit"),  # was a ValueError traceback
    ("a:\n  b: 2001-13-01\n", "month must be in 1..12"),  # was a ValueError traceback
])
def test_yaml_values_python_cannot_build(text, problem):
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "pipeline.yaml")
    assert str(info.value).startswith("pipeline.yaml: YAML syntax error at line")
    assert problem in str(info.value)


# ---------------------------------------------------------------- protobuf text


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "Infinity", "1e999"])
def test_pipeline_config_non_finite_scalar_is_refused(tmp_path, value):
    path = tmp_path / "pipeline.config"
    line = f"  optimizer {{ momentum_optimizer {{ momentum_optimizer_value: {value} }} }}"
    path.write_text("model {\n  ssd {\n    num_classes: 3\n  }\n}\ntrain_config {\n"
                    f"{line}\n}}\n")
    with pytest.raises(TextProtoError) as info:
        C.load_config(str(path))
    assert str(info.value).startswith(f"{path}:7:{line.index(value) + 1}: ")
    assert "not a finite number" in str(info.value)


def test_textproto_finite_numbers_still_read():
    from train_lib.textproto import scalar_value

    root = parse("a: 1e10 b: -2.5f c: 0x7f d: 12 e: FREQUENT")
    assert [scalar_value(n) for n in root.children] == [1e10, -2.5, 127, 12, "FREQUENT"]


# ---------------------------------------------------------------- label maps


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_label_map_non_finite_id_is_refused(tmp_path, value):
    path = tmp_path / "label_map.pbtxt"
    path.write_text(f"item {{\n  id: 1\n  name: 'cat'\n}}\nitem {{\n  id: {value}\n"
                    "  name: 'dog'\n}\n")
    with pytest.raises(LabelMapError) as info:
        load_label_map(str(path))
    assert str(info.value).startswith(f"label map {path}, line 6: ")
    assert "not a finite number" in str(info.value)


def test_label_map_id_beyond_int32_is_refused(tmp_path):
    path = tmp_path / "label_map.pbtxt"
    path.write_text("item { id: 2147483648 name: 'cat' }\n")
    with pytest.raises(LabelMapError, match="line 1: id 2147483648 is too large"):
        load_label_map(str(path))
    with pytest.raises(LabelMapError, match="invalid id 2147483648"):
        write_label_map(str(tmp_path / "out.pbtxt"), {2**31: "cat"})
