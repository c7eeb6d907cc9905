"""What changes is said once, where the user looks: mixed precision on a host without
GPU or TPU, training from random weights, the learning rate at a resumed step whose
schedule changed, a warmup as long as the run; and check_data does not refuse a
placeholder in a key it never reads (training still does)."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import REPO, make_tiny_config, run_trainer
from train_lib.config import ConfigError, TrainConfig, load_config
from train_lib.data import data_check
from train_lib.training import fine_tune, precision
from train_lib.training.optimizer import resume_learning_rate_note, warmup_warning

ODAPI_CONFIG = os.path.join(REPO, "tests", "fixtures", "odapi", "ssd_mobilenet_v2_shapes.config")


def _cosine(num_steps: int, base: float = 0.002, warmup_steps: int = 0) -> TrainConfig:
    train = TrainConfig()
    train.num_steps = num_steps
    train.learning_rate.schedule = "cosine"
    train.learning_rate.base = base
    train.learning_rate.warmup_steps = warmup_steps
    return train


# ---------------------------------------------------------------- the decisions


def test_mixed_precision_without_gpu_or_tpu_is_one_warning():
    line = precision.cpu_precision_warning("mixed_bfloat16", ["CPU"])
    assert line.startswith("WARNING: train_config.mixed_precision is mixed_bfloat16")
    assert "no GPU or TPU" in line
    assert "--params_override=train_config.mixed_precision=float32" in line
    assert precision.cpu_precision_warning("mixed_float16", ["CPU"]) is not None
    assert precision.cpu_precision_warning("mixed_bfloat16", ["CPU", "TPU"]) is None
    assert precision.cpu_precision_warning("mixed_float16", ["CPU", "GPU"]) is None
    assert precision.cpu_precision_warning("float32", ["CPU"]) is None
    # The OD API's use_bfloat16 trains in float32 off a TPU: nothing to warn of.
    assert precision.cpu_precision_warning(precision.BFLOAT16_ON_TPU, ["CPU"]) is None


def test_the_odapi_use_bfloat16_is_bfloat16_on_a_tpu_only():
    assert precision.effective(precision.BFLOAT16_ON_TPU, on_tpu=True) == "mixed_bfloat16"
    assert precision.effective(precision.BFLOAT16_ON_TPU, on_tpu=False) == "float32"
    for other in ("float32", "mixed_float16", "mixed_bfloat16"):
        assert precision.effective(other, on_tpu=False) == other
        assert precision.describe(other, on_tpu=False) is None
    assert precision.describe(precision.BFLOAT16_ON_TPU, on_tpu=False) == (
        "train_config.mixed_precision mixed_bfloat16_on_tpu (the OD API's use_bfloat16: "
        "true) runs as float32 here (no TPU strategy), as in the OD API")
    assert "runs as mixed_bfloat16 here (a TPU strategy)" in precision.describe(
        precision.BFLOAT16_ON_TPU, on_tpu=True)


def test_extending_a_cosine_run_says_the_rate_before_and_after_at_the_resumed_step():
    note = resume_learning_rate_note(_cosine(3000), _cosine(5000), 3000)
    assert note == (
        "learning rate on resume: at step 3000 the run's recorded schedule gave 0, this "
        "config's gives 0.000691 (num_steps 3000 -> 5000): the rate jumps up from 0 to "
        "0.000691 at step 3000, then follows the cosine schedule to 0 at step 5000")
    lower = resume_learning_rate_note(_cosine(5000), _cosine(5000, base=0.001), 3000)
    assert "(learning_rate.base 0.002 -> 0.001)" in lower and "drops from 0.000691" in lower
    assert resume_learning_rate_note(_cosine(3000), _cosine(3000), 2000) is None
    assert resume_learning_rate_note(_cosine(3000), _cosine(2000), 3000) is None  # finished


def test_a_warmup_as_long_as_the_run_is_warned():
    line = warmup_warning(_cosine(100, base=0.01, warmup_steps=100))
    assert line.startswith("WARNING: train_config.learning_rate.warmup_steps (100) >= "
                           "train_config.num_steps (100): the whole run is warmup")
    assert "climbs from 0 to only 0.0099 and never reaches learning_rate.base 0.01" in line
    assert warmup_warning(_cosine(100, warmup_steps=500)) is not None
    assert warmup_warning(_cosine(100, warmup_steps=99)) is None
    assert warmup_warning(_cosine(100)) is None


# ---------------------------------------------------------------- in a run, once each


def test_a_run_says_each_once_where_it_applies(tiny_dataset, tmp_path):
    from train_lib.training.trainer import train

    config = make_tiny_config(tiny_dataset, num_steps=2, mixed_precision="mixed_bfloat16")
    config.train_config.learning_rate.schedule = "cosine"
    model_dir = str(tmp_path / "run")
    first: list[str] = []
    train(config, model_dir, record_summaries=False, log=first.append)

    def count(lines: list[str], pattern: str) -> int:
        return sum(bool(re.search(pattern, line)) for line in lines)

    assert first.count(fine_tune.RANDOM_START) == 1
    accelerated = {"GPU", "TPU"} & set(precision.host_device_types())
    assert count(first, "mixed_precision is mixed_bfloat16") == (0 if accelerated else 1)
    assert count(first, "warmup_steps|learning rate on resume") == 0

    # Extended to 4 steps, with a warmup longer than that: the cosine that ended at 0 at
    # step 2 gives way to the warmup's rate there, said once; the weights are restored.
    config.train_config.learning_rate.warmup_steps = 8
    second: list[str] = []
    train(config, model_dir, num_train_steps=4, record_summaries=False, log=second.append)
    notes = [line for line in second if "learning rate on resume" in line]
    assert notes == [
        "learning rate on resume: at step 2 the run's recorded schedule gave 0, this "
        "config's gives 0.00025 (num_steps 2 -> 4, learning_rate.warmup_steps 0 -> 8): the "
        "rate jumps up from 0 to 0.00025 at step 2, then follows the cosine schedule to "
        "0.0005 at step 4"], second
    assert "config change on resume: train_config.num_steps (was 2, now 4)" in second
    assert count(second, r"warmup_steps \(8\) >= train_config.num_steps \(4\)") == 1
    assert fine_tune.RANDOM_START not in second


# ---------------------------------------------------------------- check_data


def _odapi_config_with_data(tiny_dataset, tmp_path) -> str:
    """The OD API fixture with our tiny data's paths; fine_tune_checkpoint keeps its
    PATH_TO_BE_CONFIGURED placeholder."""
    with open(ODAPI_CONFIG, encoding="utf-8") as f:
        text = f.read().replace("num_classes: 6", "num_classes: 3")
    text = re.sub(r'label_map_path: ".*"', f'label_map_path: "{tiny_dataset["label_map_path"]}"',
                  text)
    text = re.sub(r'input_path: ".*train.*"', f'input_path: "{tiny_dataset["train_pattern"]}"',
                  text)
    text = re.sub(r'input_path: ".*val.*"', f'input_path: "{tiny_dataset["val_pattern"]}"', text)
    assert text.count("PATH_TO_BE_CONFIGURED") == 1  # fine_tune_checkpoint's
    path = tmp_path / "pipeline.config"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_data_reads_a_config_whose_unused_fine_tune_checkpoint_is_a_placeholder(
        tiny_dataset, tmp_path):
    path = _odapi_config_with_data(tiny_dataset, tmp_path)
    config = data_check.load_config_to_check(path)
    assert "PATH_TO_BE_CONFIGURED" in config.train_config.fine_tune_checkpoint
    # Training reads it: refused there, naming the field.
    with pytest.raises(ConfigError, match=r"fine_tune_checkpoint still holds "
                                          r"PATH_TO_BE_CONFIGURED"):
        load_config(path)


def test_check_data_script_checks_the_data_of_such_a_config(tiny_dataset, tmp_path):
    path = _odapi_config_with_data(tiny_dataset, tmp_path)
    proc = run_trainer(f"--pipeline_config_path={path}", script="scripts/check_data.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "PATH_TO_BE_CONFIGURED" not in proc.stderr
    assert "48" in proc.stdout  # the 48 training images were read


@pytest.mark.slow
@pytest.mark.parametrize("script", ["model_main_tf2.py", "scripts/exporter_main_v2.py",
                                    "scripts/export_tflite.py"])
def test_evaluation_and_export_read_a_config_whose_fine_tune_checkpoint_is_a_placeholder(
        tiny_dataset, tmp_path, script):
    """They never read fine_tune_checkpoint: they get past the config to the checkpoint
    they are given (an empty directory here), which they refuse."""
    path = _odapi_config_with_data(tiny_dataset, tmp_path)
    empty = tmp_path / "no_checkpoints"
    empty.mkdir()
    if script == "model_main_tf2.py":
        flags = [f"--model_dir={tmp_path / 'eval'}", f"--checkpoint_dir={empty}",
                 "--eval_timeout=0"]
    else:
        flags = [f"--trained_checkpoint_dir={empty}", f"--output_directory={tmp_path / 'out'}"]
    proc = run_trainer(f"--pipeline_config_path={path}", *flags, script=script)
    assert "PATH_TO_BE_CONFIGURED" not in proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert ("holds nothing of a training run" if script == "model_main_tf2.py"
            else "no checkpoint in") in errors[0]
