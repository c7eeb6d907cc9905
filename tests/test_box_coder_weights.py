"""model.anchor.box_coder_weights: the RetinaNet's box head learns the OD API's scaled
box codes (faster_rcnn_box_coder's y, x, height and width scales), and its
detections divide them out again."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from train_lib import families
from train_lib.config import PipelineConfig

SCALES = [10.0, 10.0, 5.0, 5.0]
# One code [ty, tx, th, tw] every anchor's box head predicts, unscaled.
CODE = np.array([0.1, -0.2, 0.3, -0.1], np.float32)


def _tiny_model(box_coder_weights: list[float]):
    model = PipelineConfig().model
    model.num_classes = 3
    model.input_size = [64, 64]
    model.min_level, model.max_level = 3, 5
    model.backbone.model_id = "MobileNetV2"
    model.backbone.width_multiplier = 0.35
    model.fpn.num_filters = 16
    model.head.num_convs = 0
    model.head.num_filters = 16
    model.anchor.anchor_size = 3.0
    model.anchor.box_coder_weights = box_coder_weights
    return model


def _predicting(net, code: np.ndarray):
    """`net` with its box regressor predicting `code` at every anchor (kernel 0)."""
    kernel, bias = net.head._box_regressor.kernel, net.head._box_regressor.bias
    kernel.assign(tf.zeros_like(kernel))
    bias.assign(np.tile(code, bias.shape[0] // 4))
    return net


def test_scaled_codes_decode_to_the_boxes_the_unscaled_ones_do():
    """A model with box_coder_weights whose head predicts the scaled code decodes the
    same boxes as a model without them predicting the unscaled one: Model Garden's
    detection generator divides the scales out."""
    unscaled = _predicting(families.build_model(_tiny_model([])), CODE)
    scaled = _predicting(families.build_model(_tiny_model(SCALES)), CODE * SCALES)
    images = tf.random.stateless_uniform([1, 64, 64, 3], seed=[1, 2], maxval=255.0)
    shape = tf.constant([[64.0, 64.0]])
    want, _ = families.decoded_detections(unscaled, images, shape)
    got, _ = families.decoded_detections(scaled, images, shape)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-3)
    # and not the boxes of the scaled code read unscaled
    wrong, _ = families.decoded_detections(
        _predicting(families.build_model(_tiny_model([])), CODE * SCALES), images, shape)
    assert np.abs(wrong.numpy() - want.numpy()).max() > 1.0


@pytest.mark.parametrize("weights", [[10.0, 10.0, 5.0], [10.0, 0.0, 5.0, 5.0]])
def test_box_coder_weights_are_four_positive_numbers(weights):
    model = _tiny_model(weights)
    assert any(p.startswith("model.anchor.box_coder_weights is ") for p in model.problems())
