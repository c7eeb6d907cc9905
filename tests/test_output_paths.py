"""train_lib.output_paths, and every entry point that writes refusing a bad output
location with one `error:` line, before loading anything (no traceback)."""

from __future__ import annotations

import os
import struct
import zlib

import pytest
from conftest import ODAPI_SAMPLES, run_trainer

from train_lib.output_paths import (
    OutputPathError,
    check_output_directory,
    check_output_file,
    make_parent,
)

UNWRITABLE = "/sys"  # not writable, even for root


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("kept\n")
    return str(path)


# ---------------------------------------------------------------- the checks


def test_directory_accepts_existing_and_missing_folders(tmp_path):
    check_output_directory("--out", str(tmp_path))
    missing = tmp_path / "new" / "deeper"
    check_output_directory("--out", str(missing))
    assert not (tmp_path / "new").exists()  # checked, nothing created
    check_output_directory("--out", "gs://bucket/exports")  # remote: not checked here


@pytest.mark.parametrize("flag_path, message", [
    (lambda f: f, "--out {p} is a file; give a directory"),
    (lambda f: os.path.join(f, "sub"), "--out {p}: {f} is a file, so no folder can be created"),
    (lambda f: os.path.join(UNWRITABLE, "exports"), "--out {p}: the folder /sys is not writable"),
    (lambda f: " ", "--out is empty"),
])
def test_directory_refusals(a_file, flag_path, message):
    path = flag_path(a_file)
    with pytest.raises(OutputPathError) as info:
        check_output_directory("--out", path)
    assert str(info.value).startswith(message.format(p=path, f=a_file))


def test_file_accepts_new_and_existing_files(tmp_path, a_file):
    check_output_file("--out", a_file)
    check_output_file("--out", str(tmp_path / "missing" / "folder" / "x.yaml"))
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("flag_path, message", [
    (lambda f: os.path.dirname(f), "--out {p} is a directory; give the path of the file"),
    (lambda f: os.path.join(f, "x.png"),
     "--out {p}: {f} is a file, so no folder can be created"),
    (lambda f: os.path.join(UNWRITABLE, "x.png"), "--out {p}: the folder /sys is not writable"),
])
def test_file_refusals(a_file, flag_path, message):
    path = flag_path(a_file)
    with pytest.raises(OutputPathError) as info:
        check_output_file("--out", path)
    assert str(info.value).startswith(message.format(p=path, f=a_file))


def test_make_parent_creates_the_missing_folders(tmp_path):
    target = tmp_path / "a" / "b" / "plot.png"
    make_parent(str(target))
    assert (tmp_path / "a" / "b").is_dir() and not target.exists()


# ---------------------------------------------------------------- the entry points


def _big_png(path) -> None:
    """A PNG whose header claims 40000x40000 pixels (its data is empty)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


# (script, its arguments, the start of the error line); {file} is an existing file,
# {dir} an existing directory, {tmp} the test's folder.
REFUSALS = [
    ("scripts/exporter_main_v2.py",
     ["--trained_checkpoint_dir={tmp}/run", "--output_directory={file}"],
     "--output_directory {file} is a file"),
    ("scripts/export_tflite.py",
     ["--trained_checkpoint_dir={tmp}/run", "--output_directory={file}"],
     "--output_directory {file} is a file"),
    ("scripts/create_tf_record.py",
     ["--format=coco", "--annotations_path={tmp}/a.json", "--image_dir={tmp}",
      "--output_path={dir}"],
     "--output_path {dir} is a directory"),
    ("scripts/convert_pipeline_config.py",
     ["--pipeline_config_path=" + ODAPI_SAMPLES[0].path, "--output_path={file}/p.yaml"],
     "--output_path {file}/p.yaml: {file} is a file"),
    ("scripts/detect.py",
     ["--tflite={tmp}/model.tflite", "--output_dir={file}", "{tmp}/big.png"],
     "--output_dir {file} is a file"),
    ("scripts/detect.py",  # PIL's DecompressionBombError was a traceback
     ["--tflite={tmp}/model.tflite", "--output_dir={tmp}/drawn", "{tmp}/big.png"],
     "image {tmp}/big.png is too large to read: Image size (1600000000 pixels) exceeds"),
    ("scripts/inspect_checkpoints.py", ["--model_dir={tmp}", "--plot={dir}"],
     "--plot {dir} is a directory"),
]


@pytest.mark.slow
@pytest.mark.parametrize("script, args, expected", REFUSALS,
                         ids=[f"{os.path.basename(s)}-{i}" for i, (s, _, _) in
                              enumerate(REFUSALS)])
def test_entry_point_refuses_the_output_location(tmp_path, a_file, script, args, expected):
    """One error line naming the flag and the path, no traceback, the file kept. None of
    these loads TensorFlow or a model first (each takes about a second)."""
    folder = tmp_path / "a_dir"
    folder.mkdir()
    _big_png(tmp_path / "big.png")
    names = {"file": a_file, "dir": str(folder), "tmp": str(tmp_path)}
    proc = run_trainer(*(a.format(**names) for a in args), script=script, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: " + expected.format(**names)), errors[0]
    assert open(a_file).read() == "kept\n"
    assert not (tmp_path / "drawn").exists()


@pytest.mark.slow
def test_convert_pipeline_config_creates_a_missing_folder(tmp_path):
    """Was FileNotFoundError: the output's missing folders are created, as every writer's."""
    with open(ODAPI_SAMPLES[0].path, encoding="utf-8") as f:
        text = f.read().replace("PATH_TO_BE_CONFIGURED", str(tmp_path / "data"))
    config = tmp_path / "pipeline.config"
    config.write_text(text)
    output = tmp_path / "new" / "folder" / "pipeline.yaml"
    proc = run_trainer(f"--pipeline_config_path={config}", f"--output_path={output}",
                       script="scripts/convert_pipeline_config.py", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "model:" in output.read_text()
