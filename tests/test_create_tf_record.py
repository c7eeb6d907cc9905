"""COCO, VOC and CSV annotations of rendered shapes images -> OD API TFRecords: the boxes
and labels read back equal those written, bad input gets one clear error and leaves
nothing behind, and a converted set trains."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import REPO, ckpt_steps, make_tiny_config
from train_lib.data.converters import ConvertError
from train_lib.data.converters.convert import convert
from train_lib.data.converters.images import MISSING_IMAGE, NOT_AN_IMAGE
from train_lib.data.converters.progress import Progress
from train_lib.data.converters.summary import format_summary
from train_lib.data.label_map import load_label_map, write_label_map
from train_lib.data.shapes_dataset import CLASS_NAMES, render_image

SIZE = 64
NUM_IMAGES = 8  # the last one is a PNG
COCO_IDS = [10 * (i + 1) for i in range(NUM_IMAGES)]  # COCO ids need not be 1..N


@pytest.fixture(scope="module")
def shapes_images(tmp_path_factory) -> dict:
    """Rendered shapes images as files and their boxes in pixels (exact: whole pixels)."""
    image_dir = tmp_path_factory.mktemp("images")
    images = []
    for i in range(NUM_IMAGES):
        rendered = render_image(0, "train", i, SIZE)
        fmt = "PNG" if i == NUM_IMAGES - 1 else "JPEG"
        filename = f"img_{i:02d}.{fmt.lower()}"
        buf = io.BytesIO()
        Image.fromarray(rendered.image).save(buf, format=fmt)
        (image_dir / filename).write_bytes(buf.getvalue())
        pixels = np.rint(rendered.boxes * SIZE).astype(int)  # ymin, xmin, ymax, xmax
        images.append({
            "filename": filename, "format": fmt.lower(),
            "objects": [(CLASS_NAMES[int(c)], *(int(v) for v in box[[1, 0, 3, 2]]))
                        for c, box in zip(rendered.labels, pixels, strict=True)],
        })
    return {"dir": str(image_dir), "images": images}


def _write_coco(path, images, extra_annotations=()) -> None:
    anns = []
    for image_id, image in zip(COCO_IDS, images, strict=True):
        for name, x0, y0, x1, y1 in image["objects"]:
            cat = {v: k for k, v in CLASS_NAMES.items()}[name]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0,
                         "area": (x1 - x0) * (y1 - y0)})
    anns += list(extra_annotations)
    data = {"images": [{"id": i, "file_name": im["filename"], "width": SIZE, "height": SIZE}
                       for i, im in zip(COCO_IDS, images, strict=True)],
            "annotations": anns,
            "categories": [{"id": k, "name": v} for k, v in CLASS_NAMES.items()]}
    path.write_text(json.dumps(data))


def _write_voc(directory, images, difficult_first=True) -> None:
    directory.mkdir(exist_ok=True)
    for i, image in enumerate(images):
        objects = "".join(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{int(difficult_first and k == 0)}</difficult><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for k, (name, x0, y0, x1, y1) in enumerate(image["objects"]))
        (directory / f"img_{i:02d}.xml").write_text(
            f"<annotation><folder>images</folder><filename>{image['filename']}</filename>"
            f"<size><width>{SIZE}</width><height>{SIZE}</height><depth>3</depth></size>"
            f"{objects}</annotation>")


def _write_csv(path, images, header="filename,width,height,class,xmin,ymin,xmax,ymax") -> None:
    lines = [header]
    for image in images:
        lines += [f"{image['filename']},{SIZE},{SIZE},{name},{x0},{y0},{x1},{y1}"
                  for name, x0, y0, x1, y1 in image["objects"]]
    path.write_text("\n".join(lines) + "\n")


def _read_records(pattern: str) -> list[dict]:
    out = []
    for path in sorted(tf.io.gfile.glob(pattern)):
        for raw in tf.data.TFRecordDataset(path):
            f = tf.train.Example.FromString(raw.numpy()).features.feature
            coords = [list(f[f"image/object/bbox/{k}"].float_list.value)
                      for k in ("ymin", "xmin", "ymax", "xmax")]
            out.append({
                "filename": f["image/filename"].bytes_list.value[0].decode(),
                "source_id": f["image/source_id"].bytes_list.value[0].decode(),
                "format": f["image/format"].bytes_list.value[0].decode(),
                "encoded": f["image/encoded"].bytes_list.value[0],
                "size": (f["image/height"].int64_list.value[0],
                         f["image/width"].int64_list.value[0]),
                "boxes": np.array(coords, np.float64).T.reshape(-1, 4),
                "labels": list(f["image/object/class/label"].int64_list.value),
                "texts": [t.decode() for t in f["image/object/class/text"].bytes_list.value],
                "difficult": list(f["image/object/difficult"].int64_list.value),
                "is_crowd": list(f["image/object/is_crowd"].int64_list.value),
            })
    return out


def _assert_read_back(records, shapes_images, ids, source_ids) -> None:
    """The records hold every image's file bytes and boxes, classes as written."""
    by_name = {r["filename"]: r for r in records}
    assert sorted(by_name) == [im["filename"] for im in shapes_images["images"]]
    for image, sid in zip(shapes_images["images"], source_ids, strict=True):
        rec = by_name[image["filename"]]
        with open(os.path.join(shapes_images["dir"], image["filename"]), "rb") as f:
            assert rec["encoded"] == f.read()  # embedded as is, not re-encoded
        assert rec["format"] == image["format"] and rec["size"] == (SIZE, SIZE)
        assert rec["source_id"] == str(sid)
        expected = np.array([[y0, x0, y1, x1] for _, x0, y0, x1, y1 in image["objects"]]) / SIZE
        np.testing.assert_allclose(rec["boxes"], expected, atol=1e-6)
        assert rec["texts"] == [o[0] for o in image["objects"]]
        assert rec["labels"] == [ids[o[0]] for o in image["objects"]]
        assert rec["is_crowd"] == [0] * len(image["objects"])


def _files(directory) -> list[str]:
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_coco_converts_and_reads_back(shapes_images, tmp_path):
    crowd = {"id": 999, "image_id": COCO_IDS[0], "category_id": 1, "bbox": [0, 0, 10, 10],
             "iscrowd": 1}
    _write_coco(tmp_path / "coco.json", shapes_images["images"], [crowd])
    out = tmp_path / "out"
    summary = convert("coco", str(tmp_path / "coco.json"), shapes_images["dir"],
                      str(out / "train.record"), num_shards=2)
    assert _files(out) == ["label_map.pbtxt", "train.record-00000-of-00002",
                           "train.record-00001-of-00002"]
    ids = {v: k for k, v in CLASS_NAMES.items()}
    _assert_read_back(_read_records(summary.pattern), shapes_images, ids, COCO_IDS)
    assert load_label_map(str(out / "label_map.pbtxt")) == CLASS_NAMES
    assert summary.images == NUM_IMAGES and summary.skipped_annotations == {
        "iscrowd annotation": 1}
    total = sum(len(im["objects"]) for im in shapes_images["images"])
    assert sum(summary.boxes.values()) == total
    text = "\n".join(format_summary(summary))
    assert f"wrote {NUM_IMAGES} images with {total} boxes" in text
    assert "1 iscrowd annotation" in text and "skipped images: none" in text


def test_voc_keeps_difficult_and_numbers_classes_by_name(shapes_images, tmp_path):
    _write_voc(tmp_path / "Annotations", shapes_images["images"])
    out = tmp_path / "out"
    summary = convert("voc", str(tmp_path / "Annotations"), shapes_images["dir"],
                      str(out / "train.record"))
    assert _files(out) == ["label_map.pbtxt", "train.record"]
    ids = {"circle": 1, "square": 2, "triangle": 3}  # sorted by name
    records = _read_records(summary.pattern)
    _assert_read_back(records, shapes_images, ids, range(1, NUM_IMAGES + 1))
    for rec in records:
        assert rec["difficult"] == [1] + [0] * (len(rec["labels"]) - 1)
    assert load_label_map(str(out / "label_map.pbtxt")) == {i: n for n, i in ids.items()}

    dropped = convert("voc", str(tmp_path / "Annotations"), shapes_images["dir"],
                      str(tmp_path / "drop" / "train.record"), ignore_difficult=True)
    assert dropped.skipped_annotations[
        "difficult object (--ignore_difficult_instances)"] == NUM_IMAGES
    assert all(rec["difficult"] == [0] * len(rec["labels"])
               for rec in _read_records(dropped.pattern))


def test_csv_with_a_given_label_map_is_deterministic(shapes_images, tmp_path):
    _write_csv(tmp_path / "labels.csv", shapes_images["images"])
    label_map = tmp_path / "label_map.pbtxt"
    write_label_map(str(label_map), CLASS_NAMES)
    outputs = []
    for name, workers in (("a", 1), ("b", 3)):
        summary = convert("csv", str(tmp_path / "labels.csv"), shapes_images["dir"],
                          str(tmp_path / name / "train.record"), num_shards=3,
                          label_map_path=str(label_map), num_workers=workers)
        assert summary.label_map_path == str(label_map) and not summary.label_map_written
        assert "label_map.pbtxt" not in _files(tmp_path / name)  # the given one is used
        outputs.append({p: open(os.path.join(tmp_path, name, p), "rb").read()
                        for p in _files(tmp_path / name)})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 3  # same input -> same files
    ids = {v: k for k, v in CLASS_NAMES.items()}
    _assert_read_back(_read_records(str(tmp_path / "a" / "train.record-?????-of-00003")),
                      shapes_images, ids, range(1, NUM_IMAGES + 1))


def test_missing_or_broken_images_are_skipped_or_refused_with_strict(shapes_images, tmp_path):
    images = [*shapes_images["images"],
              {"filename": "gone.jpg", "objects": [("square", 1, 1, 9, 9)]},
              {"filename": "notes.jpg", "objects": [("circle", 2, 2, 8, 8)]}]
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for image in shapes_images["images"]:
        os.symlink(os.path.join(shapes_images["dir"], image["filename"]),
                   image_dir / image["filename"])
    (image_dir / "notes.jpg").write_text("not an image")
    _write_csv(tmp_path / "labels.csv", images)
    summary = convert("csv", str(tmp_path / "labels.csv"), str(image_dir),
                      str(tmp_path / "out" / "train.record"))
    assert summary.images == NUM_IMAGES
    assert summary.skipped_images == {MISSING_IMAGE: 1, NOT_AN_IMAGE: 1}
    text = "\n".join(format_summary(summary))
    assert "1 image file missing (gone.jpg)" in text and "(notes.jpg)" in text

    for bad, reason in (("gone.jpg", MISSING_IMAGE), ("notes.jpg", NOT_AN_IMAGE)):
        _write_csv(tmp_path / "one_bad.csv", [*shapes_images["images"],
                                              *(im for im in images if im["filename"] == bad)])
        out = tmp_path / f"strict_{bad}"
        with pytest.raises(ConvertError, match=rf"{bad} \(source id \d+\): "
                                               rf"{reason}: .*--strict"):
            convert("csv", str(tmp_path / "one_bad.csv"), str(image_dir),
                    str(out / "train.record"), num_shards=2, strict=True)
        assert not os.path.exists(out)  # no shard, no temporary, no label map


@pytest.mark.parametrize("case, match", [
    ("coco_image_id", r"coco\.json: annotations\[\d+\] \(id 999\): image_id 5 is not among"),
    ("coco_category_id", r"category_id 7 is not among the file's categories"),
    ("voc_box_outside", r"img_03\.xml: object 1 .* lies outside its 64x64 image"),
    ("csv_missing_column", r"labels\.csv: missing column ymax; the header must name"),
    ("label_not_in_map", r"class 'triangle' of the annotations is not in it"),
    ("label_map_exists", r"already exists with other classes .* --label_map_path="),
    ("output_is_a_directory", r"--output_path .*/out is a directory; name the TFRecord file"),
])
def test_bad_annotations_are_one_error_and_nothing_is_written(shapes_images, tmp_path, case,
                                                              match):
    images = shapes_images["images"]
    out = tmp_path / "out"
    fmt, path, label_map = "coco", tmp_path / "coco.json", None
    if case == "coco_image_id":
        _write_coco(path, images, [{"id": 999, "image_id": 5, "category_id": 1,
                                    "bbox": [0, 0, 4, 4], "iscrowd": 0}])
    elif case == "coco_category_id":
        _write_coco(path, images, [{"id": 999, "image_id": COCO_IDS[0], "category_id": 7,
                                    "bbox": [0, 0, 4, 4], "iscrowd": 0}])
    elif case == "voc_box_outside":
        fmt, path = "voc", tmp_path / "Annotations"
        _write_voc(path, images)
        xml = (path / "img_03.xml").read_text()
        (path / "img_03.xml").write_text(xml.replace("<xmax>", "<xmax>9", 1))
    elif case == "csv_missing_column":
        fmt, path = "csv", tmp_path / "labels.csv"
        _write_csv(path, images, header="filename,width,height,class,xmin,ymin,xmax,y_max")
    elif case == "label_not_in_map":
        fmt, path, label_map = "csv", tmp_path / "labels.csv", tmp_path / "two.pbtxt"
        _write_csv(path, images)
        write_label_map(str(label_map), {1: "square", 2: "circle"})
    elif case == "label_map_exists":
        _write_coco(path, images)
        out.mkdir()
        write_label_map(str(out / "label_map.pbtxt"), {1: "cat", 2: "dog"})
    else:
        _write_coco(path, images)
        out.mkdir()
    before = _files(out)
    output_path = out if case == "output_is_a_directory" else out / "train.record"
    with pytest.raises(ConvertError, match=match):
        convert(fmt, str(path), shapes_images["dir"], str(output_path),
                label_map_path=str(label_map) if label_map else None)
    assert _files(out) == before


def test_progress_is_a_bar_on_a_terminal_and_few_lines_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain = io.StringIO()
    progress = Progress(1000, stream=plain)
    for _ in range(1000):
        progress.update()
    progress.close()
    lines = plain.getvalue().splitlines()
    assert lines[0] == "100/1000 images (10%)" and lines[-1] == "1000/1000 images (100%)"
    assert len(lines) == 10 and "\r" not in plain.getvalue()

    term = Terminal()
    progress = Progress(3, stream=term)
    for _ in range(3):
        progress.update()
    progress.close()
    assert "\r\033[K[" in term.getvalue() and "3/3 images" in term.getvalue()
    assert term.getvalue().endswith("\r\033[K")  # cleared for the summary


def test_a_converted_coco_set_trains(shapes_images, tmp_path):
    _write_coco(tmp_path / "coco.json", shapes_images["images"])
    summary = convert("coco", str(tmp_path / "coco.json"), shapes_images["dir"],
                      str(tmp_path / "data" / "train.record"), num_shards=2)
    dataset = {"train_pattern": summary.pattern, "val_pattern": summary.pattern,
               "label_map_path": summary.label_map_path}
    config = make_tiny_config(dataset, num_steps=2, log_every_n=1)
    from train_lib.training.trainer import train

    result = train(config, str(tmp_path / "run"), checkpoint_every_n=100,
                   record_summaries=False)
    assert result.step == 2 and ckpt_steps(str(tmp_path / "run")) == [2]
    assert all(np.isfinite(loss) for _, loss in result.loss_history)


def _script(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "create_tf_record.py"),
                           *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_script_prints_the_summary_or_one_error_line(shapes_images, tmp_path):
    _write_csv(tmp_path / "labels.csv", shapes_images["images"])
    out = tmp_path / "out" / "train.record"
    common = ["--format=csv", f"--annotations_path={tmp_path / 'labels.csv'}",
              f"--image_dir={shapes_images['dir']}", f"--output_path={out}"]
    proc = _script(*common, "--num_shards=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {NUM_IMAGES} images with" in proc.stdout
    assert "boxes per class: circle (id 1)" in proc.stdout
    assert f"{NUM_IMAGES}/{NUM_IMAGES} images (100%)" in proc.stderr  # not a terminal

    _write_csv(tmp_path / "bad.csv", shapes_images["images"], header="filename,class,xmin")
    proc = _script(*common[:1], f"--annotations_path={tmp_path / 'bad.csv'}", *common[2:3],
                   f"--output_path={tmp_path / 'bad' / 'train.record'}")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: CSV annotations ") and "Traceback" not in proc.stderr
    assert "missing columns width, height, ymin, xmax, ymax" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "bad")


def test_the_example_annotations_convert_alike(tmp_path):
    """examples/annotations (the README's commands): VOC and CSV give the same bytes,
    and COCO's two splits share one label map."""
    root = os.path.join(REPO, "examples", "annotations")
    images = os.path.join(root, "images")
    voc = convert("voc", os.path.join(root, "voc"), images, str(tmp_path / "voc" / "all.record"))
    csv = convert("csv", os.path.join(root, "labels.csv"), images,
                  str(tmp_path / "csv" / "all.record"))
    for name in ("all.record", "label_map.pbtxt"):
        assert (tmp_path / "voc" / name).read_bytes() == (tmp_path / "csv" / name).read_bytes()
    assert voc.images == csv.images == 8 and voc.boxes == csv.boxes
    train = convert("coco", os.path.join(root, "coco_train.json"), images,
                    str(tmp_path / "coco" / "train.record"), num_shards=2)
    val = convert("coco", os.path.join(root, "coco_val.json"), images,
                  str(tmp_path / "coco" / "val.record"), label_map_path=train.label_map_path)
    assert (train.images, val.images) == (6, 2)
    assert train.boxes + val.boxes == csv.boxes
    records = _read_records(train.pattern) + _read_records(val.pattern)
    assert sorted(r["source_id"] for r in records) == [str(i) for i in range(1, 9)]
    assert {r["format"] for r in records} == {"jpeg", "png"}
