"""Strategies: TF_CONFIG and flag checks, mirrored over two logical CPU devices
against one device, mixed precision and XLA, and the bad-input cases on the
command line. (The two-process multi-worker job is in test_multi_worker.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, ckpt_steps, run_trainer

from train_lib.config import dump_config
from train_lib.training.distribute import DistributeError, read_cluster, resolve_strategy

TWO_WORKERS = {"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
               "task": {"type": "worker", "index": 1}}


def _tf_config(value) -> dict:
    return {"TF_CONFIG": value if isinstance(value, str) else json.dumps(value)}


def test_tf_config_read_as_tf_distribute_does():
    cluster = read_cluster(_tf_config(TWO_WORKERS))
    assert cluster.workers == ["127.0.0.1:2222", "127.0.0.1:2223"]
    assert cluster.worker_index == 1
    with_chief = read_cluster(_tf_config({
        "cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
        "task": {"type": "worker", "index": 0}}))
    assert with_chief.workers == ["a:1", "b:1", "c:1"] and with_chief.worker_index == 1
    assert read_cluster({}) is None and read_cluster(_tf_config("  ")) is None


@pytest.mark.parametrize("value, fragment", [
    ('{"cluster": {"worker": ["a:1"]', "is not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ({"task": {"type": "worker", "index": 0}}, "has no 'cluster'"),
    ({"cluster": {"worker": ["a:1"]}}, "has no 'task'"),
    ({"cluster": {"worker": ["no-port"]}, "task": {"type": "worker", "index": 0}},
     "cluster.worker must be a list of 'host:port'"),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}},
     "task.index is 2; cluster.worker has 2 address(es), so it must be 0..1"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     'task.type is "chief", which cluster does not list'),
    ({"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 0}},
     "parameter-server training is not supported"),
    ({"cluster": {"worker": ["a:1"], "evaluator": ["b:1"]},
      "task": {"type": "evaluator", "index": 0}}, "--checkpoint_dir"),
])
def test_malformed_tf_config_is_named_with_the_fix(value, fragment):
    with pytest.raises(DistributeError) as err:
        read_cluster(_tf_config(value))
    assert fragment in str(err.value)
    assert str(err.value).startswith("TF_CONFIG")


def test_auto_and_explicit_strategies_resolve():
    two = read_cluster(_tf_config(TWO_WORKERS))
    assert resolve_strategy("auto", None, False, None, num_gpus=0) == "one_device"
    assert resolve_strategy("auto", None, False, None, num_gpus=1) == "one_device"
    assert resolve_strategy("auto", None, False, None, num_gpus=4) == "mirrored"
    assert resolve_strategy("auto", None, False, two, num_gpus=0) == "multi_worker_mirrored"
    assert resolve_strategy("auto", 2, False, two, num_gpus=0) == "multi_worker_mirrored"
    assert resolve_strategy("mirrored", None, False, None, num_gpus=0) == "mirrored"
    assert resolve_strategy("auto", None, True, None, num_gpus=0) == "tpu"
    # A one-worker TF_CONFIG is a one-machine job.
    one = read_cluster(_tf_config({"cluster": {"worker": ["a:1"]},
                                   "task": {"type": "worker", "index": 0}}))
    assert resolve_strategy("auto", 1, False, one, num_gpus=0) == "one_device"


@pytest.mark.parametrize("name, num_workers, use_tpu, cluster, fragment", [
    ("auto", 3, False, TWO_WORKERS, "--num_workers=3 but TF_CONFIG lists 2 worker(s)"),
    ("auto", 2, False, None, "--num_workers=2 needs TF_CONFIG"),
    ("auto", 0, False, None, "--num_workers=0 must be at least 1"),
    ("mirrored", None, False, TWO_WORKERS, "use --strategy=multi_worker_mirrored"),
    ("one_device", None, True, None, "--use_tpu asks for the tpu strategy"),
    ("parameter_server", None, False, None, "is not one of"),
])
def test_contradicting_flags_and_tf_config(name, num_workers, use_tpu, cluster, fragment):
    parsed = read_cluster(_tf_config(cluster)) if cluster else None
    with pytest.raises(DistributeError) as err:
        resolve_strategy(name, num_workers, use_tpu, parsed, num_gpus=0)
    assert fragment in str(err.value)


def _assert_clean_failure(proc, fragment: str) -> None:
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr[-3000:]


@pytest.mark.parametrize("env, flags, fragment", [
    (_tf_config('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": '),
     [], "TF_CONFIG is not valid JSON"),
    (_tf_config(TWO_WORKERS), ["--num_workers=3"], "--num_workers=3 but TF_CONFIG lists 2"),
    ({}, ["--use_tpu"], "no TPU found"),
])
def test_cli_refuses_a_bad_job_description_before_training(tiny_config_file, tmp_path, env,
                                                           flags, fragment):
    model_dir = tmp_path / "run"
    proc = run_trainer(f"--pipeline_config_path={tiny_config_file}",
                       f"--model_dir={model_dir}", *flags, env=env, timeout=300)
    _assert_clean_failure(proc, fragment)
    assert not model_dir.exists()  # nothing was written


@pytest.mark.slow
def test_cli_mirrored_on_one_device_trains_and_says_so(tiny_config_file, tmp_path):
    model_dir = tmp_path / "run"
    proc = run_trainer(f"--pipeline_config_path={tiny_config_file}",
                       f"--model_dir={model_dir}", "--strategy=mirrored",
                       "--num_train_steps=2", "--checkpoint_every_n=2",
                       "--norecord_summaries")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "strategy mirrored over a single device (/device:CPU:0): it trains as one_device " \
        "would" in proc.stderr
    assert ckpt_steps(model_dir) == [2]


# Runs in a fresh process: logical devices must be set before TensorFlow starts.
MIRRORED_RUNS = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from absl import logging
logging.set_verbosity(logging.INFO)
from train_lib.training import distribute
from train_lib.config import load_config
from train_lib.training.trainer import train
config, out = load_config({config!r}), {{}}
def run(name, strategy, steps, model_dir):
    result = train(config, model_dir, num_train_steps=steps, checkpoint_every_n=3,
                   record_summaries=False, strategy=distribute.build_strategy(strategy))
    out.setdefault(name, []).extend(result.loss_history)
import time
began = time.time()
run("one_device", "one_device", 5, {tmp!r} + "/one")
run("mirrored", "mirrored", 5, {tmp!r} + "/two")
print("RESULT " + json.dumps(out), time.time() - began)
"""


@pytest.mark.slow
def test_mirrored_on_two_devices_follows_one_device(tiny_config, tmp_path):
    """Same global batch of 4: two replicas of 2 give one device's loss trajectory.

    Tolerance: the first step within 1e-5 (same batch, same weights: only the
    order of float sums differs); the next steps within 3%, as SGD amplifies
    those rounding differences step by step. Sync batch norm makes the batch
    statistics those of the global batch. The learning rate keeps training in a
    stable regime (the loss falls): at 0.02 the loss rises from step 3 on some
    batch orders, and an unstable trajectory amplifies rounding differences past
    any fixed bound (measured: 13% at step 4), whichever strategy is right.
    """
    config = tiny_config
    config.model.norm.use_sync_bn = True
    config.train_config.optimizer.type = "sgd"
    config.train_config.learning_rate.base = 0.005
    config.train_config.log_every_n = 1
    path = str(tmp_path / "config.yaml")
    dump_config(config, path)
    script = MIRRORED_RUNS.format(config=path, tmp=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "strategy mirrored over 2 devices" in proc.stderr
    out = json.loads(proc.stdout.split("RESULT ", 1)[1].rsplit(" ", 1)[0])
    one, two = ([loss for _, loss in out[k]] for k in ("one_device", "mirrored"))
    assert [s for s, _ in out["mirrored"]] == [1, 2, 3, 4, 5]
    assert two[0] == pytest.approx(one[0], rel=1e-5)
    assert two == pytest.approx(one, rel=0.03)


@pytest.mark.slow
def test_bfloat16_mixed_precision_with_xla_trains_on_cpu(tiny_config, tmp_path):
    import tf_keras

    from train_lib.families import build_model
    from train_lib.training.trainer import train

    config = tiny_config
    config.train_config.mixed_precision = "mixed_bfloat16"
    config.train_config.jit_compile = True
    model = build_model(config.model, "mixed_bfloat16")
    dtypes = {layer.compute_dtype for layer in model.backbone.layers if layer.weights}
    assert dtypes == {"bfloat16"}
    assert all(v.dtype == "float32" for v in model.variables)  # checkpoints as in float32
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # restored

    model_dir = str(tmp_path / "run")
    result = train(config, model_dir, num_train_steps=3, checkpoint_every_n=3,
                   record_summaries=False)
    assert result.step == 3 and ckpt_steps(model_dir) == [3]
    losses = [loss for _, loss in result.loss_history]
    assert all(0 < loss < 10 for loss in losses)
    assert result.final_losses["total_loss"] < 10


@pytest.mark.parametrize("precision, compute_dtype", [
    ("mixed_bfloat16", "bfloat16"), ("mixed_bfloat16_on_tpu", "float32")])
def test_the_training_state_builds_the_precision_its_strategy_runs(
        tiny_config, precision, compute_dtype):
    """mixed_bfloat16_on_tpu (the OD API's use_bfloat16) trains in float32 under a
    strategy that is no TPU strategy, as the OD API; mixed_bfloat16 as named."""
    import tensorflow as tf

    from train_lib.training.state import TrainState

    tiny_config.train_config.mixed_precision = precision
    state = TrainState.build(tiny_config, tf.distribute.OneDeviceStrategy("/cpu:0"))
    dtypes = {layer.compute_dtype for layer in state.model.backbone.layers if layer.weights}
    assert dtypes == {compute_dtype}


def test_mixed_float16_scales_the_loss(tiny_config):
    import tf_keras

    from train_lib.training.optimizer import build_optimizer

    tiny_config.train_config.mixed_precision = "mixed_float16"
    optimizer = build_optimizer(tiny_config.train_config)
    assert isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    tiny_config.train_config.mixed_precision = "mixed_bfloat16"  # bf16 needs no scaling
    assert not isinstance(build_optimizer(tiny_config.train_config),
                          tf_keras.mixed_precision.LossScaleOptimizer)


def test_slurm_script_gives_each_task_its_tf_config(tmp_path):
    """scripts/slurm_train.sh with stand-ins for SLURM's scontrol and srun (which
    cannot run here) and for the trainer, which prints what it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        "scontrol": '[ "$1 $2" = "show hostnames" ] && printf "node-a\\nnode-b\\n"',
        "srun": ('while [[ "$1" == --* ]]; do shift; done\n'
                 'for i in $(seq 0 $((SLURM_NTASKS - 1))); do SLURM_PROCID=$i "$@" || exit; done'),
        "trainer": (f'exec {sys.executable} -c "import json, os, sys; print(json.dumps('
                    '[os.environ[\'TF_CONFIG\'], sys.argv[1:]]))" "$@"'),
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_NTASKS="2",
               SLURM_JOB_NODELIST="node-[a-b]", MODEL_DIR="/shared/run",
               PYTHON=str(bin_dir / "trainer"))
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "slurm_train.sh"),
                           "--checkpoint_every_n=500"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    tasks = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(tasks) == 2
    for index, (tf_config, argv) in enumerate(tasks):
        cluster = read_cluster({"TF_CONFIG": tf_config})
        assert cluster.workers == ["node-a:12345", "node-b:12346"]
        assert cluster.worker_index == index
        assert argv == ["model_main_tf2.py",
                        "--pipeline_config_path=configs/shapes_retinanet.yaml",
                        "--model_dir=/shared/run", "--num_workers=2",
                        "--checkpoint_every_n=500"]


def test_graph_optimization_auto_disables_grappler_on_a_cpu_host(tiny_config, tmp_path):
    import tensorflow as tf

    from train_lib.training.trainer import train

    def losses(setting: str, run: str) -> dict[str, float]:
        tiny_config.train_config.graph_optimization = setting
        result = train(tiny_config, str(tmp_path / run), num_train_steps=2,
                       checkpoint_every_n=2, record_summaries=False)
        disabled = tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"]
        assert disabled == (setting != "enabled")
        return result.final_losses

    enabled = losses("enabled", "enabled")
    auto = losses("auto", "auto")  # no GPU or TPU here: disabled
    # Whether grappler's rewrites round differently depends on the CPU (they did on one
    # 2-core host, gave the same losses on another), so only closeness is asserted.
    assert all(abs(auto[k] - enabled[k]) < 1e-3 for k in auto)
