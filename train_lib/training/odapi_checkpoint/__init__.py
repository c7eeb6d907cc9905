"""The TF Object Detection API's TF2 checkpoints as starting weights: which of
their variables go into which of our model's, checked by shape, loaded by value.

Where to look:
- layout.py: where an OD API checkpoint keeps each part of its model (its variable
  names' prefixes), and how a Keras model in it numbers its layers by position
  (`layer_with_weights-<i>`, in the Keras application's order);
- one module per backbone it maps, named after it, each holding that backbone's
  Keras layer order (the name of the OD API's layer each of our layers with weights
  stands for) and why ours computes the same function:
  mobilenet_v2.py (the OD API's Keras MobileNetV2 into Model Garden's),
  mobilenet_v1.py (its Keras MobileNet v1 into Model Garden's MobileNetV1),
  resnet_v1.py (its Keras ResNet-50/101/152 v1 into our `resnet_variant: keras_v1`),
  efficientnet.py (EfficientDet's Keras EfficientNet into Model Garden's, with
  `se_activation: swish` and, for its levels, `efficientnet_endpoints: odapi`);
- fpn.py: the OD API's Keras FPN (its FPN extractors' top-down pyramid and coarse
  levels) into our `model.fpn.type: odapi`, which computes its function;
- box_predictor.py: its weight-shared box predictor into our RetinaNet head, which
  computes its function (one tower, share_prediction_tower: into our
  `model.head.share_prediction_tower: true`; two towers: into Model Garden's with
  `model.head.tower_conv_bias: false`), its predictors' outputs permuted into our
  anchor order, and why its class predictor starts fresh when it does;
- keras_weights.py: a Keras application's weights file (`.h5`) read as the
  classification checkpoint it stands for;
- mapped.py: one variable of ours paired with the checkpoint value it takes;
- mapping.py: the plan (each backbone layer's variables paired with the checkpoint's,
  and, for a detection checkpoint into `model.fpn.type: odapi`, fpn.py's pairs, and
  for `full` into a head of the checkpoint's towers, box_predictor.py's, all checked
  by shape), its loading, its log line and fine_tune_report.json, and why each of the
  rest is not loaded.

With `model.fpn.type: odapi` our FPN is the OD API's: a detection checkpoint's FPN
loads into it, every variable or none (a classification one holds no FPN: ours
starts fresh, as the OD API's). With `fine_tune_checkpoint_type: full` (the OD API's
full) a weight-shared box predictor loads into our head too when that has its towers
(one: `model.head.share_prediction_tower: true`; two: Model Garden's, with
`model.head.tower_conv_bias: false`): the towers and the box predictor, every variable
or none, and the class predictor when its shape is ours (another num_classes: it starts
fresh, where the OD API's full fails); a head of the other tower arrangement is one
TrainError naming model.head.share_prediction_tower; with `detection` the head starts
fresh, as the OD API's. Its other layers after its backbone (its FPN when ours is Model Garden's,
SSD's extra feature maps, EfficientDet's BiFPN, the other box predictors, Faster
R-CNN's RPN) compute other functions than ours: they are never loaded, and the report
says so.

Contract: `plan(model, prefix, kind)` checks everything before anything is loaded
and raises TrainError naming the first variable that does not fit (its checkpoint
key, the Keras layer, both shapes); `Plan.load()` then assigns every mapped value.
"""

from __future__ import annotations

from train_lib.training.odapi_checkpoint.keras_weights import (
    KerasWeightsFile,
    is_keras_weights_file,
)
from train_lib.training.odapi_checkpoint.layout import (  # what other modules use
    BOX_CLASSIFIER_BACKBONE,
    DETECTION_BACKBONE,
    KEY,
    LAYER,
    PROPOSAL_BACKBONE,
    is_odapi_checkpoint,
)
from train_lib.training.odapi_checkpoint.mapped import Mapped
from train_lib.training.odapi_checkpoint.mapping import (
    Plan,
    _keras_layers,
    plan,
    plan_shapes,
)

__all__ = [
    "BOX_CLASSIFIER_BACKBONE", "DETECTION_BACKBONE", "KEY", "LAYER", "PROPOSAL_BACKBONE",
    "KerasWeightsFile", "Mapped", "Plan", "_keras_layers", "is_keras_weights_file",
    "is_odapi_checkpoint", "plan", "plan_shapes",
]
