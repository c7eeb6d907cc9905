"""The `model.faster_rcnn` rows of the OD API mapping table (table.py's ROWS).

A faster_rcnn block becomes `model.architecture: faster_rcnn` (Model Garden's
Faster R-CNN: backbone, FPN, RPN, ROI align, box classifier). The fields that
combine (the feature extractor, the anchors, the crop size, the proposals and
the OD API's defaults where ours differ) are computed by faster_rcnn.py.
"""

from __future__ import annotations

from train_lib.config.odapi.rows import (
    APPROX,
    EXACT,
    IGNORED,
    ONE_NORM,
    UNSUPPORTED,
    Row,
    hyperparams_rows,
    multiscale_anchor_rows,
    nms_rows,
    resizer_rows,
)

__all__ = ["CLIP_ANCHORS", "FASTER_RCNN_ROWS"]

FR = "model.faster_rcnn."
FE = FR + "feature_extractor."
MB = FR + "second_stage_box_predictor.mask_rcnn_box_predictor."
_MASKS = "masks are not predicted"
_IMPLEMENTATION = "an implementation choice"
# clip_anchors_to_image, given or absent (faster_rcnn.py notes the latter).
CLIP_ANCHORS = ("the OD API's RPN, in training, drops the anchors that cross the input's "
                "border (false, its default) or clips them to it (true), and at inference "
                "decodes from anchors clipped to it; ours labels every anchor whole and "
                "clips the decoded proposals")

FASTER_RCNN_ROWS: tuple[Row, ...] = (
    Row(FR + "num_classes", EXACT, "model.num_classes", kind="int"),
    Row(FR + "number_of_stages", EXACT, "", "two stages: proposals, then the box classifier",
        only=("2",)),
    Row(FR + "first_stage_only", EXACT, "", "both stages are built", only=("false",)),
    *resizer_rows(FR),
    # ---------------------------------------------------------------- feature extractor
    Row(FE + "type", APPROX, "model.backbone, model.fpn.type, model.initializers.backbone, "
        "model.initializers.detection_head, model.initializers.detection_predictors, "
        "model.loss.l2_weight_decay_by_part.detection_head, "
        "model.loss.l2_weight_decay_by_part.detection_predictors, model.pixel_mean, "
        "model.pixel_stddev",
        "the OD API's Keras ResNet v1 (resnet_variant: keras_v1), on the pixels its "
        "preprocess gives (pixel_mean: the VGG channel means, pixel_stddev: 1), logged per "
        "type: the _fpn_keras types as they are, with the OD API's FPN (fpn.type: odapi); "
        "the others' "
        "stride-16 features become Model Garden's FPN from level 4 (one level "
        "per octave of anchor scales). The box classifier's class and box predictors start "
        "glorot_uniform, as the OD API's (Dense layers given no initializer: Keras' "
        "default); so do its fully connected layers with an _fpn_keras type, as the OD "
        "API's; without FPN, they stand in for ResNet's last stage and start from ResNet's "
        "own initializer (variance scaling 1, fan_in), as it does; so does the backbone "
        "(the OD API passes it no conv_hyperparams). The box classifier carries no L2 loss "
        "(l2_weight_decay_by_part detection_head and detection_predictors 0), as the OD "
        "API's: its Dense layers are given no regulariser (without FPN, ResNet's last "
        "stage, which ours stand in for, a weight decay of 0)"),
    Row(FE + "batch_norm_trainable", EXACT, "", "batch norm is always trained (frozen batch "
        "norm is not supported)", only=("true",)),
    Row(FE + "first_stage_features_stride", EXACT, "",
        "the RPN's first level is stride 16 (level 4), or the FPN's min_level", only=("16",)),
    Row(FE + "pad_to_multiple", EXACT, "",
        "inputs are already multiples of 2**min(max_level, 5) (model.input_size)"),
    Row(FE + "fpn.min_level", EXACT, "model.min_level", kind="int"),
    Row(FE + "fpn.max_level", EXACT, "model.max_level", kind="int"),
    Row(FE + "fpn.additional_layer_depth", EXACT, "model.fpn.num_filters", kind="int"),
    Row(FE + "override_base_feature_extractor_hyperparams", APPROX,
        "model.initializers.backbone",
        "with an _fpn_keras type, true: the backbone's kernels are drawn from the feature "
        "extractor's initializer, false (the default): from the OD API's Keras ResNet's own "
        f"(variance scaling 1, fan_in), both as the OD API's; {ONE_NORM}, the backbone's "
        "included"),
    *hyperparams_rows(FE, ours_too=True,
                      initializers="model.initializers.fpn, model.initializers.backbone"),
    Row(FR + "inplace_batchnorm_update", EXACT, "",
        "Keras updates batch norm in place; the OD API's TF2 Faster R-CNN refuses true",
        only=("false",)),
    # ---------------------------------------------------------------- first stage (RPN)
    *multiscale_anchor_rows(FR + "first_stage_anchor_generator.multiscale_anchor_generator."),
    Row(FR + "first_stage_anchor_generator.grid_anchor_generator", APPROX,
        "model.anchor, model.min_level, model.max_level",
        "Model Garden's anchors are anchor_size * 2**level, an octave per level: the grid's "
        "scales x its size become anchors of the same sizes on the levels from its stride "
        "up (one level per octave), aspect ratios kept"),
    Row(FR + "first_stage_atrous_rate", EXACT, "", "no atrous convolution", only=("1",)),
    # The RPN head's convolution and its score and box predictors, as the OD API's: the
    # initializer and the L2 weight; the model's one norm (a batch_norm left out, an
    # activation other than relu6 are noted: the OD API's RPN convolution ends in relu6).
    *hyperparams_rows(FR + "first_stage_box_predictor_", ours_too=False,
                      initializers="model.initializers.rpn_head",
                      l2_parts="model.loss.l2_weight_decay_by_part.rpn_head"),
    Row(FR + "first_stage_box_predictor_kernel_size", EXACT, "", "the RPN's conv is 3x3",
        only=("3",)),
    Row(FR + "first_stage_box_predictor_depth", EXACT, "model.rpn_head.num_filters",
        "absent: 512, the OD API's default", kind="int"),
    Row(FR + "first_stage_minibatch_size", EXACT, "model.rpn.batch_size_per_image", kind="int"),
    Row(FR + "first_stage_positive_balance_fraction", EXACT, "model.rpn.foreground_fraction",
        kind="float"),
    Row(FR + "first_stage_nms_score_threshold", EXACT, "",
        "proposals are not filtered by score", only=("0", "0.0")),
    Row(FR + "first_stage_nms_iou_threshold", EXACT, "model.proposals.nms_iou_threshold",
        kind="float"),
    Row(FR + "first_stage_max_proposals", EXACT,
        "model.proposals.num_proposals, model.proposals.test_num_proposals",
        "absent: 300, the OD API's default"),
    Row(FR + "first_stage_objectness_loss_weight", EXACT, "model.loss.rpn_score_weight",
        kind="float"),
    Row(FR + "first_stage_localization_loss_weight", APPROX, "model.loss.rpn_box_weight",
        "weighs Model Garden's RPN box loss (Huber with delta model.loss.rpn_huber_loss_delta "
        "1/9 on unscaled box targets, Detectron's), where the OD API's smooth L1 is on "
        "targets scaled by 10, 10, 5, 5; absent: 1.0", kind="float"),
    # ---------------------------------------------------------------- ROI crops
    Row(FR + "initial_crop_size", APPROX, "model.roi_aligner.crop_size",
        "ROI align samples initial_crop_size / maxpool_stride points a side directly, where "
        "the OD API crops initial_crop_size and max-pools"),
    Row(FR + "maxpool_kernel_size", APPROX, "", "see initial_crop_size"),
    Row(FR + "maxpool_stride", APPROX, "model.roi_aligner.crop_size", "see initial_crop_size"),
    # ---------------------------------------------------------------- second stage
    Row(MB + "fc_hyperparams", EXACT, "",
        "the OD API's Keras box classifier takes only its batch_norm (for its predictors; "
        "given, it is noted: ours are not batch-normalised): its Dense layers start "
        "glorot_uniform (Keras' default) whatever its initializer and carry no L2 loss "
        "whatever its regularizer, as ours (see feature_extractor.type)"),
    Row(MB + "conv_hyperparams", IGNORED, "", "used by the mask branch alone"),
    Row(MB + "use_dropout", EXACT, "", "no dropout in the box classifier", only=("false",)),
    Row(MB + "dropout_keep_probability", IGNORED, "", "unused without use_dropout"),
    Row(MB + "box_code_size", EXACT, "", "boxes have 4 coordinates", only=("4",)),
    Row(MB + "share_box_across_classes", EXACT,
        "model.detection_head.class_agnostic_bbox_pred", kind="bool"),
    Row(MB + "predict_instance_masks", EXACT, "", _MASKS, only=("false",)),
    Row(MB + "predict_keypoints", EXACT, "", "keypoints are not predicted", only=("false",)),
    *(Row(MB + name, IGNORED, "", _MASKS) for name in (
        "mask_prediction_conv_depth", "mask_height", "mask_width",
        "mask_prediction_num_conv_layers", "masks_are_class_agnostic",
        "convolve_then_upsample_masks")),
    *(Row(f"{FR}second_stage_box_predictor.{name}", UNSUPPORTED, "",
          "the second stage is mask_rcnn_box_predictor (R-FCN and SSD predictors are not "
          "supported)")
      for name in ("rfcn_box_predictor", "convolutional_box_predictor",
                   "weight_shared_convolutional_box_predictor")),
    Row(FR + "second_stage_batch_size", EXACT, "model.roi_sampler.num_sampled_rois",
        "absent: 64, the OD API's default", kind="int"),
    Row(FR + "second_stage_balance_fraction", EXACT, "model.roi_sampler.foreground_fraction",
        kind="float"),
    *nms_rows(FR + "second_stage_post_processing."),
    Row(FR + "second_stage_post_processing.score_converter", EXACT, "",
        "the box classifier's scores are a softmax", only=("SOFTMAX",)),
    Row(FR + "second_stage_post_processing.logit_scale", EXACT, "", "logits are not rescaled",
        only=("1", "1.0")),
    Row(FR + "second_stage_localization_loss_weight", EXACT, "model.loss.frcnn_box_weight",
        "the same box coding (10, 10, 5, 5) and smooth L1 as Model Garden's; absent: 1.0",
        kind="float"),
    Row(FR + "second_stage_classification_loss_weight", EXACT, "model.loss.frcnn_class_weight",
        kind="float"),
    Row(FR + "second_stage_classification_loss.weighted_softmax", EXACT, "",
        "softmax cross-entropy"),
    Row(FR + "second_stage_classification_loss.weighted_sigmoid_focal", UNSUPPORTED, "",
        "the box classifier's loss is a softmax cross-entropy"),
    Row(FR + "second_stage_mask_prediction_loss_weight", IGNORED, "", _MASKS),
    Row(FR + "hard_example_miner", UNSUPPORTED, "",
        "hard example mining is not supported (the ROI sampler balances the classes)"),
    *(Row(FR + name, IGNORED, "", _IMPLEMENTATION) for name in (
        "use_static_shapes", "use_static_shapes_for_eval", "use_matmul_crop_and_resize",
        "use_static_balanced_label_sampler", "use_matmul_gather_in_matcher",
        "use_partitioned_nms_in_first_stage")),
    Row(FR + "clip_anchors_to_image", APPROX, "", CLIP_ANCHORS),
    Row(FR + "resize_masks", IGNORED, "", _MASKS),
    Row(FR + "return_raw_detections_during_predict", IGNORED, "",
        "the exported signature has the OD API's detection outputs"),
    Row(FR + "output_final_box_features", EXACT, "", "not supported", only=("false",)),
    Row(FR + "output_final_box_rpn_features", EXACT, "", "not supported", only=("false",)),
    Row(FR + "context_config", UNSUPPORTED, "", "Context R-CNN is not supported"),
)
