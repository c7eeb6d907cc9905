"""Whether TensorFlow's graph optimizer (grappler) rewrites this process's functions.

`train_config.graph_optimization` picks it: `enabled`, `disabled`, or `auto` (the
default), which is disabled on a host with no GPU and no TPU, and enabled otherwise.

Why off on a CPU: grappler rewrites every traced function before its first run.
For the default RetinaNet (MobileNetV2 x0.35, 128 px, batch 16, 2 CPU cores) that
costs about 6 s of each process's start-up (21 s against 27 s for 20 steps) and
buys no speed once running (the same steps/s either way), so the cost is start-up
alone. On a GPU its layout and fusion passes pay off, so `auto` keeps it there.

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
