"""What the data contract did in a training run, told in the log and in
`model_dir/data_report.json`.

The counts (example_checks.COUNTERS: examples read, examples skipped by rule,
boxes clipped into [0, 1], zero-area boxes and boxes beyond max_number_of_boxes
dropped) live in the checkpointed `data_counts` variable, so they are the run's
totals across resumes. `DataReportHook` logs one line at a log step when they
changed in anything but the examples read, and writes data_report.json at every
log step and when the run ends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np

from train_lib.checkpointing.policy import StopReason
from train_lib.data.example_checks import COUNTERS, RULE_NAMES, TIDY_COUNTERS, describe_counts
from train_lib.training.hooks import PeriodicHook, StepOutputs

REPORT_FILE = "data_report.json"


class DataReportHook(PeriodicHook):
    """Logs and records the data counts every `every_n` steps and at the end.

    Args:
      every_n: train_config.log_every_n.
      read_counts: the current totals, int64 [len(COUNTERS)] (a variable's numpy).
      path: data_report.json's path, or None on a worker that writes nothing.
      policy: train_input_reader.bad_example_policy, recorded with the counts.
      max_boxes: train_input_reader.max_number_of_boxes, for the wording.
      log: where the line goes.
    """

    def __init__(self, every_n: int, read_counts: Callable[[], np.ndarray], path: str | None,
                 policy: str, max_boxes: int, log: Callable[[str], None]):
        self.every_n = every_n
        self._read = read_counts
        self._path = path
        self._policy = policy
        self._max_boxes = max_boxes
        self._log = log
        self._said = ""

    def after_steps(self, step: int, outputs: StepOutputs) -> None:
        if self.wants(step):
            self._report(step)

    def end(self, step: int, reason: StopReason, error: BaseException | None = None) -> None:
        self._report(step)

    def _report(self, step: int) -> None:
        counts = {name: int(v) for name, v in zip(COUNTERS, self._read(), strict=True)}
        line = describe_counts(counts, self._max_boxes)
        if line and line != self._said:
            self._log(f"data: {line} (of {counts['examples']} examples read)")
            self._said = line
        if self._path:
            write_report(self._path, step, self._policy, counts)


def write_report(path: str, step: int, policy: str, counts: dict[str, int]) -> None:
    """Writes data_report.json atomically: the step, the policy and the counts."""
    report = {"step": step, "bad_example_policy": policy,
              "examples_read": counts["examples"],
              "skipped": {name: counts[name] for name in RULE_NAMES},
              "tidied": {name: counts[name] for name in TIDY_COUNTERS}}
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(temporary, path)
