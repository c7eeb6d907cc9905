"""`model.fpn.type: odapi` with `use_separable_conv: true`: the OD API's depthwise FPN
(its `use_depthwise`, the FPN-lite configs' `ssd_mobilenet_v2_fpn_keras`).

The fixture (tests/fixtures/odapi/ssd_mobilenet_v2_fpn_keras/, made with the real OD
API by scripts/odapi_fixtures/make_odapi_fixtures.py from the published
ssd_mobilenet_v2_fpnlite_320x320 config at depth_multiplier 0.35, 128 px) holds the
OD API's variables (names and shapes, seeded_weights' values) and, on one image, its
MobileNetV2's levels 2-5 (`level_<n>`) and its FPN's maps (`feature_map_<i>`, level 3
up). Given the OD API's FPN weights, OdapiFpn with use_separable_conv computes those
maps from those levels; and the mapped FPN-lite config builds that FPN, with the OD
API's parameters (252,800 at full width, 251,776 trainable), where Model Garden's
separable FPN holds fewer (its laterals separable too)."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from test_odapi_fpn import FIXTURES, _count, _manifest, _odapi_fpn_variables

from scripts.odapi_fixtures import seeded_weights
from train_lib import families
from train_lib.config import PipelineConfig, config_from_dict
from train_lib.config.odapi import map_pipeline_config
from train_lib.families import parts
from train_lib.families.odapi_fpn import OdapiFpn

NAME = "ssd_mobilenet_v2_fpn_keras"
MIN_LEVEL, MAX_LEVEL, DEPTH = 3, 7, 44  # the fixture's: int(128 x 0.35)
TOP = 5  # the backbone's last level the FPN reads

_PLACE = re.compile(r"fpn_features_generator/(top_layers|residual_blocks|conv_layers)/(\d+)/"
                    r"(?:(\d)/)?(\w+)/|coarse_feature_layers/(\d+)/(\d)/(\w+)/")


def _our_place(key: str) -> tuple[str, str]:
    """Our OdapiFpn layer and weight of the OD API's FPN variable `key`: its top_layers
    are our level-5 lateral, its i-th residual block and conv layers (separable conv,
    batch norm) our level 4-i lateral and smoothing, its j-th coarse feature layers
    (separable conv, batch norm) our level 6+j."""
    group, index, part, weight, coarse, coarse_part, coarse_weight = _PLACE.search(
        key).groups()
    if coarse is not None:
        name = f"coarse_{TOP + 1 + int(coarse)}"
        return (name if coarse_part == "0" else name + "_norm"), coarse_weight
    if group == "top_layers":
        return f"lateral_{TOP}", weight
    level = TOP - 1 - int(index)
    if group == "residual_blocks":
        return f"lateral_{level}", weight
    return (f"smooth_{level}" if part == "0" else f"smooth_{level}_norm"), weight


def _fixture() -> dict[str, np.ndarray]:
    with np.load(os.path.join(FIXTURES, NAME, "features.npz")) as arrays:
        return {key: arrays[key] for key in arrays.files}


def _fpn_parameters(net) -> tuple[int, int]:
    fpn = parts.variables_by_part(net)["fpn"]
    return (sum(int(np.prod(v.shape)) for v in fpn),
            sum(int(np.prod(v.shape)) for v in fpn if v.trainable))


def _mapped_model(config_text: str):
    mapped = map_pipeline_config(config_text, "pipeline.config")
    return mapped, config_from_dict({"model": mapped.data["model"]}).model


def test_the_fixture_is_the_odapi_depthwise_fpn():
    """What the fixture says of the OD API (so that the test below tests something):
    its 3x3s are separable (a depthwise and a pointwise kernel, no bias), its
    laterals plain 1x1 convolutions with bias."""
    odapi = _odapi_fpn_variables(_manifest(NAME)["checkpoint"])
    weights = {key.split("/")[-3] for key in odapi}
    assert weights == {"kernel", "bias", "depthwise_kernel", "pointwise_kernel", "gamma",
                       "beta", "moving_mean", "moving_variance"}
    assert sorted(shape for key, shape in odapi.items() if "/kernel/" in key) == [
        [1, 1, 16, DEPTH], [1, 1, 32, DEPTH], [1, 1, 448, DEPTH]]
    assert sum("depthwise_kernel" in key for key in odapi) == 4


def test_odapi_separable_fpn_computes_the_odapi_feature_maps():
    """Each OD API FPN variable has its place in ours (and no other is ours), and the
    maps agree to float rounding (1e-4 of each map's largest value)."""
    reference = _fixture()
    levels = {key.removeprefix("level_"): value for key, value in reference.items()
              if key.startswith("level_")}
    fpn = OdapiFpn({level: tf.TensorShape(value.shape) for level, value in levels.items()},
                   MIN_LEVEL, MAX_LEVEL, DEPTH, activation="relu6", norm_epsilon=0.001,
                   use_separable_conv=True)
    weights = {(layer.name, w.name.split("/")[-1].split(":")[0]): w
               for layer in fpn.layers for w in layer.weights}
    assigned = set()
    for key, shape in _odapi_fpn_variables(_manifest(NAME)["checkpoint"]).items():
        place = _our_place(key)
        assert place in weights, (key, place)
        weights[place].assign(seeded_weights.value(key, shape))
        assigned.add(place)
    assert assigned == set(weights)
    maps = fpn({level: tf.constant(value) for level, value in levels.items()}, training=False)
    assert sorted(maps, key=int) == [str(level) for level in range(MIN_LEVEL, MAX_LEVEL + 1)]
    worst = 0.0
    for i, level in enumerate(range(MIN_LEVEL, MAX_LEVEL + 1)):
        theirs = reference[f"feature_map_{i}"]
        ours = maps[str(level)].numpy()
        assert ours.shape == theirs.shape, level
        worst = max(worst, float(np.abs(ours - theirs).max() / np.abs(theirs).max()))
    assert worst <= 1e-4


def test_the_separable_regularisers_and_initializers_are_the_odapis():
    """The L2 loss on each separable 3x3's depthwise kernel only (Keras'
    SeparableConv2D ignores the kernel_regularizer the OD API passes), on each
    lateral's kernel, on no bias or norm: 4 + 3 losses."""
    specs = {"3": tf.TensorShape([None, 16, 16, 16]), "4": tf.TensorShape([None, 8, 8, 32]),
             "5": tf.TensorShape([None, 4, 4, 448])}
    fpn = OdapiFpn(specs, MIN_LEVEL, MAX_LEVEL, DEPTH, use_separable_conv=True,
                   kernel_regularizer=tf_keras.regularizers.L2(1.0))
    separable = [layer for layer in fpn.layers
                 if isinstance(layer, tf_keras.layers.SeparableConv2D)]
    assert sorted(layer.name for layer in separable) == [
        "coarse_6", "coarse_7", "smooth_3", "smooth_4"]
    for layer in separable:
        assert layer.depthwise_regularizer is not None and layer.pointwise_regularizer is None
        assert not layer.use_bias
        assert type(layer.pointwise_initializer).__name__ == "GlorotUniform"
    assert len(fpn.losses) == 4 + 3


def test_a_mapped_fpnlite_config_builds_the_odapi_fpn_with_its_parameters():
    """The fixture's pipeline.config (the published FPN-lite 320x320 config at
    depth_multiplier 0.35) maps to fpn.type: odapi with use_separable_conv, whose FPN
    has the parameters of the OD API's checkpoint; at the published width
    (depth_multiplier 1.0, min_depth 16), those of the published config's model:
    252,800 (251,776 trainable). Model Garden's separable FPN has other counts."""
    with open(os.path.join(FIXTURES, NAME, "pipeline.config")) as f:
        text = f.read()
    published = _manifest(NAME)["published"]
    assert published["config"].endswith("ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config")
    full = re.sub(r"depth_multiplier: [0-9.]+", "depth_multiplier: 1.0",
                  re.sub(r"min_depth: \d+", "min_depth: 16", text, count=1), count=1)
    for config_text, variables, expected in (
            (text, _manifest(NAME)["checkpoint"], None),
            (full, published["variables"], (252800, 251776))):
        mapped, model = _mapped_model(config_text)
        assert mapped.data["model"]["fpn"]["type"] == "odapi"
        assert mapped.data["model"]["fpn"]["use_separable_conv"] is True
        assert model.problems() == []
        model.input_size = [128, 128]  # the parameters do not depend on it
        net = families.build_model(model)
        assert isinstance(net.decoder, OdapiFpn)
        odapi = _count(_odapi_fpn_variables(variables))
        assert _fpn_parameters(net) == odapi
        if expected:
            assert odapi == expected
            model.fpn.type = "fpn"  # Model Garden's separable FPN
            assert _fpn_parameters(families.build_model(model)) != odapi


@pytest.mark.parametrize("separable", [False, True])
def test_mobilenet_v2_fpn_maps_to_the_odapi_fpn_with_or_without_use_depthwise(separable):
    with open(os.path.join(FIXTURES, NAME, "pipeline.config")) as f:
        text = f.read()
    text = text.replace("use_depthwise: true", f"use_depthwise: {str(separable).lower()}", 1)
    mapped, model = _mapped_model(text)
    assert mapped.data["model"]["fpn"]["type"] == "odapi"
    assert model.fpn.use_separable_conv is separable


def test_type_odapi_takes_use_separable_conv():
    model = PipelineConfig().model
    model.fpn.type, model.fpn.use_separable_conv = "odapi", True
    assert not any(p.startswith("model.fpn.") for p in model.problems())


def test_a_fine_tune_from_the_published_fpnlite_checkpoint_maps_every_fpn_variable():
    """A zoo ckpt-0 of the published FPN-lite config (its names and shapes) onto the
    mapped model: all 30 FPN variables (the separable 3x3s' depthwise and pointwise
    kernels included, the level-5 lateral on 1280 channels) map by name and shape to
    the layers the feature-map test above places them in."""
    from train_lib.training import odapi_checkpoint

    with open(os.path.join(FIXTURES, NAME, "pipeline.config")) as f:
        text = f.read()
    full = re.sub(r"depth_multiplier: [0-9.]+", "depth_multiplier: 1.0",
                  re.sub(r"min_depth: \d+", "min_depth: 16", text, count=1), count=1)
    _, model = _mapped_model(full)
    model.input_size = [128, 128]
    net = families.build_model(model)
    shapes = dict(_manifest(NAME)["published"]["variables"])
    plan = odapi_checkpoint.plan_shapes(net, shapes, "ckpt-0", "detection")
    fpn = [m for m in plan.mapped if m.part == "fpn"]
    fpn_keys = _odapi_fpn_variables(shapes.items())
    assert len(fpn) == len(fpn_keys) == len(net.decoder.variables) == 30
    for m in fpn:
        assert _our_place(m.key) == tuple(m.variable.name.split(":")[0].split("/")[-2:])
        assert list(shapes[m.key]) == m.variable.shape.as_list()
    assert "30 of 30 FPN variables" in plan.summary()
