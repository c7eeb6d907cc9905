"""model.initializers for Faster R-CNN: each part (backbone, FPN, RPN head, detection
head, detection predictors) starts from the distribution its config gives
(families/initializers.py), as the OD API's Keras Faster R-CNN draws its parts.

A model built with an initializer per part has each part's kernels drawn from that
part's distribution (told apart by their means), separable convolutions' pointwise
kernels from glorot_uniform, and every other variable as Model Garden built it; no
initializer leaves the model exactly as before; the same seed gives the same
weights; a RetinaNet part given to a Faster R-CNN (and the reverse) is refused by its
key. The mapping of the OD API's blocks is tested in tests/test_odapi_faster_rcnn.py.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tf_keras

from tests.conftest import make_tiny_faster_rcnn_config
from tests.test_initializers import check_drawn, check_only_moved
from train_lib.config import ConfigError, config_from_dict
from train_lib.config.initializer_schema import ARCHITECTURE_PARTS
from train_lib.families import faster_rcnn, initializers, parts

MEANS = {"backbone": 1.0, "fpn": 2.0, "rpn_head": 3.0, "detection_head": 4.0,
         "detection_predictors": 5.0}
# The model alone is built: the readers' paths are never opened.
_PATHS = {"train_pattern": "train-*", "val_pattern": "val-*", "label_map_path": "map.pbtxt"}


@pytest.fixture(scope="module")
def plain_model():
    """The tiny Faster R-CNN's model section, with a convolution in its detection head
    (the head's parts are convolutions and fully connected layers) and a separable FPN
    (pointwise kernels)."""
    model = make_tiny_faster_rcnn_config(_PATHS).model
    model.detection_head.num_convs = 1
    model.fpn.use_separable_conv = True
    return model


def _build(model, seed: int = 7):
    tf_keras.utils.set_random_seed(seed)
    return faster_rcnn.build_model(model)


def _with_initializers(model):
    model = copy.deepcopy(model)
    for part, mean in MEANS.items():
        spec = getattr(model.initializers, part)
        spec.type, spec.mean, spec.stddev = "random_normal", mean, 0.01
    return model


def test_the_parts_are_faster_rcnns():
    assert tuple(MEANS) == ARCHITECTURE_PARTS["faster_rcnn"]


def test_each_part_is_drawn_from_its_own_distribution(plain_model):
    net = _build(_with_initializers(plain_model))
    kernels = parts.kernels_by_part(net)
    assert list(kernels) == list(MEANS)
    assert all(kernels.values()), {p: len(v) for p, v in kernels.items()}
    head = net.detection_head[0]
    kinds = {type(layer).__name__ for layer in (*head._convs, *head._fcs)}
    assert kinds == {"Conv2D", "Dense"}  # the detection head's convolution and FCs
    assert len(kernels["detection_predictors"]) == 2  # the class and box Dense kernels
    assert check_drawn(kernels, MEANS) > 0  # the separable FPN's pointwise kernels


def test_no_initializer_changes_nothing_and_one_part_moves_alone(plain_model):
    plain = _build(plain_model)
    again = _build(plain_model)
    assert initializers.draw(again, plain_model) == 0  # no type set: untouched
    for a, b in zip(plain.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)

    model = copy.deepcopy(plain_model)
    model.initializers.rpn_head.type = "truncated_normal"
    model.initializers.rpn_head.stddev = 0.05
    changed = _build(model)
    kernels = {id(v) for v in parts.kernels_by_part(changed)["rpn_head"]}
    # The RPN's convolution, score and box predictors; nothing else.
    assert check_only_moved(plain, changed, kernels, 0.05) == len(kernels) == 3


def test_the_same_seed_gives_the_same_weights(plain_model):
    model = _with_initializers(plain_model)
    first, second, other = _build(model, 3), _build(model, 3), _build(model, 4)
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    for part in MEANS:
        ours = parts.kernels_by_part(first)[part][0].numpy()
        others = parts.kernels_by_part(other)[part][0].numpy()
        assert not np.array_equal(ours, others), part


@pytest.mark.parametrize("architecture, part, owner", [
    ("faster_rcnn", "head", "retinanet"), ("faster_rcnn", "predictors", "retinanet"),
    ("retinanet", "rpn_head", "faster_rcnn"), ("retinanet", "detection_head", "faster_rcnn"),
    ("retinanet", "detection_predictors", "faster_rcnn")])
def test_another_architectures_part_is_refused_by_its_key(architecture, part, owner):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"model": {"architecture": architecture, "initializers": {
            part: {"type": "random_normal"}}}}, "x.yaml")
    assert str(err.value) == (
        f"x.yaml: `model.initializers.{part}` is a {owner} key, but model.architecture is "
        f"{architecture}; remove it, or set model.architecture: {owner}")


def test_the_shared_parts_are_both_architectures():
    for architecture in ARCHITECTURE_PARTS:
        config = config_from_dict({"model": {"architecture": architecture, "initializers": {
            "backbone": {"type": "glorot_uniform"}, "fpn": {"type": "random_normal"}}}})
        assert config.model.initializers.backbone.type == "glorot_uniform"
        assert config.model.initializers.fpn.type == "random_normal"
    with pytest.raises(ConfigError, match=r"model\.initializers\.rpn_head\.mode"):
        config_from_dict({"model": {"architecture": "faster_rcnn", "initializers": {
            "rpn_head": {"type": "variance_scaling", "mode": "fan"}}}})
