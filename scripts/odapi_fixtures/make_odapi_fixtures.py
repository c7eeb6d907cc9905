"""Writes tests/fixtures/odapi/: checkpoints and reference outputs of the real
TensorFlow Object Detection API, for the tests of fine-tuning from its checkpoints.

This script is the only part of the repository that imports the OD API, and the
tests never run it: they read what it wrote. Run it with the OD API's own Python
(see scripts/odapi_fixtures/README.md), from any directory:

    python scripts/odapi_fixtures/make_odapi_fixtures.py [--out tests/fixtures/odapi]

For each extractor in EXTRACTORS (MobileNetV2) it writes, under OUT/<extractor>/:

- pipeline.config: the small config the model was built from (written here: a
  reduced depth multiplier and input so the fixture stays small);
- checkpoint/ckpt-0.*, checkpoint/checkpoint: the model's weights as the OD API's
  exporter writes a zoo model's ckpt-0 (tf.train.Checkpoint(model=detection_model)
  saved by a CheckpointManager with checkpoint_number=0; model_main_tf2 saves the
  same `model/...` object graph beside its `step` and `optimizer`). The weights
  are random (seeded), batch-norm statistics included, so that every variable
  matters to the outputs;
- image.png: the input image (uint8 RGB, the model's input size);
- features.npz: the OD API's outputs on that image, in float32:
  `preprocessed` (the feature extractor's input), `feature_map_<i>` (the feature
  extractor's i-th output map) and `layer/<keras layer name>` (the Keras
  MobileNetV2's tensors at the ends of Model Garden's MobileNetV2 levels and at
  the two layers SSD reads);
- variables.json: every variable of the checkpoint (name, shape), and the same
  for the published full-size config's model (`published`: the config named in
  EXTRACTORS, read from the OD API's source tree; only names and shapes kept).

For each extractor in RESNETS (the OD API's Keras ResNet v1 extractors: SSD FPN
and Faster R-CNN, 50/101/152, and Faster R-CNN ResNet-50 FPN) it builds the
published config's model, reduced where the OD API allows (3 classes, a small
input; SSD: depth_multiplier 0.125, min_depth 8, box predictor depth 32; Faster
R-CNN has no depth multiplier, so its ResNet is full width), gives every variable
seeded_weights.value(its checkpoint key) and writes the same files, but
features.npz holds the backbone's outputs: `level_<n>` (the Keras ResNet's conv<n>
output: the classification_backbone's outputs of SSD and of Faster R-CNN FPN,
Faster R-CNN's proposal features at level 4), `feature_map_<i>` (with an FPN: its
maps) and `box_classifier` (Faster R-CNN: its second-stage extractor, the Keras
ResNet's conv5, run on the whole level-4 map). Only the SSD ResNet-50's
checkpoint is written into the fixture (2.2 MB); for the others variables.json's
names and shapes and seeded_weights are the checkpoint (the script checks that the
OD API's own checkpoint holds exactly seeded_weights' values), and the tests write it.

SEEDED adds the OD API's Keras MobileNet v1 FPN (`ssd_mobilenet_v1_fpn_keras`:
the published config at depth_multiplier 0.5, min_depth 8, 128 px, box predictor
depth 32, 3 classes), written the same way: `level_<n>` are its
classification_backbone's outputs conv_pw_3/5/11/13_relu, the maps its FPN reads,
and (HEAD_OUTPUTS) its two-tower box predictor's outputs and its anchors;
the OD API's Keras MobileNetV2 FPN-lite (`ssd_mobilenet_v2_fpn_keras` with
use_depthwise, the published 320x320 FPN-lite config at depth_multiplier 0.35,
min_depth 8, 128 px, box predictor depth 32, 3 classes): `level_<n>` are its
classification_backbone's outputs (block_2_add, block_5_add, block_12_add, out_relu),
`feature_map_<i>` its depthwise FPN's maps, and (HEAD_OUTPUTS) its weight-shared
box predictor's outputs `box_encodings` and `class_predictions_with_background` and
its `anchors`;
and the OD API's EfficientDet D0 and D1 (`ssd_efficientnet-b0_bifpn_keras`,
`ssd_efficientnet-b1_bifpn_keras`: the published config at 256 px (a multiple of
2**7 above 128), 3 classes; B0 and B1 at full width): `level_<n>` are the Keras
EfficientNet's tensors in EFFICIENTNET_LEVELS, the same layer names for every size
(the script checks that levels 3-5 are what its extractor's `_efficientnet` outputs,
which its BiFPN reads).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

import numpy as np
import seeded_weights
import tensorflow as tf
from google.protobuf import text_format
from object_detection.builders import model_builder
from object_detection.protos import pipeline_pb2

SEED = 20261205
IMAGE_SIZE = 128

SSD_MOBILENET_V2_CONFIG = """
model {
  ssd {
    num_classes: 3
    inplace_batchnorm_update: true
    freeze_batchnorm: false
    box_coder { faster_rcnn_box_coder { y_scale: 10.0 x_scale: 10.0
                                        height_scale: 5.0 width_scale: 5.0 } }
    matcher { argmax_matcher { matched_threshold: 0.5 unmatched_threshold: 0.5
                               ignore_thresholds: false
                               negatives_lower_than_unmatched: true
                               force_match_for_each_row: true
                               use_matmul_gather: true } }
    similarity_calculator { iou_similarity { } }
    encode_background_as_zeros: true
    anchor_generator { ssd_anchor_generator { num_layers: 6 min_scale: 0.2 max_scale: 0.95
                                              aspect_ratios: 1.0 aspect_ratios: 2.0
                                              aspect_ratios: 0.5 } }
    image_resizer { fixed_shape_resizer { height: %(size)d width: %(size)d } }
    box_predictor {
      convolutional_box_predictor {
        min_depth: 0 max_depth: 0 num_layers_before_predictor: 0
        use_dropout: false kernel_size: 1 box_code_size: 4
        apply_sigmoid_to_scores: false class_prediction_bias_init: -4.6
        conv_hyperparams {
          activation: RELU_6
          regularizer { l2_regularizer { weight: 0.00004 } }
          initializer { random_normal_initializer { stddev: 0.01 mean: 0.0 } }
          batch_norm { train: true scale: true center: true decay: 0.97 epsilon: 0.001 }
        }
      }
    }
    feature_extractor {
      type: 'ssd_mobilenet_v2_keras'
      depth_multiplier: %(depth_multiplier)s
      min_depth: %(min_depth)d
      conv_hyperparams {
        activation: RELU_6
        regularizer { l2_regularizer { weight: 0.00004 } }
        initializer { truncated_normal_initializer { stddev: 0.03 mean: 0.0 } }
        batch_norm { train: true scale: true center: true decay: 0.97 epsilon: 0.001 }
      }
      override_base_feature_extractor_hyperparams: true
    }
    loss {
      classification_loss { weighted_sigmoid_focal { alpha: 0.75 gamma: 2.0 } }
      localization_loss { weighted_smooth_l1 { delta: 1.0 } }
      classification_weight: 1.0
      localization_weight: 1.0
    }
    normalize_loss_by_num_matches: true
    normalize_loc_loss_by_codesize: true
    post_processing {
      batch_non_max_suppression { score_threshold: 1e-8 iou_threshold: 0.6
                                  max_detections_per_class: 100
                                  max_total_detections: 100 }
      score_converter: SIGMOID
    }
  }
}
train_config {
  batch_size: 2
  num_steps: 10
  fine_tune_checkpoint_version: V2
  optimizer { momentum_optimizer { learning_rate { constant_learning_rate {
    learning_rate: 0.01 } } momentum_optimizer_value: 0.9 } }
}
"""

# The Keras MobileNetV2 layers whose outputs are recorded: the ends of Model
# Garden's MobileNetV2 levels 2..5 and its last convolution, and the two layers
# the OD API's SSD reads (stride 16: block_13_expand_relu; stride 32: out_relu).
MOBILENET_V2_LAYERS = ("block_2_add", "block_5_add", "block_12_add", "block_16_project_BN",
                       "block_13_expand_relu", "out_relu")

EXTRACTORS = {
    "ssd_mobilenet_v2_keras": dict(
        # min_depth 8, not the published 16: at depth_multiplier 0.35, 16 floors the
        # projections of blocks 0-2, and the Keras application then drops block 2's
        # residual (it compares the input's width with the unfloored one).
        config=SSD_MOBILENET_V2_CONFIG % {"size": IMAGE_SIZE, "depth_multiplier": 0.35,
                                          "min_depth": 8},
        layers=MOBILENET_V2_LAYERS,
        published="configs/tf2/ssd_mobilenet_v2_320x320_coco17_tpu-8.config",
    ),
}


def _reduce_ssd(config) -> None:
    ssd = config.model.ssd
    ssd.num_classes = 3
    ssd.feature_extractor.depth_multiplier = 0.125
    ssd.feature_extractor.min_depth = 8
    ssd.image_resizer.fixed_shape_resizer.height = 160
    ssd.image_resizer.fixed_shape_resizer.width = 160
    ssd.box_predictor.weight_shared_convolutional_box_predictor.depth = 32


def _reduce_faster_rcnn(config) -> None:
    frcnn = config.model.faster_rcnn
    frcnn.num_classes = 3
    resizer = frcnn.image_resizer.keep_aspect_ratio_resizer
    resizer.min_dimension = resizer.max_dimension = 128 if frcnn.feature_extractor.HasField(
        "fpn") else 96


# name: (published config, reduction, input size, whether the checkpoint is committed)
RESNETS = {
    **{f"ssd_resnet{d}_v1_fpn_keras": (
        f"configs/tf2/ssd_resnet{d}_v1_fpn_640x640_coco17_tpu-8.config", _reduce_ssd, 160,
        d == 50) for d in (50, 101, 152)},
    **{f"faster_rcnn_resnet{d}_keras": (
        f"configs/tf2/faster_rcnn_resnet{d}_v1_640x640_coco17_tpu-8.config",
        _reduce_faster_rcnn, 96, False) for d in (50, 101, 152)},
    "faster_rcnn_resnet50_fpn_keras": (
        "configs/tf2/faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config",
        _reduce_faster_rcnn, 128, False),
}


def _reduce_ssd_mobilenet_v1(config) -> None:
    # depth_multiplier 0.5: the OD API's Keras MobileNet v1 scales each layer's width
    # twice (the Keras application by alpha, then its layer override again), so its
    # layers are a quarter of the published widths (8..256 channels); min_depth 8 keeps
    # the first layer at 8.
    ssd = config.model.ssd
    ssd.num_classes = 3
    ssd.feature_extractor.depth_multiplier = 0.5
    ssd.feature_extractor.min_depth = 8
    ssd.image_resizer.fixed_shape_resizer.height = 128
    ssd.image_resizer.fixed_shape_resizer.width = 128
    ssd.box_predictor.weight_shared_convolutional_box_predictor.depth = 32


def _reduce_ssd_mobilenet_v2_fpn(config) -> None:
    # FPN-lite (use_depthwise: true, as published) at depth_multiplier 0.35, min_depth 8
    # (as the ssd_mobilenet_v2_keras fixture): its FPN is int(128 x 0.35) = 44 wide.
    ssd = config.model.ssd
    ssd.num_classes = 3
    ssd.feature_extractor.depth_multiplier = 0.35
    ssd.feature_extractor.min_depth = 8
    ssd.image_resizer.fixed_shape_resizer.height = 128
    ssd.image_resizer.fixed_shape_resizer.width = 128
    ssd.box_predictor.weight_shared_convolutional_box_predictor.depth = 32


def _reduce_efficientdet(config) -> None:
    # EfficientNet has no depth multiplier: B0 at full width; the input the least its
    # BiFPN takes (more than 128 px, a multiple of 2**max_level).
    ssd = config.model.ssd
    ssd.num_classes = 3
    resizer = ssd.image_resizer.keep_aspect_ratio_resizer
    resizer.min_dimension = resizer.max_dimension = 256


# The Keras EfficientNet's (official.legacy's) layers the OD API's EfficientDet reads
# as its levels (its _EFFICIENTNET_LEVEL_ENDPOINTS: B0's block names for every size;
# its BiFPN reads levels 3-5).
EFFICIENTNET_LEVELS = {2: "stack_1/block_1/add", 3: "stack_2/block_1/add",
                       4: "stack_4/block_2/add", 5: "stack_6/block_0/project_bn"}

# Other Keras extractors whose fixture is written as the ResNets' (seeded weights,
# names and shapes; the same spec).
SEEDED = {
    **RESNETS,
    "ssd_mobilenet_v1_fpn_keras": (
        "configs/tf2/ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8.config",
        _reduce_ssd_mobilenet_v1, 128, False),
    "ssd_mobilenet_v2_fpn_keras": (
        "configs/tf2/ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config",
        _reduce_ssd_mobilenet_v2_fpn, 128, False),
    "ssd_efficientnet-b0_bifpn_keras": (
        "configs/tf2/ssd_efficientdet_d0_512x512_coco17_tpu-8.config",
        _reduce_efficientdet, 256, False),
    # B1: the first size whose levels are inside a block group (level 3 is stack_2's
    # second block of three), where Model Garden's EfficientNet ends its levels.
    "ssd_efficientnet-b1_bifpn_keras": (
        "configs/tf2/ssd_efficientdet_d1_640x640_coco17_tpu-8.config",
        _reduce_efficientdet, 256, False),
}


# The SSD extractors whose features.npz also holds its box predictor's outputs on the
# image (model.predict's `box_encodings` [1, anchors, 4] and
# `class_predictions_with_background` [1, anchors, num_classes + 1], levels in order,
# each level's anchors row by row, a location's anchors in its anchor generator's
# order) and those `anchors` ([anchors, 4], normalized corners ymin, xmin, ymax, xmax).
HEAD_OUTPUTS = ("ssd_mobilenet_v2_fpn_keras", "ssd_mobilenet_v1_fpn_keras")


def build_model(config_text: str):
    """The OD API's detection model of a pipeline.config text (training mode off)."""
    config = text_format.Parse(config_text, pipeline_pb2.TrainEvalPipelineConfig())
    return model_builder.build(config.model, is_training=False)


def make_image(rng: np.random.Generator, size: int, rectangles: int = 5) -> np.ndarray:
    """A smooth picture with `rectangles` rectangles and noise: uint8 [size, size, 3]."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([120 + 90 * np.sin(6 * x + 1), 110 + 80 * np.cos(5 * y),
                      128 + 60 * np.sin(4 * (x + y))], axis=-1)
    for _ in range(rectangles):
        y0, x0 = rng.integers(0, size - 16, 2)
        h, w = rng.integers(8, size // 2, 2)
        image[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
    image += rng.normal(0, 6, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def randomize(variables, rng: np.random.Generator) -> None:
    """Random values for every variable, of a scale that keeps activations O(1):
    kernels He-scaled, batch-norm gamma around 1, beta and means small, variances
    around 1 (never <= 0)."""
    for v in variables:
        name, shape = v.name, v.shape.as_list()
        if name.endswith("moving_variance:0"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("gamma:0"):
            value = rng.uniform(0.7, 1.3, shape)
        elif name.endswith(("beta:0", "moving_mean:0", "bias:0")):
            value = rng.normal(0.0, 0.1, shape)
        else:  # kernels: fan-in of [kh, kw, in, out] or a depthwise [kh, kw, in, 1]
            fan_in = int(np.prod(shape[:-1])) if shape[-1] != 1 else int(np.prod(shape[:2]))
            value = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), shape)
        v.assign(value.astype(np.float32))


def list_checkpoint(prefix: str) -> list[list]:
    return [[name, shape] for name, shape in tf.train.list_variables(prefix)]


def published_manifest(relative_path: str) -> dict:
    """Names and shapes of the published config's model, as a zoo ckpt-0 holds them."""
    with open(_odapi_path(relative_path)) as f:
        text = f.read()
    model = build_model(text)
    size = _input_size(text)
    model.predict(*model.preprocess(tf.zeros([1, size, size, 3])))
    with tempfile.TemporaryDirectory() as tmp:
        prefix = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), tmp,
                                            max_to_keep=1).save(checkpoint_number=0)
        variables = list_checkpoint(prefix)
    return {"config": relative_path, "variables": variables}


def _input_size(config_text: str) -> int:
    config = text_format.Parse(config_text, pipeline_pb2.TrainEvalPipelineConfig())
    if config.model.WhichOneof("model") != "ssd":
        return 256  # a Faster R-CNN's variables do not depend on its input size
    return config.model.ssd.image_resizer.fixed_shape_resizer.height


def _odapi_path(relative_path: str) -> str:
    package = os.path.dirname(os.path.dirname(os.path.abspath(model_builder.__file__)))
    return os.path.join(package, relative_path)


def assign_keyed(model) -> None:
    """Gives every variable of `model` seeded_weights.value(its checkpoint key): each
    variable is first filled with its index, so that a saved checkpoint says which
    key is which variable."""
    variables = model.variables
    for index, variable in enumerate(variables):
        variable.assign(tf.fill(variable.shape, tf.cast(index, variable.dtype)))
    with tempfile.TemporaryDirectory() as tmp:
        prefix = tf.train.Checkpoint(model=model).write(os.path.join(tmp, "probe"))
        reader = tf.train.load_checkpoint(prefix)
        for key, shape in reader.get_variable_to_shape_map().items():
            if not key.startswith("model/"):
                continue
            index = int(np.asarray(reader.get_tensor(key)).flat[0])
            variables[index].assign(seeded_weights.value(key, shape))


def write_resnet(out_dir: str, name: str, spec: tuple) -> None:
    published, reduce, size, commit = spec
    rng = np.random.default_rng(SEED)
    target = os.path.join(out_dir, name)
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    with open(_odapi_path(published)) as f:
        config = text_format.Parse(f.read(), pipeline_pb2.TrainEvalPipelineConfig())
    reduce(config)
    config.ClearField("train_input_reader")
    config.ClearField("eval_input_reader")
    config_text = text_format.MessageToString(config)
    with open(os.path.join(target, "pipeline.config"), "w") as f:
        f.write(config_text)

    model = build_model(config_text)
    image = make_image(rng, size)
    preprocessed, true_shapes = model.preprocess(tf.constant(image[None].astype(np.float32)))
    model.predict(preprocessed, true_shapes)  # builds every variable
    assign_keyed(model)
    arrays = {"preprocessed": preprocessed.numpy()}
    if "efficientnet" in name:
        backbone = model.feature_extractor.classification_backbone
        probe = tf.keras.Model(backbone.inputs, [backbone.get_layer(layer).output
                                                 for layer in EFFICIENTNET_LEVELS.values()])
        for level, value in zip(EFFICIENTNET_LEVELS, probe(preprocessed, training=False),
                                strict=True):
            arrays[f"level_{level}"] = value.numpy()
        # What its BiFPN reads (the extractor's _efficientnet: levels 3-5) is them.
        read = model.feature_extractor._efficientnet(preprocessed, training=False)
        for level, value in zip(range(6 - len(read), 6), read, strict=True):
            assert np.array_equal(value.numpy(), arrays[f"level_{level}"]), level
        for i, fmap in enumerate(model.feature_extractor(preprocessed)):
            arrays[f"feature_map_{i}"] = fmap.numpy()
    elif name.startswith("ssd_") or name.endswith("_fpn_keras"):
        extractor = model.feature_extractor if name.startswith("ssd_") else \
            model._feature_extractor_for_proposal_features
        levels = extractor.classification_backbone(preprocessed, training=False)
        for level, value in enumerate(levels, start=2):
            arrays[f"level_{level}"] = value.numpy()
        for i, fmap in enumerate(extractor(preprocessed)):
            arrays[f"feature_map_{i}"] = fmap.numpy()
        if name in HEAD_OUTPUTS:
            prediction = model.predict(preprocessed, true_shapes)
            for key in ("box_encodings", "class_predictions_with_background", "anchors"):
                arrays[key] = prediction[key].numpy()
    else:
        rpn = model._feature_extractor_for_proposal_features(preprocessed, training=False)
        box = model._feature_extractor_for_box_classifier_features(rpn, training=False)
        arrays["level_4"], arrays["box_classifier"] = rpn.numpy(), box.numpy()
    np.savez_compressed(os.path.join(target, "features.npz"), **arrays)
    tf.io.write_file(os.path.join(target, "image.png"), tf.io.encode_png(image))

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint_dir = os.path.join(target, "checkpoint") if commit else tmp
        prefix = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), checkpoint_dir,
                                            max_to_keep=1).save(checkpoint_number=0)
        entries = list_checkpoint(prefix)
        reader = tf.train.load_checkpoint(prefix)
        for key, shape in entries:  # the tests rebuild the checkpoint from these
            if key.startswith("model/"):
                assert np.array_equal(reader.get_tensor(key), seeded_weights.value(key, shape))
    manifest = {"extractor": name, "checkpoint": entries,
                "checkpoint_committed": commit, "published": published_manifest(published)}
    with open(os.path.join(target, "variables.json"), "w") as f:
        json.dump(manifest, f, indent=0)
    for key, value in arrays.items():
        print(f"{name}: {key} {value.shape} max |x| {np.abs(value).max():.3g}")
    print(f"{name}: {len(entries)} checkpoint entries, published "
          f"{len(manifest['published']['variables'])}")


def write_extractor(out_dir: str, name: str, spec: dict) -> None:
    rng = np.random.default_rng(SEED)
    target = os.path.join(out_dir, name)
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    with open(os.path.join(target, "pipeline.config"), "w") as f:
        f.write(spec["config"].lstrip())

    model = build_model(spec["config"])
    image = make_image(rng, IMAGE_SIZE)
    batch = tf.constant(image[None].astype(np.float32))
    preprocessed, true_shapes = model.preprocess(batch)
    model.predict(preprocessed, true_shapes)  # builds every variable
    randomize(model.variables, rng)

    extractor = model.feature_extractor
    backbone = extractor.classification_backbone
    probe = tf.keras.Model(backbone.inputs,
                           [backbone.get_layer(layer).output for layer in spec["layers"]])
    arrays = {"preprocessed": preprocessed.numpy()}
    for i, fmap in enumerate(extractor(preprocessed)):
        arrays[f"feature_map_{i}"] = fmap.numpy()
    for layer, value in zip(spec["layers"], probe(preprocessed, training=False), strict=True):
        arrays[f"layer/{layer}"] = value.numpy()
    np.savez_compressed(os.path.join(target, "features.npz"), **arrays)
    tf.io.write_file(os.path.join(target, "image.png"), tf.io.encode_png(image))

    checkpoint_dir = os.path.join(target, "checkpoint")
    prefix = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), checkpoint_dir,
                                        max_to_keep=1).save(checkpoint_number=0)
    manifest = {"extractor": name, "checkpoint": list_checkpoint(prefix),
                "published": published_manifest(spec["published"])}
    with open(os.path.join(target, "variables.json"), "w") as f:
        json.dump(manifest, f, indent=0)
    for key, value in arrays.items():
        print(f"{name}: {key} {value.shape}")
    print(f"{name}: {len(manifest['checkpoint'])} checkpoint entries, published "
          f"{len(manifest['published']['variables'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "fixtures",
                                                      "odapi"))
    parser.add_argument("--only", default="",
                        help="one extractor name of EXTRACTORS or SEEDED")
    args = parser.parse_args()
    tf.keras.utils.set_random_seed(SEED)
    for name, spec in EXTRACTORS.items():
        if not args.only or args.only == name:
            write_extractor(os.path.abspath(args.out), name, spec)
    for name, spec in SEEDED.items():
        if not args.only or args.only == name:
            write_resnet(os.path.abspath(args.out), name, spec)


if __name__ == "__main__":
    main()
