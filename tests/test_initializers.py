"""model.initializers: each part of a RetinaNet starts from the distribution its config
gives (families/initializers.py), as the OD API's conv_hyperparams.initializer.

The class predictor's bias starts at `class_bias` (the OD API's
class_prediction_bias_init). A model built with an initializer per part has each
part's kernels drawn from that part's distribution (told apart by their means),
separable convolutions' pointwise kernels from glorot_uniform, and every other
variable as Model Garden built it; no initializer leaves the model exactly as before;
the same seed gives the same weights.
The mapping of the OD API's initializer blocks is checked on pipeline.config text.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tf_keras

from tests.test_odapi_rows import FE, SSD_BASE, WS, _set, _text
from train_lib.config import ConfigError, config_from_dict
from train_lib.config.odapi import map_pipeline_config
from train_lib.config.odapi.shared import KERAS_INITIALIZERS
from train_lib.config.schema import to_dict
from train_lib.families import initializers, parts, retinanet

MEANS = {"backbone": 1.0, "fpn": 2.0, "head": 3.0, "predictors": 4.0}


def _build(model, seed: int = 7):
    tf_keras.utils.set_random_seed(seed)
    return retinanet.build_model(model)


def _with_initializers(tiny_config):
    model = copy.deepcopy(tiny_config.model)
    model.fpn.use_separable_conv = True  # pointwise kernels in the FPN
    for part, mean in MEANS.items():
        spec = getattr(model.initializers, part)
        spec.type, spec.mean, spec.stddev = "random_normal", mean, 0.01
    return model


def check_drawn(kernels: dict, means: dict) -> int:
    """Asserts that each part's kernels (`parts.kernels_by_part`) were drawn from a normal of
    its mean in `means` and stddev 0.01, a pointwise kernel from glorot_uniform; returns
    how many pointwise kernels there were."""
    assert all(kernels.values()), {p: len(v) for p, v in kernels.items()}
    pointwise = 0
    for part, variables in kernels.items():
        for variable in variables:
            values = variable.numpy()
            # A pointwise kernel starts glorot_uniform, as the OD API's.
            if parts.kernel_kind(variable) == "pointwise_kernel":
                pointwise += 1
                fan_in, fan_out = values.shape[-2], values.shape[-1]
                assert np.abs(values).max() <= np.sqrt(6.0 / (fan_in + fan_out)) + 1e-6
                continue
            assert abs(values.mean() - means[part]) < 0.01, (variable.name, values.mean())
            assert values.std() < 0.02, variable.name
    return pointwise


def check_only_moved(plain, changed, kernels: set[int], stddev: float) -> int:
    """Asserts that of two models built alike, `changed` differs from `plain` in the
    kernels `kernels` (ids of `changed`'s variables) alone, each drawn from a truncated
    normal of `stddev`; returns how many moved."""
    moved = 0
    for before, after in zip(plain.weights, changed.weights, strict=True):  # in build order
        if id(after) in kernels:
            moved += 1
            assert not np.array_equal(before.numpy(), after.numpy()), after.name
            assert np.abs(after.numpy()).max() <= 2 * stddev + 1e-6  # truncated at 2 stddev
        else:  # biases, norms and the other parts as Model Garden built them
            np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=after.name)
    return moved


def test_each_part_is_drawn_from_its_own_distribution(tiny_config):
    net = _build(_with_initializers(tiny_config))
    assert check_drawn(parts.kernels_by_part(net), MEANS) > 0  # the separable FPN's


def test_other_variables_are_left_and_no_initializer_changes_nothing(tiny_config):
    plain = _build(tiny_config.model)
    again = _build(tiny_config.model)
    assert initializers.draw(again, tiny_config.model) == 0  # no type set: untouched
    for a, b in zip(plain.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    model = copy.deepcopy(tiny_config.model)
    model.initializers.head.type = "truncated_normal"
    model.initializers.head.stddev = 0.05
    changed = _build(model)
    kernels = {id(v) for v in parts.kernels_by_part(changed)["head"]}
    assert check_only_moved(plain, changed, kernels, 0.05) == len(kernels) > 0


@pytest.mark.parametrize("shared_tower", [False, True])
def test_the_class_bias_starts_at_its_value_and_by_default_at_model_gardens(tiny_config,
                                                                             shared_tower):
    model = copy.deepcopy(tiny_config.model)
    model.head.share_prediction_tower = shared_tower
    default = _build(model).head._classifier.bias.numpy()
    # Model Garden's head starts it for a prior of 0.01; the default keeps that value.
    np.testing.assert_array_equal(default, np.full_like(default, -np.log(99.0)))
    model.initializers.class_bias = -2.5
    changed = _build(model)
    np.testing.assert_array_equal(changed.head._classifier.bias.numpy(),
                                  np.full_like(default, -2.5))
    assert changed.head._classifier.bias.shape == default.shape


def test_class_prediction_bias_init_maps_and_is_zero_when_absent():
    ours, _ = _mapped({WS + ".class_prediction_bias_init": "-4.6"})
    assert ours["class_bias"] == -4.6
    ours, _ = _mapped({})  # the OD API's default, not Model Garden's -4.595
    assert ours["class_bias"] == 0.0


def test_the_same_seed_gives_the_same_weights(tiny_config):
    model = _with_initializers(tiny_config)
    first, second, other = _build(model, 3), _build(model, 3), _build(model, 4)
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    kernels = parts.kernels_by_part(first)["backbone"]
    others = parts.kernels_by_part(other)["backbone"]
    assert not np.array_equal(kernels[0].numpy(), others[0].numpy())


def test_variance_scaling_is_the_odapi_builders():
    spec = config_from_dict({"model": {"initializers": {"fpn": {
        "type": "variance_scaling", "factor": 1.0, "mode": "fan_avg", "uniform": True}}}})
    made = initializers.keras_initializer(spec.model.initializers.fpn, seed=1).get_config()
    assert (made["scale"], made["mode"], made["distribution"]) == (1.0, "fan_avg", "uniform")
    spec.model.initializers.fpn.uniform = False
    made = initializers.keras_initializer(spec.model.initializers.fpn, seed=1).get_config()
    assert made["distribution"] == "truncated_normal"


def test_a_bad_initializer_is_refused_by_its_key():
    with pytest.raises(ConfigError, match=r"model\.initializers\.head\.type"):
        config_from_dict({"model": {"initializers": {"head": {"type": "he_normal"}}}})
    with pytest.raises(ConfigError, match=r"model\.initializers\.fpn\.mode"):
        config_from_dict({"model": {"initializers": {"fpn": {"type": "variance_scaling",
                                                             "mode": "fan"}}}})


# ---------------------------------------------------------------- the mapping


def _mapped(changes: dict) -> tuple[dict, dict]:
    tree = copy.deepcopy(SSD_BASE)
    for path, value in changes.items():
        _set(tree, path, value)
    mapped = map_pipeline_config(_text(tree), "p.config")
    return mapped.data["model"].get("initializers", {}), mapped.approximations


def test_a_separable_weight_shared_predictor_starts_glorot_uniform():
    """The OD API's SeparableConv2D class and box predictors ignore the initializer they
    are passed; the tower's depthwise kernels take it."""
    given = {"random_normal_initializer": {"stddev": "0.01"}}
    ours, _ = _mapped({WS + ".conv_hyperparams": {"initializer": given},
                       WS + ".use_depthwise": "true"})
    assert ours["head"] == {"type": "random_normal", "mean": 0.0, "stddev": 0.01}
    assert ours["predictors"] == {"type": "glorot_uniform"}
    ours, _ = _mapped({WS + ".conv_hyperparams": {"initializer": given}})
    assert ours["predictors"] == ours["head"]


@pytest.mark.parametrize("extractor, expected", [
    ("'ssd_mobilenet_v2_fpn_keras'", {"type": "truncated_normal", "mean": 0.0,
                                      "stddev": 0.09}),
    ("'ssd_resnet50_v1_fpn_keras'", {"type": "variance_scaling", "factor": 1.0,
                                     "mode": "fan_in", "uniform": False}),
])
def test_without_override_the_backbone_keeps_the_odapi_backbones_own(extractor, expected):
    given = {"truncated_normal_initializer": {"stddev": "0.03"}}
    ours, _ = _mapped({FE + "type": extractor, FE + "conv_hyperparams": {"initializer": given}})
    assert ours["backbone"] == expected
    assert ours["fpn"] == {"type": "truncated_normal", "mean": 0.0, "stddev": 0.03}
    ours, _ = _mapped({FE + "type": extractor, FE + "conv_hyperparams": {"initializer": given},
                       FE + "override_base_feature_extractor_hyperparams": "true"})
    assert ours["backbone"] == ours["fpn"]


def test_efficientnet_keeps_its_own_initializer_even_with_override():
    """The OD API's EfficientNet takes only the weight decay from the feature
    extractor's conv_hyperparams."""
    given = {"truncated_normal_initializer": {"stddev": "0.03"}}
    ours, _ = _mapped({FE + "type": "'ssd_efficientnet-b0_bifpn_keras'", FE + "fpn": None,
                       FE + "bifpn": {"min_level": "3", "max_level": "7"},
                       FE + "conv_hyperparams": {"initializer": given},
                       FE + "override_base_feature_extractor_hyperparams": "true"})
    assert ours["backbone"] == {"type": "variance_scaling", "factor": 2.0, "mode": "fan_out",
                                "uniform": False}
    assert ours["fpn"]["type"] == "truncated_normal"


@pytest.mark.parametrize("uniform, mode, expected", [
    ("t", "FAN_OUT", (True, "fan_out")), ("f", "1", (False, "fan_out")),
    ("1", "2", (True, "fan_avg")), ("false", "FAN_IN", (False, "fan_in"))])
def test_variance_scaling_reads_text_formats_booleans_and_enum_numbers(uniform, mode, expected):
    ours, _ = _mapped({FE + "conv_hyperparams": {"initializer": {
        "variance_scaling_initializer": {"uniform": uniform, "mode": mode}}}})
    assert (ours["fpn"]["uniform"], ours["fpn"]["mode"]) == expected


def test_an_initializer_without_counterpart_is_noted_and_left():
    ours, notes = _mapped({FE + "conv_hyperparams": {"initializer": {
        "keras_initializer_by_name": '"orthogonal"'}}})
    assert "fpn" not in ours
    assert any("conv_hyperparams.initializer approximated" in n for n in notes.values())
    ours, _ = _mapped({FE + "conv_hyperparams": {"initializer": {
        "keras_initializer_by_name": '"glorot_uniform"'}}})
    assert ours["fpn"] == {"type": "glorot_uniform"}


@pytest.mark.parametrize("name", sorted(KERAS_INITIALIZERS))
def test_keras_initializer_names_map_to_what_keras_draws(name):
    """keras_initializer_by_name: the OD API hands the name to Keras; ours is the same
    distribution (tf_keras' He, LeCun and Glorot are variance scaling)."""
    ours, _ = _mapped({FE + "conv_hyperparams": {"initializer": {
        "keras_initializer_by_name": f'"{name}"'}}})
    spec, keras = ours["fpn"], tf_keras.initializers.get(name)
    if spec["type"] == "variance_scaling":
        assert isinstance(keras, tf_keras.initializers.VarianceScaling)
        assert (keras.scale, keras.mode, keras.distribution) == (
            spec["factor"], spec["mode"], "uniform" if spec["uniform"] else "truncated_normal")
    elif spec["type"] == "glorot_uniform":
        assert type(keras) is tf_keras.initializers.GlorotUniform
    else:
        assert type(keras).__name__ == spec["type"].title().replace("_", "")
        assert (keras.mean, keras.stddev) == (spec["mean"], spec["stddev"])


def test_the_mapped_keys_round_trip_through_our_config():
    ours, _ = _mapped({FE + "conv_hyperparams": {"initializer": {
        "variance_scaling_initializer": {"factor": "1.0", "mode": "FAN_OUT"}}}})
    config = config_from_dict({"model": {"initializers": ours}})
    assert to_dict(config)["model"]["initializers"]["fpn"] == {
        "type": "variance_scaling", "mean": 0.0, "stddev": 1.0, "factor": 1.0,
        "mode": "fan_out", "uniform": False}
