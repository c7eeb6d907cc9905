"""The training and input fields of a pipeline.config that combine into our keys.

Called by pipeline.py after the plain fields are mapped: the optimizer type and
its learning-rate schedule, the augmentation options, the fine-tune checkpoint
type, bfloat16, and the input readers' shuffle. Approximations are noted with
why; what cannot be honoured is refused.
"""

from __future__ import annotations

import math

from train_lib.config.odapi.mapper import Mapper
from train_lib.config.odapi.mapper import child_value as _child

__all__ = ["map_training"]

T = "train_config."
OPT = T + "optimizer."
AUG = T + "data_augmentation_options."
LR = "train_config.learning_rate."


def _optimizer(m: Mapper) -> str | None:
    """Sets the optimizer type; returns the path of its learning_rate message."""
    for name, kind in (("momentum_optimizer", "sgd"), ("adam_optimizer", "adam")):
        if m.one(OPT + name) is not None:
            m.set("train_config.optimizer.type", kind, OPT + name)
            if kind == "adam" and m.one(OPT + name + ".epsilon") is None:
                m.set("train_config.optimizer.epsilon", 1e-8, OPT + name)
            return f"{OPT}{name}.learning_rate."
    return None


def _cosine(m: Mapper, p: str, num_steps: int) -> None:
    m.set(LR + "schedule", "cosine", p[:-1])
    m.set(LR + "base", float(m.get(p + "learning_rate_base", 0.002)), p + "learning_rate_base")
    m.set(LR + "warmup_start", float(m.get(p + "warmup_learning_rate", 0.0002)),
          p + "warmup_learning_rate")
    m.set(LR + "warmup_steps", m.get(p + "warmup_steps", 10000), p + "warmup_steps")
    total = m.get(p + "total_steps", 4000000)
    if total != num_steps:
        m.approx(p + "total_steps", f"{total} differs from num_steps {num_steps}: the cosine "
                                    "here ends at train_config.num_steps")


def _exponential(m: Mapper, p: str, num_steps: int) -> None:
    every = m.get(p + "decay_steps", 4000000)
    boundaries = list(range(every, num_steps, every)) if every > 0 else []
    m.set(LR + "schedule", "step" if boundaries else "constant", p[:-1])
    m.set(LR + "base", float(m.get(p + "initial_learning_rate", 0.002)),
          p + "initial_learning_rate")
    if boundaries:
        m.set(LR + "boundaries", boundaries, p + "decay_steps")
        m.set(LR + "decay_factor", float(m.get(p + "decay_factor", 0.95)), p + "decay_factor")
    if not m.get(p + "staircase", True):
        m.approx(p + "staircase", "false: the rate drops at each multiple of decay_steps "
                                  "instead of continuously")
    if m.get(p + "burnin_steps", 0):
        m.set(LR + "warmup_steps", m.get(p + "burnin_steps"), p + "burnin_steps")
        m.set(LR + "warmup_start", float(m.get(p + "burnin_learning_rate", 0.0)),
              p + "burnin_learning_rate", "a linear warmup instead of a constant burn-in rate")
    floor = float(m.get(p + "min_learning_rate", 0.0))
    base, factor = float(m.get(p + "initial_learning_rate", 0.002)), float(
        m.get(p + "decay_factor", 0.95))
    last = base * factor ** len(boundaries) if boundaries else base
    if floor > last:
        m.refuse(p + "min_learning_rate", f"{floor:g} is above the rate {last:g} reached "
                                          "before num_steps, and a floor is not supported; "
                                          f"lower it below {last:g} (or to 0)")


def _manual(m: Mapper, p: str) -> None:
    node = m.one(p[:-1])
    steps = [_child(s, "step", 0) for s in node.fields("schedule")]
    rates = [float(_child(s, "learning_rate", 0.002)) for s in node.fields("schedule")]
    base = float(m.get(p + "initial_learning_rate", 0.002))
    if m.get(p + "warmup", False) and steps:
        m.set(LR + "warmup_steps", steps[0], p + "warmup")
        m.set(LR + "warmup_start", base, p + "warmup")
        base, steps, rates = rates[0], steps[1:], rates[1:]
    m.set(LR + "base", base, p + "initial_learning_rate")
    if not steps:
        m.set(LR + "schedule", "constant", p[:-1])
        return
    factors = [b / a for a, b in zip([base, *rates], rates, strict=False)]
    if any(not 0 < f <= 1 for f in factors):
        m.refuse(p + "schedule", "only decreasing rates are supported")
        return
    factor = math.prod(factors) ** (1 / len(factors))
    same = all(math.isclose(f, factor, rel_tol=1e-4) for f in factors)
    m.set(LR + "schedule", "step", p[:-1])
    m.set(LR + "boundaries", steps, p + "schedule")
    m.set(LR + "decay_factor", round(factor, 6), p + "schedule",
          "" if same else f"the rates {rates} become one factor {factor:.4g} per boundary")


def _learning_rate(m: Mapper, p: str, num_steps: int) -> None:
    if m.one(p + "cosine_decay_learning_rate") is not None:
        _cosine(m, p + "cosine_decay_learning_rate.", num_steps)
    elif m.one(p + "exponential_decay_learning_rate") is not None:
        _exponential(m, p + "exponential_decay_learning_rate.", num_steps)
    elif m.one(p + "manual_step_learning_rate") is not None:
        _manual(m, p + "manual_step_learning_rate.")
    elif m.one(p + "constant_learning_rate") is not None:
        m.set(LR + "schedule", "constant", p + "constant_learning_rate")
        m.set(LR + "base", float(m.get(p + "constant_learning_rate.learning_rate", 0.002)),
              p + "constant_learning_rate.learning_rate")


def crop_zoom_range(min_area: float, max_area: float, random_coef: float) -> tuple[float,
                                                                                     float]:
    """Our scale jitter [low, high] for the OD API's random crop of area a drawn uniformly
    in [min_area, max_area] (tf.image.sample_distorted_bounding_box), left uncropped with
    probability random_coef, then resized to the model's input: a zoom by 1/sqrt(a).
    The jitter draws its zoom uniformly, so it keeps the crop's least zoom
    (1/sqrt(max_area)) and its mean zoom, (1 - random_coef) * 2 (sqrt(max_area) -
    sqrt(min_area)) / (max_area - min_area) + random_coef: the crop's largest zoom
    (1/sqrt(min_area)) as `high` would zoom in about twice as much on average, cutting
    most objects to pieces (their class lost) where the OD API's crops keep them."""
    low = 1 / math.sqrt(max_area)
    if math.isclose(min_area, max_area):
        mean = low
    else:
        mean = 2 * (math.sqrt(max_area) - math.sqrt(min_area)) / (max_area - min_area)
    mean = (1 - random_coef) * mean + random_coef
    return low, max(low, 2 * mean - low)


def _augmentation(m: Mapper) -> None:
    flips = m.nodes.get(AUG + "random_horizontal_flip", [])
    m.set("train_config.augmentation.random_horizontal_flip", bool(flips),
          AUG + "random_horizontal_flip")
    if flips and _child(flips[0], "probability", 0.5) != 0.5:
        m.approx(AUG + "random_horizontal_flip", "probability: flips here are 0.5")
    ranges = []
    for node in m.nodes.get(AUG + "random_scale_crop_and_pad_to_square", []):
        ranges.append((_child(node, "scale_min", 0.1), _child(node, "scale_max", 2.0)))
    for node in m.nodes.get(AUG + "random_image_scale", []):
        ranges.append((_child(node, "min_scale_ratio", 0.5), _child(node, "max_scale_ratio", 2.0)))
    for node in m.nodes.get(AUG + "random_crop_image", []):
        ranges.append(crop_zoom_range(_child(node, "min_area", 0.1), _child(node, "max_area", 1.0),
                                      _child(node, "random_coef", 0.0)))
    if m.nodes.get(AUG + "ssd_random_crop"):
        # Its default operations: area in [0.1, 1], each kept uncropped with 0.15.
        ranges.append(crop_zoom_range(0.1, 1.0, 0.15))
    if ranges:
        origin = next(AUG + name for name in ("random_scale_crop_and_pad_to_square",
                                               "random_image_scale", "random_crop_image",
                                               "ssd_random_crop") if m.nodes.get(AUG + name))
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        note = "" if len(ranges) == 1 else f"{len(ranges)} options combine into one range"
        m.set("train_config.augmentation.scale_min", round(float(low), 4), origin, note)
        m.set("train_config.augmentation.scale_max", round(float(high), 4), origin, note)


def _fine_tune(m: Mapper) -> None:
    path = T + "fine_tune_checkpoint_type"
    kind = m.get(path)
    if kind is None and m.get(T + "from_detection_checkpoint", False):
        m.set("train_config.fine_tune_checkpoint_type", "detection",
              T + "from_detection_checkpoint")
    elif kind in ("classification", "detection", "full"):
        ours = {"classification": "backbone"}.get(kind, kind)
        m.set("train_config.fine_tune_checkpoint_type", ours, path)
    elif kind == "fine_tune":
        # The OD API's SSD and Faster R-CNN refuse it (restore_from_objects: not
        # supported); its CenterNet says it is detection's function.
        m.set("train_config.fine_tune_checkpoint_type", "detection", path,
              "fine_tune, which the OD API's SSD and Faster R-CNN refuse and its CenterNet "
              "reads as detection: detection (the backbone and, where ours computes the OD "
              "API's, the FPN; the head starts fresh)")
    elif kind is not None:
        m.refuse(path, f"{kind!r}; supported: classification, detection, full, fine_tune")


def map_training(m: Mapper) -> None:
    """Maps the combined train_config and input reader fields (see the module docstring)."""
    num_steps = m.get(T + "num_steps", 1000)
    if m.one(T + "num_steps") is not None and num_steps == 0:
        m.refuse(T + "num_steps", "0 trains forever, which is not supported; give the steps")
    lr = _optimizer(m)
    if lr is not None:
        _learning_rate(m, lr, num_steps)
    _augmentation(m)
    _fine_tune(m)
    if m.get(T + "use_bfloat16", False):
        m.set("train_config.mixed_precision", "mixed_bfloat16_on_tpu", T + "use_bfloat16")
    for reader in ("train_input_reader", "eval_input_reader"):
        m.one(reader)  # refuses a reader given twice
        if m.get(reader + ".shuffle", True) is False:
            m.set(reader + ".shuffle_buffer_size", 1, reader + ".shuffle")
