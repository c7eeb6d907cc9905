"""CheckpointManager and RunLock on real files, with a tiny tf.train.Checkpoint (no model)."""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys

import pytest
import tensorflow as tf

from train_lib.checkpointing import (
    CheckpointError,
    CheckpointManager,
    CheckpointPolicy,
    LockError,
    RunLock,
    read_events,
)


def make_checkpoint() -> tuple[tf.train.Checkpoint, tf.Variable, tf.Variable, object]:
    """Two variables and a tf.data iterator (its state is a variant tensor, like the loop's)."""
    weights = tf.Variable(tf.zeros([64], tf.float32))
    step = tf.Variable(0, dtype=tf.int64)
    iterator = iter(tf.data.Dataset.range(1_000_000))
    checkpoint = tf.train.Checkpoint(weights=weights, step=step, iterator=iterator)
    return checkpoint, weights, step, iterator


def manager(model_dir, keep=2, hours=None, **kwargs) -> tuple[CheckpointManager, list[str], tuple]:
    ckpt, weights, step, iterator = make_checkpoint()
    logs: list[str] = []
    policy = CheckpointPolicy(every_n=1000, max_to_keep=keep, keep_every_n_hours=hours)
    return CheckpointManager(str(model_dir), ckpt, policy, log=logs.append, **kwargs), logs, (
        weights, step, iterator)


def save_at(m: CheckpointManager, variables: tuple, step: int, reason: str = "interval") -> str:
    """Save a state that identifies `step`: weights = step, iterator advanced to step // 100."""
    weights, step_var, iterator = variables
    weights.assign(tf.fill([64], float(step)))
    step_var.assign(step)
    while int(next(iterator)) < step // 100 - 1:
        pass
    return m.save(step, reason)


def files(model_dir) -> list[str]:
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(model_dir, "ckpt-*")))


def data_file(model_dir, step: int) -> str:
    (path,) = glob.glob(os.path.join(model_dir, f"ckpt-{step}.data-*"))
    return path


def state_steps(model_dir) -> list[str]:
    state = tf.train.get_checkpoint_state(str(model_dir))
    return [os.path.basename(p) for p in state.all_model_checkpoint_paths]


def test_save_names_state_rotation_and_events(tmp_path):
    m, logs, variables = manager(tmp_path, keep=2)
    seen_during_write = []
    real_write = m._checkpoint.write

    def spying_write(prefix, options=None):
        seen_during_write.append(files(tmp_path))
        return real_write(prefix, options=options)

    m._checkpoint.write = spying_write
    for step in (1000, 2000, 3000):
        path = save_at(m, variables, step)
        assert path == str(tmp_path / f"ckpt-{step}")
        assert tf.train.latest_checkpoint(str(tmp_path)) == path
    # ckpt-1000 still existed while ckpt-3000 was written; removed only afterwards.
    assert "ckpt-1000.index" in seen_during_write[2]
    assert files(tmp_path) == ["ckpt-2000.data-00000-of-00001", "ckpt-2000.index",
                               "ckpt-3000.data-00000-of-00001", "ckpt-3000.index"]
    assert state_steps(tmp_path) == ["ckpt-2000", "ckpt-3000"]
    assert m.saved_steps() == [2000, 3000] and m.latest_step == 3000
    assert "removed ckpt-1000 (max_to_keep=2)" in logs
    assert "kept: ckpt-2000, ckpt-3000" in logs
    assert any(line.startswith("saved ckpt-3000 (interval) in ") for line in logs)

    events = read_events(str(tmp_path))
    assert [(e["event"], e["step"], e["reason"]) for e in events] == [
        ("saved", 1000, "interval"), ("saved", 2000, "interval"), ("saved", 3000, "interval"),
        ("removed", 1000, "max_to_keep")]
    saved = events[2]
    assert saved["path"] == str(tmp_path / "ckpt-3000") and saved["async"] is False
    assert saved["seconds"] >= 0 and saved["time"] > 1e9

    # Same step again: a no-op returning the existing path.
    assert m.save(3000, "final") == str(tmp_path / "ckpt-3000")
    assert len(read_events(str(tmp_path))) == 4
    with pytest.raises(ValueError, match="newer step"):
        m.save(2500, "final")


def test_restore_newest_and_empty_dir(tmp_path):
    m, _, variables = manager(tmp_path / "run")
    for step in (1000, 2000):
        save_at(m, variables, step)
    fresh, logs, (weights, step_var, iterator) = manager(tmp_path / "run")
    assert fresh.restore() == 2000
    assert weights.numpy()[0] == 2000.0 and int(step_var.numpy()) == 2000
    assert int(next(iterator)) == 20  # the input position is restored too
    assert read_events(str(tmp_path / "run"))[-1]["event"] == "restored"
    empty, _, _ = manager(tmp_path / "empty")
    assert empty.restore() is None and empty.latest_step is None


@pytest.mark.parametrize(("damage", "reason"), [("truncate", "truncated or corrupt"),
                                                ("delete", "data file missing")])
def test_invalid_newest_is_skipped_reported_and_moved_aside(tmp_path, damage, reason):
    m, _, variables = manager(tmp_path, keep=3)
    for step in (1000, 2000):
        save_at(m, variables, step)
    if damage == "truncate":
        with open(data_file(tmp_path, 2000), "r+b") as f:
            f.truncate(50)
    else:
        os.remove(data_file(tmp_path, 2000))

    fresh, logs, (weights, _, iterator) = manager(tmp_path, keep=3)
    assert fresh.restore() == 1000
    assert weights.numpy()[0] == 1000.0 and int(next(iterator)) == 10
    assert any("skipping ckpt-2000" in line and reason in line for line in logs), logs
    skipped = [e for e in read_events(str(tmp_path)) if e["event"] == "skipped_invalid"]
    assert [e["step"] for e in skipped] == [2000] and reason in skipped[0]["reason"]
    # Moved aside, state file points to the restored one, and step 2000 saves again.
    assert os.path.exists(tmp_path / "invalid_checkpoints" / "ckpt-2000.index")
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-1000")
    assert fresh.saved_steps() == [1000]
    fresh.save(2000, "interval")
    assert manager(tmp_path, keep=3)[0].restore() == 2000


def test_missing_or_stale_state_file_is_repaired(tmp_path):
    m, _, variables = manager(tmp_path)
    for step in (1000, 2000):
        save_at(m, variables, step)
    os.remove(tmp_path / "checkpoint")
    fresh, logs, _ = manager(tmp_path)
    assert fresh.restore() == 2000
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-2000")
    assert any("state file was missing" in line for line in logs)

    with open(tmp_path / "checkpoint", "w") as f:  # points to the older one
        f.write('model_checkpoint_path: "ckpt-1000"\nall_model_checkpoint_paths: "ckpt-1000"\n')
    fresh, logs, _ = manager(tmp_path)
    assert fresh.restore() == 2000
    assert any("was stale" in line for line in logs)
    assert state_steps(tmp_path) == ["ckpt-1000", "ckpt-2000"]
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-2000")


def test_all_invalid_raises_and_keeps_the_files(tmp_path):
    m, _, variables = manager(tmp_path)
    for step in (1000, 2000):
        save_at(m, variables, step)
    for step in (1000, 2000):
        with open(data_file(tmp_path, step), "r+b") as f:
            f.truncate(10)
    fresh, _, _ = manager(tmp_path)
    with pytest.raises(CheckpointError) as info:
        fresh.restore()
    message = str(info.value)
    assert "ckpt-1000" in message and "ckpt-2000" in message
    assert "will not silently start over" in message and "move these files away" in message
    assert "ckpt-2000.index" in files(tmp_path)


def test_failed_write_keeps_earlier_checkpoint(tmp_path, monkeypatch):
    m, _, variables = manager(tmp_path)
    save_at(m, variables, 1000)
    before = (tmp_path / "checkpoint").read_text()

    def partial_write(prefix, options=None):
        with open(prefix + ".data-00000-of-00001", "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(m._checkpoint, "write", partial_write)
    with pytest.raises(CheckpointError) as info:
        save_at(m, variables, 2000)
    message = str(info.value)
    assert files(tmp_path) == ["ckpt-1000.data-00000-of-00001", "ckpt-1000.index"]  # cleaned
    assert str(tmp_path / "ckpt-2000") in message
    assert "earlier checkpoints are intact" in message
    assert str(tmp_path / "ckpt-1000") in message
    assert "free disk space" in message and "permissions" in message
    monkeypatch.undo()

    # A real TensorFlow failure: the temp directory of the write is a regular file.
    (tmp_path / "ckpt-2000_temp").write_text("in the way")
    with pytest.raises(CheckpointError, match="FailedPreconditionError"):
        save_at(m, variables, 2000)

    assert files(tmp_path) == ["ckpt-1000.data-00000-of-00001", "ckpt-1000.index",
                               "ckpt-2000_temp"]
    assert (tmp_path / "checkpoint").read_text() == before
    assert [e["event"] for e in read_events(str(tmp_path))] == ["saved"]
    assert m.latest_step == 1000
    fresh, _, (weights, _, _) = manager(tmp_path)
    assert fresh.restore() == 1000 and weights.numpy()[0] == 1000.0


def test_async_save_then_sync_matches_sync_save(tmp_path):
    results = {}
    for mode in ("sync", "async"):
        model_dir = tmp_path / mode
        m, logs, variables = manager(model_dir, async_save=(mode == "async"))
        for step in (1000, 2000, 3000):
            save_at(m, variables, step)
        if mode == "async":  # the last write is not committed before sync()
            assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-2000")
            assert m.saved_steps() == [1000, 2000]
        m.sync()
        events = read_events(str(model_dir))
        results[mode] = (files(model_dir), state_steps(model_dir),
                         tf.train.latest_checkpoint(str(model_dir)).rsplit("/", 1)[1],
                         [(e["event"], e["step"]) for e in events])
        assert all(e["async"] is (mode == "async") for e in events if e["event"] == "saved")
        fresh, _, (weights, _, iterator) = manager(model_dir)
        assert fresh.restore() == 3000 and weights.numpy()[0] == 3000.0
        assert int(next(iterator)) == 30
    assert results["async"] == results["sync"]
    assert results["sync"][1] == ["ckpt-2000", "ckpt-3000"]


def test_async_failure_is_reported_at_sync(tmp_path):
    m, _, variables = manager(tmp_path, async_save=True)
    save_at(m, variables, 1000)
    m.sync()
    (tmp_path / "ckpt-2000_temp").write_text("in the way")
    save_at(m, variables, 2000)  # fails in the background
    with pytest.raises(CheckpointError, match="earlier checkpoints are intact"):
        m.close()
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-1000")
    assert [e["step"] for e in read_events(str(tmp_path))] == [1000]
    # The error was reported once: the next save works.
    os.remove(tmp_path / "ckpt-2000_temp")
    save_at(m, variables, 2000)
    m.sync()
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2000")


def test_event_log_tolerates_truncated_last_line(tmp_path):
    m, _, variables = manager(tmp_path)
    save_at(m, variables, 1000)
    with open(tmp_path / "checkpoints.jsonl", "a") as f:
        f.write('{"event": "saved", "st')  # crash mid-write
    assert [e["step"] for e in read_events(str(tmp_path))] == [1000]
    again, _, variables = manager(tmp_path)
    save_at(again, variables, 2000)
    assert [e["step"] for e in read_events(str(tmp_path))] == [1000, 2000]
    lines = (tmp_path / "checkpoints.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 2000 and len(lines) == 3


def test_hours_keeping_survives_a_new_manager(tmp_path):
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731

    def at(t: float) -> float:
        now[0] = t
        return t

    m, _, variables = manager(tmp_path, keep=1, hours=1.0, clock=clock)  # anchor -1
    at(4000.0)
    save_at(m, variables, 1000)

    at(5000.0)  # a new process: the anchor (-1) comes from the `saved` event, not "now"
    m1, logs, variables = manager(tmp_path, keep=1, hours=1.0, clock=clock)
    at(5100.0)
    save_at(m1, variables, 2000)  # ckpt-1000 leaves: 4000 - 3600 >= -1 -> kept forever
    assert m1.saved_steps() == [1000, 2000]
    assert "kept ckpt-1000 forever (keep_every_n_hours=1)" in logs

    at(6000.0)  # another new process: the anchor (4000) comes from the `kept` event
    m2, logs2, variables2 = manager(tmp_path, keep=1, hours=1.0, clock=clock)
    at(7700.0)
    save_at(m2, variables2, 3000)  # ckpt-2000 leaves: 1500 < 4000 -> removed
    at(7800.0)
    save_at(m2, variables2, 4000)  # ckpt-3000 leaves: 4100 >= 4000 -> kept forever
    assert m2.saved_steps() == [1000, 3000, 4000]
    assert "removed ckpt-2000 (max_to_keep=1)" in logs2
    kept = [(e["step"], e["checkpoint_time"]) for e in read_events(str(tmp_path))
            if e["event"] == "kept"]
    assert kept == [(1000, 4000.0), (3000, 7700.0)]
    assert state_steps(tmp_path) == ["ckpt-1000", "ckpt-3000", "ckpt-4000"]


def test_non_chief_writes_to_a_temporary_directory(tmp_path):
    tmp_dir = tmp_path / ".worker_tmp" / "worker-1"
    m, _, variables = manager(tmp_path, is_chief=False, worker_tmp_dir=str(tmp_dir))
    assert save_at(m, variables, 1000) == str(tmp_dir / "ckpt-1000")
    assert not tmp_dir.exists()
    assert files(tmp_path) == [] and not (tmp_path / "checkpoint").exists()
    assert read_events(str(tmp_path)) == []


def test_run_lock(tmp_path):
    model_dir = str(tmp_path)
    lock_path = tmp_path / "train.lock"
    with RunLock(model_dir) as lock:
        holder = json.loads(lock_path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(LockError) as info:
            RunLock(model_dir).acquire()
        message = str(info.value)
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message
        assert holder["started"] in message and "another --model_dir" in message
        assert lock.path == str(lock_path)
    assert not lock_path.exists()

    # A lock left by a dead process on this host is taken over with a warning.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock_path.write_text(json.dumps({"host": socket.gethostname(),
                                     "pid": int(dead.stdout), "started": "earlier"}))
    warnings: list[str] = []
    lock = RunLock(model_dir, log=warnings.append)
    lock.acquire()
    assert json.loads(lock_path.read_text())["pid"] == os.getpid()
    assert any("stale" in w and f"pid {int(dead.stdout)}" in w for w in warnings)
    # release() only removes a lock that is still ours.
    lock_path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "now"}))
    lock.release()
    assert lock_path.exists()
    with pytest.raises(LockError, match="another host .*elsewhere.*delete"):
        RunLock(model_dir).acquire()
