"""The training records of one input pipeline, decoded and checked once, in memory.

Decoding and checking an example (example_checks.decode_and_check) is the largest
share of the input pipeline's work that does not depend on the epoch: every epoch
decodes every image again. When a pipeline's records fit in
`train_input_reader.decoded_cache_mb`, `build` decodes and checks them all once,
before the first step, and training then looks each up by (file position, record
index) (records.epoch_indices gives the epoch's order without reading a file).

Contract:
- A lookup returns what `decode_and_check` returns for that record (`image`,
  `groundtruth_boxes`, `groundtruth_classes`, `rule`, `counts`), bit for bit, so
  the augmentation, the data contract (an invalid record stops the stream or is
  skipped where it would have been), the input position and the batches are
  those of the stream that reads the files.
- The cache holds every record of the pipeline's own files
  (records.pipeline_files): when records are sharded (fewer files than
  pipelines) which of them a pipeline takes depends on the epoch.
- It is only a speed-up: when the files' size already exceeds the limit, when the
  decoded records reach it, or when a record cannot be read or decoded (the
  stream that reads the files then reports it at the step it is reached), there
  is no cache and `build` returns None, saying why in one log line.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from official.vision.ops import preprocess_ops

from train_lib.config import PipelineConfig
from train_lib.data import example_checks, records

_MIB = 1 << 20
# Records decoded per host round trip while the cache is built.
_BUILD_BATCH = 256


@dataclasses.dataclass(frozen=True)
class DecodedCache:
    """A pipeline's decoded records; row r is record r - file_starts[f] of file f."""

    files: list[str]  # the pipeline's own files (records.pipeline_files), in order
    record_counts: list[int]  # records in each of them
    shard_records: bool  # whether the pipeline takes every n-th of their records
    file_starts: tf.Tensor  # int64 [files + 1]: the row of each file's first record
    images: tf.Tensor  # string [rows]: each image, tf.io.serialize_tensor'd
    box_starts: tf.Tensor  # int64 [rows + 1]: the first box of each row
    boxes: tf.Tensor  # float32 [boxes, 4]
    classes: tf.Tensor  # int64 [boxes]
    rules: tf.Tensor  # int32 [rows]
    counts: tf.Tensor  # int64 [rows, len(example_checks.COUNTERS)]

    def lookup(self, position: tf.Tensor, record_index: tf.Tensor) -> dict:
        """Record `record_index` of file `position`, as decode_and_check returns it
        (the keys training reads), and its file name."""
        row = tf.gather(self.file_starts, position) + record_index
        first, last = tf.gather(self.box_starts, row), tf.gather(self.box_starts, row + 1)
        image = tf.io.parse_tensor(tf.gather(self.images, row), tf.uint8)
        image.set_shape([None, None, 3])
        return {
            "image": image,
            "groundtruth_boxes": self.boxes[first:last],
            "groundtruth_classes": self.classes[first:last],
            "rule": tf.gather(self.rules, row),
            "counts": tf.gather(self.counts, row),
        }

    def filename(self, position: tf.Tensor) -> tf.Tensor:
        return tf.gather(tf.constant(self.files), position)


@tf.autograph.experimental.do_not_convert  # as inputs.build_train_dataset
def _decoded(files: list[str], num_classes: int, max_boxes: int) -> tf.data.Dataset:
    """Batches of every record of `files` in file order, decoded and checked:
    (file position, serialized image, boxes [max_boxes, 4] and classes [max_boxes]
    padded with zeros, number of boxes, rule, counts)."""
    names = tf.constant(files)
    pad = preprocess_ops.clip_or_pad_to_fixed_size

    def read(position):
        return tf.data.TFRecordDataset(tf.gather(names, position)).map(
            lambda record: (position, record))

    def decode(position, record):
        data = example_checks.decode_and_check(record, num_classes, max_boxes)
        classes = data["groundtruth_classes"]
        return (position, tf.io.serialize_tensor(data["image"]),
                pad(data["groundtruth_boxes"], max_boxes), pad(classes, max_boxes),
                tf.size(classes), data["rule"], data["counts"])
    ds = tf.data.Dataset.range(len(files)).flat_map(read)
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(_BUILD_BATCH).prefetch(1).with_options(records.options())


def build(config: PipelineConfig, files: list[str], input_context,
          log: Callable[[str], None], stop: threading.Event | None = None
          ) -> DecodedCache | None:
    """The records of this pipeline (`input_context`; None: the only one) of the
    training `files`, decoded and checked (see the module docstring), or None (said
    in one `log` line) when they do not fit in train_input_reader.decoded_cache_mb
    MiB, when that is 0, or when a record cannot be read or decoded; None too,
    without a word, once `stop` is set (checked between batches of records)."""
    num_classes = config.model.num_classes
    max_boxes = config.train_input_reader.max_number_of_boxes
    limit_mb = config.train_input_reader.decoded_cache_mb
    if limit_mb <= 0:
        return None
    own, shard_records = records.pipeline_files(files, input_context)
    limit = limit_mb * _MIB
    on_disk = sum(os.path.getsize(path) for path in own)
    if on_disk > limit:
        log(f"input cache: off, the training files ({on_disk / _MIB:.0f} MiB) exceed "
            f"train_input_reader.decoded_cache_mb ({limit_mb}); images are decoded as "
            "they are read")
        return None
    begin = time.perf_counter()
    parts: dict[str, list] = {"positions": [], "images": [], "box_counts": [], "boxes": [],
                              "classes": [], "rules": [], "counts": []}
    nbytes = 0
    try:
        for position, images, boxes, classes, num_boxes, rules, counts in _decoded(
                own, num_classes, max_boxes):
            if stop is not None and stop.is_set():
                return None
            images = images.numpy().tolist()
            nbytes += sum(len(image) for image in images)
            if nbytes > limit:
                log(f"input cache: off, the decoded training images exceed "
                    f"train_input_reader.decoded_cache_mb ({limit_mb}); images are decoded "
                    "as they are read")
                return None
            parts["positions"].append(position.numpy())
            parts["images"] += images
            num_boxes = num_boxes.numpy()
            real = np.arange(max_boxes)[None, :] < num_boxes[:, None]
            parts["box_counts"].append(num_boxes)
            parts["boxes"].append(boxes.numpy()[real])
            parts["classes"].append(classes.numpy()[real])
            parts["rules"].append(rules.numpy())
            parts["counts"].append(counts.numpy())
    except (tf.errors.OpError, UnicodeDecodeError):  # the latter: a non-Example record
        log("input cache: off, a training record cannot be read or decoded; images are "
            "decoded as they are read (training reports that record when it reaches it)")
        return None
    if not parts["images"]:
        return None
    record_counts = np.bincount(np.concatenate(parts["positions"]), minlength=len(own))
    box_counts = np.concatenate(parts["box_counts"])
    cache = DecodedCache(
        files=list(own),
        record_counts=[int(n) for n in record_counts],
        shard_records=shard_records,
        file_starts=tf.constant(np.concatenate([[0], np.cumsum(record_counts)]), tf.int64),
        images=tf.constant(parts["images"]),
        box_starts=tf.constant(np.concatenate([[0], np.cumsum(box_counts)]), tf.int64),
        boxes=tf.constant(np.concatenate(parts["boxes"]).reshape(-1, 4), tf.float32),
        classes=tf.constant(np.concatenate(parts["classes"]), tf.int64),
        rules=tf.constant(np.concatenate(parts["rules"]), tf.int32),
        counts=tf.constant(np.concatenate(parts["counts"]), tf.int64))
    log(f"input cache: {len(parts['images'])} training records of {len(own)} file"
        f"{'s' * (len(own) != 1)} decoded in memory ({nbytes / _MIB:.0f} MiB, "
        f"{time.perf_counter() - begin:.1f} s)")
    return cache
