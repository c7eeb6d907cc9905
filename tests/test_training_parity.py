"""scripts/odapi_parity/training_parity.py without the OD API: the one config it
writes for both drivers, what it reads from each driver's log lines, and its exit
when the OD API is absent. (Its measurements need the OD API; docs/odapi_parity.md
gives them.)"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

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
