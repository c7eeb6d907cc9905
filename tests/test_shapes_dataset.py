"""Tests for train_lib.data.shapes_dataset and scripts/make_shapes_dataset.py."""

from __future__ import annotations

import glob
import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from train_lib.config import ConfigError
from train_lib.data import shapes_dataset
from train_lib.data.label_map import load_label_map
from train_lib.data.shapes_dataset import CLASS_NAMES, read_examples, render_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED, NUM_TRAIN, NUM_VAL, SIZE, SHARDS = 0, 12, 4, 64, 2

OD_API_KEYS = {
    "image/encoded", "image/format", "image/filename", "image/source_id", "image/key/sha256",
    "image/height", "image/width", "image/object/bbox/xmin", "image/object/bbox/xmax",
    "image/object/bbox/ymin", "image/object/bbox/ymax", "image/object/class/label",
    "image/object/class/text", "image/object/area", "image/object/is_crowd",
    "image/object/difficult",
}


def _generate(out_dir, seed: int = SEED) -> dict:
    return shapes_dataset.generate(str(out_dir), num_train=NUM_TRAIN, num_val=NUM_VAL,
                                   image_size=SIZE, num_shards=SHARDS, seed=seed)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    return _generate(tmp_path_factory.mktemp("shapes") / "data")


@pytest.fixture(scope="module")
def examples(dataset) -> dict[str, list[dict]]:
    return {"train": read_examples(dataset["train_pattern"]),
            "val": read_examples(dataset["val_pattern"])}


def _split_index(source_id: str) -> tuple[str, int]:
    value = int(source_id)
    if value > shapes_dataset.VAL_SOURCE_ID_OFFSET:
        return "val", value - shapes_dataset.VAL_SOURCE_ID_OFFSET - 1
    return "train", value - 1


def _file_bytes(directory: str) -> dict[str, bytes]:
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


def test_files_written(dataset):
    out_dir = os.path.dirname(dataset["label_map_path"])
    assert sorted(os.listdir(out_dir)) == [
        "label_map.pbtxt", "samples", "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord", "val-00000-of-00001.tfrecord",
    ]
    assert sorted(glob.glob(dataset["train_pattern"])) == [
        os.path.join(out_dir, "train-00000-of-00002.tfrecord"),
        os.path.join(out_dir, "train-00001-of-00002.tfrecord"),
    ]
    assert glob.glob(dataset["val_pattern"]) == [
        os.path.join(out_dir, "val-00000-of-00001.tfrecord")]
    assert sorted(dataset["files"]) == sorted(os.path.join(root, n)
                                              for root, _, names in os.walk(out_dir)
                                              for n in names)
    # The temporary sibling was renamed away: the parent holds only the dataset directory.
    assert os.listdir(os.path.dirname(out_dir)) == ["data"]


def test_label_map_matches_class_names(dataset):
    assert CLASS_NAMES == {1: "square", 2: "circle", 3: "triangle"}
    assert load_label_map(dataset["label_map_path"]) == CLASS_NAMES


def test_counts_and_source_ids(examples):
    train_ids = [e["source_id"] for e in examples["train"]]
    val_ids = [e["source_id"] for e in examples["val"]]
    assert sorted(train_ids, key=int) == [str(i + 1) for i in range(NUM_TRAIN)]
    assert sorted(val_ids, key=int) == [str(1_000_001 + i) for i in range(NUM_VAL)]
    assert all(s.isdigit() for s in train_ids + val_ids)
    assert len(set(train_ids + val_ids)) == NUM_TRAIN + NUM_VAL


def test_train_images_are_sharded_round_robin(dataset):
    for shard in range(SHARDS):
        path = dataset["train_pattern"].replace("?????", f"{shard:05d}")
        ids = [e["source_id"] for e in read_examples(path)]
        assert ids == [str(i + 1) for i in range(shard, NUM_TRAIN, SHARDS)]


def test_read_back_equals_drawn_annotations(examples):
    for split in ("train", "val"):
        for ex in examples[split]:
            assert _split_index(ex["source_id"])[0] == split
            drawn = render_image(SEED, split, _split_index(ex["source_id"])[1], SIZE)
            assert ex["boxes"].dtype == np.float32
            assert ex["labels"].dtype == np.int64
            np.testing.assert_array_equal(ex["boxes"], drawn.boxes)  # exact float32 equality
            np.testing.assert_array_equal(ex["labels"], drawn.labels)
            assert ex["texts"] == [CLASS_NAMES[int(c)] for c in drawn.labels]
            assert (ex["height"], ex["width"]) == (SIZE, SIZE)
            assert ex["image"].shape == (SIZE, SIZE, 3) and ex["image"].dtype == np.uint8
            # The JPEG (quality 95, 4:2:0 chroma) stays close to the drawn pixels; most of
            # the error is the per-pixel background noise.
            diff = np.abs(ex["image"].astype(np.int32) - drawn.image.astype(np.int32))
            assert diff.mean() < 10.0


def test_boxes_valid(examples):
    counts = []
    for ex in examples["train"] + examples["val"]:
        boxes = ex["boxes"]
        counts.append(len(boxes))
        assert 1 <= len(boxes) <= 4
        assert np.all(boxes >= 0.0) and np.all(boxes <= 1.0)
        heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        assert np.all(heights > 0) and np.all(widths > 0)
        # Shapes span roughly 15%-50% of the image side.
        assert np.all(np.maximum(heights, widths) >= 0.1)
        assert np.all(np.maximum(heights, widths) <= 0.55)
        assert set(ex["labels"].tolist()) <= {1, 2, 3}
    assert len(set(counts)) > 1  # not every image has the same number of objects


def test_raw_records_have_exactly_the_od_api_keys(dataset):
    records = list(tf.data.TFRecordDataset(sorted(glob.glob(dataset["val_pattern"]))))
    assert len(records) == NUM_VAL
    for index, record in enumerate(records):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        assert set(feature.keys()) == OD_API_KEYS
        encoded = feature["image/encoded"].bytes_list.value[0]
        assert encoded[:2] == b"\xff\xd8"  # JPEG start-of-image marker
        assert feature["image/format"].bytes_list.value == [b"jpeg"]
        assert feature["image/key/sha256"].bytes_list.value == [
            hashlib.sha256(encoded).hexdigest().encode()]
        assert feature["image/source_id"].bytes_list.value == [str(1_000_001 + index).encode()]
        assert feature["image/filename"].bytes_list.value == [f"val_{index:06d}.jpg".encode()]
        assert feature["image/height"].int64_list.value == [SIZE]
        assert feature["image/width"].int64_list.value == [SIZE]
        drawn = render_image(SEED, "val", index, SIZE)
        n = len(drawn.labels)
        pixel_sides = drawn.boxes * SIZE
        expected_area = ((pixel_sides[:, 2] - pixel_sides[:, 0])
                         * (pixel_sides[:, 3] - pixel_sides[:, 1]))
        np.testing.assert_allclose(feature["image/object/area"].float_list.value,
                                   expected_area, rtol=0, atol=1e-3)
        assert all(a == round(a) for a in feature["image/object/area"].float_list.value)
        assert feature["image/object/is_crowd"].int64_list.value == [0] * n
        assert feature["image/object/difficult"].int64_list.value == [0] * n
        assert feature["image/object/class/text"].bytes_list.value == [
            CLASS_NAMES[int(c)].encode() for c in drawn.labels]


def test_render_is_reproducible_per_image():
    a = render_image(3, "train", 5, SIZE)
    b = render_image(3, "train", 5, SIZE)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    other = render_image(3, "val", 5, SIZE)  # same index, other split: another image
    assert not np.array_equal(a.image, other.image)


def test_boxes_are_tight_and_objects_stay_visible():
    for index in range(40):
        drawn = render_image(SEED, "train", index, SIZE)
        later = np.zeros((SIZE, SIZE), bool)
        for i in reversed(range(len(drawn.labels))):
            mask = drawn.masks[i]
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            expected = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]) / SIZE
            np.testing.assert_array_equal(drawn.boxes[i], expected.astype(np.float32))
            visible = mask & ~later
            assert visible.sum() >= 0.39 * mask.sum()  # at most ~60% hidden by later shapes
            # Visible pixels carry the object's single solid colour.
            colours = np.unique(drawn.image[visible], axis=0)
            assert len(colours) == 1
            later |= mask


def test_single_object_is_visible_against_background(examples):
    singles = [e for e in examples["train"] + examples["val"] if len(e["labels"]) == 1]
    assert singles, "the tiny dataset should contain single-object images"
    for ex in singles:
        image = ex["image"].astype(np.float64)
        y0, x0, y1, x1 = np.rint(ex["boxes"][0] * SIZE).astype(int)
        # The middle of the box is inside every shape (square, circle, triangle).
        cy, cx, r = (y0 + y1) // 2, (x0 + x1) // 2, max(1, (y1 - y0) // 8)
        inside = image[cy - r:cy + r + 1, cx - r:cx + r + 1].reshape(-1, 3).mean(0)
        outside_mask = np.ones((SIZE, SIZE), bool)
        outside_mask[y0:y1, x0:x1] = False
        outside = image[outside_mask].mean(0)
        assert np.linalg.norm(inside - outside) > 60.0


def test_sample_images_are_the_first_val_records_jpegs(dataset):
    """samples/val-0000K.jpg: byte for byte the JPEG of val record K, for detect.py."""
    out_dir = os.path.dirname(dataset["label_map_path"])
    samples = sorted(os.listdir(os.path.join(out_dir, "samples")))
    assert samples == [f"val-{k:05d}.jpg" for k in range(shapes_dataset.NUM_SAMPLES)]
    assert dataset["samples"] == [os.path.join(out_dir, "samples", n) for n in samples]
    records = [tf.train.Example.FromString(r.numpy())
               for r in tf.data.TFRecordDataset(glob.glob(dataset["val_pattern"]))]
    for k, path in enumerate(dataset["samples"]):
        with open(path, "rb") as f:
            assert f.read() == records[k].features.feature[
                "image/encoded"].bytes_list.value[0]


def test_same_seed_gives_identical_files_and_other_seed_differs(dataset, tmp_path):
    first = _file_bytes(os.path.dirname(dataset["label_map_path"]))
    again = _file_bytes(os.path.dirname(_generate(tmp_path / "again")["label_map_path"]))
    assert first == again
    other = _file_bytes(os.path.dirname(_generate(tmp_path / "other", seed=1)["label_map_path"]))
    assert other.keys() == first.keys()
    for name in first:
        if name.endswith(".tfrecord"):
            assert other[name] != first[name]


def test_regenerating_replaces_a_previous_dataset(tmp_path):
    out = tmp_path / "data"
    _generate(out, seed=1)
    (out / "train-00000-of-00009.tfrecord").write_bytes(b"stale shard")
    paths = _generate(out)
    assert "train-00000-of-00009.tfrecord" not in os.listdir(out)
    assert len(read_examples(paths["train_pattern"])) == NUM_TRAIN
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_refuses_a_directory_with_other_files(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        _generate(out)
    assert os.listdir(out) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shapes_dataset, "write_label_map", fail)
    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path / "data")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"num_train": 0}, {"num_val": 0}, {"num_shards": 0}, {"image_size": 16},
     {"num_train": 2, "num_shards": 3}, {"num_train": 2.5}],
)
def test_invalid_arguments(tmp_path, kwargs):
    args = {"num_train": 4, "num_val": 2, "image_size": 32, "num_shards": 1, **kwargs}
    with pytest.raises(ConfigError):
        shapes_dataset.generate(str(tmp_path / "data"), **args)
    assert os.listdir(tmp_path) == []


def test_cli_writes_the_dataset(tmp_path):
    out = tmp_path / "cli"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, os.path.join("scripts", "make_shapes_dataset.py"),
         "--output_dir", str(out), "--num_train", "3", "--num_val", "2", "--image_size", "32",
         "--num_shards", "1", "--seed", "7"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == [
        "label_map.pbtxt", "samples", "train-00000-of-00001.tfrecord",
        "val-00000-of-00001.tfrecord"]
    assert sorted(os.listdir(out / "samples")) == ["val-00000.jpg", "val-00001.jpg"]
    assert str(out / "label_map.pbtxt") in result.stdout
    train = read_examples(str(out / "train-*.tfrecord"))
    assert [e["source_id"] for e in train] == ["1", "2", "3"]
    np.testing.assert_array_equal(train[2]["boxes"], render_image(7, "train", 2, 32).boxes)
    assert load_label_map(str(out / "label_map.pbtxt")) == CLASS_NAMES


@pytest.mark.slow
def test_cli_help_defaults_are_the_default_configs():
    """make_shapes_dataset.py --help states the defaults of the dataset the default
    config names (its shapes_dataset section)."""
    import yaml

    with open(os.path.join(REPO, "configs", "shapes_retinanet.yaml")) as f:
        section = yaml.safe_load(f)["shapes_dataset"]
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "make_shapes_dataset.py"), "--help"],
        capture_output=True, text=True, timeout=120, check=False)
    assert "--num_train" in result.stdout, result.stderr  # absl exits 1 after --help
    for key in ("num_train", "num_val", "image_size", "num_shards", "seed"):
        match = re.search(rf"--{key}: .*?\(default: '(\d+)'\)", result.stdout, re.DOTALL)
        assert match and int(match.group(1)) == section[key], (key, result.stdout)


def test_cli_requires_output_dir():
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "make_shapes_dataset.py")],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode != 0
    assert "output_dir" in result.stderr
