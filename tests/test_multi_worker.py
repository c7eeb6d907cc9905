"""A two-worker multi_worker_mirrored job: two processes on 127.0.0.1, each told
its place by TF_CONFIG, as on a cluster. The chief alone writes model_dir; a
SIGTERM to one worker stops both at the same step with one checkpoint; a restart
resumes from it; a worker that dies stops the other with a clear error."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, ckpt_steps

from train_lib.jsonl import read_jsonl

pytestmark = pytest.mark.slow

CHIEF_FILES = {"checkpoint", "checkpoints.jsonl", "data_report.json", "pipeline.yaml", "train"}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Job:
    """Two model_main_tf2.py workers; their output goes to worker<i>.log."""

    def __init__(self, tmp_path, config_file: str, model_dir: str, *flags: str):
        self.logs = [str(tmp_path / f"worker{i}.log") for i in range(2)]
        self.tmpdir = tmp_path / "worker_tmp"  # TMPDIR: where non-chief saves go
        self.tmpdir.mkdir(exist_ok=True)
        addresses = [f"127.0.0.1:{p}" for p in _free_ports(2)]
        self.procs = []
        for index, log in enumerate(self.logs):
            tf_config = {"cluster": {"worker": addresses},
                         "task": {"type": "worker", "index": index}}
            env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="2",
                       TMPDIR=str(self.tmpdir))
            with open(log, "w") as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, os.path.join(REPO, "model_main_tf2.py"),
                     f"--pipeline_config_path={config_file}", f"--model_dir={model_dir}",
                     "--num_workers=2", *flags],
                    stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO))

    def log(self, index: int) -> str:
        with open(self.logs[index]) as f:
            return f.read()

    def wait_for(self, index: int, pattern: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.log(index)):
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.log(index)[-3000:]}"
            assert all(p.poll() is None for p in self.procs), self.log(index)[-3000:]
            time.sleep(0.5)

    def wait(self, timeout: float = 300) -> list[int]:
        try:
            return [p.wait(timeout=timeout) for p in self.procs]
        finally:
            for p in self.procs:
                if p.poll() is None:
                    p.kill()


def _config_file(tiny_config, tmp_path) -> str:
    from train_lib.config import dump_config

    tiny_config.train_config.log_every_n = 1
    tiny_config.eval_config.eval_every_n = 2  # skipped, with a log line, in multi-worker jobs
    path = str(tmp_path / "config.yaml")
    dump_config(tiny_config, path)
    return path


def test_sigterm_to_one_worker_saves_one_step_on_both_and_restart_resumes(tiny_config,
                                                                          tmp_path):
    config_file, model_dir = _config_file(tiny_config, tmp_path), str(tmp_path / "run")
    job = Job(tmp_path, config_file, model_dir, "--num_train_steps=200",
              "--checkpoint_every_n=3")
    job.wait_for(1, r"Step 4 ")
    job.procs[1].send_signal(signal.SIGTERM)
    assert job.wait() == [128 + signal.SIGTERM] * 2, job.log(0)[-3000:] + job.log(1)[-3000:]

    stopped = [re.search(r"stopped by SIGTERM at step (\d+); last checkpoint (\S+)",
                         job.log(i)) for i in range(2)]
    assert all(stopped), job.log(0)[-2000:] + job.log(1)[-2000:]
    step = int(stopped[0].group(1))
    assert int(stopped[1].group(1)) == step and step >= 4
    assert stopped[0].group(2) == stopped[1].group(2) == os.path.join(model_dir, f"ckpt-{step}")
    assert "another worker received SIGTERM: the chief stops at step" in job.log(0)
    assert "eval_config.eval_every_n (2) is ignored in a multi-worker job" in job.log(0)

    # The chief's model_dir follows the contract; nothing of the other worker is left.
    assert ckpt_steps(model_dir)[-1] == step
    assert all(s % 3 == 0 for s in ckpt_steps(model_dir)[:-1])
    names = {n for n in os.listdir(model_dir) if not n.startswith("ckpt-")}
    assert names == CHIEF_FILES
    saved = [(e["step"], e["reason"]) for e in read_jsonl(os.path.join(model_dir,
                                                                      "checkpoints.jsonl"))
             if e["event"] == "saved"]
    assert saved[-1] == (step, "signal" if step % 3 else "interval")
    assert os.listdir(job.tmpdir) == []

    # Restart: both resume from that step and finish.
    job = Job(tmp_path, config_file, model_dir, f"--num_train_steps={step + 2}",
              "--checkpoint_every_n=3")
    assert job.wait() == [0, 0], job.log(0)[-3000:] + job.log(1)[-3000:]
    for i in range(2):
        assert f"resumed from ckpt-{step} at step {step}" in job.log(i)
        assert f"training finished at step {step + 2}" in job.log(i)
    assert f"worker 1 skips the {2 * step} examples of its shard" in job.log(1)
    assert ckpt_steps(model_dir)[-1] == step + 2
    assert os.listdir(job.tmpdir) == []
    assert {n for n in os.listdir(model_dir) if not n.startswith("ckpt-")} == CHIEF_FILES


def test_a_worker_that_dies_stops_the_other_with_a_clear_error(tiny_config, tmp_path):
    config_file, model_dir = _config_file(tiny_config, tmp_path), str(tmp_path / "run")
    job = Job(tmp_path, config_file, model_dir, "--num_train_steps=500",
              "--checkpoint_every_n=2")
    job.wait_for(0, r"saved ckpt-2 ")
    job.wait_for(1, r"Step 3 ")
    job.procs[1].kill()
    killed = time.monotonic()
    assert job.procs[0].wait(timeout=180) == 1
    waited = time.monotonic() - killed
    log = job.log(0)
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, log[-3000:]
    assert "another worker of this job stopped or became unreachable at step" in errors[0]
    assert "Restart every worker to resume from the last checkpoint" in errors[0]
    assert "Traceback" not in log, log[-3000:]
    last = ckpt_steps(model_dir)[-1]
    assert f"(ckpt-{last})" in errors[0] or f"/ckpt-{last})" in errors[0]
    print(f"the chief stopped {waited:.1f} s after worker 1 was killed")
