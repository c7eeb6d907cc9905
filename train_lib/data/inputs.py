"""tf.data pipelines over OD API TFRecords: decode, stateless augment, resize, targets.

Contract:
- `build_train_dataset` yields `(images, labels, position)` batches forever.
  Images are float32 [B, H, W, 3], normalised; labels hold the RetinaNet targets
  (`cls_targets`, `box_targets` per level, `cls_weights`, `box_weights`);
  position is int64 [2], the `InputPosition` just after the batch's last example.
- The stream is a sequence of epochs. Epoch e's order (file order and shuffle
  buffer) is seeded by (seed, e) alone, and every random choice of augmentation
  is a stateless op keyed by (seed, pipeline id, e, index in epoch). So an
  `InputPosition` (epoch, offset) of two integers determines the whole rest of
  the stream: a pipeline built to start there yields exactly the batches an
  uninterrupted one would, after reading (not decoding) at most `offset`
  records. Checkpoints hold that position, not a tf.data iterator state. Same
  seed -> same batches.
- `build_eval_dataset` yields each example once, without augmentation, with
  what COCO evaluation needs to map detections back to the original image.
- A label id outside 1..num_classes stops the pipeline with an error that
  names the file and the source id (`INPUT_ERROR_MARK` starts the message).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
from official.vision.dataloaders import tf_example_decoder
from official.vision.ops import anchor, box_ops, preprocess_ops

from train_lib.config import PipelineConfig

# Marks our own in-graph input errors so the trainer can show them cleanly.
INPUT_ERROR_MARK = "INPUT_ERROR: "
MAX_EVAL_INSTANCES = 100
# Epoch e's shuffles are seeded by seed * _EPOCH_SEED_STRIDE + e.
_EPOCH_SEED_STRIDE = 1_000_003


@dataclasses.dataclass(frozen=True)
class InputPosition:
    """Where a training input stream stands: `offset` examples into `epoch`.

    `offset` may run past the epoch's end: the stream then continues into the
    next epochs, so (0, n) is the position after any n examples."""

    epoch: int = 0
    offset: int = 0


def _anchor_boxes(config: PipelineConfig) -> dict:
    """The model's anchors for the configured input size, keyed by level string."""
    model = config.model
    generator = anchor.build_anchor_generator(
        min_level=model.min_level,
        max_level=model.max_level,
        num_scales=model.anchor.num_scales,
        aspect_ratios=model.anchor.aspect_ratios,
        anchor_size=model.anchor.anchor_size,
    )
    return generator(image_size=tuple(model.input_size))


def _decode(config: PipelineConfig, filename: tf.Tensor, record: tf.Tensor) -> dict:
    """Decodes one OD API tf.Example and checks its class ids against the label map."""
    data = tf_example_decoder.TfExampleDecoder().decode(record)
    classes = data["groundtruth_classes"]
    num_classes = config.model.num_classes
    valid = tf.reduce_all((classes >= 1) & (classes <= num_classes))
    check = tf.debugging.Assert(
        valid,
        [
            f"{INPUT_ERROR_MARK}a label id outside the label map (1..{num_classes}) in file",
            filename,
            "source_id",
            data["source_id"],
            "labels",
            classes,
            "- fix the data or model.num_classes and the label map",
        ],
        summarize=20,
    )
    with tf.control_dependencies([check]):
        data["groundtruth_classes"] = tf.identity(classes)
    return data


def _pipeline_files(files: list[str], input_context) -> tuple[list[str], bool]:
    """This input pipeline's files, and whether its records must still be sharded
    (fewer files than pipelines: each pipeline takes every n-th record instead)."""
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    if num_pipelines > 1 and len(files) >= num_pipelines:
        return files[pipeline_id::num_pipelines], False
    return files, num_pipelines > 1


def _read(files_ds: tf.data.Dataset, num_files: int) -> tf.data.Dataset:
    """(filename, serialized record) pairs of the files in `files_ds`, interleaved."""
    return files_ds.interleave(
        lambda f: tf.data.TFRecordDataset(f).map(lambda r: (f, r)),
        cycle_length=min(num_files, 4),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _records(files: list[str], input_context, order_seed: tf.Tensor | None = None
             ) -> tf.data.Dataset:
    """(filename, serialized record) pairs, sharded per input pipeline: in file
    order, or with this pipeline's files permuted by (order_seed, their count)."""
    own, shard_records = _pipeline_files(files, input_context)
    names = tf.constant(own)
    if order_seed is not None:
        key = tf.stack([order_seed, tf.constant(len(own), tf.int64)])
        names = tf.gather(names, tf.argsort(tf.random.stateless_uniform([len(own)],
                                                                        seed=key)))
    records = _read(tf.data.Dataset.from_tensor_slices(names), len(own))
    if shard_records:
        records = records.shard(input_context.num_input_pipelines,
                                input_context.input_pipeline_id)
    return records


def _epoch_records(files: list[str], seed: int, shuffle_buffer_size: int, input_context,
                   epoch: tf.Tensor) -> tf.data.Dataset:
    """Epoch `epoch` of this pipeline's records as (filename, record, epoch, index in
    epoch), in an order seeded by (seed, epoch) alone."""
    epoch_seed = tf.constant(seed, tf.int64) * _EPOCH_SEED_STRIDE + epoch
    records = _records(files, input_context, order_seed=epoch_seed)
    records = records.shuffle(shuffle_buffer_size, seed=epoch_seed,
                              reshuffle_each_iteration=False)
    return records.enumerate().map(lambda index, pair: (pair[0], pair[1], epoch, index))


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


def _normalize(image: tf.Tensor) -> tf.Tensor:
    return preprocess_ops.normalize_image(image, preprocess_ops.MEAN_RGB,
                                          preprocess_ops.STDDEV_RGB)


def _train_example(config: PipelineConfig, key: tf.Tensor, data: dict, labeler, anchors):
    """Augments one decoded example (see `_augment`) and labels the anchors."""
    image, boxes, classes = _augment(config, key, data)
    cls_targets, box_targets, _, cls_weights, box_weights = labeler.label_anchors(
        anchors, boxes, tf.expand_dims(classes, axis=1)
    )
    labels = {
        "cls_targets": cls_targets,
        "box_targets": box_targets,
        "cls_weights": cls_weights,
        "box_weights": box_weights,
    }
    return _normalize(image), labels


def training_examples(config: PipelineConfig, files: list[str], count: int,
                      key_offset: int = 0) -> list[tuple]:
    """`count` training examples as the model sees them, for pictures: (uint8 image,
    boxes in pixels [N, 4] ymin, xmin, ymax, xmax, class ids [N]). Augmented with
    keys (seed, key_offset + i), so a different offset shows other augmentations."""
    records = tf.data.TFRecordDataset(files[:1]).take(count)
    base_key = tf.constant([config.train_config.seed, 1 << 20], tf.int64)
    examples = []
    for index, record in enumerate(records):
        data = _decode(config, tf.constant(files[0]), record)
        key = tf.random.experimental.stateless_fold_in(base_key, key_offset + index)
        image, boxes, classes = _augment(config, key, data)
        examples.append((tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8).numpy(),
                         boxes.numpy(), classes.numpy()))
    return examples


def _labeler(config: PipelineConfig) -> anchor.AnchorLabeler:
    return anchor.AnchorLabeler(
        match_threshold=config.model.anchor.match_threshold,
        unmatched_threshold=config.model.anchor.unmatched_threshold,
    )


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    # Op determinism (--deterministic) rejects the fused MapAndBatch kernel.
    options.experimental_optimization.map_and_batch_fusion = False
    return options


def build_train_dataset(
    config: PipelineConfig,
    files: list[str],
    batch_size: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
    start: InputPosition = InputPosition(),
) -> tf.data.Dataset:
    """Infinite, deterministic training batches `(images, labels, position)` from
    `start` on (see the module docstring).

    `batch_size` is the per-pipeline batch (default: train_config.batch_size).
    The batches from `start` are exactly those a stream from the beginning yields
    after the examples before `start`; getting there reads, without decoding, the
    `start.offset` records before it in its epoch.
    """
    train = config.train_config
    reader = config.train_input_reader
    batch_size = batch_size or train.batch_size
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    parallel = tf.data.AUTOTUNE if reader.num_parallel_calls == -1 else reader.num_parallel_calls
    labeler = _labeler(config)
    anchors = _anchor_boxes(config)
    base_key = tf.constant([train.seed, pipeline_id], tf.int64)

    @tf.autograph.experimental.do_not_convert  # plain TF ops: autograph only adds start-up
    def parse(filename, record, epoch, index):
        data = _decode(config, filename, record)
        key = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(base_key, epoch), index)
        image, labels = _train_example(config, key, data, labeler, anchors)
        return image, labels, tf.stack([epoch, index + 1])

    ds = tf.data.Dataset.range(start.epoch, tf.int64.max).flat_map(
        lambda epoch: _epoch_records(files, train.seed, reader.shuffle_buffer_size,
                                     input_context, epoch))
    ds = ds.skip(start.offset)
    ds = ds.map(parse, num_parallel_calls=parallel, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    # A batch's position is that of its last example.
    ds = ds.map(lambda images, labels, positions: (images, labels, positions[-1]))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options())


def preprocess_for_model(image: tf.Tensor, input_size: list[int]) -> tuple[tf.Tensor, tf.Tensor]:
    """One image [H, W, 3] (uint8 or float, 0..255) as the model sees it at evaluation.

    Resized keeping its aspect ratio to fit `input_size` [height, width], placed at
    the top-left, zero-padded, then normalised. Returns (float32 [height, width, 3],
    image_scale float32 [2]: model-input pixels per original pixel, (y, x)). The eval
    pipeline and the exported SavedModel both use it, so they see the same pixels.
    """
    image, _, image_scale = _resize_and_pad(
        tf.cast(image, tf.float32), tf.zeros([0, 4]), input_size, 1.0, tf.zeros([2])
    )
    return _normalize(image), image_scale


def _eval_example(config: PipelineConfig, data: dict):
    """Resizes one example for the model and keeps its ground truth for COCO."""
    original_size = tf.shape(data["image"])[0:2]
    image, image_scale = preprocess_for_model(data["image"], config.model.input_size)
    num = tf.minimum(tf.shape(data["groundtruth_classes"])[0], MAX_EVAL_INSTANCES)
    boxes = preprocess_ops.clip_or_pad_to_fixed_size(
        data["groundtruth_boxes"][:MAX_EVAL_INSTANCES], MAX_EVAL_INSTANCES)
    classes = preprocess_ops.clip_or_pad_to_fixed_size(
        data["groundtruth_classes"][:MAX_EVAL_INSTANCES], MAX_EVAL_INSTANCES)
    is_crowd = preprocess_ops.clip_or_pad_to_fixed_size(
        tf.cast(data["groundtruth_is_crowd"], tf.int64)[:MAX_EVAL_INSTANCES],
        MAX_EVAL_INSTANCES)
    info = {
        "source_id": tf.strings.to_number(data["source_id"], tf.int64),
        "original_size": original_size,
        "image_scale": image_scale,
        "groundtruth_boxes": boxes,  # normalised ymin, xmin, ymax, xmax
        "groundtruth_classes": classes,
        "groundtruth_is_crowd": is_crowd,
        "num_groundtruths": num,
    }
    return image, info


def build_eval_dataset(
    config: PipelineConfig,
    files: list[str],
    sample_1_of_n: int = 1,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Each example once, in file order, batched by eval_config.batch_size."""
    reader = config.eval_input_reader
    parallel = tf.data.AUTOTUNE if reader.num_parallel_calls == -1 else reader.num_parallel_calls
    ds = _records(files, input_context)
    if sample_1_of_n > 1:
        ds = ds.shard(sample_1_of_n, 0)
    ds = ds.map(
        lambda f, r: _eval_example(config, _decode(config, f, r)),
        num_parallel_calls=parallel,
        deterministic=True,
    )
    ds = ds.batch(config.eval_config.batch_size, drop_remainder=False)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options())


def explain_input_error(err: tf.errors.OpError, files: list[str]) -> tuple[str, str] | None:
    """What an input-pipeline error says about the data: ("bad", our in-graph check's
    message, e.g. a label id outside the label map in a named file), ("corrupt",
    which file and record cannot be read), or None when it is not one of those."""
    message = err.message
    if INPUT_ERROR_MARK in message:
        detail = message[message.index(INPUT_ERROR_MARK) + len(INPUT_ERROR_MARK):]
        return "bad", " ".join(detail.split("\n")[0].split())
    if isinstance(err, tf.errors.DataLossError):
        found = find_corrupt_tfrecord(files)
        return "corrupt", (f"{found[0]} is corrupt at record {found[1]} ({found[2]})" if found
                           else message.splitlines()[0])
    return None


def find_corrupt_tfrecord(files: list[str]) -> tuple[str, int, str] | None:
    """Reads every record of `files`; returns (file, record index, error) of the
    first unreadable one, or None when all read back. For error reports only."""
    for path in files:
        index = 0
        try:
            for _ in tf.data.TFRecordDataset(path):
                index += 1
        except (tf.errors.DataLossError, tf.errors.OutOfRangeError,
                tf.errors.InvalidArgumentError) as err:
            return path, index, err.message.splitlines()[0]
    return None
