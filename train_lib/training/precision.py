"""train_config.mixed_precision against the devices of this host: what the user is told.

The precision a config asks for is the one that runs (it is applied where the
model is built, families.build_model, and to the optimizer, optimizer.py) and the
one pipeline.yaml records; it is a structural key (config/compat.py). A mixed
precision pays on GPUs (float16) and TPUs (bfloat16). On a host with neither, every
step runs on the CPU, where it is usually slower than float32: mixed_bfloat16, which
an OD API pipeline.config's `use_bfloat16: true` (a TPU setting of the published
configs) becomes, made a step of the default model 1.3 to 1.6 times as long as
float32 on this project's 2-core AMD EPYC, although that CPU has AVX512-BF16.
`cpu_precision_warning` says so once, at the start of training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

ACCELERATORS = ("GPU", "TPU")


def cpu_precision_warning(precision: str, device_types: Iterable[str]) -> str | None:
    """One warning line when `precision` is a mixed precision and `device_types` (the
    host's logical device types, e.g. ["CPU"]) hold no GPU or TPU; else None."""
    if precision == "float32" or any(t.upper() in ACCELERATORS for t in device_types):
        return None
    return (f"WARNING: train_config.mixed_precision is {precision} (an OD API "
            "pipeline.config's use_bfloat16: true becomes mixed_bfloat16) but this host has "
            "no GPU or TPU: on a CPU a step is usually slower than in float32 (1.3-1.6x "
            "slower with mixed_bfloat16 for the default model on a CPU with AVX512-BF16). "
            "Set train_config.mixed_precision: float32 "
            "(--params_override=train_config.mixed_precision=float32) for a new run")


def host_device_types() -> list[str]:
    """The device types TensorFlow sees on this host (CPU, GPU, TPU once initialised)."""
    import tensorflow as tf

    return [device.device_type for device in tf.config.list_logical_devices()]


def warn_on_cpu(precision: str, log: Callable[[str], None]) -> None:
    """Logs `cpu_precision_warning` for this host, if any."""
    line = cpu_precision_warning(precision, host_device_types())
    if line:
        log(line)
