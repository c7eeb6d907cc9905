r"""Training parity with the real TF Object Detection API: the same pipeline.config
trained the same number of steps by the OD API's `model_main_tf2.py` and by ours,
each evaluated by its own `--checkpoint_dir` evaluation, side by side.

Given a published pipeline.config (tensorflow/models research/object_detection/
configs/tf2/), training and validation TFRecords and their label map, it writes
one pipeline.config for both drivers, `<work_dir>/pipeline.config`:

- `num_classes`: the label map's;
- `train_config.batch_size`: --batch_size (8), the cosine schedule's
  `learning_rate_base` and `warmup_learning_rate` scaled linearly from the
  config's batch to it (0.8 at 512 -> 0.0125 at 8) and then multiplied by
  --lr_scale (1), `warmup_steps`: --warmup_steps, `total_steps` and `num_steps`:
  --num_steps;
- with --batch_norm_decay, every `batch_norm` block's `decay` (the published
  FPN-lite configs' 0.997 weighs the moving averages, which each driver's evaluation
  uses, over about 330 steps, so after a few hundred they still lag the weights);
- no `fine_tune_checkpoint` (both start from the same kind of random weights);
- the record and label map paths.

Then, one driver at a time (the OD API's first), for each side in --sides:

    <python> model_main_tf2.py --pipeline_config_path=<work_dir>/pipeline.config \
        --model_dir=<work_dir>/<side>/train --checkpoint_every_n=<num_steps> --alsologtostderr
    <python> model_main_tf2.py --pipeline_config_path=<work_dir>/pipeline.config \
        --model_dir=<work_dir>/<side>/eval --checkpoint_dir=<work_dir>/<side>/train \
        --eval_timeout=60

(ours without --alsologtostderr, which it does not define, and with
`--params_override=eval_config.eval_at_end=false`: the OD API's trainer does not
evaluate, each driver's evaluation is the second command). Each side's log is kept,
every line stamped with the seconds since its process started, in
`<side>/train.log` and `<side>/eval.log`, and its figures in `<side>/result.json`;
the table is printed from the result files there, so one side can be run again
alone (`--sides=ours`) after a change to ours.

The side `crossed` (after `odapi`, or alone on a work dir where it ran) trains
nothing: it evaluates the OD API's final checkpoint with our evaluation
(evaluate_odapi_checkpoint.py: our model from the same file, every variable loaded
from that checkpoint), so the table shows whether the two evaluations agree on the
same weights, apart from how each driver trains.

The figures, from each driver's own output:
- loss at each logged step (both log every 100 steps: the loss of that step), and
  its classification and localization terms;
- steady s/step: the time between the log lines of the first and the last logged
  steps over the steps between them (steps 101..N: the first 100, with the
  tracing, left out), from the lines' stamps, so both are measured alike (the OD
  API's `model_main_tf2.py` runs 100 steps per call of its compiled loop and logs
  once a call: its own "per-step time" is the mean over those 100; a run of it
  shorter than 200 steps has no steady figure);
- AP and AP50 of the final checkpoint by the driver's own evaluation (the OD API's
  `DetectionBoxes_Precision/mAP` and `mAP@.50IOU`, our `AP` and `AP50`);
- parameters: the model's trainable variables in the final checkpoint (batch
  norm's moving statistics and the optimizer's slots left out).

The OD API runs with --odapi_python (an interpreter where it imports; default
$ODAPI_PY) from --odapi_research (tensorflow/models' `research` directory; default
$ODAPI_RESEARCH), with `research` and `research/slim` on PYTHONPATH and
TF_USE_LEGACY_KERAS=1; ours with this interpreter, without those. When the OD API
is not there, it says so and exits 0 without measuring. It imports nothing of the
OD API.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SIDES = ("odapi", "ours", "crossed")
TITLES = {"odapi": "OD API `model_main_tf2.py`", "ours": "ours, same file",
          "crossed": "the OD API's checkpoint, our evaluation"}

_STEP = re.compile(r"Step (\d+) per-step time ([0-9.]+)s")
# Ours: "loss=1.2345 (classification 0.5, localization 0.4, regularization 0.3)".
_OUR_LOSS = re.compile(r"loss=([-0-9.e+naninf]+) \(([^)]*)\)")
# The OD API's pprint of its loss dict, one key a line: "'Loss/total_loss': 1.23,"
# (numpy 2 prints "np.float32(1.23)").
_ODAPI_LOSS = re.compile(r"'Loss/(\w+)_loss': (?:np\.float\d+\()?([-0-9.e+naninf]+)")
_ODAPI_METRIC = re.compile(r"\+ (DetectionBoxes_Precision/mAP(?:@\.50IOU)?): ([-0-9.e+]+)$")
_EXCLUDED_VARIABLES = ("moving_mean", "moving_variance", "OPTIMIZER_SLOT")


class ParityError(Exception):
    """A user mistake or a driver that failed: one `error:` line."""


# ---------------------------------------------------------------- the config


def _block_span(text: str, name: str, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """(start, end) of the body of the first `name {` / `name: {` message in
    text[start:end], between its braces."""
    end = len(text) if end is None else end
    match = re.compile(rf"\b{re.escape(name)}\s*:?\s*{{").search(text, start, end)
    if match is None:
        raise ParityError(f"the config has no {name} {{...}} block")
    depth, i = 1, match.end()
    while depth:
        if i >= end:
            raise ParityError(f"the config's {name} block is not closed")
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return match.end(), i - 1


def _set_field(text: str, span: tuple[int, int], field: str, value: str,
               where: str) -> tuple[str, str]:
    """Sets the first scalar `field: ...` inside text[span]; returns (the new text,
    the old value)."""
    pattern = re.compile(rf"\b{re.escape(field)}\s*:\s*(\"[^\"]*\"|'[^']*'|[^\s,}}]+)")
    match = pattern.search(text, *span)
    if match is None:
        raise ParityError(f"the config's {where} has no {field}")
    old = match.group(1).strip("\"'")
    return text[:match.start(1)] + value + text[match.end(1):], old


def _num_classes(label_map: str) -> int:
    with open(label_map) as f:
        ids = re.findall(r"\bid\s*:\s*(\d+)", f.read())
    if not ids:
        raise ParityError(f"{label_map}: no `id:` entries; is it a label_map.pbtxt?")
    return max(int(i) for i in ids)


def write_config(published: str, out: str, train_records: str, val_records: str,
                 label_map: str, num_steps: int, batch_size: int,
                 warmup_steps: int, lr_scale: float = 1.0,
                 batch_norm_decay: float | None = None) -> dict:
    """Writes the published config `published`, changed as the module docstring says,
    to `out`; returns what was changed {what: (old, new)}."""
    with open(published) as f:
        text = f.read()
    changes: dict[str, tuple] = {}

    def set_in(block: str, field: str, value, within: tuple[int, int] | None = None) -> None:
        nonlocal text
        span = _block_span(text, block, *(within or (0, None)))
        text, old = _set_field(text, span, field, str(value), block)
        changes[f"{block}.{field}"] = (old, value)

    set_in("model", "num_classes", _num_classes(label_map))
    set_in("train_config", "batch_size", batch_size)
    old_batch = changes["train_config.batch_size"][0]
    set_in("train_config", "num_steps", num_steps)
    try:
        _block_span(text, "cosine_decay_learning_rate")
    except ParityError as e:
        raise ParityError(f"{published}: only a cosine_decay_learning_rate schedule is "
                          "scaled here (the published SSD configs' schedule)") from e
    scale = batch_size / float(old_batch) * lr_scale
    cosine = "cosine_decay_learning_rate"
    for field in ("learning_rate_base", "warmup_learning_rate"):
        old = _set_field(text, _block_span(text, cosine), field, "0", cosine)[1]
        set_in(cosine, field, f"{float(old) * scale:.6g}")
    set_in(cosine, "total_steps", num_steps)
    set_in(cosine, "warmup_steps", warmup_steps)
    if batch_norm_decay is not None:
        text = _set_batch_norm_decay(text, batch_norm_decay, changes)
    # Both drivers start from random weights: the published checkpoint paths are
    # placeholders.
    text, removed = re.subn(r"^\s*fine_tune_checkpoint(_type)?\s*:.*\n", "", text,
                            flags=re.MULTILINE)
    changes["train_config.fine_tune_checkpoint"] = (f"{removed} lines", "removed")
    for reader, records in (("train_input_reader", train_records),
                            ("eval_input_reader", val_records)):
        set_in(reader, "label_map_path", f'"{os.path.abspath(label_map)}"')
        reader_span = _block_span(text, reader)
        set_in("tf_record_input_reader", "input_path", f'"{os.path.abspath(records)}"',
               within=reader_span)
        changes[f"{reader}.input_path"] = changes.pop("tf_record_input_reader.input_path")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(f"# {os.path.basename(published)}, changed by "
                "scripts/odapi_parity/training_parity.py\n" + text)
    return changes


def _set_batch_norm_decay(text: str, decay: float, changes: dict) -> str:
    """Every `batch_norm {}` block's `decay` set to `decay` (a block without one, at the
    proto's default 0.999, gets one); `changes` gets one entry, the old values and the
    count."""
    old_values, start = [], 0
    opening = re.compile(r"\bbatch_norm\s*:?\s*{")
    while (found := opening.search(text, start)) is not None:
        span = _block_span(text, "batch_norm", found.start())
        if re.search(r"\bdecay\s*:", text[span[0]:span[1]]):
            text, old = _set_field(text, span, "decay", f"{decay:g}", "batch_norm")
        else:
            text, old = text[:span[0]] + f" decay: {decay:g} " + text[span[0]:], "0.999 (default)"
        old_values.append(old)
        start = _block_span(text, "batch_norm", found.start())[1]
    if not old_values:
        raise ParityError("--batch_norm_decay: the config has no batch_norm { ... } block")
    changes["batch_norm.decay"] = (f"{', '.join(sorted(set(old_values)))} in "
                                   f"{len(old_values)} blocks", f"{decay:g}")
    return text


# ---------------------------------------------------------------- running


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_logged(args: list[str], log_path: str, env: dict[str, str], cwd: str) -> list[
        tuple[float, str]]:
    """Runs `args`, its stdout and stderr merged, each line stamped with the seconds
    since the start and written to `log_path` as it comes; returns the stamped lines.
    ParityError (with its last lines) when it exits non-zero."""
    began = time.monotonic()
    lines: list[tuple[float, str]] = []
    with open(log_path, "w") as log:
        log.write(f"# {' '.join(args)}\n# cwd {cwd}; load average {_load()}\n")
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

        def read() -> None:
            for line in proc.stdout:
                stamp = time.monotonic() - began
                lines.append((stamp, line.rstrip("\n")))
                log.write(f"{stamp:9.2f} {line}")
                log.flush()
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        code = proc.wait()
        reader.join()
        log.write(f"# exit {code} after {time.monotonic() - began:.1f} s; "
                  f"load average {_load()}\n")
    if code:
        tail = "\n".join(line for _, line in lines[-12:])
        raise ParityError(f"{args[1]} exited {code} (log: {log_path}); its last lines:\n{tail}")
    return lines


def side_command(side: str, odapi_python: str, odapi_research: str) -> tuple[
        list[str], dict[str, str], str]:
    """(the interpreter and script, the environment, the working directory) of a side."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    if side == "odapi":
        env.update(PYTHONPATH=f"{odapi_research}:{os.path.join(odapi_research, 'slim')}",
                   TF_USE_LEGACY_KERAS="1")
        return ([odapi_python, os.path.join(odapi_research, "object_detection",
                                            "model_main_tf2.py")], env, odapi_research)
    return [sys.executable, os.path.join(REPO, "model_main_tf2.py")], env, REPO


def our_override(extra: str) -> str:
    """Ours' --params_override: no evaluation at the end of training, and `extra` (a
    YAML mapping in our keys, e.g. '{model: {loss: {box_loss_weight: 2}}}')."""
    override = yaml.safe_load(extra) if extra else {}
    if not isinstance(override, dict):
        raise ParityError(f"--our_params_override: {extra!r} is not a YAML mapping")
    override.setdefault("eval_config", {})["eval_at_end"] = False
    return yaml.safe_dump(override, default_flow_style=True, width=10**6).strip()


def run_crossed(config: str, work_dir: str, num_steps: int) -> dict:
    """Our evaluation of the OD API side's final checkpoint (`crossed`); returns its
    figures (also written to `<work_dir>/crossed/result.json`)."""
    side_dir = os.path.join(work_dir, "crossed")
    odapi_train = os.path.join(work_dir, "odapi", "train")
    if not glob.glob(os.path.join(odapi_train, "ckpt-*.index")):
        raise ParityError(f"--sides=crossed: no OD API checkpoint in {odapi_train}; run "
                          f"--sides=odapi first")
    shutil.rmtree(side_dir, ignore_errors=True)
    os.makedirs(side_dir)
    _, env, _ = side_command("ours", "", "")
    output = os.path.join(side_dir, "metrics.json")
    load_before, began = _load(), time.time()
    print(f"crossed: our evaluation of the OD API's checkpoint (log: {side_dir}/eval.log)",
          flush=True)
    run_logged([sys.executable, os.path.join(HERE, "evaluate_odapi_checkpoint.py"),
                f"--pipeline_config={config}", f"--checkpoint={odapi_train}",
                f"--output={output}"], os.path.join(side_dir, "eval.log"), env, REPO)
    if not os.path.exists(output):
        raise ParityError(f"crossed: our evaluation of {odapi_train} failed; see "
                          f"{side_dir}/eval.log")
    with open(output) as f:
        found = json.load(f)
    result = {
        "side": "crossed", "num_steps": num_steps, "our_params_override": "",
        "started": datetime.datetime.fromtimestamp(began).isoformat(timespec="seconds"),
        "load_before": load_before, "load_after": _load(), "train_wall_s": None,
        "losses": {}, "steady_s_per_step": None, "AP": found["AP"], "AP50": found["AP50"],
        "checkpoint": found["checkpoint"], "parameters": None,
    }
    with open(os.path.join(side_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def run_side(side: str, config: str, work_dir: str, num_steps: int, odapi_python: str,
             odapi_research: str, our_params_override: str = "") -> dict:
    """Trains and evaluates one side afresh; returns its figures (also written to
    `<work_dir>/<side>/result.json`)."""
    if side == "crossed":
        return run_crossed(config, work_dir, num_steps)
    base, env, cwd = side_command(side, odapi_python, odapi_research)
    side_dir = os.path.join(work_dir, side)
    shutil.rmtree(side_dir, ignore_errors=True)
    os.makedirs(side_dir)
    train_dir, eval_dir = os.path.join(side_dir, "train"), os.path.join(side_dir, "eval")
    override = our_override(our_params_override) if side == "ours" else ""
    extra = ["--alsologtostderr"] if side == "odapi" else [f"--params_override={override}"]
    load_before = _load()
    began = time.time()
    print(f"{side}: training {num_steps} steps (log: {side_dir}/train.log)", flush=True)
    train_lines = run_logged(
        [*base, f"--pipeline_config_path={config}", f"--model_dir={train_dir}",
         f"--checkpoint_every_n={num_steps}", *extra], os.path.join(side_dir, "train.log"),
        env, cwd)
    load_after = _load()
    print(f"{side}: evaluating (log: {side_dir}/eval.log)", flush=True)
    eval_lines = run_logged(
        [*base, f"--pipeline_config_path={config}", f"--model_dir={eval_dir}",
         f"--checkpoint_dir={train_dir}", "--eval_timeout=60",
         *([f"--params_override={override}"] if side == "ours" else [])],
        os.path.join(side_dir, "eval.log"), env, cwd)
    result = {
        "side": side, "num_steps": num_steps, "our_params_override": override,
        "started": datetime.datetime.fromtimestamp(began).isoformat(timespec="seconds"),
        "load_before": load_before, "load_after": load_after,
        "train_wall_s": round(train_lines[-1][0], 1) if train_lines else None,
        "losses": losses(side, train_lines),
        **steady(train_lines),
        **metrics(side, eval_lines, eval_dir),
        "parameters": parameters(train_dir),
    }
    with open(os.path.join(side_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


# ---------------------------------------------------------------- reading the logs


def losses(side: str, lines: list[tuple[float, str]]) -> dict[str, dict[str, float]]:
    """{step: {"total": ..., "classification": ..., "localization": ...,
    "regularization": ...}} of each logged step."""
    out: dict[str, dict[str, float]] = {}
    step = None
    for _, line in lines:
        if match := _STEP.search(line):
            step = match.group(1)
            out[step] = {}
            if side == "ours" and (loss := _OUR_LOSS.search(line)):
                out[step]["total"] = float(loss.group(1))
                for term in loss.group(2).split(", "):
                    name, value = term.rsplit(" ", 1)
                    out[step][name] = float(value)
        elif side == "odapi" and step is not None and (loss := _ODAPI_LOSS.search(line)):
            out[step][loss.group(1)] = float(loss.group(2))
    return out


def steady(lines: list[tuple[float, str]]) -> dict:
    """Steady s/step between the first and the last logged steps' lines."""
    stamps = [(int(m.group(1)), t) for t, line in lines if (m := _STEP.search(line))]
    if len(stamps) < 2:
        return {"steady_s_per_step": None, "steady_steps": None}
    (first, t0), (last, t1) = stamps[0], stamps[-1]
    return {"steady_s_per_step": round((t1 - t0) / (last - first), 4),
            "steady_steps": f"{first + 1}..{last}"}


def metrics(side: str, lines: list[tuple[float, str]], eval_dir: str) -> dict:
    """AP and AP50 of the last evaluation."""
    if side == "odapi":
        found = {m.group(1): float(m.group(2)) for _, line in lines
                 if (m := _ODAPI_METRIC.search(line.strip()))}
        return {"AP": found.get("DetectionBoxes_Precision/mAP"),
                "AP50": found.get("DetectionBoxes_Precision/mAP@.50IOU")}
    path = os.path.join(eval_dir, "eval_metrics.jsonl")
    if not os.path.exists(path):
        return {"AP": None, "AP50": None}
    with open(path) as f:
        last = [json.loads(line) for line in f if line.strip()][-1]
    return {"AP": last["metrics"].get("AP"), "AP50": last["metrics"].get("AP50"),
            "eval_step": last.get("step")}


def parameters(train_dir: str) -> int | None:
    """Trainable parameters of the model in train_dir's latest checkpoint: its `model/`
    variables less batch norm's moving statistics and the optimizer's slots."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # here: the table alone needs no TensorFlow

    latest = tf.train.latest_checkpoint(train_dir)
    if latest is None:
        return None
    total = 0
    for name, shape in tf.train.list_variables(latest):
        if name.startswith("model/") and not any(x in name for x in _EXCLUDED_VARIABLES):
            size = 1
            for d in shape:
                size *= d
            total += size
    return total


# ---------------------------------------------------------------- the table


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(results: dict[str, dict]) -> str:
    """The Markdown table of the sides in `results` (side -> result.json)."""
    sides = [s for s in SIDES if s in results]
    steps = sorted({int(k) for s in sides for k in results[s]["losses"]})
    rows = [("| | " + " | ".join(TITLES[s] for s in sides) + " |"),
            "|---|" + "---|" * len(sides)]
    for step in steps:
        cells = []
        for s in sides:
            loss = results[s]["losses"].get(str(step), {})
            cells.append(f"{_fmt(loss.get('total'), 2)} (class. "
                         f"{_fmt(loss.get('classification'), 2)}, loc. "
                         f"{_fmt(loss.get('localization'), 2)})" if loss else "-")
        rows.append(f"| loss at step {step} | " + " | ".join(cells) + " |")
    rows.append("| steady s/step (steps " + (results[sides[0]].get("steady_steps") or "-")
                + ") | " + " | ".join(_fmt(results[s]["steady_s_per_step"]) for s in sides)
                + " |")
    rows.append(f"| AP / AP50 at step {results[sides[0]]['num_steps']} | "
                + " | ".join(f"{_fmt(results[s]['AP'])} / {_fmt(results[s]['AP50'])}"
                             for s in sides) + " |")
    rows.append("| trainable parameters | " + " | ".join(
        "-" if results[s]["parameters"] is None else f"{results[s]['parameters']:,}"
        for s in sides) + " |")
    rows.append("| load average before / after training | " + " | ".join(
        f"{results[s]['load_before']} / {results[s]['load_after']}" for s in sides) + " |")
    rows.append("| training started | " + " | ".join(results[s]["started"] for s in sides)
                + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline_config", required=True,
                        help="a published OD API pipeline.config")
    parser.add_argument("--train_records", required=True, help="training TFRecords (a glob)")
    parser.add_argument("--val_records", required=True, help="validation TFRecords (a glob)")
    parser.add_argument("--label_map", required=True, help="their label_map.pbtxt")
    parser.add_argument("--work_dir", required=True,
                        help="where the config, both runs and their logs are written")
    parser.add_argument("--num_steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--warmup_steps", type=int, default=50)
    parser.add_argument("--lr_scale", type=float, default=1.0,
                        help="multiplies both rates of the cosine schedule after their "
                             "scaling to --batch_size (the same for both drivers)")
    parser.add_argument("--batch_norm_decay", type=float, default=None,
                        help="sets every batch_norm block's decay (both drivers): a "
                             "config's 0.997 weighs the moving averages that each "
                             "driver's evaluation uses over about 330 steps, so after a "
                             "few hundred they still lag the weights")
    parser.add_argument("--sides", default="odapi,ours",
                        help="the sides to run now (the table shows every side with a "
                             "result in work_dir)")
    parser.add_argument("--our_params_override", default="",
                        help="ours only: a YAML mapping of our keys applied over the "
                             "mapped config (to try what a difference costs)")
    parser.add_argument("--odapi_python", default=os.environ.get("ODAPI_PY", ""),
                        help="an interpreter where the OD API imports (default $ODAPI_PY)")
    parser.add_argument("--odapi_research", default=os.environ.get("ODAPI_RESEARCH", ""),
                        help="tensorflow/models' research directory (default "
                             "$ODAPI_RESEARCH)")
    args = parser.parse_args(argv)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    try:
        if unknown := [s for s in sides if s not in SIDES]:
            raise ParityError(f"--sides: {', '.join(unknown)}; choose from {', '.join(SIDES)}")
        sides = [s for s in SIDES if s in sides]  # the OD API's before our view of it
        script = os.path.join(args.odapi_research, "object_detection", "model_main_tf2.py")
        if sides != ["crossed"] and not (  # crossed reads a checkpoint: no OD API run
                args.odapi_python and os.access(args.odapi_python, os.X_OK)
                and os.path.isfile(script)):
            print("The OD API is absent (--odapi_python / $ODAPI_PY: "
                  f"{args.odapi_python or 'unset'}; --odapi_research / $ODAPI_RESEARCH: "
                  f"{args.odapi_research or 'unset'}): nothing measured.")
            return 0
        for what, pattern in (("--train_records", args.train_records),
                              ("--val_records", args.val_records),
                              ("--label_map", args.label_map),
                              ("--pipeline_config", args.pipeline_config)):
            if not glob.glob(pattern):
                raise ParityError(f"{what}: no file matches {pattern}")
        config = os.path.abspath(os.path.join(args.work_dir, "pipeline.config"))
        changes = write_config(args.pipeline_config, config, args.train_records,
                               args.val_records, args.label_map, args.num_steps,
                               args.batch_size, args.warmup_steps, args.lr_scale,
                               args.batch_norm_decay)
        print(f"wrote {config}:")
        for what, (old, new) in changes.items():
            print(f"  {what}: {old} -> {new}")
        for side in sides:
            run_side(side, config, os.path.abspath(args.work_dir), args.num_steps,
                     args.odapi_python, os.path.abspath(args.odapi_research),
                     args.our_params_override)
    except ParityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    results = {}
    for side in SIDES:
        path = os.path.join(args.work_dir, side, "result.json")
        if os.path.exists(path):
            with open(path) as f:
                results[side] = json.load(f)
    if results:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
