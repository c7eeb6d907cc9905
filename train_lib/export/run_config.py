"""The pipeline config an exporter reads: `--pipeline_config_path` if given, else the
`pipeline.yaml` that training wrote into `--trained_checkpoint_dir`.

Both exporters (scripts/exporter_main_v2.py, scripts/export_tflite.py) resolve it
here, before TensorFlow is imported: a wrong directory costs one `error:` line, not
a model load. A directory with checkpoints but no pipeline.yaml (an OD API
model_dir, whose config lives elsewhere) is told apart from one with no checkpoint.
"""

from __future__ import annotations

import os

from train_lib.checkpointing.files import list_steps
from train_lib.errors import UserError
from train_lib.training.workdir import PIPELINE_FILE

# The file name of an OD API pipeline config (a zoo model's tarball has one beside
# its checkpoint/ directory), which --pipeline_config_path takes as it is.
ODAPI_CONFIG_FILE = "pipeline.config"


class RunConfigError(UserError, ValueError):
    """The exporter's flags name no config; the message says which flag to give."""


def run_config_path(trained_checkpoint_dir: str | None,
                    pipeline_config_path: str | None) -> str:
    """`pipeline_config_path` if given (load_config checks that it exists), else
    `<trained_checkpoint_dir>/pipeline.yaml`, which must exist. Raises RunConfigError
    saying which flag to give (and naming the directory, when one is given); a
    directory with checkpoints and an OD API pipeline.config in it or its parent is
    told to pass that file."""
    if pipeline_config_path:
        return pipeline_config_path
    if not trained_checkpoint_dir:
        raise RunConfigError("give --trained_checkpoint_dir (its newest checkpoint is "
                             "exported, with its pipeline.yaml) or --checkpoint_path and "
                             "--pipeline_config_path")
    if not os.path.isdir(trained_checkpoint_dir):
        raise RunConfigError(f"--trained_checkpoint_dir {trained_checkpoint_dir} is not a "
                             "directory: give the training model_dir")
    path = os.path.join(trained_checkpoint_dir, PIPELINE_FILE)
    if os.path.isfile(path):
        return path
    if list_steps(trained_checkpoint_dir):
        parent = os.path.dirname(os.path.abspath(trained_checkpoint_dir))
        beside = [os.path.join(d, ODAPI_CONFIG_FILE) for d in (trained_checkpoint_dir, parent)]
        found = next((config for config in beside if os.path.isfile(config)), None)
        raise RunConfigError(f"--trained_checkpoint_dir {trained_checkpoint_dir} holds "
                             f"checkpoints but no {PIPELINE_FILE} (this trainer writes one "
                             "into every model_dir; an OD API model_dir keeps its config "
                             "elsewhere): give --pipeline_config_path"
                             + (f" (for instance --pipeline_config_path={found})" if found
                                else ""))
    raise RunConfigError(f"no checkpoint in {trained_checkpoint_dir} (no {PIPELINE_FILE}, "
                         "which the trainer writes); train first, or give "
                         "--pipeline_config_path and --checkpoint_path")
