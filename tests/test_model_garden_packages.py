"""model_garden_packages: train_lib imports Model Garden's modules without the task and
experiment registries of `official.vision`'s and `official.core`'s package __init__s,
and the models it builds from them are whole; a program that imported
`official.vision` first keeps it as it was."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

# What `official/vision/__init__.py` and `official/core/__init__.py` import and no
# module of this project needs.
_REGISTRY_MODULES = ("official.vision.tasks", "official.core.base_trainer",
                     "official.core.input_reader", "tensorflow_datasets", "orbit", "matplotlib")


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def _model_and_modules(first: str) -> tuple[list, list]:
    """(the default model's variables, names and shapes; which of _REGISTRY_MODULES
    are imported) in a process that runs `first` before importing train_lib."""
    code = (f"{first}\n"
            "import sys\n"
            "from train_lib import cli\n"
            "cli.tensorflow_defaults()\n"
            "import train_lib.training.trainer, train_lib.evaluation.continuous\n"
            "import train_lib.export.saved_model, train_lib.export.tflite\n"
            "from train_lib import families\n"
            "from train_lib.config import load_config\n"
            "net = families.build_model(load_config('configs/shapes_retinanet.yaml').model)\n"
            "print(repr((sorted((v.name, tuple(v.shape)) for v in net.variables),\n"
            f"            [m for m in {_REGISTRY_MODULES!r} if m in sys.modules])))\n")
    return eval(_run(code))


def test_training_evaluation_and_export_import_no_registry_and_build_the_same_model():
    variables, imported = _model_and_modules("")
    assert imported == []
    # With Model Garden's package __init__s run first, as its own trainer runs them:
    # the same model (backbone, FPN, heads: the modeling modules fill the backbone
    # and decoder registries themselves).
    with_registries, imported = _model_and_modules(
        "from official.vision import registry_imports")
    assert "official.vision.tasks" in imported
    assert variables == with_registries and len(variables) > 200


def test_official_vision_imported_first_is_left_as_it_is():
    code = ("import official.vision\n"
            "import train_lib.families\n"
            "from official.core import exp_factory\n"
            "print(repr((hasattr(official.vision, 'tasks'),\n"
            "            'retinanet_resnetfpn_coco' in exp_factory._REGISTERED_CONFIGS)))\n")
    assert eval(_run(code)) == (True, True)
