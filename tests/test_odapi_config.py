"""An OD API protobuf-text pipeline.config, read directly (train_lib/config/odapi/).

Mapping tests are pure Python; two models are built (the new backbones); one
slow test trains the published ssd_mobilenet_v2 config a few steps through
model_main_tf2.py and exports it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ODAPI_SAMPLES, REPO, ckpt_steps, odapi_sample_id, run_trainer

from train_lib.config import ConfigError, load_config
from train_lib.config.odapi.table import markdown_table
from train_lib.config.odapi.train import crop_zoom_range
from train_lib.errors import UserError

HYPER = """conv_hyperparams {{
        activation: {act},
        regularizer {{ l2_regularizer {{ weight: 0.0004 }} }}
        initializer {{ truncated_normal_initializer {{ stddev: 0.03 mean: 0.0 }} }}
        batch_norm {{ scale: true, decay: 0.997, epsilon: 0.001 }}
      }}"""


def ssd_config(extractor: str, *, act: str = "RELU_6", depthwise: str = "false",
               anchors: str = "min_level: 3 max_level: 7", train: str = "") -> str:
    """A pipeline.config in the manner of the OD API's configs/tf2 SSD files."""
    return f"""# SSD, modelled on the OD API's published TF2 configs
model {{
  ssd {{
    num_classes: 3
    box_coder {{ faster_rcnn_box_coder {{ y_scale: 10.0 x_scale: 10.0 height_scale: 5.0
                                        width_scale: 5.0 }} }}
    matcher {{ argmax_matcher {{ matched_threshold: 0.5 unmatched_threshold: 0.4
        ignore_thresholds: false negatives_lower_than_unmatched: true
        force_match_for_each_row: true use_matmul_gather: true }} }}
    similarity_calculator {{ iou_similarity {{ }} }}
    encode_background_as_zeros: true
    anchor_generator {{
      multiscale_anchor_generator {{ {anchors} anchor_scale: 4.0
        aspect_ratios: [1.0, 2.0, 0.5] scales_per_octave: 2 }}
    }}
    image_resizer {{ fixed_shape_resizer {{ height: 640 width: 640 }} }}
    box_predictor {{
      weight_shared_convolutional_box_predictor {{
        depth: 128
        class_prediction_bias_init: -4.6
        {HYPER.format(act=act)}
        num_layers_before_predictor: 4
        kernel_size: 3
        use_depthwise: {depthwise}
      }}
    }}
    feature_extractor {{
      {extractor}
      {HYPER.format(act=act)}
      override_base_feature_extractor_hyperparams: true
    }}
    loss {{
      classification_loss {{ weighted_sigmoid_focal {{ alpha: 0.25 gamma: 2.0 }} }}
      localization_loss {{ weighted_smooth_l1 {{ }} }}
      classification_weight: 1.0
      localization_weight: 1.0
    }}
    normalize_loss_by_num_matches: true
    normalize_loc_loss_by_codesize: true
    post_processing {{
      batch_non_max_suppression {{ score_threshold: 1e-8 iou_threshold: 0.6
        max_detections_per_class: 100 max_total_detections: 100 }}
      score_converter: SIGMOID
    }}
  }}
}}
train_config: {{
  batch_size: 64
  num_steps: 25000
  data_augmentation_options {{ random_horizontal_flip {{ }} }}
  {train}
  optimizer {{
    momentum_optimizer: {{
      learning_rate: {{ cosine_decay_learning_rate {{ learning_rate_base: .04
          total_steps: 25000 warmup_learning_rate: .013333 warmup_steps: 2000 }} }}
      momentum_optimizer_value: 0.9
    }}
    use_moving_average: false
  }}
  max_number_of_boxes: 100
  unpad_groundtruth_tensors: false
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
  tf_record_input_reader {{ input_path: ["data/val-0.tfrecord", "data/val-1.tfrecord"] }}
}}
"""


RESNET_FPN = ssd_config("type: 'ssd_resnet50_v1_fpn_keras'\n fpn { min_level: 3 max_level: 7 }"
                        "\n min_depth: 16 depth_multiplier: 1.0")
MOBILENET_V1_FPN = ssd_config(
    "type: 'ssd_mobilenet_v1_fpn_keras'\n fpn { min_level: 3 max_level: 7 }\n"
    "min_depth: 16 depth_multiplier: 1.0",
    train="data_augmentation_options { random_crop_image { min_area: 0.75 max_area: 1.0 } }")
FPN_LITE = ssd_config(
    "type: 'ssd_mobilenet_v2_fpn_keras'\n use_depthwise: true\n"
    "fpn { min_level: 3 max_level: 7 additional_layer_depth: 128 }\n"
    "min_depth: 16 depth_multiplier: 1.0", depthwise="true")
EFFICIENTDET = ssd_config(
    "type: 'ssd_efficientnet-b0_bifpn_keras'\n"
    "bifpn { min_level: 3 max_level: 7 num_iterations: 3 num_filters: 64 }",
    act="SWISH", depthwise="true",
    train="use_bfloat16: true\n data_augmentation_options { random_scale_crop_and_pad_to_square "
          "{ output_size: 512 scale_min: 0.1 scale_max: 2.0 } }")


def write(tmp_path, text: str, name: str = "pipeline.config") -> str:
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write(text)
    return path


def error_of(text: str, tmp_path, override: str = "") -> str:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), override)
    return str(err.value)


# ---------------------------------------------------------------- mapping


def test_resnet_fpn_maps_to_retinanet(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        c = load_config(write(tmp_path, RESNET_FPN))
    m = c.model
    assert (m.backbone.type, m.backbone.model_id, m.min_level, m.max_level) == (
        "resnet", "50", 3, 7)
    assert (m.head.num_filters, m.head.num_convs, m.head.use_separable_conv) == (128, 4, False)
    assert (m.anchor.num_scales, m.anchor.anchor_size, m.anchor.aspect_ratios) == (
        2, 4.0, [1.0, 2.0, 0.5])
    assert (m.anchor.match_threshold, m.anchor.unmatched_threshold) == (0.5, 0.4)
    assert (m.norm.activation, m.norm.norm_momentum, m.loss.l2_weight_decay) == (
        "relu6", 0.997, 0.0004)
    assert m.input_size == [640, 640] and m.post_processing.iou_threshold == 0.6
    # the OD API's box coder scales: the head learns the scaled codes, smooth L1 on them
    assert (m.loss.huber_loss_delta, m.loss.box_loss_weight) == (1.0, 1.0)
    # normalize_loss_by_num_matches: true; classification_weight 1.0: as the OD API's
    assert (m.loss.normalizer, m.loss.class_loss_weight) == ("positives", 1.0)
    assert (m.pixel_mean, m.pixel_stddev) == ([123.68, 116.779, 103.939], [1.0] * 3)
    assert m.anchor.box_coder_weights == [10.0, 10.0, 5.0, 5.0]
    t = c.train_config
    assert (t.batch_size, t.num_steps, t.optimizer.type, t.optimizer.momentum) == (
        64, 25000, "sgd", 0.9)
    lr = t.learning_rate
    assert (lr.schedule, lr.base, lr.warmup_steps, lr.warmup_start) == (
        "cosine", 0.04, 2000, 0.013333)
    assert c.train_input_reader.input_path == ["data/train-?????-of-00004.tfrecord"]
    assert c.eval_input_reader.input_path == ["data/val-0.tfrecord", "data/val-1.tfrecord"]
    assert c.eval_input_reader.shuffle_buffer_size == 1 and c.eval_config.batch_size == 1
    assert c.train_input_reader.max_number_of_boxes == 100
    assert "Keras ResNet-50 v1 (resnet_variant: keras_v1" in caplog.text
    assert "approximated" in caplog.text and m.backbone.resnet_variant == "keras_v1"
    # The OD API's FPN (tests/test_odapi_fpn.py: its feature maps, given its weights).
    assert m.fpn.type == "odapi" and "with the OD API's FPN (fpn.type: odapi" in caplog.text
    assert "train_config.unpad_groundtruth_tensors" in caplog.text  # the one warning


def test_mobilenet_v1_fpn_and_fpn_lite(tmp_path):
    v1 = load_config(write(tmp_path, MOBILENET_V1_FPN))
    assert (v1.model.backbone.type, v1.model.backbone.model_id) == ("mobilenet", "MobileNetV1")
    assert v1.model.fpn.type == "odapi"  # the OD API's FPN, as its ResNet extractors'
    # random_crop_image of area [0.75, 1]: a zoom from 1 with the crops' mean zoom, 1.0718
    aug = v1.train_config.augmentation
    assert (aug.random_horizontal_flip, aug.scale_min, aug.scale_max) == (True, 1.0, 1.1436)
    lite = load_config(write(tmp_path, FPN_LITE, "lite.config"))
    assert lite.model.backbone.model_id == "MobileNetV2"
    assert (lite.model.fpn.use_separable_conv, lite.model.fpn.num_filters) == (True, 128)
    assert lite.model.head.use_separable_conv is True
    assert lite.model.fpn.type == "odapi"  # FPN-lite's depthwise FPN: the OD API's
    separable_v1 = load_config(write(tmp_path, MOBILENET_V1_FPN.replace(
        "type: 'ssd_mobilenet_v1_fpn_keras'",
        "type: 'ssd_mobilenet_v1_fpn_keras'\n      use_depthwise: true"), "sep.config"))
    # MobileNet v1's with use_depthwise narrows the OD API's backbone too: Model Garden's
    assert (separable_v1.model.fpn.type, separable_v1.model.fpn.use_separable_conv) == (
        "fpn", True)


def test_the_loss_normalisation_and_weights_map_exactly(tmp_path, caplog):
    """normalize_loss_by_num_matches false sums the losses, true and absent (the proto's
    default: true) divide them by the matched anchors, as the OD API's; the loss weights
    are the OD API's (the box weight times 4 without normalize_loc_loss_by_codesize);
    encode_background_as_zeros true is exact, false and absent (its default: false)
    logged as approximated."""
    text = (RESNET_FPN.replace("normalize_loss_by_num_matches: true",
                               "normalize_loss_by_num_matches: false")
            .replace("classification_weight: 1.0", "classification_weight: 2.0")
            .replace("localization_weight: 1.0", "localization_weight: 3.0")
            .replace("normalize_loc_loss_by_codesize: true", ""))
    with caplog.at_level(logging.INFO, logger="absl"):
        m = load_config(write(tmp_path, text)).model
    assert (m.loss.normalizer, m.loss.class_loss_weight, m.loss.box_loss_weight) == (
        "none", 2.0, 12.0)
    assert "encode_background_as_zeros approximated" not in caplog.text
    assert "classification_weight approximated" not in caplog.text
    absent = load_config(write(tmp_path, RESNET_FPN.replace(
        "normalize_loss_by_num_matches: true", ""), "absent.config")).model
    assert absent.loss.normalizer == "positives"
    for value, name in (("encode_background_as_zeros: false", "ones.config"),
                        ("", "default.config")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="absl"):
            load_config(write(tmp_path, RESNET_FPN.replace(
                "encode_background_as_zeros: true", value), name))
        assert "encode_background_as_zeros" in caplog.text and "approximated" in caplog.text
        assert ("(absent: the OD API's default)" in caplog.text) == (not value)


def test_efficientdet_maps_to_efficientnet_with_fpn(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        c = load_config(write(tmp_path, EFFICIENTDET))
    assert (c.model.backbone.type, c.model.backbone.model_id) == ("efficientnet", "b0")
    # the OD API's Keras EfficientNet activates inside squeeze-excitation with swish
    assert c.model.backbone.se_activation == "swish" and "se_activation: swish" in caplog.text
    # and reads its levels where the OD API's EfficientDet does
    assert c.model.backbone.efficientnet_endpoints == "odapi"
    assert "efficientnet_endpoints: odapi" in caplog.text
    assert (c.model.fpn.num_filters, c.model.norm.activation) == (64, "swish")
    assert c.train_config.mixed_precision == "mixed_bfloat16_on_tpu"
    aug = c.train_config.augmentation
    assert (aug.scale_min, aug.scale_max) == (0.1, 2.0)
    assert "no BiFPN" in caplog.text


@pytest.mark.parametrize("sample", ODAPI_SAMPLES, ids=odapi_sample_id)
def test_published_fixture_maps_and_lists_what_it_does_not_use(sample, caplog):
    override = ("{train_config: {fine_tune_checkpoint: ''}, train_input_reader: {input_path: a, "
                "label_map_path: b}, eval_input_reader: {input_path: a, label_map_path: b}}")
    with caplog.at_level(logging.INFO, logger="absl"):
        c = load_config(sample.path, override)
    m = c.model
    assert (m.backbone.model_id, (m.min_level, m.max_level), m.input_size) == (
        "MobileNetV2", sample.levels, sample.input_size)
    assert (m.num_classes, m.head.num_convs, m.loss.focal_loss_alpha) == (
        sample.num_classes, 0, sample.focal_alpha)
    assert m.anchor.num_scales == 2
    assert m.anchor.aspect_ratios == [float(r) for r in sample.aspect_ratios]
    assert c.train_config.fine_tune_checkpoint_type == "backbone"  # classification
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    for path in ("model.ssd.inplace_batchnorm_update", "train_config.sync_replicas",
                 "train_config.unpad_groundtruth_tensors", "eval_input_reader.num_epochs"):
        assert path in warnings[0]
    assert f"{sample.path}:{sample.line_of('ssd_random_crop')}: " \
           "train_config.data_augmentation_options.ssd_random_crop approximated" in caplog.text
    # ssd_random_crop's default crops zoom 1.44 on average: the jitter [1, 1.8831] too
    # (before: [1, 3.1623], twice that zoom, which cut the objects to pieces)
    aug = c.train_config.augmentation
    assert (aug.scale_min, aug.scale_max) == (1.0, 1.8831)


def test_crop_zoom_range_keeps_the_crops_least_and_mean_zoom():
    # The OD API's crop: area a uniform in [min_area, max_area], none with random_coef,
    # a zoom by 1/sqrt(a); our jitter draws its zoom uniformly in the range returned.
    rng = np.random.default_rng(0)
    for min_area, max_area, random_coef in ((0.1, 1.0, 0.15), (0.25, 1.0, 0.0),
                                            (0.3, 0.8, 0.5)):
        area = rng.uniform(min_area, max_area, 400_000)
        zoom = np.where(rng.uniform(size=area.size) < random_coef, 1.0, 1 / np.sqrt(area))
        low, high = crop_zoom_range(min_area, max_area, random_coef)
        assert low == pytest.approx(1 / np.sqrt(max_area))
        assert (low + high) / 2 == pytest.approx(zoom.mean(), rel=2e-3)
    assert crop_zoom_range(0.5, 0.5, 0.0) == pytest.approx((2 ** 0.5, 2 ** 0.5))


def test_docs_have_the_mapping_table():
    with open(os.path.join(REPO, "docs", "coming_from_odapi.md")) as f:
        assert markdown_table() in f.read()


# ---------------------------------------------------------------- bad input


def test_syntax_error_has_file_line_column(tmp_path):
    text = RESNET_FPN.replace("num_classes: 3", "num_classes 3")
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert message.startswith(f"{tmp_path}/pipeline.config:4:17: expected ':' or '{{'")


def test_unknown_field_names_the_nearest(tmp_path):
    message = error_of(RESNET_FPN.replace("matched_threshold: 0.5", "matchd_threshold: 0.5"),
                       tmp_path)
    assert ":7:32: unknown field `model.ssd.matcher.argmax_matcher.matchd_threshold`; did you " \
           "mean `model.ssd.matcher.argmax_matcher.matched_threshold`?" in message


def test_unsupported_meta_architecture_says_what_is(tmp_path):
    message = error_of("model {\n  center_net {\n    num_classes: 3\n  }\n}\n", tmp_path)
    assert ":2: model.center_net (supported: ssd (as Model Garden's RetinaNet) and " \
           "faster_rcnn" in message


def test_unsupported_fields_are_listed_in_one_error(tmp_path):
    text = RESNET_FPN.replace("momentum_optimizer_value: 0.9\n    }",
                              "momentum_optimizer_value: 0.9\n    }\n"
                              "    rms_prop_optimizer { }").replace(
        "use_moving_average: false", "use_moving_average: true")
    message = error_of(text, tmp_path)
    assert "2 fields of this pipeline.config cannot be honoured" in message
    assert "train_config.optimizer.rms_prop_optimizer (supported: momentum_optimizer" in message
    assert "train_config.optimizer.use_moving_average: true (moving averages" in message


def test_placeholder_path_names_the_field(tmp_path):
    text = RESNET_FPN.replace('"data/label_map.pbtxt"', '"PATH_TO_BE_CONFIGURED/lm.pbtxt"', 1)
    message = error_of(text, tmp_path)
    assert message.startswith(f"{tmp_path}/pipeline.config:76: "
                              "train_input_reader.label_map_path still holds "
                              "PATH_TO_BE_CONFIGURED")
    config = load_config(write(tmp_path, text), "train_input_reader.label_map_path=lm.pbtxt")
    assert config.train_input_reader.label_map_path == "lm.pbtxt"  # overrides in our keys


def test_num_classes_against_label_map_is_the_yaml_check(tmp_path, tiny_dataset):
    from train_lib.data.input_files import check_label_map

    text = RESNET_FPN.replace("num_classes: 3", "num_classes: 5").replace(
        "data/label_map.pbtxt", tiny_dataset["label_map_path"])
    config = load_config(write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"model.num_classes is 5 but the label map .* has "
                                          r"ids 1..3; set model.num_classes: 3"):
        check_label_map(config, config.train_input_reader, "train_input_reader")


def test_missing_fine_tune_checkpoint_is_named(tmp_path):
    from train_lib.training.fine_tune import resolve_checkpoint

    text = RESNET_FPN.replace("train_config: {", "train_config: {\n  fine_tune_checkpoint: "
                              f"'{tmp_path}/none/ckpt-0' fine_tune_checkpoint_type: 'detection'")
    config = load_config(write(tmp_path, text))
    assert config.train_config.fine_tune_checkpoint_type == "detection"
    with pytest.raises(ConfigError, match="train_config.fine_tune_checkpoint .* is not a "
                                          "checkpoint"):
        resolve_checkpoint(config.train_config.fine_tune_checkpoint)


def test_new_backbones_build(tmp_path):
    from train_lib.families.retinanet import build_model

    for text in (MOBILENET_V1_FPN, EFFICIENTDET):
        config = load_config(write(tmp_path, text), "model.input_size=[128,128]")
        model = build_model(config.model)
        assert model.count_params() > 0
        assert type(model.backbone).__name__ == (
            "MobileNet" if "mobilenet" in text else "OdapiEndpointsEfficientNet")


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("sample", ODAPI_SAMPLES, ids=odapi_sample_id)
def test_published_config_trains_and_exports(sample, tiny_dataset, tmp_path):
    override = json.dumps({
        "model": {"num_classes": 3, "input_size": [64, 64], "max_level": 6,
                  "backbone": {"width_multiplier": 0.35}, "fpn": {"num_filters": 32},
                  "head": {"num_filters": 32}},
        "train_config": {"batch_size": 4, "num_steps": 3, "fine_tune_checkpoint": "",
                         "log_every_n": 1},
        "train_input_reader": {"input_path": tiny_dataset["train_pattern"],
                               "label_map_path": tiny_dataset["label_map_path"],
                               "shuffle_buffer_size": 16},
        "eval_input_reader": {"input_path": tiny_dataset["val_pattern"],
                              "label_map_path": tiny_dataset["label_map_path"]},
    })
    model_dir = str(tmp_path / "run")
    proc = run_trainer(f"--pipeline_config_path={sample.path}", f"--model_dir={model_dir}",
                       f"--params_override={override}", "--checkpoint_every_n=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ckpt_steps(model_dir) == [3]
    assert "train_config.unpad_groundtruth_tensors" in proc.stderr  # the unused, listed
    recorded = load_config(os.path.join(model_dir, "pipeline.yaml"))
    assert (recorded.model.backbone.model_id, recorded.model.input_size) == ("MobileNetV2",
                                                                             [64, 64])
    out = str(tmp_path / "exported")
    export = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "exporter_main_v2.py"),
         f"--trained_checkpoint_dir={model_dir}", f"--output_directory={out}"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert export.returncode == 0, export.stderr[-3000:]
    assert os.path.isfile(os.path.join(out, "saved_model", "saved_model.pb"))


@pytest.mark.parametrize("side, expected", [(320, 320), (300, 288), (336, 352)])
def test_the_input_size_is_kept_at_multiples_of_the_backbones_deepest_stride(
        tmp_path, caplog, side, expected):
    """Levels 3..7 need an input that is a multiple of 32 (level 7 is then 3x3 at 320
    px, as the OD API's), not of 128: 320 stays 320; others round to the nearest."""
    text = RESNET_FPN.replace("height: 640", f"height: {side}").replace(
        "width: 640", f"width: {side}")
    assert f"height: {side}" in text
    with caplog.at_level(logging.INFO, logger="absl"):
        model = load_config(write(tmp_path, text)).model
    assert (model.input_size, model.max_level) == ([expected, expected], 7)
    rounded = [r.getMessage() for r in caplog.records if "] rounded to [" in r.getMessage()]
    assert len(rounded) == (side != expected)
