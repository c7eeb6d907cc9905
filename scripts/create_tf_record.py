r"""Converts COCO JSON, Pascal VOC XML or labelling-tool CSV annotations into OD API
TFRecords and a label map.

    python scripts/create_tf_record.py --format=coco \
        --annotations_path=annotations/instances_train.json --image_dir=images/train \
        --output_path=data/mine/train.record --num_shards=4

    python scripts/create_tf_record.py --format=voc --annotations_path=VOC/Annotations \
        --image_dir=VOC/JPEGImages --output_path=data/mine/train.record

    python scripts/create_tf_record.py --format=csv --annotations_path=val_labels.csv \
        --image_dir=images/val --output_path=data/mine/val.record \
        --label_map_path=data/mine/label_map.pbtxt

One invocation converts one split. Without --label_map_path, `label_map.pbtxt` is
written beside the records; convert the other splits with
--label_map_path pointing at it, so every split has the same ids. With
--num_shards=N > 1 the files are <output_path>-0000K-of-0000N. Images are embedded
as their files' bytes (JPEG or PNG). A progress bar on a terminal (plain lines
otherwise) and a summary at the end: images, boxes per class, what was skipped
and why. Exit code 0, or 1 with one `error:` line, nothing written.
"""

from __future__ import annotations

import os

from absl import app, flags

from train_lib import cli

FLAGS = flags.FLAGS

flags.DEFINE_enum("format", None, ["coco", "voc", "csv"],
                  "The annotations' format: coco (one JSON file), voc (a folder of XML "
                  "files, one per image), csv (filename,width,height,class,xmin,ymin,xmax,"
                  "ymax in pixels, one row per box).")
flags.DEFINE_string("annotations_path", None,
                    "The COCO JSON file, the folder of VOC .xml files, or the CSV file.")
flags.DEFINE_string("image_dir", None,
                    "The folder the annotations' image file names are relative to.")
flags.DEFINE_string("output_path", None,
                    "The TFRecord file to write (with --num_shards > 1 its shards "
                    "<output_path>-0000K-of-0000N).")
flags.DEFINE_integer("num_shards", 1, "Number of TFRecord files; image i goes to shard i % N.",
                     lower_bound=1)
flags.DEFINE_string("label_map_path", None,
                    "An existing label_map.pbtxt to take the class ids from (every class of "
                    "the annotations must be in it). Default: write label_map.pbtxt beside "
                    "--output_path, ids from COCO's categories or, for VOC and CSV, 1..K "
                    "in sorted order of the class names.")
flags.DEFINE_boolean("strict", False,
                     "Stop at the first image that is missing, not a JPEG/PNG or of another "
                     "size than annotated, instead of skipping it with a count.")
flags.DEFINE_boolean("ignore_difficult_instances", False,
                     "VOC: leave out objects marked <difficult>1</difficult> (default: keep "
                     "them, with image/object/difficult = 1).")
flags.DEFINE_integer("num_workers", None,
                     "Threads reading and checking images (default: one per core).",
                     lower_bound=1)


def run() -> int:
    """Converts one split and prints its summary; returns the exit code."""
    for name in ("format", "annotations_path", "image_dir", "output_path"):
        if not FLAGS[name].value:
            return cli.fail(f"--{name} is required (see --helpfull)")
    from train_lib.output_paths import check_output_directory, check_output_file

    if FLAGS.num_shards == 1:
        check_output_file("--output_path", FLAGS.output_path)
    else:  # <output_path>-0000K-of-0000N: the folder they go in
        check_output_directory("--output_path",
                               os.path.dirname(os.path.abspath(FLAGS.output_path)))
    from train_lib.data.converters.convert import convert
    from train_lib.data.converters.summary import format_summary

    summary = convert(
        FLAGS.format, FLAGS.annotations_path, FLAGS.image_dir, FLAGS.output_path,
        num_shards=FLAGS.num_shards, label_map_path=FLAGS.label_map_path,
        strict=FLAGS.strict, ignore_difficult=FLAGS.ignore_difficult_instances,
        num_workers=FLAGS.num_workers)
    for line in format_summary(summary):
        print(line)
    return 0


if __name__ == "__main__":
    app.run(cli.main(run, verbose=False))
