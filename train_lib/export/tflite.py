"""Export a trained checkpoint as a TFLite model that LiteRT runs on a phone.

    <output_directory>/model.tflite     signature serving_default, post-processing inside
    <output_directory>/model.json       input, normalisation, outputs, quantisation, classes
    <output_directory>/label_map.pbtxt  the label map

The model is the checkpoint's detector with its post-processing inside (Model
Garden's box decoding, then the class-aware NMS of tflite_nms.py: the generator's
rules without its loops, which TFLite's int8 calibrator cannot run), converted
with TFLite builtin ops only: no custom op, any LiteRT runs it. Its input is fixed
to the model's size:

    input_tensor   [1, height, width, 3] RGB pixels 0..255, the image resized
                   keeping its aspect ratio to fit, at the top-left, zero-padded
                   (tflite_runtime.letterbox); float32 for `none` and `float16`,
                   uint8 for `int8`. The normalisation is inside the model.

and its outputs are the OD API's, by the signature's names (the output tensors
come in the order tflite_runtime.TENSOR_ORDER: num_detections first):

    detection_boxes    float32 [1, N, 4]  ymin, xmin, ymax, xmax normalised to the
                                          model input, clipped to [0, 1]
    detection_classes  float32 [1, N]     label map ids
    detection_scores   float32 [1, N]     highest first
    num_detections     float32 [1]        rows of the above that are detections

The SavedModel clips boxes to the image's own area inside the padded input before
NMS; this model, whose only input is the pixels, to the whole input. The boxes are
clipped to the image afterwards either way (tflite_runtime.TFLiteDetector.detect),
so the two differ only where NMS decides differently between boxes that reach
into the padding of a non-square image.

Quantisation (QUANTIZATIONS): `none` (float32 weights), `float16` (weights
stored as float16, half the file), `int8` (weights and activations int8,
calibrated on `num_calibration_images` training images prepared exactly as the
input above, in the network; the box decoding and NMS stay float: `convert`).

Which families convert is `families.TFLITE_ARCHITECTURES`, the one list.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
from absl import logging

from train_lib.config import ConfigError, ModelConfig, PipelineConfig
from train_lib.data import input_files, inputs
from train_lib.evaluation.continuous import EvalError, load_model_weights
from train_lib.export.saved_model import (
    LABEL_MAP_FILE,
    ExportError,
    find_checkpoint,
    label_map_reader,
    save_signature,
)
from train_lib.export.tflite_nms import class_aware_nms
from train_lib.export.tflite_runtime import (
    INPUT_NAME,
    METADATA_FILE,
    MODEL_FILE,
    SIGNATURE,
    TENSOR_ORDER,
    new_interpreter,
)
from train_lib.families import (
    POST_PROCESSING_SCOPE,
    TFLITE_ARCHITECTURES,
    build_model,
    decoded_detections,
)

QUANTIZATIONS = ("none", "float16", "int8")
DEFAULT_CALIBRATION_IMAGES = 100


class TFLiteDetectionModule(tf.Module):
    """The converted function: model-size pixels in, the OD API's four outputs out."""

    def __init__(self, model, model_config: ModelConfig, input_dtype: tf.DType):
        super().__init__()
        self.model = model
        self._config = model_config
        self._post = model_config.post_processing
        height, width = (int(s) for s in model_config.input_size)
        self._size = (float(height), float(width)) * 2
        # Without autograph, as the SavedModel's serve: plain TF ops, and the trace inside
        # tf.saved_model.save took 2.5 times as long with it.
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([1, height, width, 3], input_dtype, name=INPUT_NAME)],
            autograph=False)

    def _serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        image = inputs.normalize(tf.cast(input_tensor[0], tf.float32), self._config)
        size = tf.constant(self._size, tf.float32)
        boxes, scores = decoded_detections(self.model, image[tf.newaxis],
                                           size[tf.newaxis, :2])
        post = self._post
        with tf.name_scope(POST_PROCESSING_SCOPE):
            outputs = class_aware_nms(boxes[0], scores[0], post.pre_nms_top_k,
                                      post.score_threshold, post.iou_threshold,
                                      post.max_detections)
        boxes = tf.clip_by_value(outputs["detection_boxes"] / size, 0.0, 1.0)
        return {
            "detection_boxes": tf.cast(boxes, tf.float32),
            "detection_classes": tf.cast(outputs["detection_classes"], tf.float32),
            "detection_scores": tf.cast(outputs["detection_scores"], tf.float32),
            "num_detections": tf.cast(outputs["num_detections"], tf.float32),
        }


def check_architecture(config: PipelineConfig) -> None:
    """Raises ExportError unless the config's family converts to TFLite."""
    architecture = config.model.architecture
    if architecture not in TFLITE_ARCHITECTURES:
        raise ExportError(f"`model.architecture: {architecture}` cannot be exported to TFLite "
                          f"yet; supported: {', '.join(TFLITE_ARCHITECTURES)} (use "
                          "scripts/exporter_main_v2.py for a SavedModel)")


def check_output_directory(output_directory: str, overwrite: bool) -> None:
    """Raises ExportError if `output_directory` is a file, or a directory with files
    in it and not `overwrite`."""
    if os.path.exists(output_directory) and not os.path.isdir(output_directory):
        raise ExportError(f"--output_directory {output_directory} is a file; give a directory")
    if os.path.isdir(output_directory) and not overwrite:
        names = sorted(os.listdir(output_directory))
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise ExportError(f"--output_directory {output_directory} already holds files "
                              f"({shown}); give a new or empty directory, or --overwrite "
                              "to replace its model.tflite, model.json and label_map.pbtxt")


def input_dtype(quantization: str) -> tf.DType:
    """The input tensor's dtype: uint8 for `int8`, else float32."""
    return tf.uint8 if quantization == "int8" else tf.float32


def calibration_images(config: PipelineConfig, num_images: int) -> list[np.ndarray]:
    """The first `num_images` training images (train_input_reader, file order) as the
    model's input: uint8 [1, height, width, 3], prepared by the eval pipeline's
    preprocess_for_model without its normalisation (which is inside the model).
    Raises ExportError if no training record is reachable or readable."""
    reader = config.train_input_reader
    try:
        files = input_files.resolve_input_files(reader, "train_input_reader")
    except ConfigError as err:
        raise ExportError(f"--quantization=int8 calibrates on training images, but {err}"
                          ) from None
    dataset = inputs.build_eval_dataset(config, files, reader=reader).unbatch()
    out = []
    try:
        for image, _ in dataset.take(num_images):
            pixels = np.clip(np.round(inputs.denormalize(image.numpy(), config.model)), 0,
                             255).astype(np.uint8)
            out.append(pixels[np.newaxis])
    except tf.errors.OpError as err:
        raise ExportError(f"cannot read the training records for int8 calibration "
                          f"({', '.join(files)}): {err.message.splitlines()[0]}") from None
    if not out:
        raise ExportError(f"no valid training image for int8 calibration in "
                          f"{', '.join(files)} (train_input_reader.input_path)")
    return out


@contextlib.contextmanager
def converter_output(lines: list[str]) -> Iterator[None]:
    """While the block runs, what is written to this process's stderr (file
    descriptor 2, where the converter's C++ code prints) goes to a temporary file;
    its lines are appended to `lines` when the block ends, and stderr is restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def convert(module: TFLiteDetectionModule, quantization: str,
            representative: list[np.ndarray] | None = None) -> bytes:
    """The .tflite bytes of `module` (through a SavedModel, so the signature keeps its
    names) with `quantization`; int8 needs the `representative` inputs. Raises
    ExportError when the converter fails.

    int8 quantises the network (backbone, FPN, heads) and keeps the ops in
    POST_PROCESSING_SCOPE float (TFLite's selective quantisation): box decoding in
    int8 moved boxes by up to 12 px of 128, and NMS then kept duplicates (AP 0.001
    against 0.848 on the shapes model)."""
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"--quantization={quantization!r} is not one of "
                          f"{', '.join(QUANTIZATIONS)}")
    if quantization == "int8" and not representative:
        raise ExportError("--quantization=int8 needs calibration images")
    with tempfile.TemporaryDirectory(prefix="tflite-export-") as tmp:
        # Without the Keras model's layers, the conversion too is four times faster.
        save_signature(module.serve, module.model.variables, tmp)

        def converter() -> tf.lite.TFLiteConverter:
            c = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[SIGNATURE])
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            return c

        # The converter prints its settings to stderr (int8: `input_inference_type:
        # FLOAT32` twice, which is its input option, not the file's input: uint8,
        # from the signature). Shown with --verbosity=1, and when it fails.
        lines: list[str] = []
        try:
            with converter_output(lines):
                if quantization == "none":
                    flatbuffer = converter().convert()
                elif quantization == "float16":
                    c = converter()
                    c.optimizations = [tf.lite.Optimize.DEFAULT]
                    c.target_spec.supported_types = [tf.float16]
                    flatbuffer = c.convert()
                else:
                    flatbuffer = _convert_int8(converter, representative, tmp)
        except Exception as err:  # the converter's errors are of several types
            print("\n".join(lines), file=sys.stderr)
            text = str(err).strip()
            raise ExportError("the TFLite converter failed: "
                              f"{text.splitlines()[0] if text else type(err).__name__}"
                              ) from None
        for line in lines:
            logging.debug("TFLite converter: %s", line)
        return flatbuffer


def _convert_int8(converter, representative: list[np.ndarray], tmp: str) -> bytes:
    """int8 weights and activations in the network, float after it: the float model's
    tensors in POST_PROCESSING_SCOPE are denied quantisation."""
    float_path = os.path.join(tmp, "float.tflite")
    with open(float_path, "wb") as f:
        f.write(converter().convert())
    names = [t["name"] for t in new_interpreter(float_path, 1).get_tensor_details()]
    kept_float = [name for name in names if POST_PROCESSING_SCOPE + "/" in name]
    c = converter()
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = lambda: ([image] for image in representative)
    # int8 kernels where LiteRT has them; float for the rest.
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                   tf.lite.OpsSet.TFLITE_BUILTINS]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=c, debug_dataset=lambda: ([image] for image in representative[:1]),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=kept_float))
    return debugger.get_nondebug_quantized_model()


def metadata(config: PipelineConfig, quantization: str, label_map: dict[int, str],
             checkpoint_prefix: str, num_calibration_images: int | None) -> dict:
    """What model.json says: everything a device needs besides the .tflite file."""
    height, width = (int(s) for s in config.model.input_size)
    post = config.model.post_processing
    return {
        "model_file": MODEL_FILE,
        "architecture": config.model.architecture,
        "quantization": quantization,
        "num_calibration_images": num_calibration_images,
        "checkpoint": os.path.abspath(checkpoint_prefix),
        "input": {
            "name": INPUT_NAME,
            "shape": [1, height, width, 3],
            "dtype": input_dtype(quantization).name,
            "pixels": "RGB 0..255; the image resized keeping its aspect ratio to fit "
                      "height x width (bilinear), at the top-left, zero-padded",
            "normalisation": {"inside_model": True,
                              "formula": "(pixel - mean) / stddev",
                              "mean": [float(v) for v in config.model.pixel_mean],
                              "stddev": [float(v) for v in config.model.pixel_stddev]},
        },
        "output_order": list(TENSOR_ORDER),
        "outputs": [
            {"name": "detection_boxes", "shape": [1, post.max_detections, 4],
             "meaning": "ymin, xmin, ymax, xmax normalised to the model input"},
            {"name": "detection_classes", "shape": [1, post.max_detections],
             "meaning": "label map ids (float32)"},
            {"name": "detection_scores", "shape": [1, post.max_detections],
             "meaning": "scores, highest first"},
            {"name": "num_detections", "shape": [1],
             "meaning": "how many rows are detections (float32)"},
        ],
        "label_map": {str(k): v for k, v in sorted(label_map.items())},
    }


def export_tflite(config: PipelineConfig, checkpoint_prefix: str, output_directory: str,
                  quantization: str = "none",
                  num_calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                  overwrite: bool = False) -> str:
    """Writes model.tflite, model.json and label_map.pbtxt of the checkpoint at
    `checkpoint_prefix` into `output_directory`; returns the .tflite path.

    Raises ExportError (unknown quantisation, a family that does not convert, an
    output directory with files and not `overwrite`, no checkpoint, a checkpoint
    of another model, int8 without reachable training records, a converter
    failure) or ConfigError (label map).
    """
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"--quantization={quantization!r} is not one of "
                          f"{', '.join(QUANTIZATIONS)}")
    if num_calibration_images < 1:
        raise ExportError("--num_calibration_images must be at least 1")
    check_architecture(config)
    check_output_directory(output_directory, overwrite)
    checkpoint_prefix = find_checkpoint(checkpoint_path=checkpoint_prefix)
    reader, key = label_map_reader(config)
    label_map = input_files.check_label_map(config, reader, key)
    representative = (calibration_images(config, num_calibration_images)
                      if quantization == "int8" else None)
    model = build_model(config.model)
    try:
        load_model_weights(model, checkpoint_prefix, config)
    except EvalError as err:
        raise ExportError(str(err)) from None
    module = TFLiteDetectionModule(model, config.model, input_dtype(quantization))
    flatbuffer = convert(module, quantization, representative)
    info = metadata(config, quantization, label_map, checkpoint_prefix,
                    len(representative) if representative else None)

    os.makedirs(output_directory, exist_ok=True)
    written = {MODEL_FILE: flatbuffer,
               METADATA_FILE: (json.dumps(info, indent=2) + "\n").encode("utf-8")}
    with open(reader.label_map_path, "rb") as f:
        written[LABEL_MAP_FILE] = f.read()
    for name, data in written.items():  # each file complete, or not there
        target = os.path.join(output_directory, name)
        with open(target + ".tmp", "wb") as f:
            f.write(data)
        os.replace(target + ".tmp", target)
    return os.path.join(output_directory, MODEL_FILE)
