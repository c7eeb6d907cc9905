"""The OD API's Keras ResNet-50/101/152 v1 (`ssd_resnet<d>_v1_fpn_keras`,
`faster_rcnn_resnet<d>_keras`, and `faster_rcnn_resnet<d>_fpn_keras`, whose whole
ResNet is under `model/_feature_extractor_for_proposal_features/classification_backbone/`)
into our Keras ResNet v1 (`model.backbone.resnet_variant: keras_v1`,
families/keras_resnet.py): 106/208/310 layers with weights, by name. Model Garden's
ResNet (v1.5) has the same variables but computes another function, so it is refused.
A Faster R-CNN's conv5 loads into our backbone's level 5, which runs it on the whole
image. A Keras application's convolutions have a bias, which the OD API's do not: a
classification checkpoint's bias is folded into the following batch norm's moving
mean (the same function in inference; in training, batch norm removes it anyway).
"""

from __future__ import annotations

from train_lib.families import keras_resnet


def matches(backbone) -> bool:
    """Whether `backbone` is our Keras ResNet v1, which these names fit."""
    return isinstance(backbone, keras_resnet.KerasResNetV1)


def keras_layers(backbone) -> list[tuple[str, object]]:
    """The Keras ResNet's names in its order (keras_resnet.keras_layer_order): our
    backbone's layers carry those names, so each is found by its own."""
    order = keras_resnet.keras_layer_order(backbone.get_config()["model_id"])
    return [(name, backbone.get_layer(name)) for name in order]
