"""model.head.tower_conv_bias: whether the head's tower convolutions have a bias.

Model Garden's RetinaNet head gives each tower convolution a bias; the OD API's
weight-shared box predictor with batch norm gives them none (each feeds a batch
norm, whose offset makes it redundant). false is the OD API's: the same function,
the OD API's parameters, and the mapper sets it from the predictor's conv_hyperparams
(batch_norm and force_use_bias)."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO
from train_lib.config.odapi.pipeline import map_pipeline_config
from train_lib.families import retinanet
from train_lib.families.shared_tower_head import SharedTowerRetinaNetHead
from train_lib.families.tower_bias_head import TowerBiasRetinaNetHead

FIXTURES = os.path.join(REPO, "tests", "fixtures", "odapi")


def _tower_convs(head) -> list:
    if isinstance(head, SharedTowerRetinaNetHead):
        return list(head._tower_convs)
    return [*head._cls_convs, *head._box_convs]


@pytest.mark.parametrize("shared", [False, True])
def test_without_tower_bias_the_head_has_no_tower_biases_and_the_rest(tiny_config, shared):
    model = copy.deepcopy(tiny_config.model)
    model.head.share_prediction_tower = shared
    model.head.tower_conv_bias = True
    with_bias = retinanet.build_model(model).head
    model.head.tower_conv_bias = False
    without = retinanet.build_model(model).head
    if not shared:
        assert isinstance(without, TowerBiasRetinaNetHead)
    convs = _tower_convs(without)
    assert convs and all(conv.bias is None for conv in convs)
    assert all(conv.bias is not None for conv in _tower_convs(with_bias))
    assert without._classifier.bias is not None and without._box_regressor.bias is not None
    assert with_bias.count_params() - without.count_params() == \
        len(convs) * model.head.num_filters
    assert without.get_config()["tower_conv_bias"] is False


def test_null_keeps_each_heads_own_biases(tiny_config):
    """Without the key (null), as before it existed: Model Garden's two towers with
    biases (the factory's own head), the shared tower without; so the checkpoints of
    runs made before it still fit."""
    model = copy.deepcopy(tiny_config.model)
    assert model.head.tower_conv_bias is None
    two = retinanet.build_model(model).head
    assert type(two) is not TowerBiasRetinaNetHead  # the factory's own head
    assert all(conv.bias is not None for conv in _tower_convs(two))
    model.head.share_prediction_tower = True
    shared = retinanet.build_model(model).head
    assert all(conv.bias is None for conv in _tower_convs(shared))


def test_without_tower_bias_the_head_computes_model_gardens_function(tiny_config):
    """Model Garden's head with its tower biases at 0 and the bias-free head with the
    same other weights give the same scores and boxes: only the parameters differ."""
    model = copy.deepcopy(tiny_config.model)
    reference = retinanet.build_model(model)
    model.head.tower_conv_bias = False
    net = retinanet.build_model(model)
    for conv in reference.head._cls_convs + reference.head._box_convs:
        conv.bias.assign(tf.zeros_like(conv.bias))
    def within(variable) -> str:  # its name inside the head (the heads' names differ)
        return variable.name.split("/", 1)[1]

    by_name = {within(v): v for v in reference.head.variables}
    for variable in net.head.variables:
        variable.assign(by_name[within(variable)])
    features = reference.decoder(reference.backbone(
        tf.random.uniform([2, 64, 64, 3], seed=3), training=False), training=False)
    ours, theirs = net.head(features, training=False), reference.head(features, training=False)
    for level in features:
        for i in (0, 1):
            np.testing.assert_allclose(ours[i][level], theirs[i][level], rtol=1e-5, atol=1e-6)
    # ... and with a tower bias that is not 0, they differ: the test can fail.
    reference.head._cls_convs[0].bias.assign_add(tf.ones_like(reference.head._cls_convs[0].bias))
    theirs = reference.head(features, training=False)
    assert not np.allclose(ours[0]["3"], theirs[0]["3"], atol=1e-4)


def _mapped_head(text: str) -> dict:
    return map_pipeline_config(text, "pipeline.config").data["model"]["head"]


def _fixture_config(name: str) -> str:
    with open(os.path.join(FIXTURES, name, "pipeline.config"), encoding="utf-8") as f:
        return f.read()


def test_the_mapper_follows_the_odapi_predictors_batch_norm_and_force_use_bias():
    resnet = _fixture_config("ssd_resnet50_v1_fpn_keras")
    assert "force_use_bias" not in resnet and "batch_norm {" in resnet
    assert _mapped_head(resnet)["tower_conv_bias"] is False
    fpn_lite = _mapped_head(_fixture_config("ssd_mobilenet_v2_fpn_keras"))
    assert fpn_lite["tower_conv_bias"] is False and fpn_lite["share_prediction_tower"] is True
    # EfficientDet's predictor forces its biases.
    efficientdet = _fixture_config("ssd_efficientnet-b0_bifpn_keras")
    assert "force_use_bias: true" in efficientdet
    assert _mapped_head(efficientdet)["tower_conv_bias"] is True
    # force_use_bias: true, cut from the ResNet's predictor: biases.
    predictor = resnet.index("weight_shared_convolutional_box_predictor")
    hyperparams = resnet.index("conv_hyperparams {", predictor) + len("conv_hyperparams {")
    forced = resnet[:hyperparams] + "\n force_use_bias: true" + resnet[hyperparams:]
    assert _mapped_head(forced)["tower_conv_bias"] is True
