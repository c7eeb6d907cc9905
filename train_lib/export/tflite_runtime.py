"""Runs an exported `.tflite` detector with LiteRT alone: no TensorFlow, no config.

What a phone or a Raspberry Pi installs is enough: `ai-edge-litert`, numpy and
pillow. This module imports nothing else (not TensorFlow, not PyYAML, not absl),
so it can be copied onto a device as it is; tests check that it imports and
detects with TensorFlow blocked.

The exporter (export/tflite.py) writes, beside `model.tflite`, `model.json`
(METADATA_FILE): the input size and dtype, the normalisation (done inside the
model), the output order, the quantisation and the class names. `TFLiteDetector`
reads both:

    detector = TFLiteDetector("exported/shapes_tflite/model.tflite", num_threads=1)
    found = detector.detect(pixels)     # uint8 RGB [height, width, 3], any size
    found.boxes    float32 [n, 4]  ymin, xmin, ymax, xmax, normalised to `pixels`
    found.scores   float32 [n]     highest first
    found.classes  int64 [n]       label map ids (detector.class_names[id])

`detect` prepares the image exactly as the eval pipeline and the SavedModel do
(aspect-preserving bilinear resize into the model's input, top-left, zero padding;
`letterbox`), runs the model (`run`) and maps the boxes back to the image.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import warnings

import numpy as np

from train_lib.errors import UserError

METADATA_FILE = "model.json"
MODEL_FILE = "model.tflite"
SIGNATURE = "serving_default"
INPUT_NAME = "input_tensor"
# The OD API's four outputs: the names of the model's signature.
OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
# The order of the model's output tensors, as the converter writes them (read them by
# the signature's names where the runtime allows).
TENSOR_ORDER = ("num_detections", "detection_boxes", "detection_classes", "detection_scores")


class TFLiteModelError(UserError, RuntimeError):
    """The .tflite file or its model.json cannot be used; the message says why."""


@dataclasses.dataclass
class Detections:
    """The detections of one image: `boxes` [n, 4] normalised ymin, xmin, ymax, xmax
    of the image given, `scores` [n], `classes` [n] label map ids."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def read_metadata(model_path: str) -> dict:
    """model.json beside `model_path`. Raises TFLiteModelError if it is missing or
    not the exporter's."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), METADATA_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except FileNotFoundError:
        raise TFLiteModelError(
            f"no {METADATA_FILE} beside {model_path}: give the model.tflite that "
            "scripts/export_tflite.py wrote (with its model.json)") from None
    except (OSError, ValueError) as err:
        raise TFLiteModelError(f"cannot read {path}: {err}") from None
    if not isinstance(metadata, dict) or "input" not in metadata:
        raise TFLiteModelError(f"{path} is not the model.json of scripts/export_tflite.py")
    return metadata


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` [h, w, c] resized to [height, width, c] as tf.image.resize(method=
    "bilinear") does (half-pixel centres, no antialiasing); float32."""
    image = np.asarray(image, np.float32)
    in_h, in_w = image.shape[:2]

    def axis(out_size: int, in_size: int):
        centre = (np.arange(out_size, dtype=np.float32) + 0.5) * np.float32(in_size / out_size)
        source = np.maximum(centre - 0.5, 0.0)
        low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, (source - low).astype(np.float32)

    y0, y1, fy = axis(height, in_h)
    x0, x1, fx = axis(width, in_w)
    top, bottom = image[y0], image[y1]
    fx = fx[None, :, None]
    top = top[:, x0] * (1 - fx) + top[:, x1] * fx
    bottom = bottom[:, x0] * (1 - fx) + bottom[:, x1] * fx
    return top * (1 - fy[:, None, None]) + bottom * fy[:, None, None]


def letterbox(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """`image` (uint8 or float RGB [h, w, 3], 0..255) as the model's input: resized
    keeping its aspect ratio to fit `input_size` (height, width), at the top-left,
    zero-padded (inputs.preprocess_for_model before normalisation). Returns (float32
    [height, width, 3], image_scale float32 [2]: input pixels per image pixel, y, x)."""
    out_h, out_w = (int(s) for s in input_size)
    in_size = np.array(image.shape[:2], np.float32)
    ratio = np.minimum(np.float32(out_h) / in_size[0], np.float32(out_w) / in_size[1])
    scaled = np.round(in_size * ratio).astype(np.int64)
    if tuple(scaled) == tuple(image.shape[:2]):
        resized = np.asarray(image, np.float32)
    else:
        resized = resize_bilinear(image, int(scaled[0]), int(scaled[1]))
    out = np.zeros((out_h, out_w, 3), np.float32)
    h, w = min(int(scaled[0]), out_h), min(int(scaled[1]), out_w)
    out[:h, :w] = resized[:h, :w, :3]
    return out, scaled.astype(np.float32) / in_size


def new_interpreter(model_path: str, num_threads: int | None):
    """LiteRT's Interpreter on `model_path`. LiteRT 2.3.0 loads beside TensorFlow
    2.20; should a LiteRT build refuse to in a process that already has TensorFlow
    ("InterpreterWrapper is already registered": both wrap the same C++ type), it is
    TensorFlow's own copy of the same TFLite interpreter there."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        tf = sys.modules.get("tensorflow")
        if tf is None or "already registered" not in str(err):
            raise TFLiteModelError("LiteRT is not installed (or cannot load: "
                                   f"{str(err).strip()}): pip install ai-edge-litert") \
                from None
        with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated"
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=model_path, num_threads=num_threads)
    return Interpreter(model_path=model_path, num_threads=num_threads)


class TFLiteDetector:
    """An exported .tflite detector on LiteRT's interpreter (`num_threads` threads;
    None: LiteRT's default). Raises TFLiteModelError for a missing file, a missing
    model.json or a model without the exporter's signature."""

    def __init__(self, model_path: str, num_threads: int | None = None):
        if not os.path.isfile(model_path):
            raise TFLiteModelError(f"{model_path} is not a file: give the model.tflite of "
                                   "scripts/export_tflite.py")
        self.metadata = read_metadata(model_path)
        self.input_size = tuple(int(s) for s in self.metadata["input"]["shape"][1:3])
        self.input_dtype = np.dtype(self.metadata["input"]["dtype"])
        self.class_names = {int(k): v for k, v in self.metadata.get("label_map", {}).items()}
        try:
            self._interpreter = new_interpreter(model_path, num_threads)
        except ValueError as err:
            raise TFLiteModelError(f"LiteRT cannot load {model_path}: "
                                   f"{str(err).strip().splitlines()[0]}") from None
        if SIGNATURE not in self._interpreter.get_signature_list():
            raise TFLiteModelError(f"{model_path} has no {SIGNATURE!r} signature: export "
                                   "it with scripts/export_tflite.py")
        self._interpreter.allocate_tensors()  # once; before any reference to its tensors
        runner = self._interpreter.get_signature_runner(SIGNATURE)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        if set(inputs) != {INPUT_NAME} or set(outputs) != set(OUTPUT_NAMES):
            raise TFLiteModelError(f"{model_path}'s signature is {sorted(inputs)} -> "
                                   f"{sorted(outputs)}, not the exporter's {INPUT_NAME} -> "
                                   f"{', '.join(OUTPUT_NAMES)}")
        # Each run sets the input and invokes.
        self._input_index = inputs[INPUT_NAME]["index"]
        self._output_index = {name: outputs[name]["index"] for name in OUTPUT_NAMES}

    def run(self, model_input: np.ndarray) -> dict[str, np.ndarray]:
        """The model on one prepared input ([height, width, 3] pixels 0..255, as
        `letterbox` gives): OUTPUT_NAMES without the batch dimension; boxes are
        normalised to the model input and only the first `num_detections` rows
        are detections."""
        model_input = np.asarray(model_input)
        if self.input_dtype == np.uint8:
            model_input = np.clip(np.round(model_input), 0, 255)
        batch = model_input.astype(self.input_dtype)[np.newaxis]
        self._interpreter.set_tensor(self._input_index, batch)
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(index)[0]
                for name, index in self._output_index.items()}

    def detect(self, image: np.ndarray) -> Detections:
        """The detections of `image` (RGB [h, w, 3], 0..255, any size), boxes
        normalised to `image` and clipped to [0, 1]."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] < 3:
            raise TFLiteModelError(f"expected an RGB image [height, width, 3], got shape "
                                   f"{list(image.shape)}")
        model_input, image_scale = letterbox(image, self.input_size)
        out = self.run(model_input)
        n = int(out["num_detections"])
        # normalised to the input -> input pixels -> image pixels -> normalised to the image
        size = np.array(self.input_size * 2, np.float32)
        scale = np.tile(image_scale, 2) * np.array(image.shape[:2] * 2, np.float32)
        boxes = np.clip(out["detection_boxes"][:n] * size / scale, 0.0, 1.0)
        return Detections(boxes=boxes.astype(np.float32),
                          scores=out["detection_scores"][:n].astype(np.float32),
                          classes=np.round(out["detection_classes"][:n]).astype(np.int64))
