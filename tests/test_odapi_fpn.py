"""`model.fpn.type: odapi` (train_lib/families/odapi_fpn.py): the OD API's Keras FPN.

The fixtures (tests/fixtures/odapi/<extractor>/, made with the real OD API by
scripts/odapi_fixtures/make_odapi_fixtures.py) hold the OD API's variables (names and
shapes, seeded_weights' values) and, on one image, its backbone's levels
(`level_<n>`) and its FPN's feature maps (`feature_map_<i>`, min_level up). Given the
OD API's FPN weights, OdapiFpn computes those maps from those levels, for the three
extractors built on the OD API's FPN; and a Faster R-CNN FPN pipeline.config maps to
a model whose FPN has the OD API's parameter count, where Model Garden's FPN holds
592,128 more (one 3x3 convolution, its batch norm and four biases); and a detection
checkpoint's FPN variables map onto ours, each to the place _our_layer says (the
fine-tune tests load them and compare the maps)."""

from __future__ import annotations

import json
import os
import re
import types

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

from scripts.odapi_fixtures import seeded_weights
from train_lib import families
from train_lib.config import PipelineConfig, config_from_dict
from train_lib.config.odapi import map_pipeline_config
from train_lib.families import keras_resnet, parts
from train_lib.families.odapi_fpn import OdapiFpn
from train_lib.training import odapi_checkpoint
from train_lib.training.failures import TrainError

FIXTURES = os.path.join(REPO, "tests", "fixtures", "odapi")
FASTER_RCNN_FPN = "faster_rcnn_resnet50_fpn_keras"
# extractor: (min_level, max_level, the FPN's depth), as the fixture's pipeline.config
EXTRACTORS = {
    FASTER_RCNN_FPN: (2, 6, 256),
    "ssd_resnet50_v1_fpn_keras": (3, 7, 32),  # depth_multiplier 0.125
    "ssd_mobilenet_v1_fpn_keras": (3, 7, 128),  # depth_multiplier 0.5
}
_ODAPI_FPN = re.compile(r"(fpn_features_generator|coarse_feature_layers)/")


def _manifest(name: str) -> dict:
    with open(os.path.join(FIXTURES, name, "variables.json")) as f:
        return json.load(f)


def _odapi_fpn_variables(variables: list) -> dict[str, list[int]]:
    """The OD API FPN's variables (its top-down maps and the coarse levels above the
    backbone's) of a variables.json list: {key: shape}."""
    return {key: shape for key, shape in variables
            if key.startswith("model/") and _ODAPI_FPN.search(key)}


def _count(shapes) -> tuple[int, int]:
    """(all, trainable) parameters of these shapes {key: shape}; batch norms' moving
    statistics are not trainable."""
    every = sum(int(np.prod(shape)) for shape in shapes.values())
    moving = sum(int(np.prod(shape)) for key, shape in shapes.items() if "/moving_" in key)
    return every, every - moving


_PLACE = re.compile(r"fpn_features_generator/(top_layers|residual_blocks|conv_layers)/(\d+)/"
                    r"(?:(\d)/)?(\w+)/|coarse_feature_layers/(\d+)/(\d)/(\w+)/")


def _our_layer(key: str, top: int) -> tuple[str, str]:
    """Our OdapiFpn layer and weight of the OD API's FPN variable `key`, the backbone's
    top level read being `top`: its top_layers are our level-`top` lateral, its i-th
    residual block and conv layers (conv, batch norm) our level top-1-i lateral and
    smoothing, its j-th coarse feature layers (conv, batch norm) our level top+1+j."""
    group, index, part, weight, coarse, coarse_part, coarse_weight = _PLACE.search(
        key).groups()
    if coarse is not None:
        name = f"coarse_{top + 1 + int(coarse)}"
        return (name if coarse_part == "0" else name + "_norm"), coarse_weight
    if group == "top_layers":
        return f"lateral_{top}", weight
    level = top - 1 - int(index)
    if group == "residual_blocks":
        return f"lateral_{level}", weight
    return (f"smooth_{level}" if part == "0" else f"smooth_{level}_norm"), weight


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_odapi_fpn_computes_the_odapi_feature_maps(name):
    """Each OD API FPN variable has its place in ours (and no other is ours), and the
    maps agree to float rounding."""
    min_level, max_level, depth = EXTRACTORS[name]
    with np.load(os.path.join(FIXTURES, name, "features.npz")) as arrays:
        reference = {key: arrays[key] for key in arrays.files}
    levels = {key.removeprefix("level_"): value for key, value in reference.items()
              if key.startswith("level_")}
    fpn = OdapiFpn({level: tf.TensorShape(value.shape) for level, value in levels.items()},
                   min_level, max_level, depth, activation="relu6", norm_epsilon=0.001)
    top = min(5, max_level)
    weights = {(layer.name, w.name.split("/")[-1].split(":")[0]): w
               for layer in fpn.layers for w in layer.weights}
    odapi = _odapi_fpn_variables(_manifest(name)["checkpoint"])
    assigned = set()
    for key, shape in odapi.items():
        place = _our_layer(key, top)
        weights[place].assign(seeded_weights.value(key, shape))
        assigned.add(place)
    assert assigned == set(weights)
    maps = fpn({level: tf.constant(value) for level, value in levels.items()}, training=False)
    assert sorted(maps, key=int) == [str(level) for level in range(min_level, max_level + 1)]
    for i, level in enumerate(range(min_level, max_level + 1)):
        theirs = reference[f"feature_map_{i}"]
        ours = maps[str(level)].numpy()
        assert ours.shape == theirs.shape, level
        assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max(), level


def test_a_mapped_faster_rcnn_fpn_config_has_the_odapi_fpn_parameters():
    """The published faster_rcnn_resnet50_v1_fpn config's FPN (as the fixture's
    pipeline.config): the OD API's 3,347,456 parameters (3,345,408 trainable), not
    Model Garden's FPN's 3,939,584."""
    path = os.path.join(FIXTURES, FASTER_RCNN_FPN, "pipeline.config")
    with open(path) as f:
        mapped = map_pipeline_config(f.read(), path)
    assert mapped.data["model"]["fpn"]["type"] == "odapi"
    model = config_from_dict({"model": mapped.data["model"]}).model
    model.input_size = [128, 128]  # the parameters do not depend on it
    net = families.build_model(model)
    fpn = parts.variables_by_part(net)["fpn"]
    ours = (sum(int(np.prod(v.shape)) for v in fpn),
            sum(int(np.prod(v.shape)) for v in fpn if v.trainable))
    published = _manifest(FASTER_RCNN_FPN)["published"]
    assert published["config"].endswith("faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config")
    assert ours == _count(_odapi_fpn_variables(published["variables"])) == (3347456, 3345408)


def test_retinanet_builds_the_odapi_fpn_over_model_gardens_backbone():
    """A backbone Model Garden's factory would build (its ResNet-18 here) is built
    first, then the OD API's FPN over it: levels 3..5 from the backbone, 6 and 7 by
    stride-2 convolutions; the default `type: fpn` keeps Model Garden's."""
    config = PipelineConfig()
    model = config.model
    model.num_classes = 3
    model.input_size = [128, 128]
    model.min_level, model.max_level = 3, 7
    model.backbone.type, model.backbone.model_id = "resnet", "18"
    model.backbone.width_multiplier = 0.25
    model.fpn.num_filters, model.head.num_convs, model.head.num_filters = 16, 1, 16
    default = families.build_model(model)
    assert type(default.decoder).__name__ == "FPN"
    model.fpn.type = "odapi"
    net = families.build_model(model)
    assert isinstance(net.decoder, OdapiFpn)
    assert type(net.backbone).__name__ == type(default.backbone).__name__ == "ResNet"
    names = {layer.name for layer in net.decoder.layers if layer.weights}
    assert names == {*(f"lateral_{level}" for level in (3, 4, 5)),
                     *(f"{kind}_{level}{tail}" for kind, levels in (("smooth", (3, 4)),
                                                                    ("coarse", (6, 7)))
                       for level in levels for tail in ("", "_norm"))}
    detections = families.detect(net, tf.zeros([1, 128, 128, 3]),
                                 tf.constant([[128.0, 128.0]]))
    assert detections["detection_boxes"].shape[0] == 1


def _plan_of_the_published_checkpoint(num_filters: int, kind: str = "detection"):
    """plan_shapes of a zoo ckpt-0 of the published Faster R-CNN FPN config (its names
    and shapes) for a full-width keras_v1 ResNet-50 under an OdapiFpn of levels 2..6."""
    shapes = dict(_manifest(FASTER_RCNN_FPN)["published"]["variables"])
    backbone = keras_resnet.KerasResNetV1(50)
    decoder = OdapiFpn(backbone.output_specs, 2, 6, num_filters)
    model = types.SimpleNamespace(backbone=backbone, decoder=decoder,
                                  variables=[*backbone.variables, *decoder.variables])
    return shapes, decoder, odapi_checkpoint.plan_shapes(model, shapes, "ckpt-0", kind)


def test_a_fine_tune_from_the_odapi_checkpoint_maps_every_fpn_variable():
    """With fpn.type odapi, a detection checkpoint's FPN maps onto ours entirely: each
    of our 28 FPN variables takes the OD API's variable that tests/test_odapi_fpn's
    _our_layer places there, with its shape, and no FPN variable of the checkpoint is
    left; the line says so."""
    shapes, decoder, plan = _plan_of_the_published_checkpoint(256)
    summary = plan.summary()
    assert summary == ("265 of 265 backbone variables and 28 of 28 FPN variables from an "
                       "OD API checkpoint ckpt-0 (detection)")  # this model has no head
    fpn_keys = _odapi_fpn_variables(shapes.items())
    fpn = [m for m in plan.mapped if m.part == "fpn"]
    assert len(fpn_keys) == len(fpn) == len(decoder.variables) == 28
    assert {m.key for m in fpn} == set(fpn_keys)
    for m in fpn:
        layer, weight = m.variable.name.split(":")[0].split("/")[-2:]
        assert _our_layer(m.key, 5) == (layer, weight), m.key
        assert list(shapes[m.key]) == m.variable.shape.as_list()
    assert not any(why.startswith("FPN") for _, why in plan.fresh)
    assert not set(fpn_keys) & {key for key, _ in plan.unused}
    assert {row["part"] for row in plan.report()["loaded"]} == {"backbone", "fpn"}


def test_an_odapi_fpn_of_another_width_is_refused_naming_the_first_variable():
    with pytest.raises(TrainError) as err:
        _plan_of_the_published_checkpoint(128)
    message = str(err.value)
    assert message.startswith("train_config.fine_tune_checkpoint ckpt-0 does not fit this "
                              "model's FPN (model.fpn.type: odapi): the first variable whose "
                              "shape differs is model/_feature_extractor_for_proposal_features"
                              "/fpn_features_generator/top_layers/0/kernel/")
    assert "[1, 1, 2048, 256] in the checkpoint, [1, 1, 2048, 128] in this model" in message
    assert "\n" not in message


def test_a_classification_fine_tune_loads_the_backbone_alone():
    """fine_tune_checkpoint_type backbone (the OD API's classification): our FPN stays
    fresh, as in the OD API, whatever the checkpoint holds."""
    _, decoder, plan = _plan_of_the_published_checkpoint(128, "backbone")  # not read
    assert all(m.part == "backbone" for m in plan.mapped)
    assert plan.summary() == ("265 of 265 backbone variables from an OD API checkpoint "
                              "ckpt-0 (backbone); FPN fresh (fine_tune_checkpoint_type "
                              "backbone loads the backbone only)")
    assert sum(why.startswith("FPN") for _, why in plan.fresh) == len(decoder.variables)
