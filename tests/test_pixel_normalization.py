"""model.pixel_mean / pixel_stddev: what the model sees of an image's pixels.

An OD API config maps its feature extractor's preprocess (its MobileNets: [-1, 1]; its
ResNets: the VGG channel means subtracted; its EfficientNets: ImageNet's statistics),
so a checkpoint the OD API trained sees the inputs it was trained on: checked against
the OD API's own preprocessed image of each committed fixture (tests/fixtures/odapi,
made by its feature extractors). Our YAML keeps Model Garden's ImageNet statistics by
default. Training, evaluation and the exported model all use the keys, and a checkpoint
is not evaluated under other statistics than it was trained with.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO, make_tiny_config
from train_lib.config import ConfigError, PipelineConfig, config_from_dict
from train_lib.config.compat import model_weight_differences
from train_lib.config.model_schema import IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STDDEV
from train_lib.config.odapi import map_pipeline_config
from train_lib.data import inputs

FIXTURES = os.path.join(REPO, "tests", "fixtures", "odapi")
# Each fixture whose features.npz holds the OD API's `preprocessed` input of its image.png
# at the image's own size (the SSD ones: fixed_shape_resizer at the image size).
SSD_FIXTURES = sorted(os.path.basename(os.path.dirname(path)) for path in glob.glob(
    os.path.join(FIXTURES, "ssd_*", "features.npz")))
EXPECTED = {
    "mobilenet": ([127.5] * 3, [127.5] * 3),
    "resnet": ([123.68, 116.779, 103.939], [1.0] * 3),
    "efficientnet": (list(IMAGENET_PIXEL_MEAN), list(IMAGENET_PIXEL_STDDEV)),
}


def _mapped_model(name: str):
    path = os.path.join(FIXTURES, name, "pipeline.config")
    with open(path) as f:
        mapped = map_pipeline_config(f.read(), path)
    return config_from_dict({"model": mapped.data["model"]}).model


def test_the_fixtures_cover_every_backbone_type():
    types = {_mapped_model(name).backbone.type for name in SSD_FIXTURES}
    assert types == set(EXPECTED), SSD_FIXTURES


@pytest.mark.parametrize("name", SSD_FIXTURES)
def test_a_mapped_config_feeds_the_odapi_extractors_input(name):
    """Our normalisation of the fixture's image is the OD API extractor's `preprocess`
    output on it (within float32 rounding)."""
    model = _mapped_model(name)
    assert (model.pixel_mean, model.pixel_stddev) == EXPECTED[model.backbone.type]
    with np.load(os.path.join(FIXTURES, name, "features.npz")) as arrays:
        theirs = arrays["preprocessed"][0]
    image = tf.io.decode_png(tf.io.read_file(os.path.join(FIXTURES, name, "image.png")))
    assert image.shape[:2] == theirs.shape[:2]
    ours = inputs.normalize(tf.cast(image, tf.float32), model).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5 * max(1.0, np.abs(theirs).max()))
    model.input_size = list(theirs.shape[:2])
    prepared, scale = inputs.preprocess_for_model(image, model)  # eval and export's path
    np.testing.assert_array_equal(scale.numpy(), [1.0, 1.0])
    np.testing.assert_allclose(prepared.numpy(), ours, atol=1e-5 * max(1.0, np.abs(ours).max()))


@pytest.mark.parametrize("extractor", ["faster_rcnn_resnet50_keras",
                                       "faster_rcnn_resnet50_fpn_keras"])
def test_a_mapped_faster_rcnn_config_subtracts_the_vgg_means(extractor):
    model = _mapped_model(extractor)
    assert (model.pixel_mean, model.pixel_stddev) == EXPECTED["resnet"]


def test_yaml_defaults_are_model_gardens_and_round_trip():
    from official.vision.ops import preprocess_ops

    model = PipelineConfig().model
    np.testing.assert_array_equal(np.float32(model.pixel_mean),
                                  np.float32(preprocess_ops.MEAN_RGB))
    np.testing.assert_array_equal(np.float32(model.pixel_stddev),
                                  np.float32(preprocess_ops.STDDEV_RGB))
    # the documented values, written in a config, are the default (no structural change)
    written = config_from_dict({"model": {"pixel_mean": [123.675, 116.28, 103.53],
                                          "pixel_stddev": [58.395, 57.12, 57.375]}})
    assert model_weight_differences(PipelineConfig(), written) == []
    image = tf.random.stateless_uniform([4, 4, 3], seed=[1, 2], maxval=255.0)
    # The default is bit-identical to Model Garden's normalize_image (no change for
    # configs written before the keys existed).
    np.testing.assert_array_equal(
        inputs.normalize(image, model).numpy(),
        preprocess_ops.normalize_image(image, preprocess_ops.MEAN_RGB,
                                       preprocess_ops.STDDEV_RGB).numpy())
    custom = config_from_dict({"model": {"pixel_mean": [10, 20, 30],
                                         "pixel_stddev": [2, 4, 8]}}).model
    pixels = np.array([[[12.0, 28.0, 46.0]]], np.float32)
    normalised = inputs.normalize(tf.constant(pixels), custom).numpy()
    np.testing.assert_allclose(normalised, [[[1.0, 2.0, 2.0]]])
    np.testing.assert_allclose(inputs.denormalize(normalised, custom), pixels)


@pytest.mark.parametrize("override, words", [
    ({"pixel_mean": [1.0, 2.0]}, ["model.pixel_mean", "3 values"]),
    ({"pixel_stddev": [1.0, 0.0, 1.0]}, ["model.pixel_stddev", "> 0"]),
    ({"pixel_stddev": [1.0, 1.0, 1.0, 1.0]}, ["model.pixel_stddev", "3 values"]),
])
def test_bad_statistics_are_refused_by_key(override, words):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"model": override})
    for word in words:
        assert word in str(err.value)


def test_a_checkpoint_is_not_evaluated_under_other_statistics():
    trained = PipelineConfig()
    other = config_from_dict({"model": {"pixel_mean": [127.5] * 3,
                                        "pixel_stddev": [127.5] * 3}})
    assert model_weight_differences(trained, other) == ["model.pixel_mean",
                                                         "model.pixel_stddev"]
    assert model_weight_differences(trained, PipelineConfig()) == []


def test_the_train_and_eval_pipelines_normalise_with_the_configs_statistics(tiny_dataset):
    """The same pixels under two configs' statistics: each batch is its config's
    normalisation of them."""
    files = sorted(tf.io.gfile.glob(tiny_dataset["train_pattern"]))
    default = make_tiny_config(tiny_dataset)
    odapi = make_tiny_config(tiny_dataset)
    odapi.model.pixel_mean, odapi.model.pixel_stddev = [127.5] * 3, [127.5] * 3
    train = [next(iter(inputs.build_train_dataset(c, files, 4)))[0].numpy()
             for c in (default, odapi)]
    evals = [next(iter(inputs.build_eval_dataset(c, files)))[0].numpy()
             for c in (default, odapi)]
    for ours_default, ours_odapi in (train, evals):
        pixels = inputs.denormalize(ours_default, default.model)
        np.testing.assert_allclose(ours_odapi, pixels / 127.5 - 1.0, atol=1e-5)
        assert not np.allclose(ours_odapi, ours_default, atol=0.1)


def test_resuming_under_other_statistics_says_how_to_keep_the_recorded_ones(tiny_dataset,
                                                                           tmp_path):
    """A run recorded with Model Garden's statistics (say, an OD API config mapped before
    the mapping set the extractor's), resumed with [-1, 1]: refused, and the message's
    --params_override continues it as it was trained."""
    from train_lib.config import load_config
    from train_lib.config.loading import dump_config
    from train_lib.training import workdir

    recorded = make_tiny_config(tiny_dataset)
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    dump_config(recorded, str(model_dir / "pipeline.yaml"))
    (model_dir / "ckpt-4.index").write_bytes(b"")  # a run with a checkpoint
    now = make_tiny_config(tiny_dataset)
    now.model.pixel_mean, now.model.pixel_stddev = [127.5] * 3, [127.5] * 3
    config_file = tmp_path / "now.yaml"
    dump_config(now, str(config_file))
    with pytest.raises(ConfigError) as err:
        workdir.check_config_drift(load_config(str(config_file)), str(model_dir),
                                   lambda _: None)
    message = str(err.value)
    assert "changes the model's structure (model.pixel_mean, model.pixel_stddev)" in message
    override = message.split("--params_override='")[1].split("'")[0]
    assert override == ("model.pixel_mean=[123.675,116.28,103.53],"
                        "model.pixel_stddev=[58.395,57.12,57.375]")
    workdir.check_config_drift(load_config(str(config_file), override), str(model_dir),
                               lambda _: None)  # resumes as trained


def test_the_tflite_export_normalises_and_says_so_with_the_configs_statistics(tiny_dataset):
    """int8 calibration gives back the raw pixels whatever the statistics (the
    normalisation is inside the .tflite), and model.json states the config's."""
    from train_lib.export import tflite

    default = make_tiny_config(tiny_dataset)
    odapi = make_tiny_config(tiny_dataset)
    odapi.model.pixel_mean, odapi.model.pixel_stddev = [127.5] * 3, [127.5] * 3
    pixels = [tflite.calibration_images(c, 2) for c in (default, odapi)]
    for a, b in zip(*pixels, strict=True):
        assert a.dtype == np.uint8 and a.max() > 0
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # rounding only
    info = tflite.metadata(odapi, "none", {1: "a"}, "ckpt-1", None)
    assert info["input"]["normalisation"]["mean"] == [127.5] * 3
    assert info["input"]["normalisation"]["stddev"] == [127.5] * 3


def test_odapi_weights_under_other_statistics_are_warned_about():
    """fine_tune.normalisation_warning: OD API weights (a checkpoint or a Keras weights
    file) into a model that normalises otherwise than its extractor did; none when the
    statistics are its, or the weights are not the OD API's."""
    from train_lib.training.fine_tune import FineTune, normalisation_warning

    odapi = FineTune(1, "fine-tune: ...", {"source": "OD API"})
    own = FineTune(1, "fine-tune: ...", {"source": "a retinanet checkpoint of this trainer"})
    model = PipelineConfig().model  # mobilenet, Model Garden's statistics
    warning = normalisation_warning(odapi, model)
    assert warning.startswith("WARNING: train_config.fine_tune_checkpoint holds the OD "
                              "API's mobilenet weights")
    assert "model.pixel_mean [123.675, 116.28, 103.53]" in warning
    assert normalisation_warning(own, model) is None
    model.pixel_mean, model.pixel_stddev = [127.5] * 3, [127.5] * 3
    assert normalisation_warning(odapi, model) is None
    model.backbone.type = "resnet"  # its OD API weights want the VGG means
    assert "mean [123.68, 116.779, 103.939] and stddev [1.0, 1.0, 1.0]" in \
        normalisation_warning(odapi, model)
