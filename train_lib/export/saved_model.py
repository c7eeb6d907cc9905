"""Export a trained checkpoint as a SavedModel with the OD API's serving signature.

    <output_directory>/saved_model/         serving_default: input_tensor -> detections
    <output_directory>/checkpoint/ckpt-0.*  the model's weights alone (as the OD API)
    <output_directory>/pipeline.yaml        the resolved pipeline config
    <output_directory>/label_map.pbtxt      the label map

`serving_default` takes `input_tensor` uint8 [1, H, W, 3] of any H and W. The
image is prepared exactly as the eval pipeline does (inputs.preprocess_for_model:
aspect-preserving resize into the model input, top-left, padded, normalised) and
the outputs follow the OD API's exported models:

    detection_boxes    float32 [1, N, 4]  ymin, xmin, ymax, xmax, normalised to
                                          the ORIGINAL image, clipped to [0, 1]
    detection_scores   float32 [1, N]
    detection_classes  float32 [1, N]     label map ids
    num_detections     float32 [1]        rows of the above that are detections

and, for the families in families.SERVING_OUTPUTS (RetinaNet, Faster R-CNN),
the OD API's other outputs (families/retinanet_serving.py and
faster_rcnn_serving.py say what each holds):

    raw_detection_boxes          float32 [1, A, 4]      every anchor's (RetinaNet)
                                                        or proposal's (Faster R-CNN)
                                                        box before NMS, normalised
                                                        as above
    raw_detection_scores         float32 [1, A, C + 1]  column 0 the background
    detection_anchor_indices     float32 [1, N]         rows of the raw outputs
    detection_multiclass_scores  float32 [1, N, C + 1]

N is model.post_processing.max_detections, A the number of anchors (RetinaNet)
or of proposals (Faster R-CNN: model.proposals.test_num_proposals) and C
model.num_classes. The saved object is callable too (`tf.saved_model.load(path)
(images)`, as the OD API's tutorials call its models) with the same outputs.
docs/evaluation_and_export.md compares this signature with the OD API's.
"""

from __future__ import annotations

import os
import shutil

import tensorflow as tf

from train_lib import config as config_lib
from train_lib.config import ModelConfig, PipelineConfig
from train_lib.data import input_files, inputs
from train_lib.errors import UserError
from train_lib.evaluation.continuous import EvalError, load_model_weights
from train_lib.families import build_model, serving_detections
from train_lib.training.workdir import PIPELINE_FILE

INPUT_TYPES = ("image_tensor",)
SAVED_MODEL_DIR = "saved_model"
CHECKPOINT_DIR = "checkpoint"
LABEL_MAP_FILE = "label_map.pbtxt"
# The serving outputs, as the OD API's exporter names them: the first four always, the
# others for the families in families.SERVING_OUTPUTS.
OUTPUT_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections",
               "raw_detection_boxes", "raw_detection_scores", "detection_anchor_indices",
               "detection_multiclass_scores")


class ExportError(UserError, RuntimeError):
    """The export cannot be done; the message says why and what to do."""


def save_signature(serve: tf.types.experimental.GenericFunction, variables: list,
                   path: str) -> None:
    """Saves `serve` (a tf.function with an input signature) as the `serving_default`
    signature of a SavedModel at `path`, with the `variables` it reads.

    Only the function and the variables are saved, not the Keras model behind them:
    saving the model would also trace and save each of its layers (Keras's SavedModel
    format), which took four times as long and which no reader of the export uses.
    The loaded object has `.signatures["serving_default"]` and `.serve`, and is
    callable (the same function, as the OD API's exported models)."""
    saved = tf.Module()
    saved.weights = list(variables)
    saved.serve = serve
    saved.__call__ = serve
    # The function itself, not a concrete function traced beforehand: saving traces it
    # in its own context, so a trace made before would be a second one (1.5-2 s).
    tf.saved_model.save(saved, path, signatures={"serving_default": serve})


class DetectionModule(tf.Module):
    """The model behind the serving signature: uint8 image in, OD API detections out."""

    def __init__(self, model, model_config: ModelConfig):
        super().__init__()
        self.model = model
        self._config = model_config

    @tf.function(input_signature=[
        tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")],
        autograph=False)  # as the evaluator's: the same graph, traced in less time
    def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        image = input_tensor[0]
        original = tf.cast(tf.shape(image)[0:2], tf.float32)
        model_input, image_scale = inputs.preprocess_for_model(image, self._config)
        valid = original * image_scale  # the image's own area inside the padded input
        outputs = serving_detections(self.model, model_input[tf.newaxis], valid[tf.newaxis])
        scale = tf.tile(image_scale, [2])
        size = tf.tile(original, [2])
        result = {key: tf.cast(outputs[key], tf.float32) for key in OUTPUT_KEYS
                  if key in outputs}  # the model's other outputs (features...) stay out
        for key in ("detection_boxes", "raw_detection_boxes"):
            if key in result:
                result[key] = tf.clip_by_value(result[key] / scale, 0.0, size) / size
        return result


def find_checkpoint(trained_checkpoint_dir: str | None = None,
                    checkpoint_path: str | None = None) -> str:
    """`checkpoint_path` if given (it must exist), else the newest checkpoint of
    `trained_checkpoint_dir` (tf.train.latest_checkpoint). Raises ExportError."""
    if checkpoint_path:
        if not os.path.exists(checkpoint_path + ".index"):
            raise ExportError(f"checkpoint {checkpoint_path} not found (no "
                              f"{checkpoint_path}.index); give a prefix such as "
                              "runs/shapes/ckpt-3000")
        return checkpoint_path
    if not trained_checkpoint_dir:
        raise ExportError("give --trained_checkpoint_dir (its newest checkpoint is exported) "
                          "or --checkpoint_path")
    if not os.path.isdir(trained_checkpoint_dir):
        raise ExportError(f"--trained_checkpoint_dir {trained_checkpoint_dir} is not a "
                          "directory")
    latest = tf.train.latest_checkpoint(trained_checkpoint_dir)
    if latest is None:
        raise ExportError(f"no checkpoint in {trained_checkpoint_dir} (no `checkpoint` state "
                          "file naming an existing ckpt-<step>); train first, or pass "
                          "--checkpoint_path")
    return latest


def label_map_reader(config: PipelineConfig) -> tuple[config_lib.InputReaderConfig, str]:
    """(reader, its key) whose label map an export copies: eval's, else train's."""
    if config.eval_input_reader.label_map_path:
        return config.eval_input_reader, "eval_input_reader"
    return config.train_input_reader, "train_input_reader"


def export_saved_model(config: PipelineConfig, checkpoint_prefix: str, output_directory: str,
                       input_type: str = "image_tensor") -> str:
    """Writes the SavedModel of the checkpoint at `checkpoint_prefix` (plus its weights,
    the config and the label map) into `output_directory`; returns the SavedModel dir.

    Raises ExportError (unsupported input_type, missing checkpoint, a checkpoint that
    does not fit the config's model) or ConfigError (label map).
    """
    if input_type not in INPUT_TYPES:
        raise ExportError(f"--input_type={input_type!r} is not supported; only "
                          f"{', '.join(INPUT_TYPES)} (uint8 images [1, H, W, 3]) is")
    checkpoint_prefix = find_checkpoint(checkpoint_path=checkpoint_prefix)
    reader, key = label_map_reader(config)
    input_files.check_label_map(config, reader, key)
    model = build_model(config.model)
    try:
        load_model_weights(model, checkpoint_prefix, config)
    except EvalError as err:
        raise ExportError(str(err)) from None
    module = DetectionModule(model, config.model)

    os.makedirs(output_directory, exist_ok=True)
    tmp = os.path.join(output_directory, f".export-tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_signature(module.serve, model.variables, os.path.join(tmp, SAVED_MODEL_DIR))
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                             os.path.join(tmp, CHECKPOINT_DIR), max_to_keep=1)
        manager.save(checkpoint_number=0)
        config_lib.dump_config(config, os.path.join(tmp, PIPELINE_FILE))
        shutil.copyfile(reader.label_map_path, os.path.join(tmp, LABEL_MAP_FILE))
        for name in (SAVED_MODEL_DIR, CHECKPOINT_DIR, PIPELINE_FILE, LABEL_MAP_FILE):
            target = os.path.join(output_directory, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(os.path.join(tmp, name), target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(output_directory, SAVED_MODEL_DIR)
