r"""The OD API's model and ours, built from the same published pipeline.config, compared.

For each published TF2 config (a directory of them: research/object_detection/
configs/tf2/ of tensorflow/models; the SSD and Faster R-CNN ones), both sides record:
parameters per part (backbone, neck: FPN / BiFPN / SSD's extra layers, RPN head,
heads), anchors per level (in normalised coordinates) and output shapes. It runs
once per side, into one JSON file; ours first (it records which configs our mapper
refuses, which the OD API's side then skips):

    # ours, with this project's environment:
    python scripts/odapi_parity/model_parity.py --side=ours --configs_dir=CONFIGS
    # the OD API's side, in an environment where it imports (never the project's):
    TF_USE_LEGACY_KERAS=1 python scripts/odapi_parity/model_parity.py --side=odapi \
        --configs_dir=CONFIGS

The file is tests/fixtures/odapi/model_parity.json (--output); either run rewrites
the table of docs/odapi_parity.md (--doc) from it. Each side imports only its own
code: the OD API's side never imports train_lib, ours never the OD API.

Anchors of a level are a regular grid on both sides (checked): every anchor of a
cell has its row's y and its column's x coordinates, so a level is stored as the
anchors of its first row and first column of cells, and compared anchor by anchor
(each cell's anchors paired in order of height and width) when both grids agree.

Our side also stores the `model` section our mapper made of each config (our keys),
so tests/test_model_parity.py rebuilds our models from the file alone and checks
the committed figures, without the published configs or the OD API.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys

import numpy as np

# The configs' paths the OD API's model fields read but a build ignores.
_UNUSED_PATHS = ("train_config.fine_tune_checkpoint", "train_input_reader.label_map_path",
                 "train_input_reader.input_path", "eval_input_reader.label_map_path",
                 "eval_input_reader.input_path")
PARTS = ("backbone", "neck", "rpn_head", "heads")
# Both sides build their models from this seed (the initial weights, and so the L2 loss).
SEED = 0


def l2_loss(losses) -> float:
    """The sum of a model's regularization losses (its L2 loss), as a float."""
    return float(sum(float(loss) for loss in losses))


def _count(variables, trainable_only: bool) -> int:
    seen, total = set(), 0
    for v in variables:
        if id(v) in seen or (trainable_only and not v.trainable):
            continue
        seen.add(id(v))
        total += int(np.prod(v.shape.as_list()))
    return total


def _part_counts(parts: dict[str, list]) -> dict[str, dict[str, int]]:
    """{part: {"trainable": n, "all": n}} of each part's variables (deduplicated)."""
    return {name: {"trainable": _count(vs, True), "all": _count(vs, False)}
            for name, vs in parts.items()}


def _minus(variables, others) -> list:
    excluded = {id(v) for v in others}
    return [v for v in variables if id(v) not in excluded]


def grid_sample(boxes: np.ndarray) -> dict:
    """A level's anchors [H, W, A, 4] (normalised ymin, xmin, ymax, xmax) as what fixes
    a regular grid: the y coordinates of the first column of cells (`ys` [H, A, 2]), the
    x coordinates of the first row (`xs` [W, A, 2]), to 6 decimals, and the grid.
    `expand_grid` gives every anchor back."""
    height, width, per_cell, _ = boxes.shape
    return {"grid": [int(height), int(width)], "per_cell": int(per_cell),
            "count": int(height * width * per_cell),
            "ys": np.round(boxes[:, 0, :, 0::2], 6).tolist(),
            "xs": np.round(boxes[0, :, :, 1::2], 6).tolist()}


def expand_grid(sample: dict) -> np.ndarray:
    """Every anchor [H, W, A, 4] of a regular grid from `grid_sample`: a cell's y
    coordinates are its row's, its x coordinates its column's."""
    ys, xs = np.asarray(sample["ys"]), np.asarray(sample["xs"])
    height, width = sample["grid"]
    boxes = np.empty([height, width, sample["per_cell"], 4])
    boxes[..., 0::2] = ys[:, None]
    boxes[..., 1::2] = xs[None, :]
    return boxes


def is_regular(boxes: np.ndarray) -> bool:
    """Whether every anchor [H, W, A, 4] has its row's y and its column's x coordinates
    (so that `grid_sample` loses nothing)."""
    return bool(np.allclose(expand_grid(grid_sample(boxes)), boxes, atol=2e-6))


def anchor_difference(ours: dict, theirs: dict) -> float | None:
    """The largest coordinate difference between two levels' anchors (normalised), each
    cell's anchors paired in order of (height, width); None when the grids differ."""
    if ours["grid"] != theirs["grid"] or ours["per_cell"] != theirs["per_cell"]:
        return None
    a, b = expand_grid(ours), expand_grid(theirs)

    def by_shape(boxes: np.ndarray) -> np.ndarray:
        sizes = np.round(boxes[..., 2:] - boxes[..., :2], 6)
        order = np.lexsort((sizes[..., 1], sizes[..., 0]), axis=-1)
        return np.take_along_axis(boxes, order[..., None], axis=2)

    return float(np.max(np.abs(by_shape(a) - by_shape(b))))


# ---------------------------------------------------------------- the OD API's side


def odapi_side(path: str) -> dict:
    """The OD API's model of the config at `path`, built by its model_builder (eval
    mode), run once on zeros of its input size."""
    import tensorflow as tf
    from object_detection.builders import model_builder
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(path)
    tf.keras.utils.set_random_seed(SEED)
    model = model_builder.build(configs["model"], is_training=False)
    meta = configs["model"].WhichOneof("model")
    resizer = getattr(configs["model"], meta).image_resizer
    if resizer.WhichOneof("image_resizer_oneof") == "fixed_shape_resizer":
        size = [resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width]
    else:
        size = [resizer.keep_aspect_ratio_resizer.max_dimension] * 2
    images, shapes = model.preprocess(tf.zeros([1, *size, 3]))
    prediction = model.predict(images, shapes)
    extractor = model._feature_extractor
    backbone = extractor.classification_backbone.variables
    if meta == "ssd":
        parts = {"backbone": backbone, "neck": _minus(extractor.variables, backbone),
                 "rpn_head": [], "heads": model._box_predictor.variables}
        levels = [tuple(f.shape[1:3]) for f in prediction["feature_maps"]]
        anchor_lists = model._anchor_generator.generate(levels, im_height=size[0],
                                                        im_width=size[1])
        normalise = np.ones(4)  # SSD's generators give normalised anchors
        outputs = {"box_encodings": prediction["box_encodings"].shape.as_list(),
                   "class_predictions": prediction["class_predictions_with_background"]
                   .shape.as_list()}
    else:
        proposal = model._feature_extractor_for_proposal_features.variables
        classifier = model._feature_extractor_for_box_classifier_features.variables
        parts = {"backbone": backbone, "neck": _minus(proposal, backbone),
                 "rpn_head": [*model._first_stage_box_predictor_first_conv.variables,
                              *model._first_stage_box_predictor.variables],
                 "heads": [*_minus(classifier, backbone),
                           *model._mask_rcnn_box_predictor.variables]}
        maps = prediction["rpn_features_to_crop"]
        maps = maps if isinstance(maps, list) else [maps]
        levels = [tuple(f.shape[1:3]) for f in maps]
        anchor_lists = model._first_stage_anchor_generator.generate(levels)
        normalise = np.array([size[0], size[1], size[0], size[1]], dtype=np.float64)
        outputs = {
            "rpn_box_encodings": prediction["rpn_box_encodings"].shape.as_list(),
            "rpn_objectness": prediction["rpn_objectness_predictions_with_background"]
            .shape.as_list(),
            "refined_box_encodings": prediction["refined_box_encodings"].shape.as_list(),
            "class_predictions": prediction["class_predictions_with_background"]
            .shape.as_list()}
    anchors = []
    for (height, width), boxes in zip(levels, anchor_lists, strict=True):
        corners = boxes.get().numpy().astype(np.float64) / normalise
        per_cell = corners.shape[0] // (height * width)
        grid = corners.reshape([height, width, per_cell, 4])
        if not is_regular(grid):
            raise SystemExit(f"{path}: the OD API's anchors are not a regular grid")
        anchors.append(grid_sample(grid))
    return {"meta_architecture": meta, "input_size": size, "parameters": _part_counts(parts),
            "anchors": anchors, "outputs": outputs,
            "initial_l2": l2_loss(model.regularization_losses())}


# ---------------------------------------------------------------- our side


def map_config(path: str) -> tuple[dict | None, str]:
    """Our `model` section of the config at `path` (plain data) and the number of its
    approximated fields, or (None, the one-line reason it is refused)."""
    from train_lib.config import ConfigError, load_config
    from train_lib.config.loading import _read_config_text
    from train_lib.config.odapi import map_pipeline_config
    from train_lib.config.schema import to_dict

    try:
        notes = map_pipeline_config(_read_config_text(path), path).approximations
        config = load_config(path, unused_keys=_UNUSED_PATHS)
    except ConfigError as err:
        lines = [line.strip(" -") for line in str(err).splitlines()[1:]] or [str(err)]
        reasons = sorted({line.split(": ", 1)[-1] for line in lines})
        return None, "; ".join(reasons)
    return to_dict(config)["model"], str(len(notes))


def our_model(model_section: dict, input_size: list[int] | None = None):
    """Our ModelConfig of `model_section` (our keys), at `input_size` if given (the
    parameters do not depend on it), and the model built from it."""
    import tf_keras

    from train_lib import families
    from train_lib.config import config_from_dict

    model = config_from_dict({"model": model_section}).model
    if input_size is not None:
        model.input_size = list(input_size)
    tf_keras.utils.set_random_seed(SEED)
    return model, families.build_model(model)


def our_parameters(model, net) -> dict[str, dict[str, int]]:
    """Our model's parameters per part (PARTS)."""
    if model.architecture == "retinanet":
        parts = {"backbone": net.backbone.variables, "neck": net.decoder.variables,
                 "rpn_head": [], "heads": net.head.variables}
    else:
        parts = {"backbone": net.backbone.variables,
                 "neck": net.decoder.variables if net.decoder else [],
                 "rpn_head": net.rpn_head.variables, "heads": net.detection_head.variables}
    return _part_counts(parts)


def our_anchors(model) -> list[dict]:
    """Our anchors per level (`grid_sample`s), normalised by our input size."""
    from official.vision.ops import anchor

    height, width = model.input_size
    levels = anchor.Anchor(min_level=model.min_level, max_level=model.max_level,
                           num_scales=model.anchor.num_scales,
                           aspect_ratios=list(model.anchor.aspect_ratios),
                           anchor_size=model.anchor.anchor_size,
                           image_size=(height, width)).multilevel_boxes
    scale = np.array([height, width, height, width], dtype=np.float64)
    anchors = []
    for boxes in levels.values():
        array = boxes.numpy().astype(np.float64)
        grid = array.reshape([array.shape[0], array.shape[1], -1, 4]) / scale
        assert is_regular(grid)
        anchors.append(grid_sample(grid))
    return anchors


def ours_side(model_section: dict) -> dict:
    """Our model of `model_section` (our keys), built as training builds it, run once
    on zeros of its input size."""
    import tensorflow as tf

    model, net = our_model(model_section)
    height, width = model.input_size
    columns = model.num_classes + 1
    if model.architecture == "retinanet":
        out = net(tf.zeros([1, height, width, 3]), training=True)
        num = sum(int(np.prod(v.shape[1:3])) * v.shape[3] for v in out["cls_outputs"].values())
        outputs = {"box_encodings": [1, num // columns, 4],
                   "class_predictions": [1, num // columns, columns]}
    else:
        features = net.backbone(tf.zeros([1, height, width, 3]))
        if net.decoder:
            features = net.decoder(features)
        scores, boxes = net.rpn_head(features)
        anchors_total = sum(int(np.prod(v.shape[1:3])) * v.shape[3] for v in boxes.values()) // 4
        per_anchor = sum(int(np.prod(v.shape[1:])) for v in scores.values()) // anchors_total
        proposals = model.proposals.test_num_proposals
        box_columns = 4 if model.detection_head.class_agnostic_bbox_pred else 4 * columns
        outputs = {"rpn_box_encodings": [1, anchors_total, 4],
                   "rpn_objectness": [1, anchors_total, per_anchor],
                   "refined_box_encodings": [proposals, box_columns // 4, 4],
                   "class_predictions": [proposals, columns]}
    anchors = our_anchors(model)
    dense = outputs["box_encodings" if "box_encodings" in outputs else "rpn_box_encodings"]
    assert dense[1] == sum(level["count"] for level in anchors), "outputs and anchors differ"
    return {"meta_architecture": model.architecture, "input_size": [height, width],
            "parameters": our_parameters(model, net), "anchors": anchors, "outputs": outputs,
            "initial_l2": l2_loss(net.losses)}


def summary(entry: dict) -> dict:
    """What the table shows of one config, computed from both sides as stored."""
    ours, theirs = entry.get("ours"), entry.get("odapi")
    if ours is None or theirs is None:
        return {}
    levels = []
    for i in range(max(len(ours["anchors"]), len(theirs["anchors"]))):
        a = ours["anchors"][i] if i < len(ours["anchors"]) else None
        b = theirs["anchors"][i] if i < len(theirs["anchors"]) else None
        levels.append({"ours": a and a["count"], "odapi": b and b["count"],
                       "difference": anchor_difference(a, b) if a and b else None})
    return {"levels": levels}


# ---------------------------------------------------------------- the table


def _thousands(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _ratio(ours: int, theirs: int) -> str:
    if ours == theirs:
        return f"{_thousands(ours)} (=)"
    if theirs == 0:
        return f"{_thousands(ours)} (OD API: 0)"
    return f"{_thousands(ours)} vs {_thousands(theirs)} ({100 * (ours - theirs) / theirs:+.0f}%)"


def markdown(results: dict) -> str:
    """The parity table of docs/odapi_parity.md: one row per config."""
    lines = ["| config | input (ours / OD API) | backbone | neck | RPN head | heads | total | "
             "anchors (ours / OD API) per level | largest anchor difference | "
             "class outputs (ours / OD API) | initial L2 loss (ours / OD API) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    refused = []
    for name, entry in sorted(results.items()):
        short = name.removesuffix(".config")
        if entry.get("refused"):
            refused.append(f"- `{short}`: {entry['refused']}")
            continue
        ours, theirs = entry.get("ours"), entry.get("odapi")
        if ours is None or theirs is None:
            continue  # one side not measured yet
        cells = [f"`{short}`", f"{ours['input_size'][0]} / {theirs['input_size'][0]}"]
        total = {side: sum(p["trainable"] for p in s["parameters"].values())
                 for side, s in (("ours", ours), ("odapi", theirs))}
        for part in PARTS:
            a, b = ours["parameters"][part]["trainable"], theirs["parameters"][part]["trainable"]
            cells.append("" if a == b == 0 else _ratio(a, b))
        cells.append(_ratio(total["ours"], total["odapi"]))
        levels = summary(entry)["levels"]
        cells.append(", ".join(
            str(level["ours"]) if level["ours"] == level["odapi"] else
            f"{level['ours'] or '-'}/{level['odapi'] or '-'}" for level in levels))
        differences = [level["difference"] for level in levels]
        cells.append(f"{max(differences):.2g}" if None not in differences else
                     "grids differ")
        key = "class_predictions"
        a, b = ours["outputs"][key], theirs["outputs"][key]
        cells.append(f"{a}" if a == b else f"{a} / {b}")
        a, b = ours.get("initial_l2"), theirs.get("initial_l2")
        cells.append("" if a is None or b is None else f"{a:.3g} / {b:.3g}" + (
            f" ({a / b:.2f}x)" if b else ""))
        lines.append("| " + " | ".join(cells) + " |")
    if refused:
        lines += ["", "Refused by our mapper (not compared):", "", *refused]
    return "\n".join(lines) + "\n"


def write_table(markdown_text: str, doc: str) -> None:
    """Replaces the table between the markers of `doc` with `markdown_text`."""
    begin, end = "<!-- model_parity table begin -->\n", "<!-- model_parity table end -->"
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(doc, "w", encoding="utf-8") as f:
        f.write(head + begin + markdown_text + end + tail)


def dumps(results: dict) -> str:
    """The JSON file's text: one line per config and side, so a regenerated file's diff
    says which changed."""
    lines = []
    for name in sorted(results):
        entry = results[name]
        fields = [f"  {json.dumps(key)}: {json.dumps(entry[key], sort_keys=True)}"
                  for key in sorted(entry)]
        lines.append(f" {json.dumps(name)}: {{\n" + ",\n".join(fields) + "\n }")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("odapi", "ours"), required=True)
    parser.add_argument("--configs_dir", required=True,
                        help="the published configs (configs/tf2/ of tensorflow/models)")
    parser.add_argument("--output", default="tests/fixtures/odapi/model_parity.json")
    parser.add_argument("--doc", default="docs/odapi_parity.md",
                        help="--side=ours: the page whose table is rewritten")
    parser.add_argument("--pattern", default="*.config")
    args = parser.parse_args(argv)
    results = {}
    if os.path.exists(args.output):
        with open(args.output, encoding="utf-8") as f:
            results = json.load(f)
    paths = sorted(glob.glob(os.path.join(args.configs_dir, args.pattern)))
    paths = [p for p in paths if os.path.basename(p).startswith(("ssd_", "faster_rcnn_"))]
    for path in paths:
        name = os.path.basename(path)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        entry = results.setdefault(name, {})
        entry["sha256"] = digest
        if args.side == "ours":
            section, note = map_config(path)
            for key in ("refused", "model", "approximated_fields", "ours"):
                entry.pop(key, None)
            if section is None:
                entry["refused"] = note
            else:
                entry.update(model=section, approximated_fields=int(note),
                             ours=ours_side(section))
        elif "refused" not in entry:
            entry["odapi"] = odapi_side(path)
        print(f"{name}: done", file=sys.stderr, flush=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(dumps(results))
    if os.path.exists(args.doc):
        write_table(markdown(results), args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
