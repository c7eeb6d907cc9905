"""Quiet logs (train_lib/cli.py): a default run shows our lines and anyone's warnings, not
Model Garden's and TensorFlow's INFO chatter; absl's --verbosity=1 brings that back."""

from __future__ import annotations

import logging
import os

import pytest

from tests.conftest import REPO, run_trainer, use_mobilenet
from train_lib.cli import OwnLinesFilter
from train_lib.config import dump_config

LIBRARY_FILE = "/usr/lib/python3/site-packages/official/vision/modeling/layers/nn_layers.py"


def _record(pathname: str, level: int) -> logging.LogRecord:
    return logging.LogRecord("absl", level, pathname, 1, "message", None, None)


@pytest.mark.parametrize(("pathname", "level", "shown"), [
    (os.path.join(REPO, "train_lib", "training", "trainer.py"), logging.INFO, True),
    (os.path.join(REPO, "scripts", "exporter_main_v2.py"), logging.INFO, True),
    (os.path.join(REPO, "model_main_tf2.py"), logging.INFO, True),
    (LIBRARY_FILE, logging.INFO, False),
    (LIBRARY_FILE, logging.DEBUG, False),
    (LIBRARY_FILE, logging.WARNING, True),
    (LIBRARY_FILE, logging.ERROR, True),
    (os.path.join(REPO, ".venv", "lib", "tensorflow", "functional_saver.py"), logging.INFO,
     False),
])
def test_filter_passes_our_lines_and_anyones_warnings(pathname, level, shown):
    assert OwnLinesFilter().filter(_record(pathname, level)) is shown


@pytest.mark.parametrize(("pathname", "level", "shown"), [
    (os.path.join(REPO, "scripts", "exporter_main_v2.py"), logging.INFO, True),
    (os.path.join(REPO, "train_lib", "export", "saved_model.py"), logging.WARNING, True),
    (LIBRARY_FILE, logging.WARNING, False),  # e.g. "Skipping full serialization ..."
    (LIBRARY_FILE, logging.ERROR, True),
])
def test_without_library_warnings_only_our_lines_and_errors_pass(pathname, level, shown):
    """Export and detect (cli.main(..., library_warnings=False)): our lines only."""
    assert OwnLinesFilter(library_warnings=False).filter(_record(pathname, level)) is shown


def _run(model_dir, *extra: str):
    proc = run_trainer(*extra, f"--model_dir={model_dir}", "--num_train_steps=2",
                       "--checkpoint_every_n=2", "--record_summaries=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


@pytest.mark.slow
def test_default_run_shows_our_lines_only_and_verbosity_1_the_rest(tiny_config, tmp_path):
    """On the default config's backbone (MobileNetV2), whose Model Garden builder logs
    each round_filter at INFO."""
    path = str(tmp_path / "tiny.yaml")
    dump_config(use_mobilenet(tiny_config), path)
    config = f"--pipeline_config_path={path}"
    quiet = _run(tmp_path / "quiet", config)
    for chatter in ("round_filter", "stochastic_depth_drop_rate", "FPN input_specs",
                    "Sharding callback", "Input dict contained keys"):
        assert chatter not in quiet, quiet
    assert "training from step 0 to 2" in quiet and "saved ckpt-2" in quiet, quiet

    verbose = _run(tmp_path / "verbose", config, "--verbosity=1")
    assert "round_filter input=" in verbose
    assert "training from step 0 to 2" in verbose and "saved ckpt-2" in verbose
