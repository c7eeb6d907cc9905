r"""The OD API's loss and gradients against ours, from the same weights on the same batch.

Training parity (training_parity.py) compares two runs that differ in everything
random. This compares one step's arithmetic instead, for an SSD pipeline.config:

1. the OD API's side (a subprocess in its environment: --odapi_python, with
   --odapi_research's `research` and `research/slim` on PYTHONPATH and
   TF_USE_LEGACY_KERAS=1) builds the config's model for training with its
   model_builder (seeded with --seed), reads the first --num_images records of
   --records as one batch, preprocesses it with its model, writes the model's initial
   weights as a zoo `ckpt-0` (`init/`), and, in training mode (Keras learning phase 1,
   as its model_lib_v2's train step sets), computes its losses (`model.loss` with the
   ground truth given, plus its regularization losses) and their gradients. It writes
   the gradients as a checkpoint of the same model (each trainable variable holding its
   gradient, `grads/`), and the batch, its losses and its number of matched anchors;
2. ours (a subprocess in this project's environment) maps the same config, builds the
   model, loads `init/` whole (fine_tune_checkpoint_type `full`), computes our losses on
   the same preprocessed batch and boxes in training mode and their gradients, loads
   `grads/` into a second model by the same mapping (so each OD API gradient lands on
   the variable of ours it maps to, the head's channels permuted alike), and compares.

It prints how our initializers' spread compares with the OD API's initial weights (per
part, the range over variables of our fresh standard deviation over the OD API's),
each loss term on both sides (ours also rescaled to the OD API's normaliser: times
(N + 1) / N where ours divides by the matched anchors + 1, model.loss.normalizer:
positives_plus_one, and the OD API by their number N; 1 with the mapped normaliser),
the gradients' global norms,
and the largest relative difference of one variable's gradient, ||ours - theirs|| /
||theirs|| over variables whose OD API gradient is not ~0, per part (backbone, FPN,
head). With $ODAPI_PY and $ODAPI_RESEARCH as the defaults of --odapi_python and
--odapi_research:

    .venv/bin/python scripts/odapi_parity/fixed_batch_losses.py \
        --pipeline_config=runs/odapi_parity/<run>/pipeline.config \
        --records='data/odapi_parity/shapes320/val-*.tfrecord' --work_dir=/tmp/fixed_batch

The images must be at the config's input size (the OD API resizes, ours would
letterbox: the batch is the OD API's preprocessed images, fed to both). Each process
imports only its own side's code. Without the OD API it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# A gradient below this, relative to the largest of its part, is rounding (e.g. a batch
# norm beta before another batch norm, which removes its shift): not compared.
NEGLIGIBLE = 1e-5


def odapi_side(config_path: str, records: str, out: str, num_images: int, seed: int) -> None:
    """Writes out/init/ckpt-0, out/grads/ckpt-0, out/batch.npz and out/odapi.json."""
    import tensorflow as tf
    from object_detection.builders import model_builder
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(config_path)
    num_classes = configs["model"].ssd.num_classes
    tf.keras.utils.set_random_seed(seed)
    model = model_builder.build(configs["model"], is_training=True)
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/object/class/label": tf.io.VarLenFeature(tf.int64),
                **{f"image/object/bbox/{k}": tf.io.VarLenFeature(tf.float32)
                   for k in ("ymin", "xmin", "ymax", "xmax")}}
    images, boxes, classes = [], [], []
    files = sorted(tf.io.gfile.glob(records))
    for record in tf.data.TFRecordDataset(files).take(num_images):
        example = tf.io.parse_single_example(record, features)
        images.append(tf.io.decode_image(example["image/encoded"], channels=3).numpy())
        boxes.append(np.stack([tf.sparse.to_dense(example[f"image/object/bbox/{k}"]).numpy()
                               for k in ("ymin", "xmin", "ymax", "xmax")], axis=1))
        classes.append(tf.sparse.to_dense(example["image/object/class/label"]).numpy())
    preprocessed, shapes = model.preprocess(tf.constant(np.stack(images).astype(np.float32)))
    model.predict(preprocessed, shapes)  # builds every variable
    checkpoint = tf.train.Checkpoint(model=model)
    tf.train.CheckpointManager(checkpoint, os.path.join(out, "init"), 1).save(0)

    model.provide_groundtruth(
        groundtruth_boxes_list=[tf.constant(b) for b in boxes],
        groundtruth_classes_list=[tf.one_hot(c - 1, num_classes) for c in classes])
    tf.keras.backend.set_learning_phase(True)  # as model_lib_v2's eager_train_step
    with tf.GradientTape() as tape:
        prediction = model.predict(preprocessed, shapes)
        losses = model.loss(prediction, shapes)
        regularization = tf.add_n(model.regularization_losses())
        total = tf.add_n(list(losses.values())) + regularization
    variables = model.trainable_variables
    gradients = tape.gradient(total, variables)
    # The number of matched anchors the OD API normalises by: its batch's positive
    # anchors, from the target assigner it used (reg weights of the batch).
    _, _, _, reg_weights, _ = model._assign_targets(
        model.groundtruth_lists("boxes"), model.groundtruth_lists("classes"))
    matches = float(tf.reduce_sum(reg_weights))
    for variable, gradient in zip(variables, gradients, strict=True):
        variable.assign(tf.zeros_like(variable) if gradient is None else gradient)
    tf.train.CheckpointManager(checkpoint, os.path.join(out, "grads"), 1).save(0)
    np.savez(os.path.join(out, "batch.npz"), preprocessed=preprocessed.numpy(),
             **{f"boxes_{i}": b for i, b in enumerate(boxes)},
             **{f"classes_{i}": c for i, c in enumerate(classes)})
    with open(os.path.join(out, "odapi.json"), "w") as f:
        json.dump({"classification": float(losses["Loss/classification_loss"]),
                   "localization": float(losses["Loss/localization_loss"]),
                   "regularization": float(regularization), "total": float(total),
                   "matches": matches, "num_images": len(images)}, f, indent=1)


def our_side(config_path: str, out: str) -> dict:
    """Compares; returns the figures (also out/comparison.json)."""
    import tensorflow as tf
    from evaluate_odapi_checkpoint import load_whole  # this directory: run as a script

    from train_lib import config as config_lib
    from train_lib import families
    from train_lib.families import parts

    config = config_lib.load_config(config_path)
    model = families.build_model(config.model)
    fresh = [float(np.std(v.numpy())) for v in model.trainable_variables]
    load_whole(model, os.path.join(out, "init", "ckpt-0"), "nothing to compare")
    with np.load(os.path.join(out, "batch.npz")) as batch:
        arrays = {key: batch[key] for key in batch.files}
    images = tf.constant(arrays["preprocessed"])
    count, size = images.shape[0], np.array(list(images.shape[1:3]) * 2, np.float32)
    width = max(1, max(len(arrays[f"boxes_{i}"]) for i in range(count)))
    boxes = np.zeros([count, width, 4], np.float32)
    classes = np.zeros([count, width], np.int32)
    for i in range(count):
        found = len(arrays[f"boxes_{i}"])
        boxes[i, :found] = arrays[f"boxes_{i}"] * size  # ours: pixels
        classes[i, :found] = arrays[f"classes_{i}"]
    numbers = tf.constant([len(arrays[f"boxes_{i}"]) for i in range(count)], tf.int32)
    labels = families.input_targets(config.model, width)(
        None, tf.constant(boxes), tf.constant(classes), numbers)
    normalizers = families.loss_normalizers(config.model, labels)
    with tf.GradientTape() as tape:
        outputs = families.train_outputs(config.model, model, images, labels)
        regularization = tf.add_n(model.losses)
        losses = families.compute_losses(config.model, outputs, labels, normalizers,
                                         regularization)
    variables = model.trainable_variables
    gradients = tape.gradient(losses["total_loss"], variables)
    # A second model of the same build holds the OD API's gradients, variable for
    # variable in the same order (Keras may name its layers apart).
    theirs_model = families.build_model(config.model)
    load_whole(theirs_model, os.path.join(out, "grads", "ckpt-0"), "nothing to compare")
    theirs_variables = theirs_model.trainable_variables
    assert [v.shape for v in theirs_variables] == [v.shape for v in variables]
    with open(os.path.join(out, "odapi.json")) as f:
        odapi = json.load(f)
    matches = float(normalizers["num_positives"])
    # Ours' class and box losses over the OD API's for the same sums: 1 with the mapped
    # model.loss.normalizer; (N + 1) / N with Model Garden's positives_plus_one.
    factor = ((matches + 1.0) / max(matches, 1.0)
              if config.model.loss.normalizer == "positives_plus_one" else 1.0)
    figures = {"matches": {"ours": matches, "odapi": odapi["matches"]},
               "normalizer": config.model.loss.normalizer, "factor": factor, "losses": {}}
    for term, key in (("classification", "classification_loss"),
                      ("localization", "localization_loss"),
                      ("regularization", "regularization_loss"), ("total", "total_loss")):
        figures["losses"][term] = {"ours": float(losses[key]), "odapi": odapi[term],
                                   "ours_rescaled": float(losses[key]) * (
                                       factor if term in ("classification",
                                                          "localization") else 1.0)}
    part_of = {v.ref(): part for part, members in parts.variables_by_part(model).items()
               for v in members}
    # Our initializers against the OD API's: each drawn variable's spread, ours (fresh)
    # over the OD API's initial value of the same variable.
    ratios: dict[str, list[float]] = {}
    for variable, ours_std in zip(variables, fresh, strict=True):
        theirs_std = float(np.std(variable.numpy()))
        if theirs_std > 0 and ours_std > 0:
            ratios.setdefault(part_of.get(variable.ref(), "other"), []).append(
                ours_std / theirs_std)
    figures["initial_std_ratio"] = {part: [min(values), max(values), len(values)]
                                    for part, values in ratios.items()}
    # A variable the loss does not reach (None) has a zero gradient, as the OD API's side
    # writes it.
    gradients = [tf.zeros_like(v) if g is None else g for v, g in zip(variables, gradients,
                                                                      strict=True)]
    rows = [(v.name, part_of.get(v.ref(), "other"), g.numpy() * factor, t.numpy())
            for v, g, t in zip(variables, gradients, theirs_variables, strict=True)]
    largest: dict[str, float] = {}
    for _, part, _, reference in rows:
        largest[part] = max(largest.get(part, 0.0), float(np.linalg.norm(reference)))
    worst: dict[str, tuple[float, str]] = {}
    figures["variables"] = []
    for name, part, gradient, reference in rows:
        norm = float(np.linalg.norm(reference))
        if norm <= NEGLIGIBLE * largest[part]:
            continue
        difference = float(np.linalg.norm(gradient - reference)) / norm
        figures["variables"].append({"variable": name, "part": part, "odapi_norm": norm,
                                     "relative": difference})
        if difference > worst.get(part, (-1.0, ""))[0]:
            worst[part] = (difference, name)
    figures["gradient_global_norm"] = {
        "ours": float(tf.linalg.global_norm(gradients)) * factor,
        "odapi": float(tf.linalg.global_norm(theirs_variables))}
    figures["largest_relative_difference"] = {
        part: {"relative": value, "variable": name} for part, (value, name) in worst.items()}
    with open(os.path.join(out, "comparison.json"), "w") as f:
        json.dump(figures, f, indent=1)
    return figures


def report(figures: dict) -> str:
    lines = [f"matched anchors: ours {figures['matches']['ours']:.0f}, the OD API's "
             f"{figures['matches']['odapi']:.0f}",
             f"our model.loss.normalizer: {figures['normalizer']} (ours rescaled: times "
             f"{figures['factor']:.6f}, the OD API's normaliser over ours)",
             "| loss term | OD API | ours | ours rescaled |", "|---|---|---|---|"]
    for term, values in figures["losses"].items():
        lines.append(f"| {term} | {values['odapi']:.6f} | {values['ours']:.6f} | "
                     f"{values['ours_rescaled']:.6f} |")
    for part, (low, high, count) in sorted(figures["initial_std_ratio"].items()):
        lines.append(f"initial weights ({part}, {count} drawn variables): our fresh spread "
                     f"over the OD API's, {low:.2f} .. {high:.2f}")
    norms = figures["gradient_global_norm"]
    lines.append(f"gradient global norm: OD API {norms['odapi']:.6f}, ours rescaled "
                 f"{norms['ours']:.6f}")
    for part, worst in sorted(figures["largest_relative_difference"].items()):
        lines.append(f"largest relative gradient difference ({part}, ours rescaled): "
                     f"{worst['relative']:.2e} ({worst['variable']})")
    return "\n".join(lines)


def _run(command: list[str], env: dict) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"error: {' '.join(command[:2])} failed (exit {done.returncode})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline_config", required=True, help="an SSD pipeline.config")
    parser.add_argument("--records", required=True, help="TFRecords at its input size (glob)")
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--num_images", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--side", choices=("both", "odapi", "ours"), default="both",
                        help=argparse.SUPPRESS)  # each subprocess runs one side
    parser.add_argument("--odapi_python", default=os.environ.get("ODAPI_PY", ""))
    parser.add_argument("--odapi_research", default=os.environ.get("ODAPI_RESEARCH", ""))
    args = parser.parse_args(argv)
    if args.side == "odapi":
        odapi_side(args.pipeline_config, args.records, args.work_dir, args.num_images,
                   args.seed)
        return 0
    if args.side == "ours":
        print(report(our_side(args.pipeline_config, args.work_dir)))
        return 0
    if not (args.odapi_python and os.access(args.odapi_python, os.X_OK)
            and os.path.isdir(args.odapi_research)):
        print("The OD API is absent (--odapi_python / $ODAPI_PY, --odapi_research / "
              "$ODAPI_RESEARCH): nothing measured.")
        return 0
    os.makedirs(args.work_dir, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    research = os.path.abspath(args.odapi_research)
    common = [f"--pipeline_config={os.path.abspath(args.pipeline_config)}",
              f"--records={os.path.abspath(args.records)}",
              f"--work_dir={os.path.abspath(args.work_dir)}",
              f"--num_images={args.num_images}", f"--seed={args.seed}"]
    _run([args.odapi_python, os.path.abspath(__file__), "--side=odapi", *common],
         {**env, "PYTHONPATH": f"{research}:{os.path.join(research, 'slim')}",
          "TF_USE_LEGACY_KERAS": "1"})
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--side=ours", *common],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        return 1
    print(done.stdout, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
