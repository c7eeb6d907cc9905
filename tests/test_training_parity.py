"""scripts/odapi_parity/training_parity.py without the OD API: the one config it
writes for both drivers, what it reads from each driver's log lines, and its exit
when the OD API is absent. (Its measurements need the OD API; docs/odapi_parity.md
gives them.)"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from train_lib.config import load_config

SCRIPT = os.path.join(REPO, "scripts", "odapi_parity", "training_parity.py")
SAMPLE = os.path.join(REPO, "tests", "fixtures", "odapi", "ssd_mobilenet_v2_shapes.config")
_spec = importlib.util.spec_from_file_location("training_parity", SCRIPT)
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)


def test_the_config_both_drivers_read(tiny_dataset, tmp_path):
    """Batch 8 with the cosine's rates scaled from the sample's batch 64, the steps, the
    label map's classes, no fine-tune checkpoint, the data's paths; our driver reads it."""
    out = str(tmp_path / "pipeline.config")
    changes = parity.write_config(SAMPLE, out, tiny_dataset["train_pattern"],
                                  tiny_dataset["val_pattern"], tiny_dataset["label_map_path"],
                                  num_steps=300, batch_size=8, warmup_steps=50)
    assert changes["train_config.batch_size"] == ("64", 8)
    with open(out) as f:
        text = f.read()
    assert "fine_tune_checkpoint:" not in text and "fine_tune_checkpoint_type" not in text
    config = load_config(out)
    lr = config.train_config.learning_rate
    assert (lr.base, lr.warmup_start, lr.warmup_steps) == (0.025, 0.0025, 50)
    assert (config.train_config.batch_size, config.train_config.num_steps) == (8, 300)
    assert config.model.num_classes == 3
    assert config.train_input_reader.input_path == [
        os.path.abspath(tiny_dataset["train_pattern"])]
    assert config.eval_input_reader.input_path == [os.path.abspath(tiny_dataset["val_pattern"])]
    assert config.train_config.fine_tune_checkpoint == ""

    # --lr_scale multiplies both scaled rates, the same for both drivers.
    parity.write_config(SAMPLE, out, tiny_dataset["train_pattern"], tiny_dataset["val_pattern"],
                        tiny_dataset["label_map_path"], num_steps=300, batch_size=8,
                        warmup_steps=50, lr_scale=4.0)
    lr = load_config(out).train_config.learning_rate
    assert (lr.base, lr.warmup_start) == (0.1, 0.01)

    # --batch_norm_decay sets every batch_norm block's decay, which ours maps.
    with open(SAMPLE) as f:
        blocks = len(re.findall(r"\bbatch_norm\s*:?\s*{", f.read()))
    changes = parity.write_config(SAMPLE, out, tiny_dataset["train_pattern"],
                                  tiny_dataset["val_pattern"], tiny_dataset["label_map_path"],
                                  num_steps=300, batch_size=8, warmup_steps=50,
                                  batch_norm_decay=0.9)
    with open(out) as f:
        decays = re.findall(r"\bdecay\s*:\s*([0-9.]+)", f.read())
    assert blocks >= 2 and decays == ["0.9"] * blocks, decays
    assert changes["batch_norm.decay"] == ("0.99 in 2 blocks", "0.9")
    assert load_config(out).model.norm.norm_momentum == 0.9
    # A block without decay (the proto's default) gets one.
    text = "model { ssd { batch_norm { scale: true } x { batch_norm: { decay: 0.97 } } } }"
    changes: dict = {}
    text = parity._set_batch_norm_decay(text, 0.5, changes)
    assert re.findall(r"\bdecay\s*:\s*([0-9.]+)", text) == ["0.5", "0.5"], text
    assert changes["batch_norm.decay"] == ("0.97, 0.999 (default) in 2 blocks", "0.5")


ODAPI_LOG = """\
INFO:tensorflow:Step 100 per-step time 0.977s
I1205 18:44:03.879143 1 model_lib_v2.py:708] {'Loss/classification_loss': np.float32(1.0159981),
 'Loss/localization_loss': np.float32(0.53063923),
 'Loss/regularization_loss': np.float32(0.06732303),
 'Loss/total_loss': np.float32(1.6139604),
 'learning_rate': np.float32(0.011306356)}
INFO:tensorflow:Step 300 per-step time 1.267s
{'Loss/classification_loss': 0.71,
 'Loss/localization_loss': 0.38,
 'Loss/regularization_loss': 0.06,
 'Loss/total_loss': 1.15,
 'learning_rate': 0.0}
INFO:tensorflow:\t+ DetectionBoxes_Precision/mAP: 0.121000
INFO:tensorflow:\t+ DetectionBoxes_Precision/mAP@.50IOU: 0.241000
"""
OUR_LOG = """\
I1205 18:56:32.771582 1 hooks.py:69] Step 100 per-step time 2.428s loss=7.4981 \
(classification 3.0836, localization 4.0980, regularization 0.3165) learning_rate=0.011306
I1205 19:00:32.771582 1 hooks.py:69] Step 300 per-step time 0.994s loss=2.9817 \
(classification 1.2579, localization 1.3877, regularization 0.3361) learning_rate=0.000000
"""


def _stamped(log: str, seconds: list[float]) -> list[tuple[float, str]]:
    """The lines of `log`, the step lines stamped with `seconds` in turn, the others 0."""
    stamps, out = iter(seconds), []
    for line in log.splitlines():
        out.append((next(stamps) if "per-step time" in line else 0.0, line))
    return out


def test_losses_steady_time_and_metrics_from_each_drivers_lines():
    odapi = _stamped(ODAPI_LOG, [300.0, 560.0])
    assert parity.losses("odapi", odapi) == {
        "100": {"classification": 1.0159981, "localization": 0.53063923,
                "regularization": 0.06732303, "total": 1.6139604},
        "300": {"classification": 0.71, "localization": 0.38, "regularization": 0.06,
                "total": 1.15}}
    # (560 - 300) s over steps 101..300, not the one step each line gives
    assert parity.steady(odapi) == {"steady_s_per_step": 1.3, "steady_steps": "101..300"}
    eval_lines = [(0.0, line) for line in ODAPI_LOG.splitlines()]
    assert parity.metrics("odapi", eval_lines, "") == {"AP": 0.121, "AP50": 0.241}
    ours = _stamped(OUR_LOG, [50.0, 250.0])
    assert parity.losses("ours", ours)["300"] == {
        "total": 2.9817, "classification": 1.2579, "localization": 1.3877,
        "regularization": 0.3361}
    assert parity.steady(ours)["steady_s_per_step"] == 1.0


def test_without_the_odapi_it_says_so_and_exits_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("ODAPI_PY", "ODAPI_RESEARCH")}
    done = subprocess.run(
        [sys.executable, SCRIPT, f"--pipeline_config={SAMPLE}", "--train_records=x",
         "--val_records=x", "--label_map=x", f"--work_dir={tmp_path}"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("The OD API is absent") and "nothing measured" in done.stdout
    assert os.listdir(tmp_path) == []


def _result(side: str, ap: float, losses: dict | None = None) -> dict:
    return {"side": side, "num_steps": 400, "losses": losses or {},
            "steady_s_per_step": None if side == "crossed" else 1.5,
            "steady_steps": None if side == "crossed" else "101..400",
            "AP": ap, "AP50": ap + 0.2, "parameters": None if side == "crossed" else 7,
            "load_before": "1 1 1", "load_after": "2 2 2", "started": "2026-12-07T18:00:00"}


def test_the_table_puts_our_evaluation_of_the_odapi_checkpoint_beside_both():
    loss = {"400": {"total": 0.5, "classification": 0.3, "localization": 0.2}}
    text = parity.table({"odapi": _result("odapi", 0.4152, loss),
                         "ours": _result("ours", 0.3, loss),
                         "crossed": _result("crossed", 0.4144)})
    lines = text.splitlines()
    assert lines[0] == ("| | OD API `model_main_tf2.py` | ours, same file | the OD API's "
                        "checkpoint, our evaluation |")
    assert any(line.endswith("| 0.50 (class. 0.30, loc. 0.20) | - |") for line in lines)
    assert "| AP / AP50 at step 400 | 0.415 / 0.615 | 0.300 / 0.500 | 0.414 / 0.614 |" in lines
    assert "| steady s/step (steps 101..400) | 1.500 | 1.500 | - |" in lines
    # the crossed side alone (the OD API's result elsewhere) still makes a table
    alone = parity.table({"crossed": _result("crossed", 0.4144)})
    assert "| steady s/step (steps -) | - |" in alone.splitlines()


def test_crossed_needs_the_odapi_sides_checkpoint(tmp_path):
    with pytest.raises(parity.ParityError, match="no OD API checkpoint in .*odapi/train; run "
                                                 "--sides=odapi first"):
        parity.run_crossed(str(tmp_path / "pipeline.config"), str(tmp_path), 400)
    assert os.listdir(tmp_path) == []


EVALUATE = os.path.join(REPO, "scripts", "odapi_parity", "evaluate_odapi_checkpoint.py")


def _fixture_run(tiny_dataset, tmp_path, num_classes: int = 3) -> tuple[str, str]:
    """(a pipeline.config of the FPN-lite fixture, evaluating on the tiny val records,
    its OD API checkpoint, made from the fixture's names and shapes)."""
    from test_fine_tune_odapi_resnet import _checkpoint

    from tests.conftest import write_odapi_fixture_config

    path = write_odapi_fixture_config(
        "ssd_mobilenet_v2_fpn_keras", tmp_path,
        {"num_classes: 3": f"num_classes: {num_classes}",
         '"PATH_TO_BE_CONFIGURED/mobilenet_v2.ckpt-1"': '""'},
        tiny_dataset["label_map_path"], tiny_dataset["train_pattern"])
    with open(path, "a") as f:
        f.write(f'eval_input_reader {{ label_map_path: "{tiny_dataset["label_map_path"]}" '
                f'tf_record_input_reader {{ input_path: "{tiny_dataset["val_pattern"]}" }} }}\n')
    return path, _checkpoint("ssd_mobilenet_v2_fpn_keras", tmp_path)


def test_our_evaluation_of_an_odapi_checkpoint_loads_it_whole(tiny_dataset, tmp_path):
    """The crossed side's script on an OD API checkpoint of the FPN-lite fixture (its
    seeded weights: an AP near 0, but a real evaluation of every loaded variable)."""
    config, prefix = _fixture_run(tiny_dataset, tmp_path)
    output = tmp_path / "crossed" / "metrics.json"
    done = subprocess.run([sys.executable, EVALUATE, f"--pipeline_config={config}",
                           f"--checkpoint={prefix}", f"--output={output}"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(output) as f:
        metrics = json.load(f)
    assert 0.0 <= metrics["AP"] <= 1.0 and 0.0 <= metrics["AP50"] <= 1.0
    assert metrics["checkpoint"] == os.path.abspath(prefix)
    assert metrics["fine_tune"].startswith("fine-tune: ") and "(full)" in metrics["fine_tune"]
    assert "fresh" not in metrics["fine_tune"]


def test_our_evaluation_refuses_a_checkpoint_that_loads_in_part(tiny_dataset, tmp_path):
    """Another num_classes: the class predictor stays fresh, so there is nothing to
    compare; one error line, no metrics file."""
    config, prefix = _fixture_run(tiny_dataset, tmp_path, num_classes=2)
    output = tmp_path / "metrics.json"
    done = subprocess.run([sys.executable, EVALUATE, f"--pipeline_config={config}",
                           f"--checkpoint={prefix}", f"--output={output}"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "do not load from it" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not output.exists()


def test_fixed_batch_losses_without_the_odapi_says_so_and_exits_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("ODAPI_PY", "ODAPI_RESEARCH")}
    script = os.path.join(REPO, "scripts", "odapi_parity", "fixed_batch_losses.py")
    done = subprocess.run([sys.executable, script, f"--pipeline_config={SAMPLE}",
                           "--records=x", f"--work_dir={tmp_path / 'out'}"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("The OD API is absent") and "nothing measured" in done.stdout
    assert not (tmp_path / "out").exists()
