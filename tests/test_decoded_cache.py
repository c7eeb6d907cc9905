"""The decoded cache: records decoded once in memory give the batches, positions,
counts and data errors of the stream that reads the files, or there is no cache."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests import records
from tests.conftest import make_tiny_config
from train_lib.data import decoded_cache, example_checks, input_errors, inputs

FAULTS = records.faulty_records()


def _files(pattern: str) -> list[str]:
    return sorted(tf.io.gfile.glob(pattern))


def _cache(config, files, context=None, lines=None):
    return decoded_cache.build(config, files, context,
                               (lines if lines is not None else []).append)


def _stream(config, files, count, batch_size=4, context=None, cache=None,
            start=None) -> list[list[np.ndarray]]:
    iterator = iter(inputs.build_train_dataset(config, files, batch_size, context,
                                               start or inputs.InputPosition(), cache))
    return [[t.numpy() for t in tf.nest.flatten(next(iterator))] for _ in range(count)]


def _assert_same(streamed, cached) -> None:
    assert len(streamed) == len(cached)
    for i, (a, b) in enumerate(zip(streamed, cached, strict=True)):
        assert len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v, err_msg=f"batch {i}")


@pytest.mark.parametrize("pipelines", [None, (2, 1), (3, 2)])
def test_cached_batches_are_the_streamed_batches_from_any_position(tiny_dataset, pipelines):
    """Images, targets, positions and counts, bit for bit, over an epoch boundary
    (48 images, batch 4) and from a position inside an epoch; on one pipeline, on
    one of two (a file each) and on one of three (more pipelines than files: the
    records are sharded)."""
    files = _files(tiny_dataset["train_pattern"])
    config = make_tiny_config(tiny_dataset)
    aug = config.train_config.augmentation
    aug.scale_min, aug.scale_max = 0.7, 1.3
    context = tf.distribute.InputContext(*pipelines, 1) if pipelines else None
    lines: list[str] = []
    cache = _cache(config, files, context, lines)
    assert cache is not None
    per_pipeline = 48 // (pipelines[0] if pipelines else 1)
    own_files = 1 if pipelines == (2, 1) else 2
    assert lines[0].startswith(f"input cache: {48 if own_files == 2 else 24} training "
                               f"records of {own_files} file"), lines
    count = per_pipeline // 4 + 2
    for start in (inputs.InputPosition(), inputs.InputPosition(1, 5)):
        streamed = _stream(config, files, count, context=context, start=start)
        _assert_same(streamed, _stream(config, files, count, context=context, start=start,
                                       cache=cache))
    positions = [tuple(batch[-2]) for batch in streamed]
    assert positions[0] == (1, 9) and positions[-1][0] == 2  # into the next epoch


def _good(count: int) -> list[bytes]:
    return [records.example(records.encode(seed=i), source_id=500 + i) for i in range(count)]


def test_skip_policy_skips_and_counts_the_same_records(tiny_dataset, tmp_path):
    dirty = records.write(str(tmp_path / "dirty.tfrecord"),
                          _good(4) + [FAULTS["inverted_box"]] + _good(5)
                          + [FAULTS["not_an_image"]])
    config = make_tiny_config(tiny_dataset)
    config.train_input_reader.bad_example_policy = "skip"
    config.train_input_reader.shuffle_buffer_size = 4
    cache = _cache(config, [dirty])
    assert cache is not None
    streamed = _stream(config, [dirty], 6, batch_size=3)
    _assert_same(streamed, _stream(config, [dirty], 6, batch_size=3, cache=cache))
    context = tf.distribute.InputContext(1, 0, 1)  # an offset in examples
    start = inputs.InputPosition(0, 6)
    _assert_same(_stream(config, [dirty], 3, batch_size=3, context=context, start=start),
                 _stream(config, [dirty], 3, batch_size=3, context=context, start=start,
                         cache=cache))
    counts = streamed[-1][-1]
    index = example_checks.COUNTER_INDEX
    assert counts[index["inverted_box"]] >= 1 and counts[index["not_an_image"]] >= 1


def test_a_bad_record_stops_the_cached_stream_with_the_same_message(tiny_dataset, tmp_path):
    path = records.write(str(tmp_path / "bad.tfrecord"),
                         _good(3) + [FAULTS["inverted_box"]] + _good(2))
    config = make_tiny_config(tiny_dataset)
    config.train_input_reader.shuffle_buffer_size = 1
    cache = _cache(config, [path])
    assert cache is not None

    def message(cache):
        with pytest.raises(tf.errors.OpError) as err:
            _stream(config, [path], 3, batch_size=2, cache=cache)
        explained = input_errors.explain_input_error(
            err.value, [path], config.train_input_reader, config.model.num_classes)
        assert explained is not None
        return explained[1]
    streamed = message(None)
    assert streamed.startswith(f"{path} record 3 ") and streamed.endswith("(rule inverted_box)")
    assert message(cache) == streamed


def test_a_record_that_cannot_be_decoded_leaves_the_files_to_report_it(tiny_dataset,
                                                                        tmp_path):
    damaged = records.example(records.damaged_inside(records.encode()), source_id=77)
    path = records.write(str(tmp_path / "damaged.tfrecord"), _good(3) + [damaged])
    lines: list[str] = []
    assert _cache(make_tiny_config(tiny_dataset), [path], lines=lines) is None
    assert lines == ["input cache: off, a training record cannot be read or decoded; images "
                     "are decoded as they are read (training reports that record when it "
                     "reaches it)"]


def _image(size: int, noise: bool) -> bytes:
    pixels = (np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
              if noise else np.full((size, size, 3), 90, np.uint8))
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG" if noise else "JPEG")
    return out.getvalue()


def test_no_cache_past_its_limit_or_at_zero(tiny_dataset, tmp_path):
    """1 MiB: eight flat 256-px JPEGs are small files but 1.5 MiB decoded; one
    noise PNG of 700 px is over 1 MiB on disk, so nothing is decoded. 0: no cache,
    without a word."""
    config = make_tiny_config(tiny_dataset)
    config.train_input_reader.decoded_cache_mb = 1
    flat = records.write(str(tmp_path / "flat.tfrecord"),
                         [records.example(_image(256, noise=False))] * 8)
    lines: list[str] = []
    assert _cache(config, [flat], lines=lines) is None
    assert lines == ["input cache: off, the decoded training images exceed "
                     "train_input_reader.decoded_cache_mb (1); images are decoded as they "
                     "are read"]
    big = records.write(str(tmp_path / "big.tfrecord"), [records.example(_image(700, True))])
    lines.clear()
    assert _cache(config, [big], lines=lines) is None
    assert lines == ["input cache: off, the training files (1 MiB) exceed "
                     "train_input_reader.decoded_cache_mb (1); images are decoded as they "
                     "are read"]
    config.train_input_reader.decoded_cache_mb = 2
    assert _cache(config, [flat]) is not None
    config.train_input_reader.decoded_cache_mb = 0
    lines.clear()
    assert _cache(config, [flat], lines=lines) is None and lines == []
