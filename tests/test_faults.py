"""The checkpoint contract under faults: signals, a second trainer, SIGKILL at random
moments with exact resume, an exception mid-run, a non-finite loss."""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from scripts import chaos_resume as chaos
from tests.conftest import ckpt_steps, make_tiny_config, run_trainer
from train_lib.checkpointing import read_events
from train_lib.checkpointing.lock import LockError
from train_lib.config import dump_config
from train_lib.training.trainer import TrainError, train

Trainer = chaos.Trainer  # model_main_tf2.py in the background, its log collected


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_the_step_and_exits_128_plus_signal(signum, tiny_config, tiny_config_file,
                                                         tmp_path):
    """model_main_tf2.py stopped by a signal (a real process); the second trainer and
    the resume run train() in process, on the model_dir it left."""
    model_dir = str(tmp_path / "run")
    args = (f"--pipeline_config_path={tiny_config_file}", f"--model_dir={model_dir}",
            "--checkpoint_every_n=1000", "--num_train_steps=100000",
            "--params_override=train_config.log_every_n=5")
    trainer = Trainer(*args)
    assert trainer.wait_for("Step 5 per-step time"), trainer.log[-3000:]
    if signum == signal.SIGTERM:
        # A second trainer on the same model_dir is refused while the first runs.
        with pytest.raises(LockError, match=re.escape(
                f"Another trainer is using {model_dir} (pid {trainer.proc.pid}")):
            train(tiny_config, model_dir, num_train_steps=100000, checkpoint_every_n=1000)
    trainer.proc.send_signal(signum)
    time.sleep(0.2)
    trainer.proc.send_signal(signum)  # a second signal while stopping changes nothing
    code = trainer.finish()
    assert code == 128 + signum, trainer.log[-3000:]
    steps = ckpt_steps(model_dir)
    assert len(steps) == 1 and steps[0] >= 5
    saved = [e for e in read_events(model_dir) if e["event"] == "saved"]
    assert [(e["step"], e["reason"]) for e in saved] == [(steps[0], "signal")]
    assert not os.path.exists(os.path.join(model_dir, "train.lock"))

    lines: list[str] = []
    resumed = train(tiny_config, model_dir, num_train_steps=steps[0] + 2,
                    checkpoint_every_n=1000, log=lines.append)
    assert resumed.stop_reason == "finished" and resumed.step == steps[0] + 2
    assert any(f"resumed from ckpt-{steps[0]}" in line for line in lines), lines
    assert ckpt_steps(model_dir) == [steps[0], steps[0] + 2]


@pytest.mark.slow
@pytest.mark.parametrize("architecture, kills, num_steps", [("retinanet", 2, None),
                                                            ("faster_rcnn", 1, 12)])
def test_sigkill_at_random_moments_then_exact_resume(architecture, kills, num_steps,
                                                     tmp_path):
    """Kill -9 mid-step or mid-save (sync and async alternating), resume, repeat:
    every start resumes from the newest readable checkpoint, at most the newest is
    lost, and the final weights are bit-identical to an uninterrupted run.
    RetinaNet: two kills, the fewest that kill both a sync and an async start (each
    kill may land in a save); Faster R-CNN: one kill and its resume, three trainer
    starts in all. scripts/chaos_resume.py runs the same with 20 kills."""
    restarts, problems = chaos.run_chaos(str(tmp_path), kills=kills, seed=7,
                                         log=lambda _: None, architecture=architecture,
                                         num_steps=num_steps)
    assert not problems, "\n".join(problems)
    assert sum(1 for r in restarts if r.killed_after) == kills
    if kills >= 2:
        assert {r.async_save for r in restarts if r.killed_after} == {False, True}
    assert any(r.async_save for r in restarts) and restarts[-1].exit_code == 0


def test_truncated_newest_checkpoint_resumes_from_the_one_before(trained_run, trained_config,
                                                                tmp_path):
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run["model_dir"], model_dir)  # ckpt-2, ckpt-4
    # What a kill in the middle of writing the newest checkpoint leaves.
    data = glob.glob(os.path.join(model_dir, "ckpt-4.data-*"))[0]
    os.truncate(data, os.path.getsize(data) // 2)
    lines: list[str] = []
    second = train(trained_config, model_dir, num_train_steps=6, checkpoint_every_n=2,
                   record_summaries=False, log=lines.append)
    assert second.step == 6
    assert any("skipping ckpt-4: data file truncated or corrupt" in line for line in lines), \
        lines
    assert any("resumed from ckpt-2 at step 2" in line for line in lines), lines
    assert ckpt_steps(model_dir) == [2, 4, 6]


@pytest.mark.slow
def test_async_run_resumes_exactly_sync_and_async_alike(tiny_dataset, tmp_path):
    """An --async_checkpoint run, then sync resumes (the issue's three commands):
    each resumes to the end, and the weights equal an uninterrupted run's."""
    config = make_tiny_config(tiny_dataset, num_steps=18, log_every_n=3)
    config_file = str(tmp_path / "tiny.yaml")
    dump_config(config, config_file)
    common = (f"--pipeline_config_path={config_file}", "--checkpoint_every_n=3",
              "--deterministic", "--record_summaries=false")
    reference = str(tmp_path / "reference")
    proc = run_trainer(*common, f"--model_dir={reference}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    model_dir = str(tmp_path / "run")
    for steps, extra in ((6, "--async_checkpoint"), (12, "--noasync_checkpoint"),
                         (18, "--noasync_checkpoint")):
        proc = run_trainer(*common, f"--model_dir={model_dir}", f"--num_train_steps={steps}",
                           extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        if steps > 6:
            assert f"resumed from ckpt-{steps - 6} at step {steps - 6}" in proc.stderr
            assert "holds no input position" not in proc.stderr
    position = tf.train.load_checkpoint(os.path.join(model_dir, "ckpt-6")).get_tensor(
        "input_position/.ATTRIBUTES/VARIABLE_VALUE")
    assert position.tolist() == [0, 24]  # written by an async save
    got, want = (chaos.weights(os.path.join(d, "ckpt-18")) for d in (model_dir, reference))
    assert got.keys() == want.keys() and len(got) > 100
    different = [name for name in want if not np.array_equal(got[name], want[name])]
    assert not different, different[:5]


def test_exception_mid_run_saves_the_last_step_then_fails(tiny_dataset, tmp_path):
    # One file: 24 good records, then a record whose payload is corrupt.
    good = tmp_path / "good.tfrecord"
    with tf.io.TFRecordWriter(str(good)) as writer:
        for record in tf.data.TFRecordDataset(tiny_dataset["train_pattern"].replace("?????",
                                                                                    "00000")):
            writer.write(record.numpy())
    data = good.read_bytes()
    offsets, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 8], "little")
        offsets.append(pos)
        pos += 8 + 4 + length + 4
    bad = tmp_path / "bad.tfrecord"
    cut = offsets[20] + 12 + 100  # inside the payload of record 20
    bad.write_bytes(data[:cut] + b"\x00" * 16 + data[cut + 16:])

    config = make_tiny_config(tiny_dataset, num_steps=50)
    config.train_input_reader.input_path = [str(bad)]
    config.train_input_reader.shuffle_buffer_size = 1
    model_dir = str(tmp_path / "run")
    logs: list[str] = []
    with pytest.raises(TrainError, match=f"{bad} is corrupt at record 20"):
        train(config, model_dir, checkpoint_every_n=100, log=logs.append)
    steps = ckpt_steps(model_dir)
    assert steps == [5]  # records 0..19 make five batches of four
    assert "saved ckpt-5 before failing" in logs
    assert [(e["step"], e["reason"]) for e in read_events(model_dir)
            if e["event"] == "saved"] == [(5, "error")]


def test_non_finite_loss_saves_nothing_and_names_the_last_good(trained_run, trained_config,
                                                              tmp_path):
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run["model_dir"], model_dir)  # 4 steps, saved every 2
    config = trained_config
    # allowed on resume, and ruinous: the weights' squares overflow float32
    config.train_config.learning_rate.base = 1e30
    with pytest.raises(TrainError) as err:
        train(config, model_dir, num_train_steps=30, checkpoint_every_n=2)
    message = str(err.value)
    assert "non-finite loss at step" in message
    assert f"Last good checkpoint: {os.path.join(model_dir, 'ckpt-4')}" in message
    assert "learning_rate" in message
    assert ckpt_steps(model_dir) == [2, 4]
