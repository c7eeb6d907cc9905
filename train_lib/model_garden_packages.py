"""Model Garden's modules without the registries its package `__init__`s import.

Importing any module under `official.vision` first runs `official/vision/__init__.py`,
which imports every task and config of Model Garden's vision library (their
registries, matplotlib, tensorflow_datasets through `official.core`), and any module
under `official.core` runs `official/core/__init__.py`, which imports its trainer,
its input reader (tensorflow_datasets) and Orbit. This project uses neither: it
builds Model Garden's models, ops and losses from their own modules. Measured with
`python -X importtime`, those two `__init__`s were 1.2-2.4 s of the 2.4-3.4 s
Model Garden's modules took to import (docs/performance.md, "Start-up").

`skip_package_inits()` registers `official.vision` and `official.core` as packages
whose `__init__` has not run (their `__path__` set, nothing else), so that importing
`official.vision.modeling.factory` imports that module and what it imports, no more.
No file of Model Garden is changed, and every module imported runs as written.

Contract: call it before anything imports `official.vision` or `official.core`
(`train_lib/__init__` does, so every train_lib import is covered). It changes
nothing when they are already imported (a program that wants Model Garden's task
and experiment registries imports `official.vision` before `train_lib`) or when
Model Garden is not installed (the TFLite runtime runs without it).
"""

from __future__ import annotations

import importlib.util
import sys

PACKAGES = ("official.core", "official.vision")


def skip_package_inits() -> None:
    """Registers each of PACKAGES, not yet imported, without running its `__init__`
    (see the module docstring)."""
    for name in PACKAGES:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)  # imports `official`, whose __init__ is empty
        except ImportError:  # no Model Garden (or it is blocked): nothing to do
            return
        if spec is None or spec.submodule_search_locations is None:
            return
        module = importlib.util.module_from_spec(spec)  # __path__, __spec__; nothing run
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, module)
