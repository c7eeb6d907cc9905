"""Chaos check of the checkpoint contract: SIGKILL at random moments, resume, repeat.

Trains a tiny RetinaNet or Faster R-CNN (--architecture; 64 px, 48 generated
shapes images) with --deterministic,
once without interruption (the reference) and once killed with SIGKILL at random
moments after training has started (mid-step, mid-sync-save, mid-async-save) and
restarted, alternating --async_checkpoint on and off, until it finishes. It
checks that every restart resumes from the newest checkpoint on disk (or the one
before it, when the newest was half-written) and that the final weights are
bit-identical to the reference's; then prints one line per restart (each
start's log is kept in the work directory as start-<n>.log).

    python scripts/chaos_resume.py --kills=20 [--seed=1] [--work_dir=/tmp/chaos] \
        [--architecture=faster_rcnn]

Exit code 0 when every check held, 1 otherwise. tests/test_faults.py runs the
same check with 2 kills for RetinaNet (one sync start, one async start) and 1
kill in 12 steps for Faster R-CNN.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EVERY_N = 3  # saves every 3 steps; 48 images at batch 4 make a 12-step epoch
# What makes each architecture's shapes config tiny (64 px besides), by dotted key.
TINY_MODEL = {
    "retinanet": {"fpn.num_filters": 32, "head.num_filters": 32, "head.num_convs": 1},
    "faster_rcnn": {
        "backbone.type": "resnet", "backbone.model_id": "18", "backbone.width_multiplier": 0.25,
        "fpn.num_filters": 32, "rpn_head.num_filters": 32, "anchor.num_scales": 1,
        "rpn.batch_size_per_image": 64, "proposals.pre_nms_top_k": 256,
        "proposals.test_pre_nms_top_k": 256, "proposals.num_proposals": 64,
        "proposals.test_num_proposals": 64, "roi_sampler.num_sampled_rois": 32,
        "detection_head.num_filters": 32, "detection_head.fc_dims": 64},
}


class Trainer:
    """model_main_tf2.py in the background, its stderr collected line by line."""

    def __init__(self, *args: str):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "model_main_tf2.py"), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 300) -> bool:
        """Whether `text` appeared in the log before the process ended or `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                self._reader.join(timeout=10)
                return any(text in line for line in self.lines)
            time.sleep(0.02)
        return False

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    @property
    def log(self) -> str:
        return "".join(self.lines)


def checkpoint_steps(model_dir: str) -> list[int]:
    """Steps of the `ckpt-<step>.index` files in model_dir ([] if it does not exist)."""
    from train_lib.checkpointing.files import list_steps

    return list_steps(model_dir)


def reads_back(prefix: str) -> bool:
    """Whether every tensor of the checkpoint at `prefix` reads back."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception:  # noqa: BLE001 - any failure means half-written
        return False
    return True


def weights(prefix: str) -> dict:
    """The model and optimizer tensors of a checkpoint, by name."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("model/", "optimizer/", "input_position", "data_counts"))}


@dataclasses.dataclass
class Restart:
    """One start of the trainer in the chaos run."""

    number: int
    async_save: bool
    on_disk: list[int]  # checkpoint steps before the start
    resumed: int | None  # the step it resumed from
    killed_after: str  # the last log line before the SIGKILL ("" when not killed)
    exit_code: int


def make_config(work_dir: str, num_steps: int, architecture: str = "retinanet") -> str:
    """Writes a tiny dataset and a tiny version of the architecture's shapes config
    (64 px, thin FPN and heads, batch 4) into work_dir; returns the config path."""
    from train_lib.config import dump_config, load_config
    from train_lib.data import shapes_dataset

    data = shapes_dataset.generate(os.path.join(work_dir, "data"), num_train=48, num_val=8,
                                   image_size=64, num_shards=2, seed=0)
    config = load_config(os.path.join(REPO, "configs", f"shapes_{architecture}.yaml"))
    config.model.input_size = [64, 64]
    for key, value in TINY_MODEL[architecture].items():
        *parents, leaf = key.split(".")
        section = config.model
        for name in parents:
            section = getattr(section, name)
        setattr(section, leaf, value)
    train = config.train_config
    train.batch_size, train.num_steps, train.log_every_n = 4, num_steps, 1
    train.learning_rate.schedule, train.learning_rate.base = "constant", 0.001
    train.learning_rate.warmup_steps = 0
    for reader, pattern in ((config.train_input_reader, data["train_pattern"]),
                            (config.eval_input_reader, data["val_pattern"])):
        reader.input_path = [pattern]
        reader.label_map_path = data["label_map_path"]
    config.train_input_reader.shuffle_buffer_size = 16
    config.eval_config.eval_every_n = 0
    config.eval_config.eval_at_end = False
    config.shapes_dataset.output_dir = ""
    path = os.path.join(work_dir, "tiny.yaml")
    dump_config(config, path)
    return path


def run_chaos(work_dir: str, kills: int, seed: int = 1, log=print,
              architecture: str = "retinanet",
              num_steps: int | None = None) -> tuple[list[Restart], list[str]]:
    """Runs the reference and the killed run of a tiny `architecture` model in
    work_dir, `num_steps` steps each (default: max(24, 3 * kills + 12)); returns the
    restarts and the problems found ([] when the contract held)."""
    import numpy as np

    num_steps = num_steps or max(24, 3 * kills + 12)
    config_path = make_config(work_dir, num_steps, architecture)
    common = (f"--pipeline_config_path={config_path}", f"--checkpoint_every_n={EVERY_N}",
              "--checkpoint_max_to_keep=3", "--deterministic")
    reference = os.path.join(work_dir, "reference")
    ref = Trainer(*common, f"--model_dir={reference}")
    if ref.finish() != 0:
        return [], [f"the reference run failed:\n{ref.log[-3000:]}"]

    model_dir = os.path.join(work_dir, "killed")
    rng = random.Random(seed)
    restarts: list[Restart] = []
    problems: list[str] = []
    while len(restarts) <= 3 * kills:
        number = len(restarts)
        on_disk = checkpoint_steps(model_dir)
        readable = [s for s in on_disk if reads_back(os.path.join(model_dir, f"ckpt-{s}"))]
        async_save = number % 2 == 1
        trainer = Trainer(*common, f"--model_dir={model_dir}",
                          f"--async_checkpoint={str(async_save).lower()}")
        if not trainer.wait_for("training from step"):
            problems.append(f"start {number} did not train:\n{trainer.log[-3000:]}")
            break
        killed_after = ""
        start = on_disk[-1] if on_disk else 0
        if sum(1 for r in restarts if r.killed_after) < kills and start < num_steps - 1:
            # Up to three saves on: the kill lands in a step, in a sync or async save,
            # or between an async save and its commit (at the next save).
            target = min(rng.randint(start + 1, start + 3 * EVERY_N), num_steps - 1)
            trainer.wait_for(f"Step {target} per-step time")
            time.sleep(rng.uniform(0.0, 0.4))
            if trainer.proc.poll() is None:
                trainer.proc.kill()
                killed_after = (trainer.lines[-1].strip() if trainer.lines else "") or "?"
        code = trainer.finish()
        with open(os.path.join(work_dir, f"start-{number}.log"), "w") as f:
            f.write(trainer.log)
        resumed = _resumed_step(trainer.log)
        restarts.append(Restart(number, async_save, on_disk, resumed, killed_after, code))
        log(f"start {number:2d} async={async_save!s:5} on disk {on_disk} -> resumed from "
            f"{resumed}; " + (f"killed after: {killed_after[-70:]}" if killed_after
                              else f"exit {code}"))
        # The newest checkpoint that reads back, and it is the newest or the one before.
        if resumed != (readable[-1] if readable else None):
            problems.append(f"start {number}: resumed from {resumed}, not from the newest "
                            f"readable checkpoint (on disk {on_disk}, readable {readable})")
        if on_disk and (not readable or readable[-1] not in on_disk[-2:]):
            problems.append(f"start {number}: more than the newest checkpoint was lost "
                            f"(on disk {on_disk}, readable {readable})")
        if code == 0:
            break
        if code != -signal.SIGKILL:
            problems.append(f"start {number} exited {code}:\n{trainer.log[-3000:]}")
            break
    done = sum(1 for r in restarts if r.killed_after)
    if done < kills:
        problems.append(f"only {done} of {kills} kills happened")
    final = os.path.join(model_dir, f"ckpt-{num_steps}")
    if not os.path.exists(final + ".index"):
        problems.append(f"the killed run did not finish: no {final}")
        return restarts, problems
    got, want = weights(final), weights(os.path.join(reference, f"ckpt-{num_steps}"))
    different = [n for n in want if n not in got or not np.array_equal(got[n], want[n])]
    if got.keys() != want.keys() or len(want) < 100 or different:
        problems.append(f"final weights differ from the reference ({len(want)} tensors): "
                        f"{different[:5]}")
    return restarts, problems


def _resumed_step(log: str) -> int | None:
    for line in log.splitlines():
        if "resumed from ckpt-" in line:
            return int(line.split("resumed from ckpt-")[1].split()[0])
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to send (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill moments")
    parser.add_argument("--work_dir", default="", help="default: a temporary directory")
    parser.add_argument("--architecture", default="retinanet",
                        choices=("retinanet", "faster_rcnn"), help="the model trained")
    args = parser.parse_args()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="chaos-")
    began = time.monotonic()
    restarts, problems = run_chaos(work_dir, args.kills, args.seed,
                                   architecture=args.architecture)
    kills = sum(1 for r in restarts if r.killed_after)
    fallback = sum(1 for r in restarts if r.on_disk and r.resumed != r.on_disk[-1])
    print(f"{kills} kills, {len(restarts)} starts ({sum(r.async_save for r in restarts)} "
          f"with --async_checkpoint), {fallback} resumed from the checkpoint before a "
          f"half-written newest; {time.monotonic() - began:.0f} s")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"final weights bit-identical to the uninterrupted run: yes ({work_dir})")
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
