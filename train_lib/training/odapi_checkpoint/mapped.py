"""One variable of ours paired with the OD API checkpoint value it takes: what every
part's mapping (the backbone's in mapping.py, fpn.py's, box_predictor.py's) yields,
and what `Plan.load` assigns; `check_fits`, the check each of them makes first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from train_lib.training.failures import TrainError
from train_lib.training.odapi_checkpoint.layout import KEY, VALUE


@dataclass
class Mapped:
    """One variable of ours and the checkpoint value it takes."""
    variable: tf.Variable
    key: str  # the checkpoint key
    keras_name: str  # e.g. block_3_expand/kernel: the OD API's Keras layer and attribute
    minus_key: str | None = None  # a convolution's bias, folded into a moving mean
    part: str = "backbone"  # or "fpn" (model.fpn.type: odapi), "head" (box_predictor.py)
    # The checkpoint's channel of each of ours on the last axis (a predictor's outputs,
    # its anchors in our order), or None: as they are.
    channels: np.ndarray | None = None

    def value(self, reader) -> np.ndarray:
        """The value to assign, read from `reader` (a checkpoint reader)."""
        value = reader.get_tensor(self.key)
        if self.minus_key is not None:
            value = value - reader.get_tensor(self.minus_key)
        return value if self.channels is None else value[..., self.channels]


def checkpoint_key(path: str, variable) -> tuple[str, str]:
    """(`variable`'s attribute, e.g. `kernel`; the key of its value in the checkpoint
    under the layer path `path`, which ends in '/')."""
    attribute = variable.name.split("/")[-1].split(":")[0]
    return attribute, f"{path}{attribute}{VALUE}"


def check_fits(shapes: dict, key: str, variable, this: str, layer: str, missing: str,
               differs: str) -> None:
    """TrainError, one line, when the checkpoint (its keys and shapes `shapes`) has no
    `key` for `variable`, or one of another shape. `this`: `<KEY> <prefix> does not fit
    this model's <part>`; `layer`: the OD API's layer it stands for (and ours); `missing`,
    `differs`: what the checkpoint must then come from."""
    ours = variable.shape.as_list()
    if key not in shapes:
        raise TrainError(f"{this}: it has no {key} ({layer}, shape {ours}); {missing}")
    if list(shapes[key]) != ours:
        raise TrainError(f"{this}: the first variable whose shape differs is {key} ({layer}): "
                         f"{list(shapes[key])} in the checkpoint, {ours} in this model. "
                         f"{differs}")


def does_not_fit(prefix: str, part: str) -> str:
    """The start of every such TrainError: the key, the checkpoint and our `part`."""
    return f"{KEY} {prefix} does not fit {part}"
