"""What becomes of each OD API pipeline.config field: the one table of the mapping.

`ROWS` holds one `Row` (rows.py: exact, approximated, ignored or
unsupported, and our key) per field path: the ssd meta-architecture's here,
the faster_rcnn one's in table_faster_rcnn.py, then train_config, the
input readers and eval_config. A known field (fields.py) without a row is
unsupported. docs/coming_from_odapi.md's table is `markdown_table()`.
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
from train_lib.config.odapi.table_faster_rcnn import FASTER_RCNN_ROWS

__all__ = ["APPROX", "EXACT", "IGNORED", "ROWS", "UNSUPPORTED", "Row", "markdown_table"]

M = "model.ssd."
FE = M + "feature_extractor."
WS = M + "box_predictor.weight_shared_convolutional_box_predictor."
CB = M + "box_predictor.convolutional_box_predictor."
T = "train_config."
OPT = T + "optimizer."
AUG = T + "data_augmentation_options."
LR = "train_config.learning_rate."
# The box predictor's L2 weight: the head's towers' and its predictors'.
_HEAD_L2 = ("model.loss.l2_weight_decay_by_part.head, "
            "model.loss.l2_weight_decay_by_part.predictors")
_META = ("supported: ssd (as Model Garden's RetinaNet) and faster_rcnn (as its Faster "
         "R-CNN)")


ROWS: tuple[Row, ...] = (
    # ---------------------------------------------------------------- meta-architecture
    Row("model.center_net", UNSUPPORTED, "", _META),
    Row("model.experimental_model", UNSUPPORTED, "", _META),
    Row(M + "num_classes", EXACT, "model.num_classes", kind="int"),
    Row(M + "freeze_batchnorm", EXACT, "", "frozen batch norm is not supported",
        only=("false",)),
    Row(M + "inplace_batchnorm_update", IGNORED, "",
        "TF1 graph option; Keras updates batch norm in place"),
    Row(M + "encode_background_as_zeros", EXACT, "",
        "true: the class head's background column 0 (model.num_classes + 1 sigmoid "
        "outputs) is trained to 0 for every anchor, as the OD API's (its focal loss covers "
        "that column too); false or absent (the OD API's default), where the OD API trains "
        "it to 1 for negative anchors: approximated (logged)"),
    Row(M + "add_background_class", APPROX, "",
        "either value: Model Garden's class head always has a background column 0"),
    Row(M + "negative_class_weight", EXACT, "", "negatives always weigh 1", only=("1", "1.0")),
    Row(M + "normalize_loss_by_num_matches", EXACT, "model.loss.normalizer",
        "true or absent (the OD API's default): positives (the class and box losses "
        "divided by max(matched anchors, 1), as the OD API's on one replica; on several, "
        "ours counts the global batch's); false: none (their sums)"),
    Row(M + "normalize_loc_loss_by_codesize", EXACT, "model.loss.box_loss_weight",
        "true: Keras' Huber loss averages over the 4 box coordinates, as the OD API "
        "divides by the code size; false: the box weight is multiplied by 4"),
    Row(M + "return_raw_detections_during_predict", IGNORED, "",
        "the exported signature has the OD API's detection outputs"),
    # ---------------------------------------------------------------- feature extractor
    Row(FE + "type", APPROX, "model.backbone, model.fpn.type, model.initializers.backbone, "
        "model.loss.l2_weight_decay_by_part.backbone, model.pixel_mean, model.pixel_stddev, "
        "model.backbone.regularize_depthwise",
        "the nearest Model Garden backbone and FPN (logged per type: BiFPN and SSD's extra "
        "layers become an FPN); the backbones compute the OD API's (ResNet: resnet_variant: "
        "keras_v1; EfficientNet: se_activation: swish, efficientnet_endpoints: odapi), so "
        "their checkpoints load exactly, and see the pixels its extractor's preprocess "
        "gives (pixel_mean, pixel_stddev: MobileNets 127.5, 127.5; ResNets the VGG channel "
        "means, 1; EfficientNets ImageNet's statistics); the ResNet and MobileNet FPN "
        "extractors' FPN is the OD API's (fpn.type: odapi: the same function and parameters; over "
        "MobileNetV2 it reads the last 1x1 convolution as level 5, as the OD API's) "
        "unless use_depthwise (see there); the MobileNets' L2 loss covers their depthwise "
        "kernels, as the OD API's Keras MobileNets' (regularize_depthwise); "
        "EfficientNet's L2 weight is its own, 1e-5 (its "
        "builder's Keras L2 factor 5e-6), as the OD API's, unless "
        "override_base_feature_extractor_hyperparams"),
    Row(FE + "depth_multiplier", EXACT, "model.backbone.width_multiplier, model.fpn.num_filters, "
        "model.backbone.scale_last_layer",
        "the backbone's width (below 1, MobileNetV2's last layer too: scale_last_layer; "
        "MobileNet v1's applied twice, as the OD API's: width_multiplier d x d); "
        "the FPN's filters are additional_layer_depth x "
        "depth_multiplier (at least min_depth), as the OD API's; EfficientNet takes its "
        "width from model_id (only 1.0)"),
    Row(FE + "min_depth", APPROX, "",
        "Model Garden rounds channels to multiples of 8 instead of flooring at min_depth "
        "(the same for depth_multiplier >= 1)"),
    Row(FE + "override_base_feature_extractor_hyperparams", APPROX,
        "model.initializers.backbone, model.loss.l2_weight_decay_by_part.backbone",
        "true: the backbone's kernels are drawn from the feature extractor's initializer, "
        "false (the default; EfficientNet always): from the OD API's backbone's own "
        "(MobileNets: truncated "
        f"normal, stddev 0.09; ResNet: variance scaling 1, fan_in; EfficientNet: 2, "
        f"fan_out), both as the OD API's; EfficientNet's L2 weight: true the feature "
        f"extractor's, false its own (see type), as the OD API's; {ONE_NORM}, the "
        "backbone's included"),
    Row(FE + "use_depthwise", EXACT, "model.fpn.use_separable_conv, model.fpn.type",
        "separable convolutions in the FPN: MobileNetV2 FPN's (FPN-lite) the OD API's "
        "(fpn.type: odapi: its 3x3s separable, depthwise kernels regularised, pointwise "
        "glorot_uniform and unregularised, laterals plain), the others' Model Garden's "
        "(the OD API's MobileNet v1 FPN then narrows its backbone's last two layers too; "
        "its ResNet FPN extractors refuse it)"),
    Row(FE + "pad_to_multiple", EXACT, "",
        "inputs are already multiples of 2**min(max_level, 5) (model.input_size)"),
    Row(FE + "use_explicit_padding", EXACT, "", "Model Garden pads 'same'", only=("false",)),
    Row(FE + "fpn.min_level", EXACT, "model.min_level", kind="int"),
    Row(FE + "fpn.max_level", EXACT, "model.max_level", kind="int"),
    Row(FE + "fpn.additional_layer_depth", EXACT, "model.fpn.num_filters", kind="int"),
    Row(FE + "bifpn.min_level", EXACT, "model.min_level", kind="int"),
    Row(FE + "bifpn.max_level", EXACT, "model.max_level", kind="int"),
    Row(FE + "bifpn.num_filters", EXACT, "model.fpn.num_filters", kind="int"),
    Row(FE + "bifpn.num_iterations", APPROX, "",
        "Model Garden has no BiFPN: one top-down FPN pass instead of repeated BiFPN layers"),
    Row(FE + "bifpn.combine_method", APPROX, "", "FPN adds its inputs"),
    Row(FE + "bifpn.use_native_resize_op", IGNORED, "", "FPN upsamples by nearest neighbour"),
    *hyperparams_rows(FE, ours_too=True,
                      initializers="model.initializers.fpn, model.initializers.backbone"),
    # ---------------------------------------------------------------- box predictor
    Row(WS + "depth", EXACT, "model.head.num_filters", kind="int"),
    Row(WS + "num_layers_before_predictor", EXACT, "model.head.num_convs", kind="int"),
    Row(WS + "kernel_size", EXACT, "", "Model Garden's head convs are 3x3", only=("3",)),
    Row(WS + "use_depthwise", EXACT, "model.head.use_separable_conv", kind="bool"),
    Row(WS + "class_prediction_bias_init", EXACT, "model.initializers.class_bias",
        "absent: 0.0, the OD API's default"),
    Row(WS + "box_code_size", EXACT, "", "boxes have 4 coordinates", only=("4",)),
    Row(WS + "share_prediction_tower", EXACT, "model.head.share_prediction_tower",
        "true: one tower feeds the class and the box predictor", kind="bool"),
    Row(WS + "use_dropout", EXACT, "", "no dropout in the head", only=("false",)),
    Row(WS + "dropout_keep_probability", IGNORED, "", "unused without use_dropout"),
    Row(WS + "score_converter", EXACT, "", "scores are sigmoids of the logits",
        only=("IDENTITY",)),
    *hyperparams_rows(WS, ours_too=False,
                      initializers="model.initializers.head, model.initializers.predictors",
                      l2_parts=_HEAD_L2, tower_bias="model.head.tower_conv_bias"),
    Row(M + "box_predictor.mask_rcnn_box_predictor", UNSUPPORTED, "",
        "a Faster R-CNN's box classifier: use model.faster_rcnn"),
    Row(CB + "num_layers_before_predictor", EXACT, "model.head.num_convs", kind="int"),
    Row(CB + "max_depth", APPROX, "model.head.num_filters",
        "the head's towers have one width, max(min(the FPN's, max_depth), min_depth), as "
        "the OD API's layers before the predictor (the FPN's if that is 0)"),
    Row(CB + "min_depth", APPROX, "model.head.num_filters", "see max_depth"),
    Row(CB + "kernel_size", APPROX, "",
        "Model Garden's head convs are 3x3, shared across levels (the OD API's "
        "convolutional predictor has one per level)"),
    Row(CB + "use_depthwise", EXACT, "model.head.use_separable_conv", kind="bool"),
    Row(CB + "class_prediction_bias_init", EXACT, "model.initializers.class_bias",
        "absent: 0.0, the OD API's default"),
    Row(CB + "box_code_size", EXACT, "", "boxes have 4 coordinates", only=("4",)),
    Row(CB + "use_dropout", EXACT, "", "no dropout in the head", only=("false",)),
    Row(CB + "dropout_keep_probability", IGNORED, "", "unused without use_dropout"),
    Row(CB + "apply_sigmoid_to_scores", EXACT, "", "scores are sigmoids at inference",
        only=("false",)),
    *hyperparams_rows(CB, ours_too=False,
                      initializers="model.initializers.head, model.initializers.predictors",
                      l2_parts=_HEAD_L2),
    # ---------------------------------------------------------------- anchors, resizer
    *multiscale_anchor_rows(M + "anchor_generator.multiscale_anchor_generator."),
    Row(M + "anchor_generator.ssd_anchor_generator", APPROX, "model.anchor",
        "Model Garden's anchors are anchor_size * 2**level on each level: the lowest "
        "layer's min_scale sets anchor_size, aspect_ratios are kept, the interpolated "
        "scale becomes a second scale per octave"),
    *resizer_rows(M),
    # ---------------------------------------------------------------- targets and losses
    Row(M + "box_coder.faster_rcnn_box_coder", EXACT, "model.anchor.box_coder_weights",
        "[y_scale, x_scale, height_scale, width_scale]: the box head learns the scaled "
        "codes, as the OD API's, and detections divide the scales out"),
    Row(M + "matcher.argmax_matcher.matched_threshold", EXACT, "model.anchor.match_threshold",
        kind="float"),
    Row(M + "matcher.argmax_matcher.unmatched_threshold", EXACT,
        "model.anchor.unmatched_threshold", kind="float"),
    Row(M + "matcher.argmax_matcher.ignore_thresholds", EXACT, "", "thresholds always apply",
        only=("false",)),
    Row(M + "matcher.argmax_matcher.negatives_lower_than_unmatched", EXACT, "",
        "below unmatched_threshold is negative", only=("true",)),
    Row(M + "matcher.argmax_matcher.force_match_for_each_row", EXACT, "",
        "every box is matched to its best anchor", only=("true",)),
    Row(M + "matcher.argmax_matcher.use_matmul_gather", IGNORED, "", "an implementation choice"),
    Row(M + "similarity_calculator.iou_similarity", EXACT, "", "IoU"),
    Row(M + "loss.classification_loss.weighted_sigmoid_focal.alpha", EXACT,
        "model.loss.focal_loss_alpha", "absent: 0.5 (approximated: the OD API then weighs "
        "positives and negatives alike)", kind="float"),
    Row(M + "loss.classification_loss.weighted_sigmoid_focal.gamma", EXACT,
        "model.loss.focal_loss_gamma", kind="float"),
    Row(M + "loss.localization_loss.weighted_smooth_l1.delta", EXACT,
        "model.loss.huber_loss_delta", "on the scaled box codes (see box_coder)"),
    Row(M + "loss.classification_weight", EXACT, "model.loss.class_loss_weight"),
    Row(M + "loss.localization_weight", EXACT, "model.loss.box_loss_weight",
        "times 4 without normalize_loc_loss_by_codesize"),
    *nms_rows(M + "post_processing."),
    Row(M + "post_processing.score_converter", EXACT, "", "sigmoid scores", only=("SIGMOID",)),
    Row(M + "post_processing.logit_scale", EXACT, "", "logits are not rescaled",
        only=("1", "1.0")),
    *FASTER_RCNN_ROWS,
    # ---------------------------------------------------------------- train_config
    Row(T + "batch_size", EXACT, "train_config.batch_size", kind="int"),
    Row(T + "num_steps", EXACT, "train_config.num_steps", "0 (train forever) is not supported",
        kind="int"),
    Row(T + "gradient_clipping_by_norm", EXACT, "train_config.optimizer.gradient_clip_norm",
        kind="float"),
    Row(T + "fine_tune_checkpoint", EXACT, "train_config.fine_tune_checkpoint", kind="str"),
    Row(T + "fine_tune_checkpoint_type", EXACT, "train_config.fine_tune_checkpoint_type",
        "classification -> backbone, detection -> detection, full -> full (the box "
        "predictor too where our head computes it; the class layer when num_classes is "
        "the same); fine_tune (which the OD API's SSD and Faster R-CNN refuse) -> "
        "detection (approximated)"),
    Row(T + "from_detection_checkpoint", EXACT, "train_config.fine_tune_checkpoint_type",
        "true -> detection"),
    Row(T + "fine_tune_checkpoint_version", EXACT, "", "TF2 object-based checkpoints",
        only=("V2",)),
    Row(T + "load_all_detection_checkpoint_vars", EXACT, "",
        "the OD API's TF2 refuses true; a detection checkpoint loads the backbone and FPN "
        "(see fine_tune_checkpoint_type)", only=("false",)),
    Row(T + "use_bfloat16", EXACT, "train_config.mixed_precision",
        "true -> mixed_bfloat16_on_tpu: bfloat16 on a TPU, float32 elsewhere (the OD API "
        "uses bfloat16 only with --use_tpu)"),
    Row(T + "max_number_of_boxes", IGNORED, "",
        "deprecated: the OD API's TF2 reads train_input_reader.max_number_of_boxes "
        "(default 100), and so does ours"),
    Row(T + "unpad_groundtruth_tensors", IGNORED, "", "boxes are padded per batch"),
    Row(T + "sync_replicas", IGNORED, "", "TF1 option; tf.distribute is synchronous"),
    Row(T + "startup_delay_steps", IGNORED, "", "TF1 option"),
    Row(T + "replicas_to_aggregate", IGNORED, "", "TF1 option"),
    Row(T + "batch_queue_capacity", IGNORED, "", "TF1 input queues"),
    Row(T + "num_batch_queue_threads", IGNORED, "", "TF1 input queues"),
    Row(T + "prefetch_queue_capacity", IGNORED, "", "TF1 input queues"),
    Row(T + "keep_checkpoint_every_n_hours", IGNORED, "",
        "use the flag --keep_checkpoint_every_n_hours"),
    Row(T + "retain_original_images", IGNORED, "", "summaries show the augmented images"),
    Row(T + "summarize_gradients", IGNORED, "", "gradients are not summarised"),
    Row(T + "add_regularization_loss", EXACT, "", "the L2 loss is always added",
        only=("true",)),
    Row(T + "merge_multiple_label_boxes", EXACT, "", "not supported", only=("false",)),
    Row(T + "use_multiclass_scores", EXACT, "", "not supported", only=("false",)),
    Row(T + "bias_grad_multiplier", EXACT, "", "not supported", only=("0", "0.0")),
    Row(OPT + "rms_prop_optimizer", UNSUPPORTED, "",
        "supported: momentum_optimizer (sgd), adam_optimizer"),
    Row(OPT + "use_moving_average", EXACT, "", "moving averages are not supported",
        only=("false",)),
    Row(OPT + "moving_average_decay", IGNORED, "", "unused without use_moving_average"),
    Row(OPT + "momentum_optimizer.momentum_optimizer_value", EXACT,
        "train_config.optimizer.momentum", "optimizer.type: sgd", kind="float"),
    Row(OPT + "adam_optimizer.epsilon", EXACT, "train_config.optimizer.epsilon",
        "optimizer.type: adam; absent: 1e-8 as the OD API", kind="float"),
    # k: our keys under train_config.learning_rate ("*": several of them)
    *(Row(f"{OPT}{o}.learning_rate.{f}", EXACT,
          LR[:-1] if k == "*" else k and LR + k.replace(", ", ", " + LR), w, only=only)
      for o in ("momentum_optimizer", "adam_optimizer") for f, k, w, only in (
        ("constant_learning_rate.learning_rate", "base", "schedule: constant", ()),
        ("cosine_decay_learning_rate.learning_rate_base", "base", "schedule: cosine", ()),
        ("cosine_decay_learning_rate.total_steps", "",
         "the cosine ends at train_config.num_steps; a total_steps that differs is "
         "approximated (logged)", ()),
        ("cosine_decay_learning_rate.warmup_learning_rate", "warmup_start", "", ()),
        ("cosine_decay_learning_rate.warmup_steps", "warmup_steps", "", ()),
        ("cosine_decay_learning_rate.hold_base_rate_steps", "",
         "holding the base rate is not supported", ("0",)),
        ("exponential_decay_learning_rate.initial_learning_rate", "base", "schedule: step",
         ()),
        ("exponential_decay_learning_rate.decay_steps", "schedule, boundaries",
         "every multiple of decay_steps below num_steps (none: schedule constant)", ()),
        ("exponential_decay_learning_rate.decay_factor", "decay_factor", "", ()),
        ("exponential_decay_learning_rate.staircase", "",
         "the rate drops at each multiple of decay_steps; false is approximated (logged)",
         ()),
        ("exponential_decay_learning_rate.burnin_learning_rate", "warmup_start",
         "approximated: a linear warmup instead of a constant burn-in", ()),
        ("exponential_decay_learning_rate.burnin_steps", "warmup_steps, warmup_start",
         "as burn-in", ()),
        ("exponential_decay_learning_rate.min_learning_rate", "",
         "a floor the rate reaches before num_steps is not supported", ()),
        ("manual_step_learning_rate.initial_learning_rate", "base, decay_factor",
         "schedule: step; the decay factor is the schedule's rates over it", ()),
        ("manual_step_learning_rate.schedule.step", "boundaries", "", ()),
        ("manual_step_learning_rate.schedule.learning_rate", "decay_factor",
         "approximated unless each rate is the previous one times the same factor", ()),
        ("manual_step_learning_rate.warmup", "*",
         "true: a linear warmup from initial_learning_rate to the first schedule step", ()),
      )),
    Row(AUG + "random_horizontal_flip", EXACT, "train_config.augmentation."
        "random_horizontal_flip", "probability 0.5 only; keypoint_flip_permutation unused"),
    Row(AUG + "random_scale_crop_and_pad_to_square.scale_min", EXACT,
        "train_config.augmentation.scale_min"),
    Row(AUG + "random_scale_crop_and_pad_to_square.scale_max", EXACT,
        "train_config.augmentation.scale_max"),
    Row(AUG + "random_scale_crop_and_pad_to_square.output_size", EXACT, "",
        "the crop is model.input_size"),
    Row(AUG + "random_image_scale", APPROX, "train_config.augmentation.scale_min/max",
        "min/max_scale_ratio as our scale jitter (scale, then crop or pad)"),
    Row(AUG + "ssd_random_crop", APPROX, "train_config.augmentation.scale_max",
        "a crop of area a is a zoom by 1/sqrt(a): its default operations' area drawn "
        "uniformly in [0.1, 1], uncropped with 0.15, zoom 1.44 on average, become the "
        "scale jitter [1, 1.8831] of the same mean (not [1, 1/sqrt(0.1)], which zooms "
        "twice as much and cuts objects to pieces); no aspect-ratio change, no "
        "box-overlap constraint"),
    Row(AUG + "random_crop_image", APPROX, "train_config.augmentation.scale_min/max",
        "a crop of area a is a zoom by 1/sqrt(a): scale jitter from 1/sqrt(max_area) "
        "with the crops' mean zoom (area uniform in [min_area, max_area], uncropped with "
        "random_coef); no aspect-ratio change, no box-overlap constraint"),
    # ---------------------------------------------------------------- input readers, eval
    *(Row(f"{r}.{f}", s, o, w, kind=k) for r in ("train_input_reader", "eval_input_reader")
      for f, s, o, w, k in (
        ("tf_record_input_reader.input_path", EXACT, f"{r}.input_path", "files or globs",
         "paths"),
        ("label_map_path", EXACT, f"{r}.label_map_path", "", "str"),
        ("shuffle", EXACT, f"{r}.shuffle_buffer_size", "false -> 1", ""),
        ("shuffle_buffer_size", EXACT, f"{r}.shuffle_buffer_size", "", "int"),
        ("max_number_of_boxes", EXACT, f"{r}.max_number_of_boxes", "", "int"),
        ("num_parallel_map_calls", EXACT, f"{r}.num_parallel_calls", "", "int"),
        ("num_epochs", IGNORED, "", "training repeats; evaluation reads once", ""),
        ("name", IGNORED, "", "", ""),
        ("num_readers", IGNORED, "", "tf.data decides", ""),
        ("num_parallel_batches", IGNORED, "", "tf.data decides", ""),
        ("num_prefetch_batches", IGNORED, "", "tf.data decides", ""),
        ("read_block_length", IGNORED, "", "tf.data decides", ""),
        ("filenames_shuffle_buffer_size", IGNORED, "", "files are shuffled per epoch", ""),
        ("queue_capacity", IGNORED, "", "deprecated", ""),
        ("min_after_dequeue", IGNORED, "", "deprecated", ""),
        ("prefetch_size", IGNORED, "", "deprecated", ""),
        ("include_source_id", IGNORED, "", "source ids are always read", ""),
        ("mask_type", IGNORED, "", "masks are not read", ""),
        ("use_display_name", IGNORED, "", "classes are read by id", ""),
      )),
    Row("train_input_reader.sample_1_of_n_examples", EXACT, "",
        "training reads every record (0 and 1; the OD API trains on every n-th: keep "
        "only those records in the files)", only=("0", "1")),
    Row("eval_input_reader.sample_1_of_n_examples", EXACT,
        "eval_input_reader.sample_1_of_n_examples",
        "evaluation reads every n-th example (0 and 1: every one); "
        "--sample_1_of_n_eval_examples overrides it, as the OD API's", kind="int"),
    *(Row(f"{r}.input_type", EXACT, "", "tf.Example records",
          only=("TF_EXAMPLE", "INPUT_DEFAULT")) for r in ("train_input_reader",
                                                          "eval_input_reader")),
    Row("eval_config.batch_size", EXACT, "eval_config.batch_size", kind="int"),
    Row("eval_config.num_visualizations", EXACT, "eval_config.num_visualizations", kind="int"),
    Row("eval_config.metrics_set", EXACT, "", "COCO detection metrics",
        only=("coco_detection_metrics",)),
    Row("eval_config.use_moving_averages", EXACT, "", "moving averages are not supported",
        only=("false",)),
    Row("eval_config.include_metrics_per_category", IGNORED, "", "per-class AP is always given"),
    Row("eval_config.retain_original_images", APPROX, "",
        "ours computes the COCO metrics in the original image's pixels, as the OD API with "
        "true (its default); with false the OD API's are in the resized input's (its "
        "APs / APm / APl area ranges shift), and it draws no side-by-side images"),
    *(Row(f"eval_config.{f}", IGNORED, "", w) for f, w in (
        ("eval_interval_secs", "new checkpoints are evaluated as they appear "
                               "(--eval_timeout)"),
        ("num_examples", "the whole eval set is evaluated"),
        ("max_evals", "deprecated"),
        ("min_score_threshold", "visualisation only"),
        ("max_num_boxes_to_visualize", "visualisation only"),
        ("visualize_groundtruth_boxes", "visualisation only"),
        ("skip_scores", "visualisation only"),
        ("skip_labels", "visualisation only"),
        ("all_metrics_per_category", "per-class AP is always given"),
    )),
)


def markdown_table() -> str:
    """ROWS as docs/coming_from_odapi.md's Markdown table (OD API field, our key, status: why)."""
    lines = ["| OD API field | our key | status |", "| --- | --- | --- |"]
    for row in ROWS:
        status = row.status
        if row.only:
            status += f" (only {' / '.join(row.only)})"
        if row.why:
            status += f": {row.why}"
        ours = f"`{row.ours}`" if row.ours else ""
        lines.append(f"| `{row.path}` | {ours} | {status.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
