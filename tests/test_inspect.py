"""train_lib.report.inspect and scripts/inspect_checkpoints.py on real model_dirs written by
CheckpointManager over a tiny tf_keras model + SGD (a real `optimizer/_iterations`) and a
tf.data iterator (a variant tensor), without the detection model."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import tensorflow as tf
import tf_keras

from train_lib.checkpointing import INVALID_DIR, LOCK_FILE, STATE_FILE, CheckpointManager
from train_lib.checkpointing.policy import CheckpointPolicy
from train_lib.config import PipelineConfig, dump_config
from train_lib.report.format import format_report, report_json
from train_lib.report.inspect import inspect_model_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSON_KEYS = {"checkpoints", "summary", "expected", "anomalies"}


def run(model_dir, saves: list[tuple[int, str]], keep: int = 3, resume: bool = False) -> None:
    """One trainer process: optionally restore, then save at each (step, reason), with the
    optimizer's step counter set to the step."""
    model = tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Dense(2)])
    optimizer = tf_keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    iterator = iter(tf.data.Dataset.range(100))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, iterator=iterator)
    manager = CheckpointManager(str(model_dir), checkpoint,
                                CheckpointPolicy(every_n=2, max_to_keep=keep), log=lambda _: None)
    if resume:
        manager.restore()
    for step, reason in saves:
        optimizer.iterations.assign(step)
        next(iterator)
        manager.save(step, reason)


def write_pipeline(model_dir, num_steps: int) -> None:
    config = PipelineConfig()
    config.train_config.num_steps = num_steps
    config.train_config.learning_rate.warmup_steps = 0
    dump_config(config, os.path.join(model_dir, "pipeline.yaml"))


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory) -> str:
    """every_n=2, max_to_keep=3, num_steps=9: saves 2, 4; resumed at 4; saves 6, 8, 9 (end)."""
    model_dir = str(tmp_path_factory.mktemp("clean") / "run")
    run(model_dir, [(2, "interval"), (4, "interval")])
    run(model_dir, [(6, "interval"), (8, "interval"), (9, "end")], resume=True)
    write_pipeline(model_dir, 9)
    return model_dir


@pytest.fixture
def copy_dir(clean_dir, tmp_path) -> str:
    target = str(tmp_path / "run")
    shutil.copytree(clean_dir, target)
    return target


def test_clean_run_lists_explains_and_matches_the_settings(clean_dir, copy_dir):
    report = inspect_model_dir(clean_dir, every_n=2, max_to_keep=3)
    rows = [(c.step, c.reason, c.valid, c.latest, c.kept_forever, c.optimizer_step, c.time_source)
            for c in report.checkpoints]
    assert rows == [(6, "interval", True, False, False, 6, "event"),
                    (8, "interval", True, False, False, 8, "event"),
                    (9, "end", True, True, False, 9, "event")]
    assert all(c.size_bytes > 0 and c.problem is None for c in report.checkpoints)
    summary = report.summary
    assert summary["saves"] == 5 and summary["saves_by_reason"] == {"interval": 4, "end": 1}
    assert summary["removed_by_max_to_keep"] == [2, 4] and summary["kept_by_hours"] == []
    assert summary["restores"] == [4] and summary["skipped_invalid"] == []
    assert summary["settings"] == {"checkpoint_every_n": 2, "checkpoint_max_to_keep": 3,
                                   "num_steps": 9}  # num_steps from model_dir/pipeline.yaml
    assert report.expected == [6, 8, 9]
    assert report.anomalies == []

    text = format_report(report)
    assert "Why 3 checkpoints:" in text and text.endswith("No anomalies.")
    assert "saves: 5 (interval 4, end 1) at steps 2, 4, 6, 8, 9" in text
    assert "removed by max_to_keep: 2 (ckpt-2, ckpt-4)" in text
    assert "restores (resume points): 1 (ckpt-4)" in text
    assert "num_steps=9 (pipeline.yaml)" in text
    assert "matches the 3 present" in text
    print(text)  # the example in the report (pytest -s)

    # Without the flags, the settings come from the saved events, which record them.
    recorded = inspect_model_dir(clean_dir)
    assert recorded.expected == [6, 8, 9] and recorded.anomalies == []
    assert any("checkpoint_every_n=2 (checkpoints.jsonl)" in line
               and "checkpoint_max_to_keep=3 (checkpoints.jsonl)" in line
               for line in recorded.why)
    data = json.loads(json.dumps(report_json(recorded)))
    assert set(data) == JSON_KEYS and data["expected"] == [6, 8, 9]
    assert [c["step"] for c in data["checkpoints"]] == [6, 8, 9]

    # Events without the settings (an older trainer): say so instead of guessing.
    events_path = os.path.join(copy_dir, "checkpoints.jsonl")  # the shared run stays as it is
    with open(events_path) as f:
        events = [json.loads(line) for line in f]
    with open(events_path, "w") as f:
        for event in events:
            event.pop("checkpoint_every_n", None)
            event.pop("checkpoint_max_to_keep", None)
            f.write(json.dumps(event) + "\n")
    unknown = inspect_model_dir(copy_dir)
    assert unknown.expected is None and unknown.anomalies == []
    assert any("expected count: unknown" in line and "--checkpoint_every_n" in line
               for line in unknown.why)


def _truncate_newest(d):
    (data,) = glob.glob(os.path.join(d, "ckpt-9.data-*"))
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)


def _quarantine_by_restore(d):
    _truncate_newest(d)
    run(d, [], resume=True)  # the trainer's restore moves ckpt-9 aside


def _copy_as(d, src: int, dst: int):
    for path in glob.glob(os.path.join(d, f"ckpt-{src}.*")):
        shutil.copy(path, path.replace(f"ckpt-{src}.", f"ckpt-{dst}."))


def _forget_saved_8(d):
    path = os.path.join(d, "checkpoints.jsonl")
    with open(path) as f:
        lines = [line for line in f if '"step": 8' not in line]
    with open(path, "w") as f:
        f.writelines(lines)


def _stale_lock(d):
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(os.path.join(d, LOCK_FILE), "w") as f:
        json.dump({"host": socket.gethostname(), "pid": dead.pid, "started": "earlier"}, f)


def _dangling_state(d):
    with open(os.path.join(d, STATE_FILE), "w") as f:
        f.write('model_checkpoint_path: "ckpt-42"\n')


DAMAGES = {
    "truncated_newest": (_truncate_newest,
                         "ckpt-9 is half-written or damaged: data file truncated"),
    "state_file_deleted": (lambda d: os.remove(os.path.join(d, STATE_FILE)),
                           "the 'checkpoint' state file is missing"),
    "state_file_dangling": (_dangling_state,
                            "state file's latest checkpoint names ckpt-42, which does not exist"),
    "index_deleted": (lambda d: os.remove(os.path.join(d, "ckpt-6.index")),
                      "ckpt-6 has data files but no index"),
    "foreign_prefix": (lambda d: shutil.copy(os.path.join(d, "ckpt-6.index"),
                                             os.path.join(d, "model.ckpt-3.index")),
                       "foreign checkpoint files model.ckpt-3.index"),
    "inner_step_differs": (lambda d: _copy_as(d, 8, 10), "ckpt-10 holds optimizer step 8"),
    "not_in_events": (_forget_saved_8, "ckpt-8 is in no checkpoints.jsonl event"),
    "stale_lock": (_stale_lock, "stale lock train.lock"),
    "moved_invalid": (_quarantine_by_restore,
                      f"ckpt-9 was moved to {INVALID_DIR}/ as invalid: data file truncated"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damage_is_reported(copy_dir, damage):
    apply, expected_line = DAMAGES[damage]
    apply(copy_dir)
    report = inspect_model_dir(copy_dir, every_n=2, max_to_keep=3)
    assert any(expected_line in line for line in report.anomalies), report.anomalies
    assert all("\n" not in line for line in report.anomalies)
    text = format_report(report)
    assert "Anomalies:" in text and "No anomalies." not in text
    if damage == "truncated_newest":
        assert [c.valid for c in report.checkpoints] == [True, True, False]


def test_missing_final_save_unless_a_trainer_runs_or_it_stopped_on_a_signal(tmp_path):
    killed = tmp_path / "killed"
    run(killed, [(2, "interval"), (4, "interval")])  # num_steps 5, no end save
    report = inspect_model_dir(str(killed), every_n=2, max_to_keep=3, num_steps=5)
    assert report.expected == [2, 4, 5]
    assert any(line.startswith("missing final save: training got to ckpt-4 (interval), "
                               "below num_steps=5") for line in report.anomalies)
    assert any("missing ckpt-5" in line for line in report.anomalies)

    with open(killed / LOCK_FILE, "w") as f:  # a live trainer on this host: not finished yet
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": "now"}, f)
    running = inspect_model_dir(str(killed), every_n=2, max_to_keep=3, num_steps=5)
    assert running.anomalies == [] and running.summary["trainer_running"] is True
    assert any("a trainer is running" in line for line in running.why)

    stopped = tmp_path / "stopped"
    run(stopped, [(2, "interval"), (3, "signal")])
    report = inspect_model_dir(str(stopped), every_n=2, max_to_keep=3, num_steps=5)
    assert report.anomalies == [] and report.expected == [2, 3]

    empty = tmp_path / "empty"
    empty.mkdir()
    report = inspect_model_dir(str(empty), every_n=2, max_to_keep=3, num_steps=5)
    assert report.checkpoints == [] and report.anomalies == []
    assert format_report(report).startswith(f"No checkpoints in {empty}.")


def test_script_json_and_missing_dir(copy_dir, tmp_path):
    script = os.path.join(REPO, "scripts", "inspect_checkpoints.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, script, f"--model_dir={copy_dir}", "--json",
                           "--checkpoint_every_n=2", "--checkpoint_max_to_keep=3"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == JSON_KEYS
    assert [(c["step"], c["reason"], c["valid"]) for c in data["checkpoints"]] == [
        (6, "interval", True), (8, "interval", True), (9, "end", True)]
    assert data["expected"] == [6, 8, 9] and data["anomalies"] == []
    assert data["summary"]["saves_by_reason"] == {"interval": 4, "end": 1}

    missing = str(tmp_path / "nope")
    done = subprocess.run([sys.executable, script, f"--model_dir={missing}"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: --model_dir {missing} does not exist"]
