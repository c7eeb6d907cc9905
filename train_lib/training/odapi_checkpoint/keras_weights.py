"""A Keras application's weights file (`.h5`, as tf_keras writes it) read as the
OD API classification checkpoint it stands for, so that it maps as one."""

from __future__ import annotations

import numpy as np

from train_lib.training.failures import TrainError
from train_lib.training.odapi_checkpoint.layout import CLASSIFICATION_BACKBONE, KEY, LAYER, VALUE


def is_keras_weights_file(path: str) -> bool:
    """Whether `path` names a weights file as tf_keras writes it (HDF5)."""
    return path.endswith((".h5", ".hdf5", ".keras.h5"))


class KerasWeightsFile:
    """A Keras application's weights as tf_keras writes them (`save_weights('x.h5')`
    or `save('x.h5')`), read as the classification checkpoint they are: the file keeps
    its layers in the model's order, so its i-th layer with weights is
    `feature_extractor/layer_with_weights-<i>`."""

    def __init__(self, path: str):
        import h5py  # TensorFlow's dependency; only a .h5 needs it

        self._values: dict[str, np.ndarray] = {}
        try:
            with h5py.File(path, "r") as f:
                group = f["model_weights"] if "model_weights" in f else f
                if "layer_names" not in group.attrs:
                    raise TrainError(f"{KEY} {path} is an HDF5 file without Keras weights "
                                     "(no layer_names); name a weights file written by "
                                     "tf_keras' save_weights")
                index = 0
                for layer in group.attrs["layer_names"]:
                    layer = group[_text(layer)]
                    weights = [_text(w) for w in layer.attrs.get("weight_names", [])]
                    for weight in weights:
                        attribute = weight.split("/")[-1].split(":")[0]
                        key = f"{CLASSIFICATION_BACKBONE}{LAYER}{index}/{attribute}{VALUE}"
                        self._values[key] = np.asarray(layer[weight])
                    index += bool(weights)
        except OSError as err:
            raise TrainError(f"{KEY} {path} cannot be read as a Keras weights file "
                             f"({err}); name a file written by tf_keras' save_weights") from None

    def get_variable_to_shape_map(self) -> dict[str, list[int]]:
        return {key: list(value.shape) for key, value in self._values.items()}

    def get_tensor(self, key: str) -> np.ndarray:
        return self._values[key]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
