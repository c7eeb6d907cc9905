"""tf.data pipelines over OD API TFRecords: check, decode, stateless augment, targets.

Contract:
- `build_train_dataset` yields `(images, labels, position, data_counts)` batches
  forever. Images are float32 [B, H, W, 3], normalised; labels are the detector
  family's targets of the augmented boxes (families.input_targets: RetinaNet's
  anchor targets, Faster R-CNN's RPN targets and padded ground truth);
  position is int64 [2], the `InputPosition` just after the batch's last example;
  data_counts int64 [len(example_checks.COUNTERS)], what the data contract did in
  this stream so far (examples read, skipped by rule, boxes tidied). Examples are
  decoded, checked and augmented one by one; a batch is normalised and its
  targets computed together, after batching.
- Every record is checked as it is read (example_checks.py): under
  `bad_example_policy: error` the first invalid example stops the pipeline with a
  message that names the file, the record, its source id and the rule
  (`INPUT_ERROR_MARK` starts it); under `skip` it is dropped and counted. Images
  without boxes are valid.
- The stream is a sequence of epochs. Epoch e's order (file order and shuffle
  buffer) is seeded by (seed, e) alone, and every random choice of augmentation
  is a stateless op keyed by (seed, pipeline id, e, index in epoch). So an
  `InputPosition` (epoch, offset) of two integers determines the whole rest of
  the stream: a pipeline built to start there yields exactly the batches an
  uninterrupted one would, after reading (not decoding) at most `offset`
  records. Skipped records keep their place in that order, so skipping keeps
  this. Checkpoints hold that position, not a tf.data iterator state. Same
  seed -> same batches.
- `build_eval_dataset` yields each valid example once, without augmentation,
  with what COCO evaluation needs to map detections back to the original image.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
from official.vision.ops import box_ops, preprocess_ops

from train_lib import families
from train_lib.config import InputReaderConfig, ModelConfig, PipelineConfig
from train_lib.data import decoded_cache, example_checks, records

# Marks our own in-graph input errors so the trainer can show them cleanly.
INPUT_ERROR_MARK = "INPUT_ERROR: "


@dataclasses.dataclass(frozen=True)
class InputPosition:
    """Where a training input stream stands: `offset` examples into `epoch`.

    `offset` may run past the epoch's end: the stream then continues into the
    next epochs, so (0, n) is the position after any n examples."""

    epoch: int = 0
    offset: int = 0


def _checked(reader: InputReaderConfig, data: dict, filename: tf.Tensor,
             record_index: tf.Tensor) -> dict:
    """`data`, one record's `example_checks.decode_and_check`; under
    bad_example_policy `error` an invalid example stops the pipeline with an
    assertion that names its file and record (`INPUT_ERROR_MARK` first). The message
    the user sees is written on the host from that record
    (`input_errors.explain_input_error`): in the graph, the check costs one op per
    example."""
    if reader.bad_example_policy == "error":
        check = tf.debugging.Assert(tf.equal(data["rule"], 0), [
            INPUT_ERROR_MARK, filename, tf.cast(record_index, tf.int32)])
        with tf.control_dependencies([check]):
            data["image"] = tf.identity(data["image"])
    return data


def _decoded(reader: InputReaderConfig, num_classes: int, filename: tf.Tensor,
             record_index: tf.Tensor, record: tf.Tensor) -> dict:
    """One serialized record decoded and `_checked`."""
    data = example_checks.decode_and_check(record, num_classes, reader.max_number_of_boxes)
    return _checked(reader, data, filename, record_index)


def _keep_and_count(skip_examples: int):
    """A scan over (..., counts, valid) elements that puts the counts' running sum
    in place of each element's counts and whether to keep it in place of `valid`.
    The first `skip_examples` valid examples (and invalid ones among them) are
    neither kept nor counted: a multi-replica stream resumes after that many
    examples, not records."""
    def step(state, element):
        seen, total = state
        *rest, counts, valid = element
        past = seen >= skip_examples
        total = tf.where(past, total + counts, total)
        seen = seen + tf.cast(valid, tf.int64)
        return (seen, total), (*rest, total, past & valid)
    initial = (tf.constant(0, tf.int64),
               tf.zeros([len(example_checks.COUNTERS)], tf.int64))
    return initial, step


def _checked_batches(ds: tf.data.Dataset, parse, parallel, batch_size: int,
                     drop_remainder: bool, skip_bad: bool, skip_examples: int = 0
                     ) -> tf.data.Dataset:
    """Batches of `parse` (returning (..., counts, valid)) over `ds`, whose last
    element is the running data counts [B, len(COUNTERS)] up to each example.

    With `skip_bad` invalid examples are dropped (and `skip_examples` valid ones
    passed over first), which needs a scan per example; otherwise no invalid
    example gets this far (its check stopped the pipeline) and the counts are
    summed per batch, which costs next to nothing."""
    ds = ds.map(parse, num_parallel_calls=parallel, deterministic=True)
    if skip_bad or skip_examples:
        initial, step = _keep_and_count(skip_examples)
        ds = ds.scan(initial, step)
        ds = ds.filter(lambda *element: element[-1])
        ds = ds.map(lambda *element: element[:-1])
        return ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda *element: element[:-1])
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def running(total, batch):
        counts = total + tf.cumsum(batch[-1], axis=0)
        return counts[-1], (*batch[:-1], counts)
    return ds.scan(tf.zeros([len(example_checks.COUNTERS)], tf.int64), running)


def _parallel(reader: InputReaderConfig):
    return tf.data.AUTOTUNE if reader.num_parallel_calls == -1 else reader.num_parallel_calls


def _resize_and_pad(image, boxes, output_size, scale, offset_fraction):
    """Resizes `image` to fit `output_size * scale` keeping its aspect ratio, crops
    a window of at most `output_size` at `offset_fraction` of the slack, pads to
    `output_size`.

    Returns the image, the boxes in output pixels (clipped, empty ones kept as
    zero-area rows), and `image_scale` [2] (output pixels per input pixel).
    """
    out_h, out_w = float(output_size[0]), float(output_size[1])
    in_size = tf.cast(tf.shape(image)[0:2], tf.float32)
    ratio = tf.minimum(out_h * scale / in_size[0], out_w * scale / in_size[1])
    scaled = tf.cast(tf.round(in_size * ratio), tf.int32)
    image = tf.image.resize(image, scaled, method="bilinear")
    slack = tf.maximum(tf.cast(scaled, tf.float32) - tf.constant([out_h, out_w]), 0.0)
    offset = tf.cast(tf.floor(slack * offset_fraction), tf.int32)
    crop_size = tf.minimum(scaled, tf.constant(output_size, tf.int32))
    image = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([crop_size, [3]], 0))
    image = tf.image.pad_to_bounding_box(image, 0, 0, output_size[0], output_size[1])
    image_scale = tf.cast(scaled, tf.float32) / in_size

    offset_f = tf.cast(offset, tf.float32)
    scaled_f = tf.cast(scaled, tf.float32)
    boxes = boxes * tf.concat([scaled_f, scaled_f], 0) - tf.concat([offset_f, offset_f], 0)
    crop_f = tf.cast(crop_size, tf.float32)
    boxes = tf.clip_by_value(boxes, 0.0, tf.concat([crop_f, crop_f], 0))
    return image, boxes, image_scale


def _augment(config: PipelineConfig, key: tf.Tensor, data: dict):
    """Flip and scale-jitter one decoded example with stateless ops keyed by `key`.

    Returns the image (float32 0..255, model input size), its boxes in pixels
    and their classes; boxes cropped away entirely or to a sliver are dropped.
    """
    aug = config.train_config.augmentation
    seeds = tf.random.experimental.stateless_split(key, num=3)
    image = tf.cast(data["image"], tf.float32)
    boxes = data["groundtruth_boxes"]
    classes = data["groundtruth_classes"]

    if aug.random_horizontal_flip:
        flip = tf.random.stateless_uniform([], seed=seeds[0]) < 0.5
        image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
        boxes = tf.cond(flip, lambda: box_ops.horizontal_flip_boxes(boxes), lambda: boxes)

    scale = tf.random.stateless_uniform(
        [], seed=seeds[1], minval=aug.scale_min, maxval=aug.scale_max
    )
    offset_fraction = tf.random.stateless_uniform([2], seed=seeds[2])
    image, boxes, _ = _resize_and_pad(
        image, boxes, config.model.input_size, scale, offset_fraction
    )
    heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = tf.where((heights >= 1.0) & (widths >= 1.0))[:, 0]
    return image, tf.gather(boxes, keep), tf.gather(classes, keep)


def normalize(image: tf.Tensor, model: ModelConfig) -> tf.Tensor:
    """Pixels 0..255 (float, [..., 3] RGB) as the model sees them: (pixel -
    model.pixel_mean) / model.pixel_stddev per channel."""
    return (image - tf.constant(model.pixel_mean, image.dtype)) / tf.constant(
        model.pixel_stddev, image.dtype)


def denormalize(image, model: ModelConfig):
    """The inverse of `normalize` (NumPy or TensorFlow): pixels 0..255, float."""
    return image * np.asarray(model.pixel_stddev, np.float32) + np.asarray(
        model.pixel_mean, np.float32)


def _train_example(config: PipelineConfig, key: tf.Tensor, data: dict, max_boxes: int):
    """Augments one decoded example (see `_augment`). Returns its image (float32
    0..255: normalised with its batch) and (key, boxes [max_boxes, 4] in pixels,
    classes [max_boxes], number of boxes): what the family's batched targets
    (families.input_targets) take, the rows past the boxes zero."""
    image, boxes, classes = _augment(config, key, data)
    pad = preprocess_ops.clip_or_pad_to_fixed_size
    return image, (key, pad(boxes, max_boxes), pad(classes, max_boxes), tf.shape(classes)[0])


def training_examples(config: PipelineConfig, files: list[str], count: int,
                      key_offset: int = 0) -> list[tuple]:
    """`count` training examples as the model sees them, for pictures: (uint8 image,
    boxes in pixels [N, 4] ymin, xmin, ymax, xmax, class ids [N]). Augmented with
    keys (seed, key_offset + i), so a different offset shows other augmentations.
    Invalid examples are passed over."""
    reader = config.train_input_reader
    base_key = tf.constant([config.train_config.seed, 1 << 20], tf.int64)
    examples = []
    for index, record in enumerate(tf.data.TFRecordDataset(files[:1]).take(4 * count)):
        data = example_checks.decode_and_check(record, config.model.num_classes,
                                               reader.max_number_of_boxes)
        if int(data["rule"]) != 0:
            continue
        key = tf.random.experimental.stateless_fold_in(base_key, key_offset + index)
        image, boxes, classes = _augment(config, key, data)
        examples.append((tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8).numpy(),
                         boxes.numpy(), classes.numpy()))
        if len(examples) == count:
            break
    return examples


# The pipelines are built without autograph (each builder is `do_not_convert`): tf.data
# traces a map function with the autograph setting in force where `map` is called,
# so none of their functions (all plain TF ops, explicit tf.cond) is source-transformed,
# which only cost start-up (docs/performance.md, "Start-up").
@tf.autograph.experimental.do_not_convert
def build_train_dataset(
    config: PipelineConfig,
    files: list[str],
    batch_size: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
    start: InputPosition = InputPosition(),
    cache: decoded_cache.DecodedCache | None = None,
) -> tf.data.Dataset:
    """Infinite, deterministic training batches `(images, labels, position,
    data_counts)` from `start` on (see the module docstring).

    `batch_size` is the per-pipeline batch (default: train_config.batch_size).
    The batches from `start` are exactly those a stream from the beginning yields
    after the examples before `start`; getting there reads, without decoding, the
    `start.offset` records before it in its epoch. A multi-replica stream (with an
    `input_context`) that skips bad examples counts its offset in examples, so it
    decodes the examples it skips. With `cache` (this pipeline's records, from
    decoded_cache.build with the same files and input_context) the records are
    looked up there instead of read and decoded; the batches are the same.
    """
    train = config.train_config
    reader = config.train_input_reader
    num_classes = config.model.num_classes
    batch_size = batch_size or train.batch_size
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    targets = families.input_targets(config.model, reader.max_number_of_boxes)
    base_key = tf.constant([train.seed, pipeline_id], tf.int64)

    def example(data, epoch, index):
        key = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(base_key, epoch), index)
        image, boxes = _train_example(config, key, data, reader.max_number_of_boxes)
        return (image, boxes, tf.stack([epoch, index + 1]), data["counts"],
                tf.equal(data["rule"], 0))

    if cache is None:
        def parse(filename, record_index, record, epoch, index):
            return example(_decoded(reader, num_classes, filename, record_index, record),
                           epoch, index)

        def epoch_elements(epoch):
            return records.epoch_records(files, train.seed, reader.shuffle_buffer_size,
                                         input_context, epoch)
    else:
        def parse(position, record_index, epoch, index):
            data = _checked(reader, cache.lookup(position, record_index),
                            cache.filename(position), record_index)
            return example(data, epoch, index)

        def epoch_elements(epoch):
            return records.epoch_indices(cache.record_counts, cache.shard_records, train.seed,
                                         reader.shuffle_buffer_size, input_context, epoch)

    ds = tf.data.Dataset.range(start.epoch, tf.int64.max).flat_map(epoch_elements)
    offset_in_examples = input_context is not None and reader.bad_example_policy == "skip"
    if not offset_in_examples:
        ds = ds.skip(start.offset)
    ds = _checked_batches(ds, parse, _parallel(reader), batch_size, drop_remainder=True,
                          skip_bad=reader.bad_example_policy == "skip",
                          skip_examples=start.offset if offset_in_examples else 0)
    # A whole batch normalised and labelled at once (the family's targets are
    # vectorised); a batch's position and data counts are its last example's.
    ds = ds.map(lambda images, boxes, positions, counts:
                (normalize(images, config.model), targets(*boxes), positions[-1], counts[-1]),
                num_parallel_calls=_parallel(reader), deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(records.options())


def preprocess_for_model(image: tf.Tensor, model: ModelConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """One image [H, W, 3] (uint8 or float, 0..255) as the model sees it at evaluation.

    Resized keeping its aspect ratio to fit `model.input_size` [height, width], placed
    at the top-left, zero-padded, then normalised (`normalize`). Returns (float32 [height, width, 3],
    image_scale float32 [2]: model-input pixels per original pixel, (y, x)). The eval
    pipeline and the exported SavedModel both use it, so they see the same pixels.
    """
    image, _, image_scale = _resize_and_pad(
        tf.cast(image, tf.float32), tf.zeros([0, 4]), model.input_size, 1.0, tf.zeros([2])
    )
    return normalize(image, model), image_scale


def _numeric_source_id(source_id: tf.Tensor) -> tf.Tensor:
    """COCO's integer image id: a numeric image/source_id as it is, another one
    hashed (COCO evaluation needs integers; the OD API allows any string)."""
    numeric = tf.strings.regex_full_match(source_id, "[0-9]{1,18}")
    return tf.cond(numeric, lambda: tf.strings.to_number(source_id, tf.int64),
                   lambda: tf.strings.to_hash_bucket_fast(source_id, 1 << 62))


def _eval_example(reader: InputReaderConfig, model: ModelConfig, data: dict):
    """Resizes one example for the model and keeps its ground truth for COCO,
    padded to reader.max_number_of_boxes."""
    limit = reader.max_number_of_boxes
    original_size = tf.shape(data["image"])[0:2]
    image, image_scale = preprocess_for_model(data["image"], model)

    def padded(values):
        return preprocess_ops.clip_or_pad_to_fixed_size(values, limit)

    info = {
        "source_id": _numeric_source_id(data["source_id"]),
        "original_size": original_size,
        "image_scale": image_scale,
        "groundtruth_boxes": padded(data["groundtruth_boxes"]),  # normalised y0 x0 y1 x1
        "groundtruth_classes": padded(data["groundtruth_classes"]),
        "groundtruth_is_crowd": padded(tf.cast(data["groundtruth_is_crowd"], tf.int64)),
        "num_groundtruths": tf.shape(data["groundtruth_classes"])[0],
    }
    return image, info


@tf.autograph.experimental.do_not_convert  # as build_train_dataset
def build_eval_dataset(
    config: PipelineConfig,
    files: list[str],
    sample_1_of_n: int = 1,
    input_context: tf.distribute.InputContext | None = None,
    reader: InputReaderConfig | None = None,
) -> tf.data.Dataset:
    """Each valid example once, in file order, batched by eval_config.batch_size, as
    (images, info); info["data_counts"] holds the running data counts (see
    example_checks.COUNTERS) up to each example. `reader` (default
    eval_input_reader) sets the checks' policy and the box limit."""
    reader = reader or config.eval_input_reader
    num_classes = config.model.num_classes

    def parse(filename, record_index, record):
        data = _decoded(reader, num_classes, filename, record_index, record)
        image, info = _eval_example(reader, config.model, data)
        return image, info, data["counts"], tf.equal(data["rule"], 0)

    ds = records.records(files, input_context)
    if sample_1_of_n > 1:
        ds = ds.shard(sample_1_of_n, 0)
    ds = _checked_batches(ds, parse, _parallel(reader), config.eval_config.batch_size,
                          drop_remainder=False, skip_bad=reader.bad_example_policy == "skip")
    ds = ds.map(lambda images, info, counts: (images, {**info, "data_counts": counts}))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(records.options())
