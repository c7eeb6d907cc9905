"""cli.tensorflow_defaults: the environment every entry point gives TensorFlow before
importing it (its C++ log level; oneDNN's kernels on x86-64), the user's own values
kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from train_lib import cli


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(cli.CPP_LOG_LEVEL, raising=False)
    monkeypatch.delenv(cli.ONEDNN, raising=False)
    monkeypatch.delenv(cli.LEGACY_KERAS, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("machine", "onednn"), [
    ("x86_64", "1"), ("AMD64", "1"), ("aarch64", None), ("arm64", None)])
def test_onednn_on_x86_64_only(clean_env, machine, onednn):
    clean_env.setattr(cli.platform, "machine", lambda: machine)
    cli.tensorflow_defaults()
    assert os.environ.get(cli.ONEDNN) == onednn
    assert os.environ[cli.CPP_LOG_LEVEL] == "2"


def test_the_users_values_win(clean_env):
    clean_env.setattr(cli.platform, "machine", lambda: "x86_64")
    clean_env.setenv(cli.ONEDNN, "0")
    clean_env.setenv(cli.CPP_LOG_LEVEL, "0")
    clean_env.setenv(cli.LEGACY_KERAS, "0")
    cli.tensorflow_defaults()
    assert os.environ[cli.ONEDNN] == "0" and os.environ[cli.CPP_LOG_LEVEL] == "0"
    assert os.environ[cli.LEGACY_KERAS] == "0"


def test_the_trainer_sets_them_before_tensorflow_is_imported():
    """model_main_tf2.py and cli.main, in a process started without them: they are set
    by the time the run function runs, and TensorFlow (which reads them once, when it
    is imported) is not imported yet."""
    env = {k: v for k, v in os.environ.items() if k not in (cli.ONEDNN, cli.CPP_LOG_LEVEL)}
    code = ("import os, platform, sys\n"
            "import model_main_tf2\n"
            "from train_lib import cli\n"
            "def run():\n"
            "    get = os.environ.get\n"
            "    print(repr(('tensorflow' in sys.modules, get('TF_ENABLE_ONEDNN_OPTS'),\n"
            "                get('TF_CPP_MIN_LOG_LEVEL'), platform.machine())))\n"
            "    return 0\n"
            "cli.main(run)(['model_main_tf2.py'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported, onednn, level, machine = eval(proc.stdout.strip().splitlines()[-1])
    assert not imported
    assert level == "2"
    assert onednn == ("1" if machine.lower() in ("x86_64", "amd64") else None)


def test_keras_3_is_not_imported():
    """With the defaults, TensorFlow, tf_keras, Model Garden's model factory and this
    project's families load without Keras 3 (a fifth of TensorFlow's import time), and
    `tf.keras` is tf_keras, the Keras that every model here is built with."""
    env = {k: v for k, v in os.environ.items() if k != cli.LEGACY_KERAS}
    code = ("import sys\n"
            "from train_lib import cli\n"
            "cli.tensorflow_defaults()\n"
            "import tensorflow as tf, tf_keras\n"
            "from train_lib import families\n"
            "families.build_model\n"
            "from official.vision.modeling import factory\n"
            "print(repr((sorted(m for m in sys.modules if m.split('.')[0] == 'keras'),\n"
            "            tf.keras.Model is tf_keras.Model)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    keras_3_modules, same_keras = eval(proc.stdout.strip().splitlines()[-1])
    assert keras_3_modules == []
    assert same_keras
