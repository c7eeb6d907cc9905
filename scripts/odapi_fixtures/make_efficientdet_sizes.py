"""Writes tests/fixtures/odapi/efficientdet_backbones.json: the checkpoint names and
shapes of the EfficientNet in the real OD API's EfficientDet D0-D7, one entry per
published config (configs/tf2/ssd_efficientdet_d<n>_*.config).

Like make_odapi_fixtures.py this runs with the OD API's own Python (see
scripts/odapi_fixtures/README.md) and the tests never run it:

    TF_USE_LEGACY_KERAS=1 python scripts/odapi_fixtures/make_efficientdet_sizes.py \
        [--only d7] [--check-input-size]

Each model is built by the OD API's model_builder from the published config with
`num_classes: 3` and a 256 px input (the least its BiFPN takes: more than 128 px, a
multiple of 2**max_level), then saved as a zoo ckpt-0 is (tf.train.Checkpoint(
model=detection_model), CheckpointManager, checkpoint_number=0). Only the keys under
`model/_feature_extractor/_efficientnet/` (its Keras EfficientNet up to its level 5)
and `model/_feature_extractor/classification_backbone/` (the rest of that
EfficientNet, which EfficientDet never runs) are kept, with their shapes, and the
config file's sha256 (tests/fixtures/odapi/model_parity.json holds our mapper's model
section of the same file). A model's
variables do not depend on its input size: `--check-input-size` also builds each at its
published size (512-1536 px; D6/D7 take minutes and several GB) and asserts the two
lists are equal. D6 and D7 both use B6: their entries are equal, written once each.
The models are built one at a time (memory); a rerun writes the same file.
"""

from __future__ import annotations

import argparse
import gc
import glob
import hashlib
import json
import os
import tempfile

import tensorflow as tf
from google.protobuf import text_format
from object_detection.builders import model_builder
from object_detection.protos import pipeline_pb2

SMALL_INPUT = 256
KEPT = ("model/_feature_extractor/_efficientnet/",
        "model/_feature_extractor/classification_backbone/")


def _configs_dir() -> str:
    package = os.path.dirname(os.path.dirname(os.path.abspath(model_builder.__file__)))
    return os.path.join(package, "configs", "tf2")


def backbone_variables(config_path: str, size: int | None) -> tuple[str, list[list]]:
    """(feature extractor type, [[key, shape], ...] of the kept keys, sorted) of the
    published config's model with 3 classes at `size` px (None: its published size)."""
    with open(config_path) as f:
        config = text_format.Parse(f.read(), pipeline_pb2.TrainEvalPipelineConfig())
    ssd = config.model.ssd
    ssd.num_classes = 3
    resizer = ssd.image_resizer.keep_aspect_ratio_resizer
    if size is not None:
        resizer.min_dimension = resizer.max_dimension = size
    size = resizer.max_dimension
    model = model_builder.build(config.model, is_training=False)
    model.predict(*model.preprocess(tf.zeros([1, size, size, 3])))  # builds every variable
    with tempfile.TemporaryDirectory() as tmp:
        prefix = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), tmp,
                                            max_to_keep=1).save(checkpoint_number=0)
        variables = [[name, shape] for name, shape in tf.train.list_variables(prefix)
                     if name.startswith(KEPT)]
    del model
    tf.keras.backend.clear_session()
    gc.collect()
    return ssd.feature_extractor.type, variables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "fixtures",
                                                      "odapi", "efficientdet_backbones.json"))
    parser.add_argument("--only", default="", help="one size, e.g. d7: keeps the others' "
                                                   "entries")
    parser.add_argument("--check-input-size", action="store_true",
                        help="also build at the published size and assert equal variables")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    entries = {}
    if args.only and os.path.exists(out):
        with open(out) as f:
            entries = json.load(f)["configs"]
    for path in sorted(glob.glob(os.path.join(_configs_dir(), "ssd_efficientdet_d*.config"))):
        name = os.path.basename(path)[:-len(".config")]
        size_name = name.split("_")[2]  # d0..d7
        if args.only and args.only != size_name:
            continue
        extractor, variables = backbone_variables(path, SMALL_INPUT)
        if args.check_input_size:
            published = backbone_variables(path, None)
            assert published == (extractor, variables), f"{name}: depends on the input size"
            print(f"{name}: the published input size gives the same {len(variables)} "
                  "variables")
        efficientnet = sum(key.startswith(KEPT[0]) for key, _ in variables)
        with open(path, "rb") as f:
            sha256 = hashlib.sha256(f.read()).hexdigest()
        entries[name] = {"config": f"configs/tf2/{name}.config", "sha256": sha256,
                         "feature_extractor": extractor, "input_size": SMALL_INPUT,
                         "variables": variables}
        print(f"{name}: {extractor}, {efficientnet} variables under {KEPT[0]}, "
              f"{len(variables) - efficientnet} under {KEPT[1]}", flush=True)
    with open(out, "w") as f:
        json.dump({"made_by": "scripts/odapi_fixtures/make_efficientdet_sizes.py",
                   "num_classes": 3, "kept": list(KEPT),
                   "configs": dict(sorted(entries.items()))}, f, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
