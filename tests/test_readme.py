"""The documented commands work exactly as written, in order, in a shell without an
activated virtualenv: every fenced block marked `<!-- runnable -->` in README.md,
then in each docs/*.md page (pages in name order, each page's blocks in order), is
run with bash in one copy of the repository whose configs/shapes_retinanet.yaml is
a tiny version of itself (64 px, 10 steps, 32 + 8 images), so they take a few
minutes. Blocks that are not marked (the fresh-machine install, the TensorBoard
server, GPU and cluster set-ups, long benchmarks, TFLite) are not run."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import REPO

MARKER = "<!-- runnable -->"
# What a command must print (stdout or stderr), by a pattern of the command it runs
# (re.search): the first hour's path. Each pattern must match one runnable command.
EXPECTED = {
    r"model_main_tf2\.py --pipeline_config_path=configs/shapes_retinanet\.yaml \\\n"
    r"    --model_dir=runs/shapes": [r"training finished at step 10",
                                   r"evaluated step 10 on 8 images",
                                   r"AP per class: square=\S+, circle=\S+, triangle=\S+"],
    r"scripts/check_data\.py --pipeline_config_path=configs/shapes_retinanet\.yaml\Z": [
        r"train_input_reader \(2 files\): 32 records, 32 valid images",
        r"No problems found\."],
    r"scripts/inspect_checkpoints\.py": [r"Checkpoints in \S*runs/shapes", r"No anomalies"],
    r"--checkpoint_dir=runs/shapes ": [r"ckpt-10, the final checkpoint, as evaluated at .*"
                                      r": AP=\S+, AP50=\S+",
                                      r"AP per class: square="],
    r"exporter_main_v2\.py .*\n.*--output_directory=exported/shapes\Z": [
        r"wrote exported/shapes/saved_model"],
    r"data/shapes/samples/val-00000\.jpg": [
        r"data/shapes/samples/val-00000.jpg: \d+ detections with score >= 0.5 -> "
        r"detections/val-00000_detections.png"],
    r"odapi_client\.py": [r"data/shapes/samples/val-00002\.jpg: \d+ detections, \d+ scoring "
                          r"at least 0\.50"],
    # README's "your own data in five commands"
    r"coco_train\.json": [r"wrote 6 images with 17 boxes to data/mine/train\.record",
                          r"use model\.num_classes: 3"],
    r"coco_val\.json": [r"wrote 2 images with 4 boxes to data/mine/val\.record"],
    r"check_data\.py .*\n.*data/mine/train\.record": [
        r"train_input_reader \(1 file\): 6 records, 6 valid images",
        r"eval_input_reader \(1 file\): 2 records, 2 valid images", r"No problems found\."],
    r"--model_dir=runs/mine ": [r"training finished at step 100",
                                r"evaluated step 100 on 2 images"],
    r"--checkpoint_dir=runs/mine ": [r"evaluated step 100 on 2 images",
                                     r"new best checkpoint: ckpt-100 .* runs/mine_eval/best"],
    r"--output_directory=exported/mine": [r"wrote exported/mine/saved_model"],
}


def documented_files() -> list[str]:
    """README.md, then the docs/*.md pages in name order: the order their runnable
    blocks run in."""
    pages = sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
    return [os.path.join(REPO, "README.md"), *pages]


def documented_commands() -> list[tuple[str, str]]:
    """("file:line", command) of every runnable command, in the order they run."""
    out = []
    for path in documented_files():
        with open(path) as f:
            text = f.read()
        name = os.path.relpath(path, REPO)
        out += [(f"{name}:{line}", command) for line, command in runnable_commands(text)]
    return out


def runnable_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) of each command in the fenced blocks that follow a
    MARKER line, in order; a backslash at a line's end continues the command."""
    lines = text.splitlines()
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        fence = i + 1
        assert fence < len(lines) and re.fullmatch(r"```(sh|bash)", lines[fence].strip()), \
            f"line {i + 1}: {MARKER} must be followed by a ```sh fence"
        i = fence + 1
        command, start = "", i
        while lines[i].strip() != "```":
            line = lines[i]
            if not command:
                start = i
            command += line + "\n"
            if not line.endswith("\\"):
                if command.strip() and not command.lstrip().startswith("#"):
                    out.append((start + 1, command.rstrip("\n")))
                command = ""
            i += 1
    return out


def _tiny_default_config(path: str) -> None:
    """configs/shapes_retinanet.yaml, made tiny: the same sections and paths."""
    with open(path) as f:
        config = yaml.safe_load(f)
    model, train = config["model"], config["train_config"]
    model["input_size"] = [64, 64]
    model["fpn"]["num_filters"] = 16
    model["head"].update(num_convs=1, num_filters=16)
    train.update(batch_size=4, num_steps=10, steps_per_loop=5, log_every_n=5,
                 summary_every_n=10)
    train["learning_rate"]["warmup_steps"] = 2
    config["train_input_reader"]["shuffle_buffer_size"] = 16
    config["eval_config"].update(batch_size=4, num_visualizations=1)
    config["shapes_dataset"].update(num_train=32, num_val=8, image_size=64, num_shards=2)
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)


def _sandbox(root) -> str:
    """A copy of the repository's runnable parts, with `.venv` linked to the venv that
    runs the tests and the tiny default config."""
    sandbox = str(root / "clone")
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("train_lib", "scripts", "configs", "examples"):
        shutil.copytree(os.path.join(REPO, name), os.path.join(sandbox, name), ignore=ignore)
    shutil.copy(os.path.join(REPO, "model_main_tf2.py"), sandbox)
    assert os.path.isfile(os.path.join(sys.prefix, "bin", "python")), \
        f"the tests must run in a virtualenv ({sys.prefix} has no bin/python)"
    os.symlink(sys.prefix, os.path.join(sandbox, ".venv"))
    _tiny_default_config(os.path.join(sandbox, "configs", "shapes_retinanet.yaml"))
    return sandbox


def _user_shell_env() -> dict[str, str]:
    """The environment of a new terminal: no venv on PATH, nothing of the test run's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "TF_CPP_MIN_LOG_LEVEL")
           and not k.startswith(("PYTEST", "COV_"))}
    venvs = {os.path.realpath(sys.prefix), os.path.realpath(os.path.join(REPO, ".venv"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if not any(os.path.realpath(p).startswith(v + os.sep) for v in venvs))
    return env


def test_runnable_commands_are_found():
    found = documented_commands()
    commands = [c for _, c in found]
    assert found[0][0].startswith("README.md:")
    assert commands[0].startswith(".venv/bin/python model_main_tf2.py")  # training first
    assert any(where.startswith("docs/") for where, _ in found), found
    for pattern in EXPECTED:
        assert sum(bool(re.search(pattern, c)) for c in commands) == 1, (pattern, commands)
    assert all(c.startswith(".venv/bin/") for c in commands), commands
    text = "x\n" + MARKER + "\n```sh\na \\\n  b\n\n# note\nc\n```\n```sh\nd\n```\n"
    assert runnable_commands(text) == [(4, "a \\\n  b"), (8, "c")]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces
    as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_pages_resolve():
    """Every relative link of README.md and docs/*.md names a file of the repository,
    and its #anchor a heading of that file."""
    links = 0
    for path in documented_files():
        with open(path) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            name, _, anchor = target.partition("#")
            linked = os.path.normpath(os.path.join(os.path.dirname(path), name)) if name \
                else path
            assert os.path.exists(linked), (path, target)
            if anchor:
                with open(linked) as f:
                    headings = re.findall(r"^#+ (.+)$", f.read(), flags=re.M)
                assert anchor in {_anchor(h) for h in headings}, (path, target)
            links += 1
    assert links > 20


@pytest.mark.slow
def test_documented_commands_run_as_written(tmp_path):
    commands = documented_commands()
    sandbox = _sandbox(tmp_path)
    env = _user_shell_env()
    assert shutil.which("python", path=env["PATH"]) != os.path.join(sys.prefix, "bin",
                                                                    "python")
    outputs = {}
    for where, command in commands:
        proc = subprocess.run(["bash", "-c", command], cwd=sandbox, env=env,
                              capture_output=True, text=True, timeout=900)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{where}: {command}\n{output[-3000:]}"
        assert "Traceback" not in output, f"{where}\n{output[-3000:]}"
        outputs[command] = output
    for key, patterns in EXPECTED.items():
        (output,) = [out for command, out in outputs.items() if re.search(key, command)]
        for pattern in patterns:
            assert re.search(pattern, output), (key, pattern, output[-3000:])
    with Image.open(os.path.join(sandbox, "detections", "val-00000_detections.png")) as p:
        assert p.size == (256, 256) and np.asarray(p.convert("RGB")).std() > 0  # enlarged
