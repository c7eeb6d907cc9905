"""Whether TensorFlow's graph optimizer (grappler) rewrites this process's functions.

`train_config.graph_optimization` picks it: `enabled`, `disabled`, or `auto` (the
default), which is disabled on a host with no GPU and no TPU, and enabled otherwise.

Why off on a CPU: grappler rewrites every traced function before its first run.
For the default RetinaNet (MobileNetV2 x0.35, 128 px, batch 16, 2 CPU cores) that
cost 3 s of the training loop's first call (4.9 s against 7.9 s) and about 6 s of
a 20-step run's process (20.4-20.8 s against 25.6-27.9 s), and bought no speed
once running (6.85 against 6.54 steps/s, the two loops timed in turn). On a GPU
its layout and fusion passes pay off, so `auto` keeps it there.

Turning it off changes the float results slightly (another order of additions),
so runs compare bit for bit only under the same setting; one setting gives the
same results on every run, resume included.
"""

from __future__ import annotations

import tensorflow as tf

from train_lib.config.schema import GRAPH_OPTIMIZATIONS as SETTINGS


def enabled(setting: str) -> bool:
    """Whether grappler runs under `setting` (one of SETTINGS) on this host.

    Raises ValueError for another setting (configs are validated before)."""
    if setting not in SETTINGS:
        raise ValueError(f"graph_optimization {setting!r} is not one of {SETTINGS}")
    if setting == "auto":
        # Physical devices: listing them does not start the runtime.
        return bool(tf.config.list_physical_devices("GPU")
                    or tf.config.list_physical_devices("TPU"))
    return setting == "enabled"


def apply(setting: str) -> bool:
    """Sets grappler on or off for every function this process traces from now on
    (functions traced before keep what they had).

    Args:
      setting: `train_config.graph_optimization`, one of SETTINGS.
    Returns:
      whether grappler is on.
    """
    on = enabled(setting)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not on})
    return on
