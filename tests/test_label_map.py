"""Tests for train_lib.data.label_map: OD API label_map.pbtxt parsing, writing and errors."""

from __future__ import annotations

import os

import pytest

from train_lib.config import ConfigError
from train_lib.data.label_map import LabelMapError, load_label_map, write_label_map


def _write(tmp_path, text: str, name: str = "label_map.pbtxt") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_error_is_a_config_error():
    assert issubclass(LabelMapError, ConfigError)
    assert issubclass(LabelMapError, ValueError)


@pytest.mark.parametrize(
    "names",
    [
        {1: "square", 2: "circle", 3: "triangle"},
        {7: "only"},
        {3: "b", 1: "a", 10: "c"},
        {1: "it's", 2: 'say "hi"', 3: "back\\slash", 4: "tab\there", 5: "new\nline"},
        {1: "ünïcödé", 2: "日本", 3: "# not a comment", 4: "{brace}"},
    ],
)
def test_round_trip(tmp_path, names):
    path = str(tmp_path / "map.pbtxt")
    write_label_map(path, names)
    assert load_label_map(path) == names
    assert os.listdir(tmp_path) == ["map.pbtxt"]  # no temporary file left behind


def test_written_format_is_od_api_style(tmp_path):
    path = str(tmp_path / "map.pbtxt")
    write_label_map(path, {2: "circle", 1: "square"})
    text = (tmp_path / "map.pbtxt").read_text()
    assert text == "item {\n  id: 1\n  name: 'square'\n}\nitem {\n  id: 2\n  name: 'circle'\n}\n"


def test_parses_od_api_formats(tmp_path):
    text = """
# Label map for the shapes dataset.
item {
  id: 1
  name: 'square'
  display_name: 'Square'
}
item {  # fields in any order, double quotes
  display_name: "Round thing"
  name: "circle"
  id: 2
}
item { name: 'triangle' id: 3 }  # one-line item
item { id: 4, name: 'star'; }
item: { id: 5 name: "pen" "tagon" }
item {
  id: 6
  name: 'kite'
  frequency: FREQUENT
  ancestor_ids: [1, 2]
  keypoints { id: 0 label: 'tip' }
}
"""
    path = _write(tmp_path, text)
    assert load_label_map(path) == {
        1: "square", 2: "circle", 3: "triangle", 4: "star", 5: "pentagon", 6: "kite",
    }


def test_display_name_is_ignored(tmp_path):
    path = _write(tmp_path, "item { id: 1 name: '/m/01' display_name: 'Person' }")
    assert load_label_map(path) == {1: "/m/01"}


def test_escapes_in_strings(tmp_path):
    text = r"""item { id: 1 name: 'it\'s' } item { id: 2 name: "a\"b\\c\x41\101" }"""
    path = _write(tmp_path, text)
    assert load_label_map(path) == {1: "it's", 2: 'a"b\\cAA'}


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("item {\n  id: 1\n}\n", 1, "no name"),
        ("item {\n  name: 'a'\n}\n", 1, "no id"),
        ("item { display_name: 'A' }", 1, "no id and no name"),
        ("item { id: 1 name: 'a' }\n\nitem { id: 0 name: 'bg' }", 3, "id 0"),
        ("item { id: -2 name: 'a' }", 1, "id -2"),
        ("item { id: 1 name: 'a' }\nitem {\n  id: 1\n  name: 'b'\n}", 3, "duplicate id 1"),
        ("item { id: 1 name: 'a' }\nitem { id: 2 name: \"a\" }", 2, "duplicate name 'a'"),
        ("item { id: 1 name: 'a' }\nitem { id: 2 name: 'b'\n", 3, "syntax error"),
        ("item {\n  id: 1\n  name: 'a\n}", 3, "syntax error"),
        ("item { id 1 name: 'a' }", 1, "syntax error"),
        ("item { id: 1 name: 'a' }\n}", 2, "syntax error"),
        ("item { id: 1 name: 'a' } %", 1, "syntax error"),
        ("item { id: 1.5 name: 'a' }", 1, "integer"),
        ("item { id: '1' name: 'a' }", 1, "integer"),
        ("item { id: 1 name: a }", 1, "quoted string"),
        ("item { id: 1 name: '' }", 1, "empty"),
        ("item { id: 1 id: 2 name: 'a' }", 1, "twice"),
        ("# comment\nlabel { id: 1 name: 'a' }", 2, "unexpected top-level field"),
    ],
)
def test_errors_name_file_and_line(tmp_path, text, line, fragment):
    path = _write(tmp_path, text, "bad_map.pbtxt")
    with pytest.raises(LabelMapError) as info:
        load_label_map(path)
    message = str(info.value)
    assert path in message
    assert f"line {line}:" in message
    assert fragment in message


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", "   \n"])
def test_empty_map(tmp_path, text):
    path = _write(tmp_path, text, "empty.pbtxt")
    with pytest.raises(LabelMapError, match="has no items") as info:
        load_label_map(path)
    assert path in str(info.value)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope" / "label_map.pbtxt")
    with pytest.raises(LabelMapError, match="not found") as info:
        load_label_map(path)
    assert path in str(info.value)
    assert "label_map_path" in str(info.value)  # says what to do


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(LabelMapError, match="directory") as info:
        load_label_map(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_id_zero_message_explains_background(tmp_path):
    path = _write(tmp_path, "item { id: 0 name: 'background' }")
    with pytest.raises(LabelMapError, match="reserved for the background"):
        load_label_map(path)


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        ({}, "no classes"),
        ({0: "bg"}, "invalid id 0"),
        ({1: "a", 2: "a"}, "duplicate name"),
        ({1: ""}, "invalid name"),
        ({"1": "a"}, "invalid id"),
    ],
)
def test_write_rejects_invalid_maps(tmp_path, names, fragment):
    path = str(tmp_path / "out.pbtxt")
    with pytest.raises(LabelMapError, match=fragment) as info:
        write_label_map(path, names)
    assert path in str(info.value)
    assert not os.path.exists(path)
