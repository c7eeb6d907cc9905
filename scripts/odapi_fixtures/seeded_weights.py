"""The values the OD API fixtures give every checkpoint variable, from its key alone.

make_odapi_fixtures.py assigns them to the OD API's model before it records the
model's outputs; a test whose fixture keeps only the checkpoint's names and shapes
(a full-width ResNet's weights are too large to commit) writes the same values
under the same keys and so holds the checkpoint the OD API wrote. Pure numpy:
both the OD API's environment and the project's import it.
"""

from __future__ import annotations

import zlib

import numpy as np

SEED = 20261205
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def value(key: str, shape: list[int]) -> np.ndarray:
    """The float32 value of the checkpoint variable `key` of `shape`: a scale that
    keeps activations O(1) through a deep network: kernels He-scaled, batch-norm
    gamma around 0.5 (a residual sum then grows slowly), beta and means small,
    variances around 1 (never <= 0). Seeded by the key, so any subset of a
    checkpoint's variables is made alike."""
    rng = np.random.default_rng([SEED, zlib.crc32(key.encode())])
    attribute = key[:-len(VALUE_SUFFIX)].rsplit("/", 1)[-1] if key.endswith(
        VALUE_SUFFIX) else key.rsplit("/", 1)[-1]
    if attribute == "moving_variance":
        result = rng.uniform(0.5, 1.5, shape)
    elif attribute == "gamma":
        result = rng.uniform(0.3, 0.7, shape)
    elif attribute in ("beta", "moving_mean", "bias"):
        result = rng.normal(0.0, 0.1, shape)
    else:  # kernels: fan-in of [kh, kw, in, out], a depthwise [kh, kw, in, 1], or [in, out]
        fan_in = int(np.prod(shape[:-1])) if shape[-1] != 1 else int(np.prod(shape[:2]))
        result = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), shape)
    return result.astype(np.float32)
