"""The model parity table (docs/odapi_parity.md) still says what our code builds.

tests/fixtures/odapi/model_parity.json was written by scripts/odapi_parity/
model_parity.py: for each published TF2 config, the OD API's model (built by its own
model_builder) and ours, and the `model` section our mapper made of the config. Here,
without the OD API and without the published configs, our side is rebuilt from
those sections and must give the committed parameters per part and anchors; the
page's table must be the one the file gives. Where our model computes the OD API's
parts exactly (the MobileNetV2 backbone, the shared prediction tower), the committed
counts must be equal. A change that moves any figure fails here until the script is
run again (see its docstring) and the new table committed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os

import numpy as np
import pytest

from tests.conftest import REPO
from train_lib.config import config_from_dict

FIXTURE = os.path.join(REPO, "tests", "fixtures", "odapi", "model_parity.json")
DOC = os.path.join(REPO, "docs", "odapi_parity.md")
_spec = importlib.util.spec_from_file_location(
    "model_parity", os.path.join(REPO, "scripts", "odapi_parity", "model_parity.py"))
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)

with open(FIXTURE, encoding="utf-8") as _f:
    RESULTS = json.load(_f)
MAPPED = sorted(name for name, entry in RESULTS.items() if "model" in entry)


def test_every_mapped_config_has_both_sides():
    assert len(MAPPED) >= 15
    for name in MAPPED:
        assert RESULTS[name]["ours"] and RESULTS[name]["odapi"], name
    refused = [name for name, entry in RESULTS.items() if entry.get("refused")]
    assert all("odapi" not in RESULTS[name] for name in refused)


@functools.cache
def _built(section: str) -> tuple[dict, float]:
    """Our model of a model section (JSON) built at a small input size: its parameters
    per part and its initial L2 loss. Neither depends on the input size (the initial
    weights are seeded), so sections that differ only in it (a config's 320 and 640 or
    640 and 1024 px versions, EfficientDet D6 and D7) are built once."""
    model_section = json.loads(section)
    small = [max(2 ** model_section["max_level"], 128)] * 2
    model, net = parity.our_model(model_section, small)
    return parity.our_parameters(model, net), parity.l2_loss(net.losses)


@pytest.mark.parametrize("name", MAPPED)
def test_our_side_is_what_our_code_builds(name):
    entry = RESULTS[name]
    section = {key: value for key, value in entry["model"].items() if key != "input_size"}
    parameters, l2 = _built(json.dumps(section, sort_keys=True))
    assert parameters == entry["ours"]["parameters"]
    assert l2 == pytest.approx(entry["ours"]["initial_l2"], rel=1e-4)
    model = config_from_dict({"model": entry["model"]}).model
    model.input_size = entry["ours"]["input_size"]
    anchors = parity.our_anchors(model)
    for ours, committed in zip(anchors, entry["ours"]["anchors"], strict=True):
        assert (ours["grid"], ours["per_cell"], ours["count"]) == (
            committed["grid"], committed["per_cell"], committed["count"])
        assert parity.anchor_difference(ours, committed) <= 2e-6  # stored to 6 decimals
    dense = entry["ours"]["outputs"].get("box_encodings") or \
        entry["ours"]["outputs"]["rpn_box_encodings"]
    assert dense[1] == sum(level["count"] for level in anchors)


def test_the_page_shows_the_committed_table():
    with open(DOC, encoding="utf-8") as f:
        assert parity.markdown(RESULTS) in f.read()


# The configs whose models are the OD API's part for part: its backbone, its FPN
# (model.fpn.type: odapi) and its weight-shared predictor (one tower, or two without
# tower biases: model.head.tower_conv_bias false).
EXACT_MODELS = [f"{name}.config" for name in (
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8",
    "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8",
    "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8",
    "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8", "ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8",
    "ssd_resnet101_v1_fpn_640x640_coco17_tpu-8",
    "ssd_resnet101_v1_fpn_1024x1024_coco17_tpu-8",
    "ssd_resnet152_v1_fpn_640x640_coco17_tpu-8",
    "ssd_resnet152_v1_fpn_1024x1024_coco17_tpu-8")]


@pytest.mark.parametrize("name", EXACT_MODELS)
def test_exact_parts_have_the_odapi_parameter_counts(name):
    """The same counts per part and in all, trainable and all, and the input size."""
    entry = RESULTS[name]
    assert entry["model"]["fpn"]["type"] == "odapi"
    assert entry["model"]["head"]["tower_conv_bias"] is False
    assert entry["ours"]["parameters"] == entry["odapi"]["parameters"]  # by part
    assert entry["ours"]["input_size"] == entry["odapi"]["input_size"]


# The configs whose parts all start from the OD API's initializers under the OD API's
# L2 weights (model.initializers; docs/odapi_parity.md says why the others differ). Not
# ssd_mobilenet_v2_320x320: its neck and head are other layers than the OD API's (an
# FPN and 3x3 towers for SSD's extra layers and 1x1 predictors, 41% more head
# parameters), whose L2 loss differs with their size (1.06x the OD API's in all).
SAME_L2 = [f"{name}.config" for name in (
    "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8", "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8",
    "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8", "ssd_resnet101_v1_fpn_640x640_coco17_tpu-8",
    "ssd_resnet152_v1_fpn_640x640_coco17_tpu-8",
    # each part with the OD API's L2 weight (model.loss.l2_weight_decay_by_part)
    "ssd_efficientdet_d0_512x512_coco17_tpu-8",
    "faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8")]


@pytest.mark.parametrize("name", SAME_L2)
def test_the_initial_l2_loss_is_the_odapis(name):
    """Each model's L2 loss as built (the sum of its regularised kernels' squares times
    the L2 weight, both drawn from the same distributions): within 1%."""
    ours, theirs = (RESULTS[name][side]["initial_l2"] for side in ("ours", "odapi"))
    assert theirs > 0 and abs(ours / theirs - 1) < 0.01, (ours, theirs)


def test_the_ssd_mobilenet_v2_l2_loss_is_larger_by_its_larger_head_only():
    """Its backbone is the OD API's; its neck and head are other, larger layers (41%
    more head parameters): its initial L2 loss is above the OD API's, by less than 8%."""
    entry = RESULTS["ssd_mobilenet_v2_320x320_coco17_tpu-8.config"]
    ratio = entry["ours"]["initial_l2"] / entry["odapi"]["initial_l2"]
    assert 1.0 < ratio < 1.08, ratio


def test_the_anchor_comparison_finds_a_difference():
    """anchor_difference pairs each cell's anchors by shape and sees a shifted grid."""
    boxes = np.zeros([2, 3, 2, 4])
    for y in range(2):
        for x in range(3):
            for a, (h, w) in enumerate(((0.2, 0.1), (0.1, 0.2))):
                cy, cx = (y + 0.5) / 2, (x + 0.5) / 3
                boxes[y, x, a] = [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]
    sample = parity.grid_sample(boxes)
    assert parity.is_regular(boxes)
    swapped = parity.grid_sample(boxes[:, :, ::-1])  # another order in each cell
    assert parity.anchor_difference(sample, swapped) == 0.0
    shifted = parity.grid_sample(boxes + np.array([0.0, 0.05, 0.0, 0.05]))
    assert parity.anchor_difference(sample, shifted) == pytest.approx(0.05)
    assert parity.anchor_difference(sample, parity.grid_sample(boxes[:1])) is None


_PUBLISHED = os.path.join(os.path.dirname(REPO), "shared", "fixtures", "odapi")
# The repository's own config in the published SSD configs' shape (tests/fixtures/
# odapi/), with the section our mapper made of it: the check runs in any clone.
SAMPLE = os.path.join(REPO, "tests", "fixtures", "odapi", "ssd_mobilenet_v2_shapes.config")
SAMPLE_SECTION = os.path.join(REPO, "tests", "fixtures", "odapi",
                              "ssd_mobilenet_v2_shapes.model.json")


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _committed(path: str) -> dict:
    """{"sha256", "model"} committed for the config at `path`."""
    if path == SAMPLE:
        with open(SAMPLE_SECTION, encoding="utf-8") as f:
            return json.load(f)
    return RESULTS[os.path.basename(path)]


@pytest.mark.parametrize("path", [SAMPLE] + [
    os.path.join(_PUBLISHED, n) for n in MAPPED if os.path.isfile(os.path.join(_PUBLISHED, n))],
    ids=os.path.basename)
def test_our_mapper_still_makes_the_committed_model_section(path):
    """Our mapper still maps the in-repository sample, and each published config that is
    beside the repository (not in a clone), to its committed section (the same file:
    its sha256), both read with the schema's defaults for keys the committed section
    lacks (a new key the mapper leaves at its default changes nothing). A change of
    the mapping fails here until the sections are written again: the sample's by
    `.venv/bin/python -m tests.test_model_parity`, the published ones by
    scripts/odapi_parity/model_parity.py."""
    committed = _committed(path)
    assert _sha256(path) == committed["sha256"]
    section, _ = parity.map_config(path)
    assert _with_defaults(section) == _with_defaults(committed["model"])


def _with_defaults(section: dict) -> dict:
    """A `model` section as the schema reads it: every key, defaults where unset."""
    from train_lib.config import config_from_dict
    from train_lib.config.schema import to_dict

    return to_dict(config_from_dict({"model": section}))["model"]


def test_a_changed_mapping_fails_the_comparison():
    """What the mapper test compares: an unset key is its default, another value differs."""
    with open(SAMPLE_SECTION, encoding="utf-8") as f:
        section = json.load(f)["model"]
    unset = {k: v for k, v in section.items() if k != "post_processing"}
    assert _with_defaults(unset)["post_processing"] == _with_defaults({})["post_processing"]
    changed = {**section, "num_classes": section["num_classes"] + 1}
    assert _with_defaults(changed) != _with_defaults(section)


if __name__ == "__main__":  # writes SAMPLE_SECTION from the mapper as it is now
    with open(SAMPLE_SECTION, "w", encoding="utf-8") as _out:
        json.dump({"sha256": _sha256(SAMPLE), "model": parity.map_config(SAMPLE)[0]}, _out,
                  indent=1, sort_keys=True)
        _out.write("\n")
