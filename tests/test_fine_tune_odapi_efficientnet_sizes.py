"""The OD API's EfficientDet D0-D7 checkpoints (EfficientNet B0-B6; D7 uses B6) map,
by names and shapes, onto the Model Garden EfficientNet that our mapper makes of each
published config.

The fixture (tests/fixtures/odapi/efficientdet_backbones.json, written by
scripts/odapi_fixtures/make_efficientdet_sizes.py with the real OD API) holds, per
published configs/tf2/ssd_efficientdet_d<n> config (its sha256), the checkpoint names
and shapes of the OD API's model's EfficientNet, built from that config with 3
classes at 256 px (the script checked that the published input size gives the same
names and shapes): `model/_feature_extractor/_efficientnet/` (its Keras EfficientNet up
to the layer its EfficientDet reads as level 5, stack_6/block_0/project_bn) and
`model/_feature_extractor/classification_backbone/` (the rest: for B1-B6 stack_6's
later blocks, then the top 1x1 convolution, its norm and the classifier).

Our model is built from the model section our mapper made of the same config
(tests/fixtures/odapi/model_parity.json, same sha256, written by
scripts/odapi_parity/model_parity.py; test_model_parity checks that the mapper still
makes it where the published config is beside the repository), with 3 classes at
256 px (the backbone's variables depend on neither), and the plan fine_tune would
make is computed from the names and shapes alone (odapi_checkpoint.plan_shapes). The
B0 and B1 fixtures' tests
(test_fine_tune_odapi_efficientdet.py, test_fine_tune_odapi_efficientdet_b1.py) show,
with values, that those names load into the mapper's backbone
(efficientnet_endpoints: odapi), which then computes the OD API's levels exactly."""

from __future__ import annotations

import functools
import json
import os

import pytest
import tf_keras
from conftest import REPO

from train_lib.config import config_from_dict
from train_lib.families import build_model
from train_lib.training import odapi_checkpoint
from train_lib.training.trainer import TrainError

FIXTURES = os.path.join(REPO, "tests", "fixtures", "odapi")
with open(os.path.join(FIXTURES, "efficientdet_backbones.json")) as _f:
    BACKBONES = json.load(_f)
with open(os.path.join(FIXTURES, "model_parity.json")) as _f:
    SECTIONS = json.load(_f)
EFFICIENTNET = "model/_feature_extractor/_efficientnet/"
REST = "model/_feature_extractor/classification_backbone/"
CONFIGS = sorted(BACKBONES["configs"])
# size: (EfficientNet, blocks per group (Model Garden's and the Keras EfficientNet's),
# our backbone's variables): the published configs' EfficientNets
SIZES = {
    "d0": ("b0", [1, 2, 2, 3, 3, 4, 1], 309),
    "d1": ("b1", [2, 3, 3, 4, 4, 5, 2], 437),
    "d2": ("b2", [2, 3, 3, 4, 4, 5, 2], 437),
    "d3": ("b3", [2, 3, 3, 5, 5, 6, 2], 494),
    "d4": ("b4", [2, 4, 4, 6, 6, 8, 2], 608),
    "d5": ("b5", [3, 5, 5, 7, 7, 9, 3], 736),
    "d6": ("b6", [3, 6, 6, 8, 8, 11, 3], 850),
    "d7": ("b6", [3, 6, 6, 8, 8, 11, 3], 850),
}
SLOW = {"d6", "d7"}  # B6: the largest to build


def _size(name: str) -> str:
    return name.split("_")[2]


def _params(names):
    return [pytest.param(n, id=_size(n), marks=[pytest.mark.slow] if _size(n) in SLOW else [])
            for n in names]


def _shapes(name: str) -> dict[str, list[int]]:
    return {key: shape for key, shape in BACKBONES["configs"][name]["variables"]}


def _our_model(name: str, se_activation: str | None = None, endpoints: str | None = None):
    """Our detector from the model section our mapper made of the published config,
    with 3 classes at 256 px (`se_activation`, `endpoints`: the backbone's
    se_activation and efficientnet_endpoints instead of the mapper's). Built once per
    section: the tests only read it (plan_shapes changes no model), and D6 and D7,
    whose sections differ only in the input size set here, are the same model."""
    section = json.loads(json.dumps(SECTIONS[f"{name}.config"]["model"]))
    section["num_classes"], section["input_size"] = 3, [256, 256]
    if se_activation is not None:
        section["backbone"]["se_activation"] = se_activation
    if endpoints is not None:
        section["backbone"]["efficientnet_endpoints"] = endpoints
    return _built(json.dumps(section, sort_keys=True))


@functools.cache
def _built(section: str) -> tf_keras.Model:
    """Our detector of a model section (JSON), built once while this file's tests run."""
    return build_model(config_from_dict({"model": json.loads(section)}).model)


@pytest.fixture(scope="module", autouse=True)
def _free_built_models():
    """The cached detectors (up to EfficientDet D6's) go when this file's tests end."""
    yield
    _built.cache_clear()


def _to_level_5(name: str) -> int:
    """The variables of the OD API's EfficientNet up to its level 5: Model Garden's
    whole EfficientNet's but stack_6's later blocks (19 each) and the last 1x1
    convolution and norm (5)."""
    _, repeats, variables = SIZES[_size(name)]
    return variables - 5 - 19 * (repeats[-1] - 1)


def test_the_fixture_holds_every_published_efficientdet_config():
    assert [_size(n) for n in CONFIGS] == list(SIZES)
    for name in CONFIGS:
        entry = BACKBONES["configs"][name]
        model_id = SIZES[_size(name)][0]
        assert entry["feature_extractor"] == f"ssd_efficientnet-{model_id}_bifpn_keras"
        assert entry["sha256"] == SECTIONS[f"{name}.config"]["sha256"]  # the same file
        assert SECTIONS[f"{name}.config"]["model"]["backbone"] == {
            **SECTIONS[f"{name}.config"]["model"]["backbone"], "type": "efficientnet",
            "model_id": model_id, "se_activation": "swish", "efficientnet_endpoints": "odapi"}
    d6, d7 = (BACKBONES["configs"][n]["variables"] for n in CONFIGS[-2:])
    assert d6 == d7  # D7 is B6 too


@pytest.mark.parametrize("name", _params(CONFIGS))
def test_the_mapped_efficientnet_is_the_odapi_one_to_level_5(name):
    """The mapper's backbone (efficientnet_endpoints: odapi) ends where the OD API's
    EfficientDet reads its level 5: each of its variables takes one checkpoint variable
    of the same shape under _efficientnet/, all of them, in the Keras model's order;
    nothing of the backbone stays fresh; the rest of the checkpoint's EfficientNet
    (stack_6's later blocks for B1-B6, the top and classifier) is unused."""
    model_id, repeats, _ = SIZES[_size(name)]
    shapes = _shapes(name)
    model = _our_model(name)
    assert model.backbone.get_config()["model_id"] == model_id
    assert len(model.backbone.variables) == _to_level_5(name)
    plan = odapi_checkpoint.plan_shapes(model, shapes, name, "detection")
    keys = [m.key for m in plan.mapped]
    assert len(set(keys)) == len(keys) == _to_level_5(name)
    assert len({id(m.variable) for m in plan.mapped}) == len(keys)
    assert all(shapes[m.key] == m.variable.shape.as_list() for m in plan.mapped)
    assert {k for k in shapes if k.startswith(EFFICIENTNET)} == set(keys)
    layers = list(dict.fromkeys(m.keras_name.rsplit("/", 1)[0] for m in plan.mapped))
    blocks = list(dict.fromkeys(layer.rsplit("/", 1)[0] for layer in layers[2:]))
    assert blocks == [f"stack_{s}/block_{b}" for s, n in enumerate(repeats[:-1])
                      for b in range(n)] + ["stack_6/block_0"]
    index = {m.keras_name.rsplit("/", 1)[0]: int(m.key.split("layer_with_weights-")[1]
                                                 .split("/")[0]) for m in plan.mapped}
    assert [index[layer] for layer in layers] == list(range(len(layers)))
    report = plan.report()
    assert not [e for e in report["fresh"] if e["reason"].startswith("backbone:")]
    unused = [e for e in report["unused"] if e["checkpoint_key"].startswith(REST)]
    assert len(unused) == 7 + 19 * (repeats[-1] - 1)
    assert all(e["reason"].startswith("the OD API's EfficientNet after level 5") for e in unused)
    summary = plan.summary()
    assert summary.startswith(f"{len(keys)} of {len(keys)} backbone variables")
    assert "classification_backbone" not in summary


@pytest.mark.parametrize("name", _params(CONFIGS))
def test_model_gardens_whole_efficientnet_maps_one_to_one(name):
    """With efficientnet_endpoints: model_garden, every variable of our backbone but
    its last 1x1 convolution and norm takes one checkpoint variable of the same shape,
    none twice: all of the OD API's Keras EfficientNet up to its level 5
    (_efficientnet/, in order), and for B1-B6 stack_6's later blocks (under
    classification_backbone/, numbered on). The report says what stays fresh (those 5,
    the FPN and the head) and why the rest of the checkpoint's EfficientNet is unused
    (its top and classifier)."""
    model_id, repeats, variables = SIZES[_size(name)]
    shapes = _shapes(name)
    model = _our_model(name, endpoints="model_garden")
    assert model.backbone.get_config()["model_id"] == model_id
    assert len(model.backbone.variables) == variables
    plan = odapi_checkpoint.plan_shapes(model, shapes, name, "detection")
    keys = [m.key for m in plan.mapped]
    assert len(set(keys)) == len(keys) == variables - 5
    assert len({id(m.variable) for m in plan.mapped}) == len(keys)
    assert all(shapes[m.key] == m.variable.shape.as_list() for m in plan.mapped)
    assert {k for k in shapes if k.startswith(EFFICIENTNET)} <= set(keys)
    # the layers in the Keras EfficientNet's order: stem, then group by group
    layers = list(dict.fromkeys(m.keras_name.rsplit("/", 1)[0] for m in plan.mapped))
    assert layers[:2] == ["stem_conv2d", "stem_bn"]
    blocks = list(dict.fromkeys(layer.rsplit("/", 1)[0] for layer in layers[2:]))
    assert blocks == [f"stack_{s}/block_{b}" for s, n in enumerate(repeats) for b in range(n)]
    index = {m.keras_name.rsplit("/", 1)[0]: int(m.key.split("layer_with_weights-")[1]
                                                 .split("/")[0]) for m in plan.mapped}
    assert [index[layer] for layer in layers] == list(range(len(layers)))
    level_5 = layers.index("stack_6/block_0/project_bn")  # the OD API's level 5
    for m in plan.mapped:
        inside = layers.index(m.keras_name.rsplit("/", 1)[0]) <= level_5
        assert m.key.startswith(EFFICIENTNET if inside else REST), m.key
    assert len(layers) - level_5 - 1 == 8 * (repeats[-1] - 1)  # stack_6's later blocks

    report = plan.report()
    backbone_fresh = [e for e in report["fresh"] if e["reason"].startswith("backbone:")]
    assert len(backbone_fresh) == 5
    assert all("last 1x1 convolution and norm" in e["reason"] for e in backbone_fresh)
    assert {e["reason"].split(":")[0] for e in report["fresh"]} == {"backbone", "FPN", "head"}
    unused = [e for e in report["unused"] if e["checkpoint_key"].startswith(REST)]
    assert len(unused) == 7  # top conv, its norm (4), classifier kernel and bias
    assert all(e["reason"].startswith("the OD API's EfficientNet after level 5") for e in unused)
    summary = plan.summary()
    assert summary.startswith(f"{variables - 5} of {variables} backbone variables")
    later = sum(m.key.startswith(REST) for m in plan.mapped)
    # per block 19: 3 kernels and their norms' 12, squeeze-excitation's 2 kernels, 2 biases
    assert later == 19 * (repeats[-1] - 1)
    assert (f"; {later} of them (stack_6's blocks after block_0, where the OD API's "
            "EfficientDet reads its level 5, so it never runs them) from its "
            "classification_backbone" in summary) == (later > 0)


@pytest.mark.parametrize("name", _params(CONFIGS[:2]))
def test_relu_inside_squeeze_excitation_is_refused_naming_the_key(name):
    model = _our_model(name, se_activation="relu")
    with pytest.raises(TrainError, match="set model.backbone.se_activation: swish$"):
        odapi_checkpoint.plan_shapes(model, _shapes(name), name, "detection")


@pytest.mark.parametrize("ours, theirs", [("d1", "d2"), ("d2", "d1"), ("d2", "d3"),
                                          ("d3", "d4"), ("d1", "d0"), ("d0", "d1")])
def test_another_sizes_checkpoint_is_refused_naming_the_first_variable(ours, theirs):
    """B1 and B2 have the same blocks, other widths; B0/B1, B2/B3 and B3/B4 other
    blocks: each size's names and shapes fit only its own."""
    name, other = (next(n for n in CONFIGS if _size(n) == s) for s in (ours, theirs))
    with pytest.raises(TrainError, match="does not fit this model's backbone") as err:
        odapi_checkpoint.plan_shapes(_our_model(name), _shapes(other), other, "detection")
    assert "\n" not in str(err.value)
