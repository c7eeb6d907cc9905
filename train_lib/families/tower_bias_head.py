"""Model Garden's RetinaNet head with `model.head.tower_conv_bias`: whether the
convolutions of its towers have a bias.

Model Garden's `RetinaNetHead` gives each tower convolution a bias, although each
feeds a batch norm whose offset makes it redundant. The OD API's weight-shared box
predictor with batch norm (the published SSD ResNet and MobileNet FPN configs) gives
them none (unless `force_use_bias`, as the EfficientDet configs). With
`tower_conv_bias=False` this head is Model Garden's without those biases: the same
function, and the OD API's predictor's parameters one for one (at 256 channels and
4 convolutions, 2,048 fewer). The class and box predictors keep theirs.
"""

from __future__ import annotations

import tf_keras
from official.vision.modeling.heads import dense_prediction_heads

__all__ = ["TowerBiasRetinaNetHead"]


@tf_keras.utils.register_keras_serializable(package="train_lib")
class TowerBiasRetinaNetHead(dense_prediction_heads.RetinaNetHead):
    """`RetinaNetHead` (same arguments) and `tower_conv_bias`: whether each tower
    convolution has a bias (Model Garden's: True). It is in `get_config()`."""

    def __init__(self, *args, tower_conv_bias: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self._config_dict["tower_conv_bias"] = tower_conv_bias
        self._conv_kwargs["use_bias"] = tower_conv_bias
