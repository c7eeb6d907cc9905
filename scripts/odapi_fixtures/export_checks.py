"""What an exported SavedModel's serving signature and one call of it show:
make_export_signature.py records it of the OD API's exporter
(tests/fixtures/odapi/export_signature.json) and tests/test_export_parity.py
computes it of ours with these same functions, so the two compare like with like.

Pure numpy (a SavedModel and its outputs are only read through their attributes
and as arrays): both the OD API's environment and the project's import it, as
they do seeded_weights.py.
"""

from __future__ import annotations

import numpy as np


def spec_of(tensor_spec) -> dict:
    """A tensor's or TensorSpec's dtype name and static shape (None where open)."""
    return {"dtype": tensor_spec.dtype.name, "shape": tensor_spec.shape.as_list()}


def signature_of(saved_model) -> dict:
    """serving_default's inputs and outputs of a loaded SavedModel, by name, each as
    `spec_of`; its inputs are keyword arguments only (an AssertionError if not)."""
    function = saved_model.signatures["serving_default"]
    args, kwargs = function.structured_input_signature
    assert not args, args
    return {"inputs": {name: spec_of(spec) for name, spec in sorted(kwargs.items())},
            "outputs": {key: spec_of(spec)
                        for key, spec in sorted(function.structured_outputs.items())}}


def conventions(outputs: dict, num_classes: int) -> dict:
    """What the values of one call (outputs as numpy arrays, batch of one) show: how
    many detections, whether the classes are whole label-map ids, whether boxes and
    scores are within [0, 1] and the scores descending."""
    n = int(outputs["num_detections"][0])
    classes = outputs["detection_classes"][0, :n]
    boxes, scores = outputs["detection_boxes"][0, :n], outputs["detection_scores"][0, :n]
    return {
        "num_detections": n,
        "classes_are_whole_numbers": bool(np.all(classes == np.round(classes))),
        "classes_within_1_to_num_classes": bool(np.all((classes >= 1) &
                                                       (classes <= num_classes))),
        "boxes_within_0_1": bool(np.all((boxes >= 0) & (boxes <= 1))),
        "scores_within_0_1_descending": bool(np.all((scores >= 0) & (scores <= 1)) and
                                             np.all(np.diff(scores) <= 0)),
    }


def raw_conventions(outputs: dict) -> dict:
    """What one call (outputs as numpy arrays, batch of one) shows of the outputs
    beside the four detection ones: each detection's row of the raw outputs
    (detection_anchor_indices), whether its box, its class's score and
    detection_multiclass_scores are that row's, whether two detections share a
    row, what padding rows hold, and whether the raw scores' rows sum to 1 (a
    softmax with the background) or not (sigmoids); rows all zeros (ours: a Faster
    R-CNN's rows past the proposals its anchors allow) left out."""
    n = int(outputs["num_detections"][0])
    rows = outputs["detection_anchor_indices"][0, :n]
    whole = bool(np.all(rows == np.round(rows)))
    raw_scores, raw_boxes = outputs["raw_detection_scores"][0], outputs["raw_detection_boxes"][0]
    index = rows.astype(np.int64)
    classes = outputs["detection_classes"][0, :n].astype(np.int64)
    padding = {key: outputs[key][0, n:] for key in
               ("detection_anchor_indices", "detection_multiclass_scores")}
    return {
        "anchor_indices_whole_numbers_within_raw_rows": whole and bool(
            np.all((rows >= 0) & (rows < raw_scores.shape[0]))),
        "anchor_indices_distinct": len(set(index.tolist())) == n,
        "box_is_its_rows_raw_box": bool(np.allclose(
            outputs["detection_boxes"][0, :n], raw_boxes[index], atol=1e-5)),
        "score_is_its_rows_raw_score_of_its_class": bool(np.allclose(
            outputs["detection_scores"][0, :n], raw_scores[index, classes], atol=1e-6)),
        "multiclass_scores_are_its_rows_raw_scores": bool(np.allclose(
            outputs["detection_multiclass_scores"][0, :n], raw_scores[index], atol=1e-6)),
        "padding_rows_zero": n == outputs["detection_scores"].shape[1] or bool(
            all(np.all(v == 0) for v in padding.values())),
        "raw_scores_rows_sum_to_1": bool(np.allclose(  # rows of zeros left out
            raw_scores[raw_scores.any(-1)].sum(-1), 1, atol=1e-4)),
        "raw_boxes_within_0_1": bool(np.all((raw_boxes >= 0) & (raw_boxes <= 1))),
    }
