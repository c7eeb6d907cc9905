"""Tests for train_lib.textproto: the protobuf text-format reader."""

from __future__ import annotations

import pytest
from conftest import ODAPI_SAMPLES, odapi_sample_id

from train_lib.errors import UserError
from train_lib.textproto import LIST, MESSAGE, Node, TextProtoError, parse


def only(node: Node, name: str) -> Node:
    (found,) = node.fields(name)
    return found


def test_nested_messages_keep_name_line_column_and_path():
    text = (
        "train_config {\n"
        "  batch_size: 8\n"
        "  optimizer: {\n"
        "    rms_prop_optimizer <\n"
        "      decay: 0.9\n"
        "    >\n"
        "  }\n"
        "}\n"
    )
    root = parse(text, "pipeline.config")
    assert root.kind == MESSAGE and root.path == "" and len(root.children) == 1
    train = only(root, "train_config")
    assert (train.kind, train.line, train.column) == (MESSAGE, 1, 1)
    assert [c.name for c in train.children] == ["batch_size", "optimizer"]
    batch = only(train, "batch_size")
    assert (batch.kind, batch.value, batch.line, batch.column) == ("number", "8", 2, 3)
    rms = only(only(train, "optimizer"), "rms_prop_optimizer")
    assert rms.is_message
    assert (rms.line, rms.column, rms.path) == (4, 5, "train_config.optimizer.rms_prop_optimizer")
    decay = only(rms, "decay")
    assert (decay.value, decay.line, decay.column) == ("0.9", 5, 7)
    assert decay.path == "train_config.optimizer.rms_prop_optimizer.decay"


def test_repeated_fields_and_lists():
    text = (
        "aspect_ratios: 1.0\n"
        "aspect_ratios: [2.0, 0.5]\n"
        "aspect_ratios: 3\n"
        "empty: []\n"
        "option { name: 'a' } option: [{ name: 'b' }, < name: 'c' >]\n"
    )
    root = parse(text)
    ratios = root.fields("aspect_ratios")
    assert [r.value for r in ratios] == ["1.0", "2.0", "0.5", "3"]
    assert [(r.line, r.column) for r in ratios] == [(1, 1), (2, 17), (2, 22), (3, 1)]
    as_written = [c for c in root.children if c.name == "aspect_ratios"]
    assert [c.kind for c in as_written] == ["number", LIST, "number"]
    assert root.fields("empty") == []  # an empty list: no values
    assert [c.kind for c in root.children if c.name == "empty"] == [LIST]
    options = root.fields("option")
    assert [only(o, "name").value for o in options] == ["a", "b", "c"]
    assert all(o.is_message and o.path == "option" for o in options)
    assert [o.column for o in options] == [1, 31, 46]


def test_scalar_kinds_strings_and_escapes():
    text = (
        "a: 'it\\'s' b: \"say \\\"hi\\\"\" c: 'tab\\there\\n' d: '\\x41\\101\\u00e9'\n"
        "e: 'con' \"cat\"\n"
        "  'enated'\n"
        "f: -2.5e3 g: 0x1F h: 1.0f i: true j: FREQUENT k: ''\n"
        "l: 'ünïcödé # not a comment {brace}'\n"
    )
    root = parse(text)
    values = {c.name: (c.kind, c.value) for c in root.children}
    assert values == {
        "a": ("string", "it's"),
        "b": ("string", 'say "hi"'),
        "c": ("string", "tab\there\n"),
        "d": ("string", "AAé"),
        "e": ("string", "concatenated"),
        "f": ("number", "-2.5e3"),
        "g": ("number", "0x1F"),
        "h": ("number", "1.0f"),
        "i": ("identifier", "true"),
        "j": ("identifier", "FREQUENT"),
        "k": ("string", ""),
        "l": ("string", "ünïcödé # not a comment {brace}"),
    }


def test_comments_and_separators():
    text = (
        "# header comment\n"
        "item {  # trailing comment\n"
        "  id: 1, name: 'a';  # separators are optional\n"
        "  # a whole-line comment: id: 99\n"
        "}\n"
    )
    root = parse(text)
    item = only(root, "item")
    assert [(c.name, c.value, c.line) for c in item.children] == [("id", "1", 3), ("name", "a", 3)]
    assert parse("").children == [] and parse("# nothing\n\n").children == []


@pytest.mark.parametrize(("text", "line", "column", "problem"), [
    ("a: 'open\n'", 1, 4, "unterminated string (strings must close on their line)"),
    ("m {\n  a: 1\n", 3, 1, "missing '}' before end of file"),
    ("m {\n  a: 1\n}\n}", 4, 1, "expected a field name, found '}'"),
    ("a 1", 1, 3, "expected ':' or '{' after field name 'a', found '1'"),
    ("a: }", 1, 4, "expected a value, found '}'"),
    ("a: [1, 2 3]", 1, 10, "expected ',' or ']' in list, found '3'"),
    ("x: 1\ny: 12abc", 2, 4, "invalid number '12abc'"),
    ("x: 1 %", 1, 6, "unexpected character '%'"),
    ("x: 'ab\\qc'", 1, 7, "unknown escape '\\q' in string"),
    ("\n  x: \"\\xZZ\"", 2, 7, "invalid \\x escape in string"),
])
def test_syntax_errors_name_source_line_and_column(text, line, column, problem):
    with pytest.raises(TextProtoError) as info:
        parse(text, "pipeline.config")
    error = info.value
    assert (error.source, error.line, error.column, error.problem) == (
        "pipeline.config", line, column, problem)
    assert str(error) == f"pipeline.config:{line}:{column}: {problem}"


def test_error_is_a_user_error():
    assert issubclass(TextProtoError, UserError)
    assert issubclass(TextProtoError, ValueError)


@pytest.mark.parametrize("sample", ODAPI_SAMPLES, ids=odapi_sample_id)
def test_reads_an_od_api_pipeline_config(sample):
    with open(sample.path, encoding="utf-8") as f:
        root = parse(f.read(), sample.path)
    assert [c.name for c in root.children] == [
        "model", "train_config", "train_input_reader", "eval_config", "eval_input_reader"]
    ssd = only(only(root, "model"), "ssd")
    assert only(ssd, "num_classes").value == str(sample.num_classes)
    generator = only(only(ssd, "anchor_generator"), "ssd_anchor_generator")
    assert tuple(r.value for r in generator.fields("aspect_ratios")) == sample.aspect_ratios
    train = only(root, "train_config")
    assert (train.line, train.column) == (sample.line_of("train_config: {"), 1)
    momentum = only(only(train, "optimizer"), "momentum_optimizer")
    assert (momentum.path, momentum.line) == ("train_config.optimizer.momentum_optimizer",
                                              sample.line_of("momentum_optimizer: {"))
    assert len(train.fields("data_augmentation_options")) == 2


def test_scalar_values_of_a_pipeline_config():
    from train_lib.textproto import scalar_value

    root = parse("a: .08 b: 1e-8 c: 0x1F d: 2.5f e: true f: RELU_6, g: 'x' h: -3", "p.config")
    values = [scalar_value(n) for n in root.children]
    assert values == [0.08, 1e-8, 31, 2.5, True, "RELU_6", "x", -3]
    assert [type(v) for v in values[:3]] == [float, float, int]
