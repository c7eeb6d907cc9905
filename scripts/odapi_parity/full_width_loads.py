r"""Fine-tunes from OD API checkpoints at full width, as a zoo ckpt-0 is, and measures
what loads and whether our backbone and FPN then compute the OD API's maps.

For each published TF2 config (the SSD and Faster R-CNN ones of --configs_dir that our
mapper maps, or those --only names), one at a time:

1. the OD API's side (a subprocess in its own environment: --odapi_python, with
   --odapi_research's `research` and `research/slim` on PYTHONPATH and
   TF_USE_LEGACY_KERAS=1) builds the config's model with its model_builder at the
   published width and num_classes (only the input is --size px; no variable depends
   on it), gives every variable a seeded random value (scripts/odapi_fixtures/
   seeded_weights.py's scales, batch-norm moving statistics included, seeded by the
   variable's index and name so that no two variables are alike), writes the
   checkpoint as its exporter writes a zoo model's ckpt-0
   (tf.train.Checkpoint(model=detection_model) saved by a CheckpointManager with
   checkpoint_number=0) and saves its tensors on one image (features.npz: the
   extractor's input `preprocessed`, its backbone levels `level_<n>`, its FPN's maps
   `feature_map_<i>`, levels min_level up; Faster R-CNN without FPN: `level_4` and its
   box classifier on the whole level-4 map, `box_classifier`; SSD MobileNetV2 and
   EfficientDet: the Keras layers that end our levels, and for the former block 14's
   expansion, its first feature map; MobileNetV2 FPN-lite: its backbone's outputs,
   the last (`out_relu`, 1280 channels) being our key 6, and block 16's projection,
   our level 5);
2. ours (a subprocess in this project's environment) maps the same config with our
   mapper (its `model` section, input --size), builds the model, runs its backbone
   (and FPN) on `preprocessed` with its fresh weights, fine-tunes it from the
   checkpoint with fine_tune.apply(model, prefix, "detection") (what a run with
   fine_tune_checkpoint_type: detection calls), and runs them again.

It prints, per config: the variables loaded (backbone, FPN) and fresh, the load's
seconds, the checkpoint's size, and per level the largest difference of our map from
the OD API's relative to the OD API's largest magnitude, after the load and (in
brackets) fresh; then a Markdown table of every config measured into --work_dir so
far (<work_dir>/results.json holds the figures). Each config's checkpoint (up to
260 MB at full width) is deleted after its measurement unless --keep. With
$ODAPI_PY (a Python where the OD API imports) and $ODAPI_RESEARCH (tensorflow/models'
`research` directory), the defaults of --odapi_python and --odapi_research:

    nice -n 10 .venv/bin/python scripts/odapi_parity/full_width_loads.py \
        --configs_dir=$ODAPI_RESEARCH/object_detection/configs/tf2 \
        --work_dir=/tmp/full_width_loads

With --kind full it measures the configs with the OD API's weight-shared box predictor
that our head computes (FPN-lite 320/640, MobileNet v1 FPN, SSD ResNet-50/101/152 FPN
640/1024; not EfficientDet: full loads its towers and box predictor too, but our FPN
is not its BiFPN and starts fresh, so our head reads other maps):
the OD API's side also saves its box predictor's outputs on the image (model.predict's
`box_encodings` [1, N, 4] and `class_predictions_with_background` [1, N, 91], levels
in order, each level's locations row by row, a location's anchors in its order) and
its `anchors`; ours fine-tunes with fine_tune.apply(model, prefix, "full") (what
fine_tune_checkpoint_type: full calls) and also compares its head's outputs (the OD
API's anchors put in our order, box_predictor.rows_in_our_order) and its anchors, and
counts the head variables loaded:

    nice -n 10 .venv/bin/python scripts/odapi_parity/full_width_loads.py --kind=full \
        --configs_dir=$ODAPI_RESEARCH/object_detection/configs/tf2 \
        --work_dir=/tmp/full_width_loads_full

The script imports only its own side's code in each process: the OD API's side never
imports train_lib, ours never the OD API.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SEED = 20261207
TOLERANCE = 1e-4
# The Keras MobileNetV2 layers that end our levels 2-6 (ssd_mobilenet_v2_keras).
MOBILENET_V2_LAYERS = {"2": "block_2_add", "3": "block_5_add", "4": "block_12_add",
                       "5": "block_16_project_BN", "6": "out_relu"}
# The Keras EfficientNet's layers the OD API's EfficientDet reads as levels 2-5.
# What the OD API's side saves with --kind full: model.predict's outputs on the image.
HEAD_OUTPUTS = ("box_encodings", "class_predictions_with_background", "anchors")
EFFICIENTNET_LEVELS = {"2": "stack_1/block_1/add", "3": "stack_2/block_1/add",
                       "4": "stack_4/block_2/add", "5": "stack_6/block_0/project_bn"}


def relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / max |theirs|."""
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def make_image(size: int) -> np.ndarray:
    """The fixtures' picture (make_odapi_fixtures.make_image) with six rectangles, from
    SEED: uint8 [size, size, 3]. Imports the fixture script (and with it TensorFlow):
    call it in the OD API's process."""
    sys.path.insert(0, os.path.join(REPO, "scripts", "odapi_fixtures"))
    import make_odapi_fixtures

    return make_odapi_fixtures.make_image(np.random.default_rng(SEED), size, rectangles=6)


# ---------------------------------------------------------------- the OD API's side


def odapi_side(config_path: str, out_dir: str, size: int, kind: str = "detection") -> None:
    """Writes out_dir/checkpoint/ckpt-0, out_dir/features.npz and out_dir/odapi.json;
    with `kind` full, features.npz also holds the box predictor's outputs and the
    anchors (HEAD_OUTPUTS)."""
    sys.path.insert(0, os.path.join(REPO, "scripts", "odapi_fixtures"))
    import seeded_weights
    import tensorflow as tf
    from object_detection.builders import model_builder
    from object_detection.utils import config_util

    started = time.time()
    configs = config_util.get_configs_from_pipeline_file(config_path)
    meta = configs["model"].WhichOneof("model")
    arch = getattr(configs["model"], meta)
    resizer = arch.image_resizer
    if resizer.WhichOneof("image_resizer_oneof") == "fixed_shape_resizer":
        resizer.fixed_shape_resizer.height = resizer.fixed_shape_resizer.width = size
    else:
        resizer.keep_aspect_ratio_resizer.min_dimension = size
        resizer.keep_aspect_ratio_resizer.max_dimension = size
    extractor_type = arch.feature_extractor.type
    tf.keras.utils.set_random_seed(SEED)
    model = model_builder.build(configs["model"], is_training=False)
    image = make_image(size)
    preprocessed, shapes = model.preprocess(tf.constant(image[None].astype(np.float32)))
    model.predict(preprocessed, shapes)  # builds every variable
    for index, variable in enumerate(model.variables):
        key = f"{index}/{variable.name.split(':')[0]}"
        variable.assign(seeded_weights.value(key, variable.shape.as_list()))
    built = time.time() - started

    arrays = {"preprocessed": preprocessed.numpy()}
    if meta == "ssd":
        extractor = model.feature_extractor
    else:
        extractor = model._feature_extractor_for_proposal_features
    if extractor_type == "ssd_mobilenet_v2_keras" or "efficientnet" in extractor_type:
        backbone = extractor.classification_backbone
        layers = MOBILENET_V2_LAYERS if "mobilenet" in extractor_type else EFFICIENTNET_LEVELS
        probe = tf.keras.Model(backbone.inputs,
                               [backbone.get_layer(name).output for name in layers.values()])
        for level, value in zip(layers, probe(preprocessed, training=False), strict=True):
            arrays[f"level_{level}"] = value.numpy()
        if "mobilenet" in extractor_type:
            arrays["expansion"] = extractor(preprocessed)[0].numpy()  # block_13_expand_relu
    elif meta == "ssd" or extractor_type.endswith("_fpn_keras"):
        backbone = extractor.classification_backbone
        numbers = (2, 3, 4, 5)
        if extractor_type == "ssd_mobilenet_v2_fpn_keras":
            # Its fourth output is out_relu (1280 channels), our key 6 (the FPN's top
            # input); our level 5 is block 16's projection, which its FPN does not read.
            numbers = (2, 3, 4, 6)
            probe = tf.keras.Model(backbone.inputs,
                                   backbone.get_layer(MOBILENET_V2_LAYERS["5"]).output)
            arrays["level_5"] = probe(preprocessed, training=False).numpy()
        levels = backbone(preprocessed, training=False)
        for level, value in zip(numbers, levels, strict=True):
            arrays[f"level_{level}"] = value.numpy()
        for i, fmap in enumerate(extractor(preprocessed)):
            arrays[f"feature_map_{i}"] = fmap.numpy()
    else:
        rpn = extractor(preprocessed, training=False)
        box = model._feature_extractor_for_box_classifier_features(rpn, training=False)
        arrays["level_4"], arrays["box_classifier"] = rpn.numpy(), box.numpy()
    if kind == "full" and meta == "ssd":
        prediction = model.predict(preprocessed, shapes)
        for key in HEAD_OUTPUTS:
            arrays[key] = prediction[key].numpy()
        if "feature_map_0" not in arrays:  # EfficientDet: its BiFPN's, the head's input
            for i, fmap in enumerate(extractor(preprocessed)):
                arrays[f"feature_map_{i}"] = fmap.numpy()
    np.savez(os.path.join(out_dir, "features.npz"), **arrays)

    started = time.time()
    prefix = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), os.path.join(out_dir, "checkpoint"),
        max_to_keep=1).save(checkpoint_number=0)
    written = time.time() - started
    stored = [(name, shape) for name, shape in tf.train.list_variables(prefix)
              if name.startswith("model/")]
    size_bytes = sum(os.path.getsize(path) for path in glob.glob(prefix + ".*"))
    with open(os.path.join(out_dir, "odapi.json"), "w") as f:
        json.dump({"prefix": prefix, "extractor": extractor_type,
                   "num_classes": arch.num_classes, "variables": len(stored),
                   "parameters": int(sum(np.prod(shape) for _, shape in stored)),
                   "checkpoint_bytes": size_bytes, "build_seconds": built,
                   "write_seconds": written,
                   "arrays": {key: list(value.shape) for key, value in arrays.items()}},
                  f, indent=1)


# ---------------------------------------------------------------- our side


def _our_levels(model, inputs, extractor: str) -> dict[str, np.ndarray]:
    """Our backbone's levels on `inputs`; for the SSD MobileNetV2, also block 14's
    expansion (the OD API's first feature map)."""
    import tensorflow as tf
    import tf_keras
    from official.vision.modeling.layers import nn_blocks

    x = tf.constant(inputs)
    levels = {key: value.numpy() for key, value in model.backbone(x, training=False).items()}
    if extractor == "ssd_mobilenet_v2_keras":
        backbone = model.backbone
        before = tf_keras.Model(backbone.inputs,
                                backbone.get_layer("block_group_invertedbottleneck_13").output)
        block = [layer for layer in backbone.layers
                 if isinstance(layer, nn_blocks.InvertedBottleneckBlock)][13]
        expanded = block._norm0(block._conv0(before(x, training=False)), training=False)
        levels["expansion"] = block._activation_layer(expanded).numpy()
    return levels


def _compare(model, reference: dict, extractor: str,
             fpn_odapi: bool) -> tuple[dict[str, float | str], dict[str, list[float]]]:
    """{name: relative difference} of our backbone levels (and, with the OD API's
    FPN, our FPN's maps) against the OD API's tensors (or why they cannot be
    compared), and {name: [max |ours|, max |theirs|]}."""
    import tensorflow as tf

    levels = _our_levels(model, reference["preprocessed"], extractor)
    pairs = {f"level {n}": (n, f"level_{n}") for n in "23456"}
    pairs["level 5"] = (("5", "box_classifier") if "box_classifier" in reference
                        else ("5", "level_5"))
    pairs["expansion"] = ("expansion", "expansion")
    errors, scales = {}, {}
    for name, (ours, theirs) in pairs.items():
        if theirs in reference and ours in levels:
            if levels[ours].shape != reference[theirs].shape:
                errors[name] = f"shape {levels[ours].shape} != {reference[theirs].shape}"
            else:
                errors[name] = relative(levels[ours], reference[theirs])
                scales[name] = [float(np.abs(levels[ours]).max()),
                                float(np.abs(reference[theirs]).max())]
    if fpn_odapi:
        maps = model.decoder(model.backbone(tf.constant(reference["preprocessed"]),
                                            training=False), training=False)
        for i, level in enumerate(sorted(maps, key=int)):
            theirs = reference.get(f"feature_map_{i}")
            name = f"FPN {level}"
            if theirs is None:
                errors[name] = "the OD API has no such map"
            elif maps[level].shape != theirs.shape:
                errors[name] = f"shape {tuple(maps[level].shape)} != {theirs.shape}"
            else:
                errors[name] = relative(maps[level].numpy(), theirs)
                scales[name] = [float(np.abs(maps[level].numpy()).max()),
                                float(np.abs(theirs).max())]
        if f"feature_map_{len(maps)}" in reference:
            errors["FPN"] = f"the OD API has {len(maps)}+ maps, ours {len(maps)}"
    return errors, scales


def _head_outputs(model, inputs: np.ndarray, anchors: int) -> tuple[np.ndarray, np.ndarray]:
    """Our head's box and class outputs on `inputs`, flattened as the OD API's:
    [1, N, 4] and [1, N, num_classes + 1], levels in order, each level's
    [1, H, W, anchors x width] row by row, a location's anchors in our order."""
    import tensorflow as tf

    features = model.decoder(model.backbone(tf.constant(inputs), training=False),
                             training=False)
    scores, boxes, _ = model.head(features, training=False)
    levels = sorted(scores, key=int)
    width = scores[levels[0]].shape[-1] // anchors
    return (np.concatenate([boxes[lv].numpy().reshape(1, -1, 4) for lv in levels], 1),
            np.concatenate([scores[lv].numpy().reshape(1, -1, width) for lv in levels], 1))


def _compare_head(model, model_config, reference: dict, size: int) -> dict[str, float | str]:
    """{name: relative difference} of our head's box and class outputs from the OD
    API's (its anchors in our order), and of our anchors from its."""
    import tensorflow as tf

    from train_lib.families.anchors import batch_anchors
    from train_lib.training.odapi_checkpoint import box_predictor

    scales, ratios = model_config.anchor.num_scales, len(model_config.anchor.aspect_ratios)
    boxes, classes = _head_outputs(model, reference["preprocessed"], scales * ratios)
    errors = {}
    for name, ours, key in (("box outputs", boxes, "box_encodings"),
                            ("class outputs", classes, "class_predictions_with_background")):
        theirs = box_predictor.rows_in_our_order(reference[key], scales, ratios)
        errors[name] = (relative(ours, theirs) if ours.shape == theirs.shape
                        else f"shape {ours.shape} != {theirs.shape}")
    ours = batch_anchors(model, tf.zeros([1, size, size, 3]))
    flat = np.concatenate([ours[lv].numpy().reshape(-1, 4) for lv in sorted(ours, key=int)])
    theirs = box_predictor.rows_in_our_order(reference["anchors"][None], scales, ratios)[0]
    errors["anchors"] = (float(np.abs(flat / size - theirs).max())
                         if flat.shape == theirs.shape
                         else f"shape {flat.shape} != {theirs.shape}")
    return errors


def our_side(config_path: str, out_dir: str, size: int, kind: str = "detection") -> None:
    """Maps the config, builds ours at `size`, fine-tunes it from out_dir's checkpoint
    (`kind`: detection, or full, which also compares the head's outputs) and writes
    out_dir/ours.json."""
    sys.path.insert(0, HERE)
    import model_parity

    from train_lib import families
    from train_lib.config import config_from_dict
    from train_lib.training import fine_tune

    with open(os.path.join(out_dir, "odapi.json")) as f:
        odapi = json.load(f)
    section, _ = model_parity.map_config(config_path)
    model_config = config_from_dict({"model": section}).model
    model_config.input_size = [size, size]
    model = families.build_model(model_config)
    with np.load(os.path.join(out_dir, "features.npz")) as arrays:
        reference = {key: arrays[key] for key in arrays.files}
    fpn_odapi = model_config.fpn.type == "odapi" and model.decoder is not None
    fresh, fresh_scales = _compare(model, reference, odapi["extractor"], fpn_odapi)
    if kind == "full":
        fresh.update(_compare_head(model, model_config, reference, size))
    started = time.time()
    result = fine_tune.apply(model, odapi["prefix"], kind)
    seconds = time.time() - started
    loaded, scales = _compare(model, reference, odapi["extractor"], fpn_odapi)
    if kind == "full":
        loaded.update(_compare_head(model, model_config, reference, size))
    parts = [row["part"] for row in result.report["loaded"]]
    summary = {"backbone": model_config.backbone.type, "fpn": model_config.fpn.type,
               "kind": kind, "loaded_backbone": parts.count("backbone"),
               "loaded_fpn": parts.count("fpn"), "loaded_head": parts.count("head"),
               "head_variables": len(model.head.variables),
               "loaded": len(parts), "fresh": len(result.report["fresh"]),
               "model_variables": len(model.variables),
               "backbone_variables": len(model.backbone.variables),
               "fpn_variables": len(model.decoder.variables) if model.decoder else 0,
               "load_seconds": seconds, "line": result.line,
               "errors": loaded, "fresh_errors": fresh,
               # {name: [max |ours| loaded, max |ours| fresh, max |theirs|]}
               "magnitudes": {name: [scales[name][0], fresh_scales[name][0], scales[name][1]]
                              for name in scales if name in fresh_scales}}
    with open(os.path.join(out_dir, "ours.json"), "w") as f:
        json.dump(summary, f, indent=1)


# ---------------------------------------------------------------- the driver


def _run(command: list[str], env: dict, log_path: str) -> None:
    with open(log_path, "w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        with open(log_path) as f:
            tail = f.read().splitlines()[-25:]
        raise RuntimeError(f"{' '.join(command[:3])} ... failed ({done.returncode}); "
                           f"the end of {log_path}:\n" + "\n".join(tail))


def _format(value) -> str:
    return f"{value:.1e}" if isinstance(value, float) else str(value)


def full_head(config_path: str) -> bool:
    """Whether --kind full measures the config: an SSD with the OD API's weight-shared
    box predictor over an FPN of ours that computes its FPN (not EfficientDet: our FPN
    is not its BiFPN, so our head reads other maps)."""
    with open(config_path) as f:
        text = f.read()
    return "weight_shared_convolutional_box_predictor" in text and "_bifpn_" not in text


def measure(name: str, path: str, args) -> dict:
    out_dir = os.path.join(args.work_dir, name.removesuffix(".config"))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    script = os.path.abspath(__file__)
    research = args.odapi_research
    odapi_env = {**os.environ, "TF_USE_LEGACY_KERAS": "1",
                 "PYTHONPATH": os.pathsep.join([research, os.path.join(research, "slim")]),
                 "TF_CPP_MIN_LOG_LEVEL": "2"}
    ours_env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    ours_env.pop("TF_USE_LEGACY_KERAS", None)
    common = [f"--config={path}", f"--out={out_dir}", f"--size={args.size}",
              f"--kind={args.kind}"]
    started = time.time()
    _run([args.odapi_python, script, "--side=odapi", *common], odapi_env,
         os.path.join(out_dir, "odapi.log"))
    _run([sys.executable, script, "--side=ours", *common], ours_env,
         os.path.join(out_dir, "ours.log"))
    with open(os.path.join(out_dir, "odapi.json")) as f:
        odapi = json.load(f)
    with open(os.path.join(out_dir, "ours.json")) as f:
        ours = json.load(f)
    if not args.keep:
        shutil.rmtree(os.path.join(out_dir, "checkpoint"))
    return {"config": name, "odapi": odapi, "ours": ours, "seconds": time.time() - started}


def report(row: dict) -> str:
    odapi, ours = row["odapi"], row["ours"]
    lines = [f"{row['config']}: {odapi['extractor']}, num_classes {odapi['num_classes']}, "
             f"{odapi['variables']} variables ({odapi['parameters'] / 1e6:.2f}M parameters, "
             f"{odapi['checkpoint_bytes'] / 2**20:.0f} MiB) in the OD API's ckpt-0",
             f"  ours ({ours['backbone']}, fpn {ours['fpn']}): loaded {ours['loaded_backbone']}"
             f"/{ours['backbone_variables']} backbone + {ours['loaded_fpn']}/"
             f"{ours['fpn_variables']} FPN"
             + (f" + {ours['loaded_head']}/{ours['head_variables']} head"
                if ours.get("kind") == "full" else "")
             + f" variables, {ours['fresh']} fresh of "
             f"{ours['model_variables']}; load {ours['load_seconds']:.1f} s",
             f"  {ours['line']}"]
    for key, value in ours["errors"].items():
        fresh = ours["fresh_errors"].get(key)
        flag = "" if isinstance(value, float) and value <= TOLERANCE else "  <-- OVER"
        if key == "anchors":  # absolute, in normalized coordinates
            flag = "" if isinstance(value, float) and value <= 1e-5 else "  <-- OVER"
        lines.append(f"  {key}: {_format(value)} (fresh {_format(fresh)}){flag}")
    return "\n".join(lines)


def _largest(errors: dict, prefixes: tuple[str, ...]) -> str:
    """The largest relative difference of `errors`' entries named with one of
    `prefixes`, or what kept one from being compared."""
    values = [value for key, value in errors.items() if key.startswith(prefixes)]
    if not values:
        return "-"
    if not all(isinstance(value, float) for value in values):
        return "; ".join(str(value) for value in values if not isinstance(value, float))
    return _format(max(values))


def table(results: dict) -> str:
    """The results as a Markdown table: per config, the OD API's checkpoint, what
    loaded, the load's seconds, and the largest relative difference over our backbone
    levels and over our FPN maps, after the load (fresh in brackets); with --kind full
    also over our head's box and class outputs, and our anchors' largest absolute
    difference (normalized coordinates)."""
    full = any(row.get("ours", {}).get("kind") == "full" for row in results.values())
    head = ("box outputs", "class outputs", "anchors") if full else ()
    header = ["config", "OD API extractor", "its ckpt-0",
              "loaded: backbone, FPN" + (", head" if full else ""), "fresh", "load s",
              "backbone levels", "FPN maps", *head]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, row in sorted(results.items()):
        short = name.removesuffix(".config")
        if "failed" in row:
            lines.append(f"| {short} | failed: {row['failed'].splitlines()[0]} |"
                         + " |" * (len(header) - 2))
            continue
        odapi, ours = row["odapi"], row["ours"]
        fpn = (f"{ours['loaded_fpn']}/{ours['fpn_variables']}" if ours["fpn"] == "odapi"
               else f"- (fpn.type {ours['fpn']})")
        if full:
            fpn += f", {ours.get('loaded_head', 0)}/{ours.get('head_variables', '?')}"
        cells = [short, f"`{odapi['extractor']}`",
                 f"{odapi['variables']} variables, {odapi['parameters'] / 1e6:.1f}M, "
                 f"{odapi['checkpoint_bytes'] / 2**20:.0f} MiB",
                 f"{ours['loaded_backbone']}/{ours['backbone_variables']}, {fpn}",
                 f"{ours['fresh']}/{ours['model_variables']}", f"{ours['load_seconds']:.1f}"]
        for prefixes in (("level", "expansion"), ("FPN",), *((name,) for name in head)):
            after = _largest(ours["errors"], prefixes)
            before = _largest(ours["fresh_errors"], prefixes)
            cells.append(after if after == "-" else f"{after} ({before})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("driver", "odapi", "ours"), default="driver")
    parser.add_argument("--configs_dir", default=os.path.join(
        os.environ.get("ODAPI_RESEARCH", ""), "object_detection", "configs", "tf2"))
    parser.add_argument("--only", nargs="*", default=[],
                        help="config file names (or their beginnings) to measure")
    parser.add_argument("--work_dir", default="/tmp/full_width_loads")
    parser.add_argument("--size", type=int, default=256, help="the input's side, px")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints")
    parser.add_argument("--kind", choices=("detection", "full"), default="detection",
                        help="the fine-tune: detection (backbone, FPN) or full (the box "
                             "predictor too; only the configs FULL_HEAD selects)")
    parser.add_argument("--odapi_python", default=os.environ.get("ODAPI_PY", ""))
    parser.add_argument("--odapi_research", default=os.environ.get("ODAPI_RESEARCH", ""))
    parser.add_argument("--config", help="(the sides) the pipeline.config")
    parser.add_argument("--out", help="(the sides) the config's directory")
    args = parser.parse_args(argv)
    if args.side == "odapi":
        odapi_side(args.config, args.out, args.size, args.kind)
        return 0
    if args.side == "ours":
        our_side(args.config, args.out, args.size, args.kind)
        return 0
    if not (args.odapi_python and args.odapi_research):
        print("The OD API is absent (--odapi_python, --odapi_research): nothing measured.")
        return 0
    sys.path.insert(0, HERE)
    import model_parity

    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(args.configs_dir,
                                                                       "*.config")))
    names = [n for n in names if n.startswith(("ssd_", "faster_rcnn_"))]
    if args.only:
        names = [n for n in names if n.startswith(tuple(args.only))]
    if args.kind == "full":
        names = [n for n in names if full_head(os.path.join(args.configs_dir, n))]
    os.makedirs(args.work_dir, exist_ok=True)
    results_path = os.path.join(args.work_dir, "results.json")
    results = {}
    if os.path.exists(results_path):
        with open(results_path) as f:
            results = json.load(f)
    for name in names:
        path = os.path.join(args.configs_dir, name)
        section, why = model_parity.map_config(path)
        if section is None:
            print(f"{name}: refused by our mapper ({why}); skipped", flush=True)
            continue
        try:
            row = measure(name, path, args)
        except RuntimeError as err:
            print(f"{name}: FAILED\n{err}", flush=True)
            results[name] = {"config": name, "failed": str(err)}
        else:
            print(report(row), f"  ({row['seconds']:.0f} s in all)", sep="\n", flush=True)
            results[name] = row
        with open(results_path, "w") as f:
            json.dump(results, f, indent=1)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
