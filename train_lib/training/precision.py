"""train_config.mixed_precision: the Keras policy a training builds its model with,
and what the user is told of it on this host.

The precision a config asks for is the one pipeline.yaml records; it is a
structural key (config/compat.py). `effective` is the Keras policy it trains
with (applied where the model is built, TrainState.build; the optimizer and the
step scale the loss for mixed_float16 only): float32, mixed_float16 and
mixed_bfloat16 as named; mixed_bfloat16_on_tpu, which an OD API pipeline.config's
`use_bfloat16: true` (set by the published configs, for TPUs) becomes, is
mixed_bfloat16 under a TPU strategy (`--use_tpu`) and float32 under any other, as
in the OD API (its model_lib_v2 uses bfloat16 only with `--use_tpu`). Evaluation
and export build in float32 (the variables are float32 under every policy).

A mixed precision pays on GPUs (float16) and TPUs (bfloat16). On a host with
neither, every step runs on the CPU, where it is usually slower than float32:
mixed_bfloat16 made a step of the default model 1.3 to 1.6 times as long as
float32 on this project's 2-core AMD EPYC, although that CPU has AVX512-BF16.
`cpu_precision_warning` says so once, at the start of training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

ACCELERATORS = ("GPU", "TPU")
# bfloat16 on a TPU, float32 elsewhere: the OD API's use_bfloat16.
BFLOAT16_ON_TPU = "mixed_bfloat16_on_tpu"


def effective(precision: str, on_tpu: bool) -> str:
    """The Keras policy that train_config.mixed_precision `precision` runs as when the
    training's strategy is (`on_tpu`) or is not a TPU strategy: BFLOAT16_ON_TPU is
    mixed_bfloat16 on a TPU, else float32; every other precision is itself."""
    if precision != BFLOAT16_ON_TPU:
        return precision
    return "mixed_bfloat16" if on_tpu else "float32"


def is_tpu(strategy) -> bool:
    """Whether `strategy` (a tf.distribute.Strategy) trains on TPUs."""
    import tensorflow as tf

    return isinstance(strategy, (tf.distribute.TPUStrategy,
                                 tf.distribute.experimental.TPUStrategy))


def cpu_precision_warning(precision: str, device_types: Iterable[str]) -> str | None:
    """One warning line when `precision` is a mixed precision and `device_types` (the
    host's logical device types, e.g. ["CPU"]) hold no GPU or TPU (BFLOAT16_ON_TPU,
    which is float32 there, included); else None."""
    types = list(device_types)
    if (precision in ("float32", BFLOAT16_ON_TPU)
            or any(t.upper() in ACCELERATORS for t in types)):
        return None
    return (f"WARNING: train_config.mixed_precision is {precision} but this host has "
            "no GPU or TPU: on a CPU a step is usually slower than in float32 (1.3-1.6x "
            "slower with mixed_bfloat16 for the default model on a CPU with AVX512-BF16). "
            "Set train_config.mixed_precision: float32 "
            "(--params_override=train_config.mixed_precision=float32) for a new run")


def host_device_types() -> list[str]:
    """The device types TensorFlow sees on this host (CPU, GPU, TPU once initialised)."""
    import tensorflow as tf

    return [device.device_type for device in tf.config.list_logical_devices()]


def describe(precision: str, on_tpu: bool) -> str | None:
    """For BFLOAT16_ON_TPU, one line saying what it runs as (`effective`); else None."""
    if precision != BFLOAT16_ON_TPU:
        return None
    where = "a TPU strategy" if on_tpu else "no TPU strategy"
    return (f"train_config.mixed_precision {precision} (the OD API's use_bfloat16: true) "
            f"runs as {effective(precision, on_tpu)} here ({where}), as in the OD API")


def log_on_start(precision: str, strategy, log: Callable[[str], None]) -> None:
    """Logs what BFLOAT16_ON_TPU runs as under `strategy`, and `cpu_precision_warning`
    for this host, if any."""
    for line in (describe(precision, is_tpu(strategy)),
                 cpu_precision_warning(precision, host_device_types())):
        if line:
            log(line)
