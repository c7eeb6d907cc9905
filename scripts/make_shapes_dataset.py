r"""Generates the synthetic shapes detection dataset as OD API TFRecords.

    python scripts/make_shapes_dataset.py --output_dir data/shapes \
        --num_train 4000 --num_val 200 --image_size 128 --num_shards 4 --seed 0

The defaults are configs/shapes_retinanet.yaml's shapes_dataset section. Besides
the TFRecords (JPEG images) and label_map.pbtxt it writes the first 4 val images
as files, <output_dir>/samples/val-00000.jpg ... val-00003.jpg, to try
scripts/detect.py on.
"""

from __future__ import annotations

import os
import sys

# train_lib is not an installed package: make the repo root importable.
from absl import app, flags

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Directory to write the dataset to (TFRecords, label_map.pbtxt, and "
    "samples/: the first val images as JPEG files, for scripts/detect.py).")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 4000, "Number of training images.")
_NUM_VAL = flags.DEFINE_integer("num_val", 200, "Number of validation images.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 128, "Image side in pixels.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 4, "Number of training TFRecord shards.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives identical files.")
flags.mark_flag_as_required("output_dir")


def main(argv: list[str]) -> int:
    """Generates the dataset and prints the files written; returns the exit status."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # Imported here so that flag errors and --help do not wait for TensorFlow.
    from train_lib.config import ConfigError
    from train_lib.data import shapes_dataset

    try:
        paths = shapes_dataset.generate(
            _OUTPUT_DIR.value,
            num_train=_NUM_TRAIN.value,
            num_val=_NUM_VAL.value,
            image_size=_IMAGE_SIZE.value,
            num_shards=_NUM_SHARDS.value,
            seed=_SEED.value,
        )
    except (ConfigError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = 0
    for path in paths["files"]:
        size = os.path.getsize(path)
        total += size
        print(f"wrote {path} ({size:,} bytes)")
    print(f"{_NUM_TRAIN.value} train + {_NUM_VAL.value} val images, {total / 1e6:.1f} MB")
    print(f"train_pattern:  {paths['train_pattern']}")
    print(f"val_pattern:    {paths['val_pattern']}")
    print(f"label_map_path: {paths['label_map_path']}")
    print(f"sample images:  {os.path.join(_OUTPUT_DIR.value, 'samples')}")
    return 0


if __name__ == "__main__":
    app.run(main)
