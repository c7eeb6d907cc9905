"""The input pipeline: deterministic by seed, resumable, augmentation that moves boxes right."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from official.vision.ops import anchor

from tests.conftest import make_tiny_config
from train_lib import families
from train_lib.data import example_checks, inputs


def _files(pattern: str) -> list[str]:
    return sorted(tf.io.gfile.glob(pattern))


def _batches(config, files, count: int = 3) -> list[np.ndarray]:
    iterator = iter(inputs.build_train_dataset(config, files))
    return [next(iterator)[0].numpy() for _ in range(count)]


def test_same_seed_same_batches_other_seed_other_batches(tiny_dataset):
    files = _files(tiny_dataset["train_pattern"])
    config = make_tiny_config(tiny_dataset)
    config.train_config.augmentation.scale_min = 0.7
    config.train_config.augmentation.scale_max = 1.3
    first, again = _batches(config, files), _batches(config, files)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    config.train_config.seed += 1
    other = _batches(config, files)
    assert not any(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_position_after_a_batch_restores_exactly(tiny_dataset):
    """A checkpoint holds the position a batch carries; a pipeline built to start
    there yields the batches that followed, also past an epoch boundary (48 images,
    batch 5: batch 10 straddles epochs 0 and 1)."""
    files = _files(tiny_dataset["train_pattern"])
    config = make_tiny_config(tiny_dataset)
    iterator = iter(inputs.build_train_dataset(config, files, 5))
    batches = [next(iterator) for _ in range(14)]
    positions = [tuple(int(v) for v in position.numpy()) for _, _, position, _ in batches]
    assert positions[0] == (0, 5) and positions[8] == (0, 45)
    assert positions[9] == (1, 2) and positions[13] == (1, 22)  # 48 per epoch
    for after in (4, 9, 10):
        fresh = iter(inputs.build_train_dataset(
            config, files, 5, start=inputs.InputPosition(*positions[after - 1])))
        for expected in batches[after:after + 3]:
            got = next(fresh)
            np.testing.assert_array_equal(got[0].numpy(), expected[0].numpy())
            np.testing.assert_array_equal(got[2].numpy(), expected[2].numpy())


def test_epochs_differ_in_order_and_augmentation(tiny_dataset):
    files = _files(tiny_dataset["train_pattern"])
    config = make_tiny_config(tiny_dataset)
    iterator = iter(inputs.build_train_dataset(config, files, 48))
    epoch0, epoch1 = next(iterator)[0].numpy(), next(iterator)[0].numpy()
    assert not np.array_equal(epoch0, epoch1)
    assert not any(np.array_equal(epoch0[0], image) for image in epoch1)


def test_skipping_examples_gives_the_batches_that_follow_them(tiny_dataset):
    """How multi-replica jobs resume: past an epoch boundary (48 images, batch 4)
    and on a shard of a two-worker job, skipping k batches' examples gives batch k on."""
    files = _files(tiny_dataset["train_pattern"])
    config = make_tiny_config(tiny_dataset)
    for context in (None, tf.distribute.InputContext(2, 1, 2)):
        iterator = iter(inputs.build_train_dataset(config, files, 4, context))
        expected = [next(iterator)[0].numpy() for _ in range(14)][11:]
        skipped = iter(inputs.build_train_dataset(config, files, 4, context,
                                                  start=inputs.InputPosition(0, 11 * 4)))
        got = [next(skipped)[0].numpy() for _ in range(3)]
        assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))
        assert not np.array_equal(expected[0], expected[1])


def test_targets_have_positives_and_shapes_of_the_model(tiny_dataset):
    config = make_tiny_config(tiny_dataset)
    images, labels, _, _ = next(iter(inputs.build_train_dataset(
        config, _files(tiny_dataset["train_pattern"]))))
    assert images.shape == (4, 64, 64, 3) and images.dtype == tf.float32
    assert set(labels["cls_targets"]) == {"3", "4", "5"}
    anchors_per_cell = 3 * 3  # num_scales x aspect ratios
    assert labels["cls_targets"]["3"].shape == (4, 8, 8, anchors_per_cell)
    assert labels["box_targets"]["5"].shape == (4, 2, 2, anchors_per_cell * 4)
    # every image has at least one object, so at least one positive anchor each
    assert np.all(labels["box_weights"].numpy().sum(axis=1) >= 1)
    classes = np.concatenate([v.numpy().ravel() for v in labels["cls_targets"].values()])
    assert set(np.unique(classes)) <= {-2, -1, 1, 2, 3}


@pytest.mark.parametrize("box_coder_weights", [[], [10.0, 10.0, 5.0, 5.0]])
def test_batched_anchor_targets_are_model_gardens_labeler_per_example(tiny_dataset,
                                                                      box_coder_weights):
    """RetinaNet's targets of a whole batch at once are Model Garden's AnchorLabeler of
    each example (classes, weights bit for bit, box targets to rounding), with boxes
    of several counts and an image without any (its padding never matched, never
    force-matched); box targets scaled by model.anchor.box_coder_weights as the
    labeler's box coder scales them (the OD API's [10, 10, 5, 5])."""
    config = make_tiny_config(tiny_dataset)
    model = config.model
    model.anchor.box_coder_weights = box_coder_weights
    config.train_config.augmentation.scale_min = 0.5  # some boxes cropped away
    config.train_config.augmentation.scale_max = 2.0
    records = tf.data.TFRecordDataset(_files(tiny_dataset["train_pattern"])[0]).take(11)
    examples = [inputs._train_example(config, tf.constant([5, i], tf.int64),
                                      example_checks.decode_and_check(r, 3, 100), 100)[1]
                for i, r in enumerate(records)]
    examples.append((tf.constant([5, 99], tf.int64), tf.zeros([100, 4]),
                     tf.zeros([100], tf.int64), tf.constant(0)))
    batch = [tf.stack([e[part] for e in examples]) for part in range(4)]
    assert len(set(batch[3].numpy().tolist())) >= 3
    got = families.input_targets(model, 100)(*batch)
    labeler = anchor.AnchorLabeler(model.anchor.match_threshold,
                                   model.anchor.unmatched_threshold,
                                   box_coder_weights=box_coder_weights or None)
    anchors = anchor.build_anchor_generator(
        min_level=model.min_level, max_level=model.max_level,
        num_scales=model.anchor.num_scales, aspect_ratios=model.anchor.aspect_ratios,
        anchor_size=model.anchor.anchor_size)(image_size=tuple(model.input_size))
    for i, (_, boxes, classes, count) in enumerate(examples):
        cls, box, _, cls_weights, box_weights = labeler.label_anchors(
            anchors, boxes[:count], tf.expand_dims(classes[:count], 1))
        for level in cls:
            np.testing.assert_array_equal(got["cls_targets"][level][i], cls[level])
            # encoded with the same ops on a larger tensor: equal to within rounding
            np.testing.assert_allclose(got["box_targets"][level][i], box[level],
                                       rtol=1e-6, atol=1e-5 * max(box_coder_weights or [1]))
        np.testing.assert_array_equal(got["cls_weights"][i], cls_weights)
        np.testing.assert_array_equal(got["box_weights"][i], box_weights)


def test_flip_is_a_mirror_chosen_by_the_key(tiny_dataset):
    config = make_tiny_config(tiny_dataset)
    aug = config.train_config.augmentation
    aug.scale_min = aug.scale_max = 1.0
    example = next(iter(tf.data.TFRecordDataset(_files(tiny_dataset["train_pattern"])[0])))
    outcomes = []
    for index in range(8):
        key = tf.constant([3, index], tf.int64)
        images = {}
        for flip in (True, False):
            aug.random_horizontal_flip = flip
            data = example_checks.decode_and_check(example, 3, 100)
            images[flip] = inputs._train_example(config, key, data, 100)[0].numpy()
        if np.array_equal(images[True], images[False]):
            outcomes.append("kept")
        else:
            np.testing.assert_allclose(images[True], images[False][:, ::-1], atol=1e-5)
            outcomes.append("mirrored")
    assert set(outcomes) == {"kept", "mirrored"}


def test_resize_and_pad_moves_the_boxes_with_the_image():
    # A 10x20 (h x w) image into 64x64: scale 3.2 fits the width; rows 32..63 are padding.
    image, boxes, scale = inputs._resize_and_pad(
        tf.ones([10, 20, 3]), tf.constant([[0.1, 0.2, 0.5, 0.4]]), [64, 64], 1.0, tf.zeros([2]))
    np.testing.assert_allclose(boxes.numpy(), [[3.2, 12.8, 16.0, 25.6]], rtol=1e-5)
    np.testing.assert_allclose(scale.numpy(), [3.2, 3.2])
    assert image.shape == (64, 64, 3)
    assert image.numpy()[:32].min() == 1.0 and image.numpy()[32:].max() == 0.0


def test_eval_dataset_keeps_ground_truth_and_ids(tiny_dataset):
    config = make_tiny_config(tiny_dataset)
    batches = list(inputs.build_eval_dataset(config, _files(tiny_dataset["val_pattern"])))
    ids = np.concatenate([info["source_id"].numpy() for _, info in batches])
    assert sorted(ids.tolist()) == list(range(1_000_001, 1_000_009))
    _, info = batches[0]
    num = info["num_groundtruths"].numpy()
    assert np.all(num >= 1)
    classes = info["groundtruth_classes"].numpy()
    assert all(set(row[:n]) <= {1, 2, 3} and not row[n:].any() for row, n in zip(classes, num,
                                                                                  strict=True))
    np.testing.assert_allclose(info["image_scale"].numpy(), 1.0)  # 64-px images, 64-px model
