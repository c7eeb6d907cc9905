"""An OD API `faster_rcnn { ... }` pipeline.config (train_lib/config/odapi/faster_rcnn.py):
the ResNet extractors with and without FPN map to model.architecture: faster_rcnn,
each field exact, approximated, ignored or refused; one converted config builds its
model (at a small input size). The mapping tests are pure Python."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from train_lib.config import ConfigError, load_config

C4_EXTRACTOR = """feature_extractor {
      type: 'faster_rcnn_resnet50_keras'
      batch_norm_trainable: true
    }
    first_stage_anchor_generator {
      grid_anchor_generator {
        scales: [0.25, 0.5, 1.0, 2.0]
        aspect_ratios: [0.5, 1.0, 2.0]
        height_stride: 16
        width_stride: 16
      }
    }"""

FPN_EXTRACTOR = """feature_extractor {
      type: 'faster_rcnn_resnet101_fpn_keras'
      batch_norm_trainable: true
      fpn { min_level: 2 max_level: 6 }
      conv_hyperparams {
        activation: RELU_6,
        regularizer { l2_regularizer { weight: 0.0004 } }
        initializer { truncated_normal_initializer { stddev: 0.03 mean: 0.0 } }
        batch_norm { scale: true, decay: 0.997, epsilon: 0.001, }
      }
      override_base_feature_extractor_hyperparams: true
    }
    first_stage_anchor_generator {
      multiscale_anchor_generator {
        min_level: 2
        max_level: 6
        anchor_scale: 4.0
        aspect_ratios: [1.0, 2.0, 0.5]
        scales_per_octave: 2
        normalize_coordinates: false
      }
    }"""


def frcnn_config(extractor: str, box_predictor: str = "share_box_across_classes: true") -> str:
    """A pipeline.config in the manner of the OD API's configs/tf2 Faster R-CNN files."""
    return f"""# Faster R-CNN, modelled on the OD API's published TF2 configs
model {{
  faster_rcnn {{
    num_classes: 3
    image_resizer {{
      keep_aspect_ratio_resizer {{ min_dimension: 640 max_dimension: 640
                                  pad_to_max_dimension: true }}
    }}
    {extractor}
    first_stage_box_predictor_conv_hyperparams {{
      op: CONV
      regularizer {{ l2_regularizer {{ weight: 0.0 }} }}
      initializer {{ truncated_normal_initializer {{ stddev: 0.01 }} }}
    }}
    first_stage_nms_score_threshold: 0.0
    first_stage_nms_iou_threshold: 0.7
    first_stage_max_proposals: 300
    first_stage_localization_loss_weight: 2.0
    first_stage_objectness_loss_weight: 1.0
    initial_crop_size: 14
    maxpool_kernel_size: 2
    maxpool_stride: 2
    second_stage_box_predictor {{
      mask_rcnn_box_predictor {{
        use_dropout: false
        dropout_keep_probability: 1.0
        fc_hyperparams {{
          op: FC
          regularizer {{ l2_regularizer {{ weight: 0.0 }} }}
          initializer {{ variance_scaling_initializer {{ factor: 1.0 uniform: true
                                                        mode: FAN_AVG }} }}
        }}
        {box_predictor}
      }}
    }}
    second_stage_post_processing {{
      batch_non_max_suppression {{ score_threshold: 0.0 iou_threshold: 0.6
        max_detections_per_class: 100 max_total_detections: 300 }}
      score_converter: SOFTMAX
    }}
    second_stage_localization_loss_weight: 2.0
    second_stage_classification_loss_weight: 1.0
    use_static_shapes: true
    use_matmul_crop_and_resize: true
    clip_anchors_to_image: true
    use_static_balanced_label_sampler: true
    use_matmul_gather_in_matcher: true
  }}
}}
train_config: {{
  batch_size: 64
  sync_replicas: true
  num_steps: 25000
  optimizer {{
    momentum_optimizer: {{
      learning_rate: {{ cosine_decay_learning_rate {{ learning_rate_base: .04
          total_steps: 25000 warmup_learning_rate: .013333 warmup_steps: 2000 }} }}
      momentum_optimizer_value: 0.9
    }}
    use_moving_average: false
  }}
  fine_tune_checkpoint_version: V2
  fine_tune_checkpoint_type: "classification"
  data_augmentation_options {{ random_horizontal_flip {{ }} }}
  max_number_of_boxes: 100
  unpad_groundtruth_tensors: false
  use_bfloat16: true
}}
train_input_reader: {{
  label_map_path: "data/label_map.pbtxt"
  tf_record_input_reader {{ input_path: "data/train-?????-of-00004.tfrecord" }}
}}
eval_config: {{ metrics_set: "coco_detection_metrics" use_moving_averages: false
               batch_size: 1; }}
eval_input_reader: {{
  label_map_path: "data/label_map.pbtxt"
  shuffle: false
  num_epochs: 1
  tf_record_input_reader {{ input_path: "data/val-?????-of-00001.tfrecord" }}
}}
"""


def write(tmp_path, text: str, name: str = "pipeline.config") -> str:
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_resnet_without_fpn_maps_to_faster_rcnn(tmp_path, caplog):
    path = write(tmp_path, frcnn_config(C4_EXTRACTOR))
    with caplog.at_level(logging.INFO, logger="absl"):
        c = load_config(path)
    m = c.model
    assert m.architecture == "faster_rcnn" and m.num_classes == 3
    assert (m.backbone.type, m.backbone.model_id, m.norm.activation) == ("resnet", "50", "relu")
    # The grid's 64..512 px anchors at stride 16: the same sizes, one level an octave.
    assert (m.min_level, m.max_level, m.input_size) == (4, 7, [640, 640])
    assert (m.anchor.anchor_size, m.anchor.num_scales, m.anchor.aspect_ratios) == (
        4.0, 1, [0.5, 1.0, 2.0])
    assert (m.proposals.num_proposals, m.proposals.test_num_proposals,
            m.proposals.nms_iou_threshold) == (300, 300, 0.7)
    assert (m.rpn_head.num_filters, m.roi_sampler.num_sampled_rois) == (512, 64)  # defaults
    assert m.roi_aligner.crop_size == 7  # 14, max-pooled by 2
    head = m.detection_head
    assert (head.num_convs, head.num_fcs, head.fc_dims, head.class_agnostic_bbox_pred) == (
        0, 2, 1024, True)
    loss = m.loss
    assert (loss.rpn_score_weight, loss.rpn_box_weight, loss.frcnn_class_weight,
            loss.frcnn_box_weight, loss.l2_weight_decay) == (1.0, 2.0, 1.0, 2.0, 0.0)
    post = m.post_processing
    assert (post.score_threshold, post.iou_threshold, post.max_detections) == (0.0, 0.6, 300)
    assert c.train_config.fine_tune_checkpoint_type == "backbone"
    assert c.train_config.mixed_precision == "mixed_bfloat16_on_tpu"
    assert f"{path}:14: model.faster_rcnn.first_stage_anchor_generator.grid_anchor_generator " \
           "approximated as model.max_level: anchors of 64, 128, 256, 512 px" in caplog.text
    assert "model.faster_rcnn.initial_crop_size approximated" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    for unused in ("model.faster_rcnn.use_static_shapes",
                   "mask_rcnn_box_predictor.dropout_keep_probability"):
        assert unused in warnings[0]
    # the OD API's RPN drops or clips the anchors crossing the border; ours does neither
    assert "model.faster_rcnn.clip_anchors_to_image approximated" in caplog.text


def test_resnet_fpn_maps_its_levels_anchors_and_norm(tmp_path):
    c = load_config(write(tmp_path, frcnn_config(FPN_EXTRACTOR, "")))
    m = c.model
    assert (m.backbone.model_id, m.min_level, m.max_level) == ("101", 2, 6)
    assert (m.anchor.anchor_size, m.anchor.num_scales, m.anchor.aspect_ratios) == (
        4.0, 2, [1.0, 2.0, 0.5])
    assert (m.norm.activation, m.norm.norm_momentum, m.loss.l2_weight_decay) == (
        "relu6", 0.997, 0.0004)
    assert m.detection_head.class_agnostic_bbox_pred is False


@pytest.mark.parametrize("change, problem", [
    (("faster_rcnn_resnet50_keras", "faster_rcnn_inception_v2_keras"),
     ":10: model.faster_rcnn.feature_extractor.type (feature extractor "
     "'faster_rcnn_inception_v2_keras' is not supported; supported: faster_rcnn_resnet50_keras"),
    (("grid_anchor_generator {", "multiscale_anchor_generator {"),
     "unknown field `model.faster_rcnn.first_stage_anchor_generator."
     "multiscale_anchor_generator.scales`"),
    (("use_dropout: false", "use_dropout: true"),
     "mask_rcnn_box_predictor.use_dropout: true (no dropout in the box classifier; only false)"),
    (("num_classes: 3", "num_classes: 3\n    hard_example_miner { num_hard_examples: 8 }"),
     ":5: model.faster_rcnn.hard_example_miner (hard example mining is not supported"),
    (("score_converter: SOFTMAX", "score_converter: SIGMOID"),
     "second_stage_post_processing.score_converter: SIGMOID (the box classifier's scores are "
     "a softmax; only SOFTMAX)"),
])
def test_what_cannot_be_honoured_is_refused_by_its_line(tmp_path, change, problem):
    text = frcnn_config(C4_EXTRACTOR).replace(*change, 1)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert problem in str(err.value)


def test_an_fpn_extractor_with_grid_anchors_is_refused(tmp_path):
    extractor = FPN_EXTRACTOR.split("first_stage_anchor_generator")[0] + \
        C4_EXTRACTOR[C4_EXTRACTOR.index("first_stage_anchor_generator"):]
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, frcnn_config(extractor)))
    assert "grid_anchor_generator (an FPN feature extractor takes " \
           "multiscale_anchor_generator)" in str(err.value)


def test_the_converted_config_builds_its_model(tmp_path):
    from train_lib import families

    config = load_config(write(tmp_path, frcnn_config(C4_EXTRACTOR)),
                         "model.input_size=[128,128]")
    model = families.build_model(config.model)
    assert families.architecture_of(model) == "faster_rcnn"
    assert type(model.backbone).__name__ == "KerasResNetV1"  # the OD API's ResNet v1
    head = model.detection_head[0]
    assert len(head._fcs) == 2 and head._classifier.units == 4  # 3 classes and background
    assert sorted(model.decoder.output_specs, key=int) == ["4", "5", "6", "7"]


# ---------------------------------------------------------------- initializers
# What the OD API's Keras Faster R-CNN draws each part from (its layers' initializers,
# read off models its model_builder built from the published configs): its ResNet v1's
# own where no conv_hyperparams reach it; the box classifier's Dense layers Keras'
# default whatever fc_hyperparams say.
RESNET_OWN = {"type": "variance_scaling", "factor": 1.0, "mode": "fan_in", "uniform": False}
GLOROT = {"type": "glorot_uniform"}
RPN_INIT = {"type": "truncated_normal", "mean": 0.0, "stddev": 0.01}


def _initializers(text: str) -> tuple[dict, dict]:
    from train_lib.config.odapi import map_pipeline_config

    mapped = map_pipeline_config(text, "p.config")
    return mapped.data["model"]["initializers"], mapped.approximations


def test_fpn_parts_start_from_the_odapis_initializers():
    ours, notes = _initializers(frcnn_config(FPN_EXTRACTOR))
    extractor = {"type": "truncated_normal", "mean": 0.0, "stddev": 0.03}
    assert ours == {"backbone": extractor, "fpn": extractor, "rpn_head": RPN_INIT,
                    "detection_head": GLOROT, "detection_predictors": GLOROT}
    # fc_hyperparams' initializer and regularizer reach no layer of the OD API's, nor
    # ours (its batch_norm would: noted); the RPN's L2 weight is the RPN head's own.
    assert not any("fc_hyperparams" in key or "l2_regularizer" in key for key in notes)
    with_norm = frcnn_config(FPN_EXTRACTOR).replace(
        "fc_hyperparams {", "fc_hyperparams {\n batch_norm { }")
    assert "batch-normalises the box classifier's" in _initializers(with_norm)[1][
        "model.faster_rcnn.second_stage_box_predictor.mask_rcnn_box_predictor.fc_hyperparams"]
    without = frcnn_config(FPN_EXTRACTOR.replace(
        "override_base_feature_extractor_hyperparams: true", ""))
    assert _initializers(without)[0]["backbone"] == RESNET_OWN


def test_without_fpn_the_resnet_keeps_its_own_and_the_fcs_stand_in_for_its_stage():
    ours, notes = _initializers(frcnn_config(C4_EXTRACTOR))
    assert ours == {"backbone": RESNET_OWN, "rpn_head": RPN_INIT,
                    "detection_head": RESNET_OWN, "detection_predictors": GLOROT}
    rpn = notes["model.faster_rcnn.first_stage_box_predictor_conv_hyperparams"]
    assert "no batch_norm" in rpn and "ends in relu6" in rpn
    # The extractor's and the RPN's L2 weights agree (0, the OD API's ResNet's): no note.
    assert not any("l2_regularizer" in key for key in notes)


def test_the_mapped_initializers_are_drawn_by_the_built_model(tmp_path):
    from train_lib import families
    from train_lib.families import parts

    config = load_config(write(tmp_path, frcnn_config(C4_EXTRACTOR)),
                         "model.input_size=[64,64]")
    assert config.model.initializers.rpn_head.stddev == 0.01
    net = families.build_model(config.model)
    rpn = parts.kernels_by_part(net)["rpn_head"]
    values = np.concatenate([v.numpy().ravel() for v in rpn])
    assert np.abs(values).max() <= 0.02 + 1e-6  # truncated at 2 stddev
    assert 0.007 < values.std() < 0.01  # a truncated normal of stddev 0.01: 0.0088
