"""model.loss.l2_weight_decay_by_part: each part of a model carries its own L2 weight
(families/regularizers.py), as the OD API's hyperparams blocks each give theirs.

A part's L2 loss (its layers' share of `model.losses`) is w / 2 * sum(v**2) over the
variables its layers regularise, w its weight (its l2_weight_decay_by_part entry,
else l2_weight_decay); weight 0 leaves no loss; the same model without the key keeps
Keras' one L2 regulariser. Another architecture's part, an unknown part and a negative
weight are refused naming the key. The OD API mapper gives EfficientDet's backbone the
OD API's EfficientNet weight and Faster R-CNN's box classifier none, as the OD API
does; checked on the OD API fixtures' pipeline.configs and on the published configs'
sections committed in tests/fixtures/odapi/model_parity.json.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from train_lib import families
from train_lib.config import ConfigError, load_config
from train_lib.families import regularizers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "odapi")
# The fixtures' paths that still hold the OD API's placeholder (unread here).
UNUSED = ("train_config.fine_tune_checkpoint", "train_input_reader.label_map_path",
          "train_input_reader.input_path", "eval_input_reader.label_map_path",
          "eval_input_reader.input_path")
_KERNEL_REGULARIZERS = (("kernel", "kernel_regularizer"),
                        ("depthwise_kernel", "depthwise_regularizer"),
                        ("pointwise_kernel", "pointwise_regularizer"))


def _config(name: str, override: str = ""):
    base = ("model.input_size=[64,64],model.fpn.use_separable_conv=false"
            + (",model.head.use_separable_conv=false" if "retinanet" in name else ""))
    return load_config(os.path.join(REPO, "configs", name),
                       base + ("," + override if override else ""))


def _build(model):
    tf_keras.utils.set_random_seed(3)
    return families.build_model(model)


def _part_layers(net) -> dict[str, list]:
    """The layers of each part (initializer_schema.ARCHITECTURE_PARTS)."""
    def layers(*roots):
        return [layer for root in roots
                for layer in root._flatten_layers(include_self=True, recursive=True)]
    if hasattr(net, "rpn_head"):
        head = net.detection_head[0]
        predictors = layers(head._classifier, head._box_regressor)
        taken = {id(layer) for layer in predictors}
        return {"backbone": layers(net.backbone), "fpn": layers(net.decoder),
                "rpn_head": layers(net.rpn_head),
                "detection_head": [la for la in layers(head) if id(la) not in taken],
                "detection_predictors": predictors}
    predictors = layers(net.head._classifier, net.head._box_regressor)
    taken = {id(layer) for layer in predictors}
    return {"backbone": layers(net.backbone), "fpn": layers(net.decoder),
            "head": [la for la in layers(net.head) if id(la) not in taken],
            "predictors": predictors}


def _part_losses(net) -> dict[str, tuple[int, float]]:
    """(how many, their sum) of each part's share of `net.losses`, from the public
    `losses` of its layers (a head's without its predictors')."""
    def share(*layers):
        values = [float(loss) for layer in layers for loss in layer.losses]
        return len(values), sum(values)

    def minus(whole, *others):
        return (whole[0] - sum(o[0] for o in others), whole[1] - sum(o[1] for o in others))
    if hasattr(net, "rpn_head"):
        head = net.detection_head[0]
        predictors = share(head._classifier, head._box_regressor)
        return {"backbone": share(net.backbone), "fpn": share(net.decoder),
                "rpn_head": share(net.rpn_head), "detection_head": minus(share(head), predictors),
                "detection_predictors": predictors}
    predictors = share(net.head._classifier, net.head._box_regressor)
    return {"backbone": share(net.backbone), "fpn": share(net.decoder),
            "head": minus(share(net.head), predictors), "predictors": predictors}


def _regularised_sum(reference, part: str) -> float:
    """sum(v**2) over the kernels the layers of `part` of `reference` (a model built
    with Keras' one L2) regularise."""
    total = 0.0
    for layer in _part_layers(reference)[part]:
        for variable, regularizer in _KERNEL_REGULARIZERS:
            if getattr(layer, regularizer, None) is not None and \
                    isinstance(getattr(layer, variable, None), tf.Variable):
                total += float(tf.reduce_sum(tf.square(getattr(layer, variable))))
    return total


@pytest.mark.parametrize("model_id, blocks, backbone_l2", [
    ("MobileNetV2", 17, None), ("MobileNetV1", 13, None), ("MobileNetV2", 17, 1e-5),
    ("MobileNetV2", 17, 0.0)])
def test_regularize_depthwise_puts_the_depthwise_kernels_in_the_l2_loss(model_id, blocks,
                                                                        backbone_l2):
    """model.backbone.regularize_depthwise (set for the OD API's Keras MobileNets,
    which regularise their depthwise kernels): the same model, whose backbone's L2 loss
    is w / 2 * sum(v**2) over its depthwise kernels too (Model Garden's MobileNetV1
    alone would leave them out: its blocks pass the regulariser under a name
    DepthwiseConv2D ignores)."""
    base = f"model.loss.l2_weight_decay=4e-5,model.backbone.model_id={model_id}"
    if backbone_l2 is not None:  # the backbone's own weight (a PartL2), 0: no loss
        base += f",model.loss.l2_weight_decay_by_part.backbone={backbone_l2}"
    weight = 4e-5 if backbone_l2 is None else backbone_l2
    plain = _config("shapes_retinanet.yaml", base)
    assert plain.model.backbone.type == "mobilenet"
    assert plain.model.backbone.regularize_depthwise is False
    reference = _build(plain.model)
    net = _build(_config("shapes_retinanet.yaml",
                         base + ",model.backbone.regularize_depthwise=true").model)
    for ours, theirs in zip(net.weights, reference.weights, strict=True):
        assert ours.shape == theirs.shape and np.array_equal(ours.numpy(), theirs.numpy())
    depthwise = [layer.depthwise_kernel for layer in _part_layers(net)["backbone"]
                 if isinstance(layer, tf_keras.layers.DepthwiseConv2D)]
    assert len(depthwise) == blocks  # one per block
    (before_count, before), (count, total) = (
        _part_losses(m)["backbone"] for m in (reference, net))
    assert count - before_count == (len(depthwise) if weight else 0)
    expected = weight / 2 * sum(float(tf.reduce_sum(tf.square(k))) for k in depthwise)
    assert total - before == pytest.approx(expected, rel=1e-4, abs=1e-12)
    assert _part_losses(net)["head"] == _part_losses(reference)["head"]


CASES = {
    "retinanet": ("shapes_retinanet.yaml", "model.loss.l2_weight_decay=4e-5",
                  {"backbone": 1e-5, "fpn": 0.0, "head": 3e-4}),
    "faster_rcnn": ("shapes_faster_rcnn.yaml", "model.loss.l2_weight_decay=4e-5",
                    {"backbone": 1e-5, "rpn_head": 1e-3, "detection_head": 0.0,
                     "detection_predictors": 0.0}),
    "retinanet_base_0": ("shapes_retinanet.yaml", "model.loss.l2_weight_decay=0.0",
                         {"head": 2e-4}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_part_carries_its_own_weight(case):
    name, base, by_part = CASES[case]
    plain = _config(name, base + ",model.loss.l2_weight_decay=4e-5")
    reference = _build(plain.model)
    assert type(regularizers.l2_regularizer(plain.model)) is tf_keras.regularizers.L2
    override = ",".join(f"model.loss.l2_weight_decay_by_part.{p}={w}" for p, w in by_part.items())
    config = _config(name, base + "," + override)
    net = _build(config.model)
    for ours, theirs in zip(net.weights, reference.weights, strict=True):
        assert np.array_equal(ours.numpy(), theirs.numpy())  # the same model, other losses
    losses = _part_losses(net)
    weights = regularizers.part_l2_weights(config.model)
    assert set(losses) == set(weights)
    checked = 0
    for part, weight in weights.items():
        expected = weight / 2 * _regularised_sum(reference, part)
        count, total = losses[part]
        assert total == pytest.approx(expected, rel=1e-5, abs=1e-12), part
        if weight == 0:
            assert count == 0, part  # no loss at all, not a zero one
        checked += expected > 0
    assert checked >= min(2, sum(w > 0 for w in weights.values()))
    total = float(tf.add_n(net.losses))
    assert len(net.losses) == sum(count for count, _ in losses.values())
    assert total == pytest.approx(sum(value for _, value in losses.values()), rel=1e-6)
    assert total != pytest.approx(float(tf.add_n(reference.losses)), rel=1e-3)


def test_one_weight_for_all_parts_is_keras_l2():
    """Parts that all take one weight, set or not: Keras' L2 of half that weight, the
    model as before the key existed; no weight anywhere: no regulariser."""
    config = _config("shapes_retinanet.yaml")
    regularizer = regularizers.l2_regularizer(config.model)
    assert type(regularizer) is tf_keras.regularizers.L2
    assert float(regularizer.l2) == pytest.approx(config.model.loss.l2_weight_decay / 2)
    same = copy.deepcopy(config.model)
    same.loss.l2_weight_decay_by_part.backbone = same.loss.l2_weight_decay
    assert type(regularizers.l2_regularizer(same)) is tf_keras.regularizers.L2
    none = copy.deepcopy(config.model)
    none.loss.l2_weight_decay = 0.0
    assert regularizers.l2_regularizer(none) is None
    none.loss.l2_weight_decay_by_part.head = 1e-4
    assert isinstance(regularizers.l2_regularizer(none), regularizers.PartL2)


@pytest.mark.parametrize("yaml_text, key, says", [
    ("model: {loss: {l2_weight_decay_by_part: {detection_head: 0.0}}}",
     "model.loss.l2_weight_decay_by_part.detection_head", "is a faster_rcnn key"),
    ("model: {architecture: faster_rcnn, loss: {l2_weight_decay_by_part: {predictors: 0.0}}}",
     "model.loss.l2_weight_decay_by_part.predictors", "is a retinanet key"),
    ("model: {loss: {l2_weight_decay_by_part: {neck: 0.0}}}",
     "model.loss.l2_weight_decay_by_part.neck", "unknown key"),
    ("model: {loss: {l2_weight_decay_by_part: {backbone: -1.0e-5}}}",
     "model.loss.l2_weight_decay_by_part.backbone", "must be >= 0"),
])
def test_refused_naming_the_key(yaml_text, key, says, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    message = str(err.value)
    assert key in message and says in message and "\n" not in message


def test_efficientdet_backbone_takes_the_odapi_efficientnets_weight(tmp_path):
    """The OD API's EfficientNet regularises with its builder's Keras L2 factor 5e-6,
    weight 1e-5 (halved as ours); BiFPN and box predictor the configs' 4e-5. With
    override_base_feature_extractor_hyperparams it takes the feature extractor's."""
    path = os.path.join(FIXTURES, "ssd_efficientnet-b0_bifpn_keras", "pipeline.config")
    loss = load_config(path, unused_keys=UNUSED).model.loss
    assert {p: loss.l2_weight(p) for p in ("backbone", "fpn", "head", "predictors")} == {
        "backbone": 1e-5, "fpn": 4e-5, "head": 4e-5, "predictors": 4e-5}
    with open(path, encoding="utf-8") as f:
        text = f.read()
    overridden = tmp_path / "override.config"
    overridden.write_text(text.replace('type: "ssd_efficientnet-b0_bifpn_keras"',
                                       'type: "ssd_efficientnet-b0_bifpn_keras"\n'
                                       "      override_base_feature_extractor_hyperparams: true"))
    assert load_config(str(overridden), unused_keys=UNUSED).model.loss.l2_weight(
        "backbone") == 4e-5


def test_faster_rcnn_box_classifier_carries_no_l2_as_the_odapis():
    """The OD API's Keras box classifier's Dense layers get no regulariser; its RPN the
    first-stage conv_hyperparams' weight (0.0 in the published configs)."""
    path = os.path.join(FIXTURES, "faster_rcnn_resnet50_fpn_keras", "pipeline.config")
    loss = load_config(path, unused_keys=UNUSED).model.loss
    assert {p: loss.l2_weight(p) for p in ("backbone", "fpn", "rpn_head", "detection_head",
                                           "detection_predictors")} == {
        "backbone": 4e-4, "fpn": 4e-4, "rpn_head": 0.0, "detection_head": 0.0,
        "detection_predictors": 0.0}


def test_published_configs_sections_carry_the_odapis_weights():
    """The committed sections of the published EfficientDet D0 and Faster R-CNN FPN
    configs (model parity's, mapped from the published files)."""
    with open(os.path.join(FIXTURES, "model_parity.json"), encoding="utf-8") as f:
        parity = json.load(f)
    d0 = parity["ssd_efficientdet_d0_512x512_coco17_tpu-8.config"]["model"]["loss"]
    assert (d0["l2_weight_decay"], d0["l2_weight_decay_by_part"]["backbone"]) == (4e-5, 1e-5)
    fpn = parity["faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config"]["model"]["loss"]
    assert fpn["l2_weight_decay"] == 4e-4
    assert {p: fpn["l2_weight_decay_by_part"][p] for p in (
        "rpn_head", "detection_head", "detection_predictors")} == dict.fromkeys(
        ("rpn_head", "detection_head", "detection_predictors"), 0.0)


def test_odapi_efficientnet_regularises_its_squeeze_excitation_biases():
    """The OD API's Keras EfficientNet gives its convolutions' biases (squeeze-excitation's
    only: the others precede a batch norm) the kernels' L2; so does ours with
    efficientnet_endpoints: odapi, the OD API's EfficientNet. Model Garden's own
    EfficientNet leaves them out, as it does."""
    backbone = ("model.backbone.type=efficientnet,model.backbone.model_id=b0,"
                "model.backbone.width_multiplier=1.0,model.backbone.se_activation=swish,"
                "model.loss.l2_weight_decay=4e-5")
    for endpoints, expected in (("odapi", True), ("model_garden", False)):
        net = _build(_config("shapes_retinanet.yaml", backbone
                             + f",model.backbone.efficientnet_endpoints={endpoints}").model)
        biases = [layer.bias for layer in net.backbone._flatten_layers(include_self=False)
                  if isinstance(layer, tf_keras.layers.Conv2D) and layer.use_bias]
        assert len(biases) >= 32  # two per squeeze-excitation, 16 blocks in B0
        before = float(tf.add_n(net.backbone.losses))
        for bias in biases:
            bias.assign(tf.ones_like(bias))
        added = float(tf.add_n(net.backbone.losses)) - before
        count = sum(int(tf.size(bias)) for bias in biases)
        assert added == pytest.approx(4e-5 / 2 * count if expected else 0.0, rel=1e-4,
                                      abs=1e-9), endpoints
