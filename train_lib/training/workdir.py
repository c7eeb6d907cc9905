"""What a run needs on disk before training: a writable model_dir, the resolved
config (and its drift check on resume), and input files (the built-in shapes
dataset is generated when its config says where and it is absent)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
from collections.abc import Callable, Iterator

from train_lib import config as config_lib
from train_lib.checkpointing.files import list_steps
from train_lib.config import ConfigError, PipelineConfig
from train_lib.data import input_files

PIPELINE_FILE = "pipeline.yaml"
# What a run writes into model_dir before its first checkpoint (besides its lock).
START_FILES = (PIPELINE_FILE, "fine_tune_report.json")


class ModelDirError(ConfigError):
    """model_dir cannot be used: the message says why and what to do."""


def prepare_model_dir(model_dir: str) -> None:
    """Creates model_dir if needed and checks it is a writable directory."""
    if not model_dir:
        raise ModelDirError("--model_dir is required: the directory for checkpoints and logs")
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ModelDirError(f"--model_dir {model_dir} exists and is not a directory; "
                            "choose another path")
    try:
        os.makedirs(model_dir, exist_ok=True)
    except OSError as err:
        raise ModelDirError(f"cannot create --model_dir {model_dir}: {err.strerror}; "
                            "choose a path you can write to") from None
    probe = os.path.join(model_dir, f".write_test.{os.getpid()}")
    try:
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as err:
        raise ModelDirError(f"--model_dir {model_dir} is not writable ({err.strerror}); "
                            "fix its permissions or choose another path") from None


def remove_if_unused(model_dir: str) -> None:
    """Removes `model_dir` (which this run created) unless it holds a checkpoint:
    a run that failed before saving leaves nothing behind."""
    if os.path.isdir(model_dir) and not list_steps(model_dir):
        shutil.rmtree(model_dir, ignore_errors=True)


@contextlib.contextmanager
def undone_on_failed_start(model_dir: str, enabled: bool = True) -> Iterator[None]:
    """Leaves `START_FILES` in model_dir as they were when the block fails before any
    checkpoint is in model_dir (a fine-tune checkpoint that does not fit, a bad
    record before the first step...): each is put back, or removed if it was not
    there. Nothing else in model_dir is touched; once a checkpoint exists the files
    describe it and stay. Use it while holding the run's lock, so that the files
    are this run's."""
    before = {}
    if enabled:
        for name in START_FILES:
            path = os.path.join(model_dir, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    before[name] = f.read()
            else:
                before[name] = None
    try:
        yield
    except BaseException:
        if enabled and os.path.isdir(model_dir) and not list_steps(model_dir):
            for name, content in before.items():
                path = os.path.join(model_dir, name)
                with contextlib.suppress(OSError):
                    if content is None:
                        os.remove(path)
                    else:
                        with open(path + ".tmp", "wb") as f:
                            f.write(content)
                        os.replace(path + ".tmp", path)
        raise


def check_config_drift(config: PipelineConfig, model_dir: str,
                       log: Callable[[str], None]) -> None:
    """Records the resolved config in model_dir/pipeline.yaml. When model_dir
    already has checkpoints (a resume), refuses a config whose model structure
    differs from the recorded one, naming the keys, and logs other differences
    (and, when they change the learning rate at the newest checkpoint's step, the
    rate before and after); the record is then updated to the config in force."""
    path = os.path.join(model_dir, PIPELINE_FILE)
    resuming = bool(glob.glob(os.path.join(model_dir, "ckpt-*.index")))
    if resuming and os.path.exists(path):
        _compare_with_recorded(config, path, model_dir, log)
    config_lib.dump_config(config, path + ".tmp")
    os.replace(path + ".tmp", path)  # a kill mid-write never leaves a torn record


def _compare_with_recorded(config: PipelineConfig, path: str, model_dir: str,
                           log: Callable[[str], None]) -> None:
    saved = config_lib.load_config(path)
    structural = config_lib.structural_differences(saved, config)
    if structural:
        keys = ", ".join(structural)
        # The recorded values as --params_override pairs: what continues the run as
        # trained, also when the config file itself did not change but its mapping did
        # (an OD API pipeline.config mapped by a newer version of this trainer).
        back = ",".join(f"{key}={json.dumps(_lookup(saved, key), separators=(',', ':'))}"
                        for key in structural)
        raise ConfigError(
            f"the config changes the model's structure ({keys}) compared with the run in "
            f"{model_dir} (see {path}); its checkpoints would not fit. Undo those changes "
            f"(--params_override='{back}' sets the recorded values), or train into a new "
            "--model_dir")
    for key in config_lib.other_differences(saved, config):
        log(f"config change on resume: {key} (was {_lookup(saved, key)!r}, "
            f"now {_lookup(config, key)!r})")
    from train_lib.training.optimizer import resume_learning_rate_note  # TensorFlow

    note = resume_learning_rate_note(saved.train_config, config.train_config,
                                     max(list_steps(model_dir), default=0))
    if note:
        log(note)


def _lookup(config: PipelineConfig, dotted: str):
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def ensure_shapes_dataset(config: PipelineConfig, log: Callable[[str], None]) -> None:
    """Generates the shapes dataset into `shapes_dataset.output_dir` when the
    config names one and the train input files are not there yet."""
    spec = config.shapes_dataset
    if not spec.output_dir:
        return
    patterns = config.train_input_reader.input_path
    if patterns and all(glob.glob(p) for p in patterns):
        return
    from train_lib.data import shapes_dataset  # imported only when needed

    log(f"the shapes dataset is absent: generating {spec.num_train} train and "
        f"{spec.num_val} val images into {spec.output_dir} (once)")
    shapes_dataset.generate(
        spec.output_dir,
        num_train=spec.num_train,
        num_val=spec.num_val,
        image_size=spec.image_size,
        num_shards=spec.num_shards,
        seed=spec.seed,
    )


def train_files(config: PipelineConfig, log: Callable[[str], None]) -> list[str]:
    """The training input files, after generating the built-in dataset if needed;
    also checks the label map against model.num_classes."""
    ensure_shapes_dataset(config, log)
    files = input_files.resolve_input_files(config.train_input_reader, "train_input_reader")
    input_files.check_label_map(config, config.train_input_reader, "train_input_reader")
    return files
