"""Where an OD API checkpoint keeps each part of its model: the prefixes of its
variable names, and how a Keras model inside it numbers its layers.

An OD API checkpoint is object-based. An SSD detector's (a TF2 model zoo `ckpt-0`,
written by its exporter as `tf.train.Checkpoint(model=detection_model)`, or one
its `model_main_tf2.py` saved) keeps its Keras feature extractor's backbone under
`model/_feature_extractor/classification_backbone/`; a Faster R-CNN's keeps the
Keras ResNet in two parts, its first three stages (conv1..conv4, the RPN's
features) under `model/_feature_extractor_for_proposal_features/` and the fourth
(conv5, run on each proposal by the box classifier) under
`model/_feature_extractor_for_box_classifier_features/`; a classification checkpoint
(what the OD API loads for `fine_tune_checkpoint_type: classification`, a Keras
application's weights) keeps the whole backbone under `feature_extractor/`. Inside,
a Keras functional model names its layers by position: `layer_with_weights-<i>`
is the i-th layer that has weights, in the Keras application's order (each
backbone's module of this package knows that order for its backbone).
"""

from __future__ import annotations

KEY = "train_config.fine_tune_checkpoint"
DETECTION_BACKBONE = "model/_feature_extractor/classification_backbone/"
CLASSIFICATION_BACKBONE = "feature_extractor/"
PROPOSAL_BACKBONE = "model/_feature_extractor_for_proposal_features/"
BOX_CLASSIFIER_BACKBONE = "model/_feature_extractor_for_box_classifier_features/"
FPN_PROPOSAL_BACKBONE = PROPOSAL_BACKBONE + "classification_backbone/"  # _fpn_keras
# EfficientDet: its Keras EfficientNet up to the layer it reads as level 5 (the rest,
# under classification_backbone/ and numbered on, it never runs: for B1-B6 the last
# group's later blocks, then the top conv and the classifier).
EFFICIENTDET_BACKBONE = "model/_feature_extractor/_efficientnet/"
FEATURE_MAPS = "model/_feature_extractor/"
BOX_PREDICTOR = "model/_box_predictor/"
RPN = "model/_first_stage_box_predictor"  # and _first_stage_box_predictor_first_conv
SECOND_STAGE_PREDICTOR = "model/_mask_rcnn_box_predictor/"
LAYER = "layer_with_weights-"
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def is_odapi_checkpoint(names) -> bool:
    """Whether a checkpoint with these variable names was written by the OD API
    (a detector's or a classification checkpoint of a Keras feature extractor)."""
    return any(n.startswith((FEATURE_MAPS, BOX_PREDICTOR, PROPOSAL_BACKBONE, RPN))
               or n.startswith(CLASSIFICATION_BACKBONE + LAYER) for n in names)
