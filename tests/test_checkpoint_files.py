"""train_lib.checkpointing.files on real files: the ckpt-<step> name, listing, removal, the
invalid_checkpoints/ move and the `checkpoint` state file. Fast; only the check that
TensorFlow reads the state file imports TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from train_lib.checkpointing import files
from train_lib.checkpointing.files import (
    INVALID_DIR,
    STATE_FILE,
    checkpoint_name,
    list_steps,
    parse_step,
)


def touch(path, text: str = "x") -> None:
    Path(path).write_text(text)


def write_checkpoint(model_dir, step: int, shards: int = 1) -> str:
    """Fake files of ckpt-<step> (TF's naming, not its contents); returns the prefix."""
    prefix = files.prefix(str(model_dir), step)
    for i in range(shards):
        touch(f"{prefix}.data-{i:05d}-of-{shards:05d}")
    touch(prefix + ".index")
    return prefix


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("step", [0, 1, 7, 10, 3000, 2**40])
def test_name_and_parse_round_trip(step):
    name = checkpoint_name(step)
    assert name == f"ckpt-{step}"
    assert parse_step(name) == step
    assert parse_step(files.prefix("/runs/x", step)) == step
    assert files.prefix("/runs/x", step) == os.path.join("/runs/x", name)


@pytest.mark.parametrize("name", [
    "ckpt-12.index",  # a file of ckpt-12, not its prefix
    "ckpt-12.index.tmp",
    "ckpt-12.data-00000-of-00001",
    "ckpt-12_temp",
    "ckpt-x",
    "ckpt-",
    "ckpt--1",
    "ckpt-+7",
    "ckpt- 7",
    "ckpt-7 ",
    "ckpt-7\n",
    "ckpt-07",  # leading zero: checkpoint_name(7) is ckpt-7, so this is not step 7's name
    "ckpt-00",
    "ckpt-\u0667",  # ARABIC-INDIC DIGIT SEVEN: int() would accept it, the name does not
    "model.ckpt-3",
    "xckpt-3",
    "ckpt_3",
    "CKPT-3",
    "",
])
def test_parse_refuses_look_alikes(name):
    assert parse_step(name) is None
    assert parse_step(os.path.join("/runs/x", name)) is None


def test_parse_uses_the_last_path_component_only():
    assert parse_step("/runs/ckpt-5/ckpt-6") == 6
    assert parse_step("/runs/ckpt-5/other") is None
    assert parse_step(Path("/runs/ckpt-8")) == 8


def test_list_steps_ignores_stray_files(tmp_path):
    for step in (20, 3, 100):
        write_checkpoint(tmp_path, step)
    for stray in ("ckpt-7.index.tmp", "ckpt-x.index", "ckpt-07.index", "model.ckpt-5.index",
                  "ckpt-9.data-00000-of-00001", "checkpoint", "checkpoints.jsonl",
                  "train.lock", "ckpt-4.index-old", "notes.txt"):
        touch(tmp_path / stray)
    (tmp_path / "ckpt-11_temp").mkdir()
    (tmp_path / INVALID_DIR).mkdir()
    touch(tmp_path / INVALID_DIR / "ckpt-50.index")
    assert list_steps(tmp_path) == [3, 20, 100]
    assert list_steps(str(tmp_path)) == [3, 20, 100]


def test_list_steps_of_a_missing_or_empty_dir(tmp_path):
    assert list_steps(tmp_path / "absent") == []
    assert list_steps(tmp_path) == []


def test_list_steps_in_a_dir_with_glob_characters(tmp_path):
    model_dir = tmp_path / "run[1]*"
    model_dir.mkdir()
    write_checkpoint(model_dir, 4)
    assert list_steps(model_dir) == [4]


# ---------------------------------------------------------------- one checkpoint's files


def test_missing_files(tmp_path):
    prefix = files.prefix(str(tmp_path), 5)
    assert files.missing_files(prefix) == "index file missing"
    touch(prefix + ".index")
    assert files.missing_files(prefix) == "data file missing"
    touch(prefix + ".data-00000-of-00002")
    assert files.missing_files(prefix) == "data file missing (1 of 2 shards present)"
    touch(prefix + ".data-00001-of-00002")
    assert files.missing_files(prefix) is None
    assert files.data_files(prefix) == [prefix + ".data-00000-of-00002",
                                        prefix + ".data-00001-of-00002"]


def test_remove_checkpoint_removes_the_index_first(tmp_path, monkeypatch):
    prefix = write_checkpoint(tmp_path, 8, shards=2)
    os.mkdir(prefix + "_temp")
    keep = write_checkpoint(tmp_path, 80)  # ckpt-80 shares the "ckpt-8" text, not the prefix
    removed: list[str] = []
    real_remove = os.remove

    def recording_remove(path):
        removed.append(os.path.basename(path))
        real_remove(path)

    monkeypatch.setattr(os, "remove", recording_remove)
    files.remove_checkpoint(prefix)
    assert removed == ["ckpt-8.index", "ckpt-8.data-00000-of-00002",
                       "ckpt-8.data-00001-of-00002"]
    assert not os.path.exists(prefix + "_temp")
    assert sorted(os.listdir(tmp_path)) == ["ckpt-80.data-00000-of-00001", "ckpt-80.index"]
    assert files.missing_files(keep) is None
    files.remove_checkpoint(prefix)  # already gone: nothing to do
    assert len(removed) == 3


def test_quarantine_moves_the_files_aside(tmp_path):
    write_checkpoint(tmp_path, 6, shards=2)
    write_checkpoint(tmp_path, 7)
    target = files.quarantine(str(tmp_path), 6)
    assert target == str(tmp_path / INVALID_DIR)
    assert sorted(os.listdir(target)) == ["ckpt-6.data-00000-of-00002",
                                          "ckpt-6.data-00001-of-00002", "ckpt-6.index"]
    assert list_steps(tmp_path) == [7]
    assert files.quarantine(str(tmp_path), 6) is None  # nothing left to move


# ---------------------------------------------------------------- the state file


def test_state_file_round_trip(tmp_path):
    model_dir = str(tmp_path)
    files.write_state(model_dir, 30, [10, 20, 30], [1000.5, 2000.25, 3000.0], 999.0)
    assert (tmp_path / STATE_FILE).read_text() == (
        'model_checkpoint_path: "ckpt-30"\n'
        'all_model_checkpoint_paths: "ckpt-10"\n'
        'all_model_checkpoint_paths: "ckpt-20"\n'
        'all_model_checkpoint_paths: "ckpt-30"\n'
        "all_model_checkpoint_timestamps: 1000.5\n"
        "all_model_checkpoint_timestamps: 2000.25\n"
        "all_model_checkpoint_timestamps: 3000.0\n"
        "last_preserved_timestamp: 999.0\n")
    assert os.listdir(tmp_path) == [STATE_FILE]  # no temporary file left
    state = files.read_state(model_dir)
    assert state == files.CheckpointState(
        model_checkpoint_path=os.path.join(model_dir, "ckpt-30"),
        all_model_checkpoint_paths=[os.path.join(model_dir, f"ckpt-{s}") for s in (10, 20, 30)],
        all_model_checkpoint_timestamps=[1000.5, 2000.25, 3000.0],
        last_preserved_timestamp=999.0)
    files.write_state(model_dir, 40, [40], [4000.0], 999.0)  # replaced as a whole
    assert files.read_state(model_dir).all_model_checkpoint_paths == [
        os.path.join(model_dir, "ckpt-40")]


def test_write_state_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="2 steps but 1 timestamps"):
        files.write_state(str(tmp_path), 2, [1, 2], [1.0], 0.0)
    assert not os.path.exists(tmp_path / STATE_FILE)


def test_read_state_of_missing_and_damaged_files(tmp_path):
    model_dir = str(tmp_path)
    assert files.read_state(model_dir) is None
    touch(tmp_path / STATE_FILE, 'garbage\nall_model_checkpoint_paths: "/elsewhere/ckpt-3"\n'
          "all_model_checkpoint_timestamps: nan-ish\n")
    state = files.read_state(model_dir)
    assert state.model_checkpoint_path is None
    assert state.all_model_checkpoint_paths == ["/elsewhere/ckpt-3"]  # absolute stays
    assert state.all_model_checkpoint_timestamps == []
    assert state.last_preserved_timestamp is None


def test_tensorflow_reads_the_written_state_file(tmp_path):
    import tensorflow as tf

    model_dir = str(tmp_path)
    for step in (10, 20):
        write_checkpoint(tmp_path, step)
    files.write_state(model_dir, 20, [10, 20], [1000.5, 2000.25], 999.0)
    state = tf.train.get_checkpoint_state(model_dir)
    assert state.model_checkpoint_path == os.path.join(model_dir, "ckpt-20")
    assert list(state.all_model_checkpoint_paths) == [os.path.join(model_dir, "ckpt-10"),
                                                      os.path.join(model_dir, "ckpt-20")]
    assert list(state.all_model_checkpoint_timestamps) == [1000.5, 2000.25]
    assert state.last_preserved_timestamp == 999.0
    assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir, "ckpt-20")


def test_tensorflow_free_modules():
    code = ("import sys\n"
            "import train_lib.checkpointing\n"
            "from train_lib.checkpointing import files, events, lock, parse_step, RunLock\n"
            "from train_lib.checkpointing import read_events, STATE_FILE\n"
            "sys.exit('tensorflow' in sys.modules)")
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
