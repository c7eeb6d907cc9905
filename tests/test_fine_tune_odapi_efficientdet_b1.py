"""The OD API's EfficientDet D1 checkpoint (`ssd_efficientnet-b1_bifpn_keras`) into
`model.backbone.efficientnet_endpoints: odapi`: our levels are the OD API's, measured.

The fixture (tests/fixtures/odapi/ssd_efficientnet-b1_bifpn_keras/, written by
scripts/odapi_fixtures/make_odapi_fixtures.py with the real OD API) holds the OD API's
model built from the published ssd_efficientdet_d1_640x640 config at 256 px with 3
classes (B1 at full width): the checkpoint's names and shapes (the test writes it with
seeded_weights' values, which the script checked the OD API's own checkpoint holds),
an image and the Keras EfficientNet's tensors at the layers the OD API's EfficientDet
reads as its levels 2-5 (stack_1/block_1/add, stack_2/block_1/add,
stack_4/block_2/add, stack_6/block_0/project_bn; the script checked that levels 3-5
are what its extractor gives its BiFPN).

B1's block groups hold more blocks than B0's, so those layers lie inside the groups
(level 3 is stack_2's second block of three), where Model Garden's EfficientNet ends
its levels. Measured here: the mapped config (`efficientnet_endpoints: odapi`, with
`se_activation: swish`) loads every variable of its backbone and computes the OD
API's levels within 1e-4; Model Garden's endpoints, with the same weights, compute
other levels."""

from __future__ import annotations

import copy

import numpy as np
import tensorflow as tf
from conftest import write_odapi_fixture_config
from official.vision.modeling.backbones import efficientnet
from test_fine_tune_odapi_efficientdet import _levels
from test_fine_tune_odapi_resnet import _checkpoint, _reference

from train_lib.config import load_config
from train_lib.families import build_model
from train_lib.families.efficientnet_endpoints import OdapiEndpointsEfficientNet
from train_lib.training import fine_tune

NAME = "ssd_efficientnet-b1_bifpn_keras"
EFFICIENTNET = "model/_feature_extractor/_efficientnet/"  # the Keras EfficientNet to level 5
REST = "model/_feature_extractor/classification_backbone/"
TOLERANCE = 1e-4
# B1's variables up to the OD API's level 5 (what _efficientnet/ holds), and Model
# Garden's whole EfficientNet-B1's: one more block (19) and the last 1x1 conv and norm (5)
TO_LEVEL_5, WHOLE = 413, 437


def _mapped(tmp_path, endpoints: str | None = None):
    """The fixture's pipeline.config mapped as a run would (fine_tune_checkpoint: the
    OD API's checkpoint), `model.backbone.efficientnet_endpoints` replaced by
    `endpoints` if given; the config, the built model and the checkpoint."""
    prefix = _checkpoint(NAME, tmp_path)
    config = load_config(write_odapi_fixture_config(
        NAME, tmp_path, {'"PATH_TO_BE_CONFIGURED/ckpt-0"': f'"{prefix}"'}))
    if endpoints is not None:
        config.model.backbone.efficientnet_endpoints = endpoints
    return config, build_model(config.model), prefix


def test_the_mapped_config_loads_every_backbone_variable_and_computes_the_odapi_levels(
        tmp_path):
    """efficientnet_endpoints: odapi (what the mapper sets): our backbone ends at the OD
    API's level 5, so its 413 variables are the checkpoint's _efficientnet/ one to one,
    all load, and its levels 2-5 are the OD API's."""
    config, model, prefix = _mapped(tmp_path)
    backbone = config.model.backbone
    assert (backbone.type, backbone.model_id, backbone.se_activation,
            backbone.efficientnet_endpoints) == ("efficientnet", "b1", "swish", "odapi")
    assert isinstance(model.backbone, OdapiEndpointsEfficientNet)
    assert len(model.backbone.variables) == TO_LEVEL_5
    stored = sum(key.startswith(EFFICIENTNET) for key, _ in tf.train.list_variables(prefix))
    assert stored == TO_LEVEL_5
    reference = _reference(NAME)
    assert min(_levels(model.backbone, reference).values()) > 0.1  # fresh: far apart
    result = fine_tune.apply(model, config.train_config.fine_tune_checkpoint,
                             config.train_config.fine_tune_checkpoint_type)
    assert result.count == TO_LEVEL_5
    differences = _levels(model.backbone, reference)
    assert max(differences.values()) <= TOLERANCE, differences
    assert result.line.startswith(f"fine-tune: {TO_LEVEL_5} of {TO_LEVEL_5} backbone "
                                  "variables from an OD API checkpoint")
    assert "classification_backbone" not in result.line  # nothing after level 5 loads
    report = result.report
    assert all(e["checkpoint_key"].startswith(EFFICIENTNET) for e in report["loaded"])
    assert report["loaded"][-1]["odapi_layer"] == "stack_6/block_0/project_bn/moving_variance"
    assert not [e for e in report["fresh"] if e["reason"].startswith("backbone:")]


def test_model_gardens_endpoints_load_the_same_weights_and_compute_other_levels(tmp_path):
    """efficientnet_endpoints: model_garden with the same checkpoint: 432 of its 437
    variables load (stack_6's second block from classification_backbone/), the layers
    up to level 5 take the same values, and its levels (the ends of the groups) are
    other tensors than the OD API's."""
    config, model, prefix = _mapped(tmp_path, "model_garden")
    assert isinstance(model.backbone, efficientnet.EfficientNet)
    assert len(model.backbone.variables) == WHOLE
    result = fine_tune.apply(model, config.train_config.fine_tune_checkpoint,
                             config.train_config.fine_tune_checkpoint_type)
    assert result.count == WHOLE - 5
    assert "(model.backbone.efficientnet_endpoints: odapi reads them there)" in result.line
    differences = _levels(model.backbone, _reference(NAME))
    assert min(differences.values()) > 0.1, differences  # measured 0.42-1.12

    # The same layers take the same values: the odapi backbone's variables are, in
    # order, Model Garden's up to level 5, so the levels differ by where they are read.
    section = copy.deepcopy(config.model)
    section.backbone.efficientnet_endpoints = "odapi"
    odapi_model = build_model(section)
    fine_tune.apply(odapi_model, prefix, "backbone")
    for ours, theirs in zip(odapi_model.backbone.variables,
                            model.backbone.variables[:TO_LEVEL_5], strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert max(_levels(odapi_model.backbone, _reference(NAME)).values()) <= TOLERANCE
