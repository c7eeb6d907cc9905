"""Reading every record of a config's input files once and reporting what is there.

`check_files` applies the data contract (example_checks.py) to each record of a
set of TFRecord files, decoding in parallel, and gathers a `SplitReport`:
images, boxes per class, image sizes, boxes per image, the boxes the contract
tidies, and every problem by rule with the first few records that show it
(file, record index, image/source_id, message). A record whose image data is
damaged inside (which only a decoder notices) is reported under `undecodable`
and the check goes on after it; a TFRecord file that cannot be read further is
reported under `unreadable`. `format_report` prints the reports.
`load_config_to_check` reads the config, not refusing what the check does not use.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from train_lib.config import ONLY_TRAINING_READS, PipelineConfig, load_config
from train_lib.data import example_checks

EXAMPLES_PER_PROBLEM = 3


def load_config_to_check(path: str, params_override: str = "") -> PipelineConfig:
    """The config whose data to check: `load_config`, except that keys the check never
    reads (ONLY_TRAINING_READS) may still hold the OD API's placeholder."""
    return load_config(path, params_override, unused_keys=ONLY_TRAINING_READS)


@dataclasses.dataclass
class Problem:
    count: int = 0
    examples: list[tuple[str, int, str, str]] = dataclasses.field(default_factory=list)
    # (file, record index, source id, message)

    def add(self, path: str, index: int, source_id: str, message: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES_PER_PROBLEM:
            self.examples.append((path, index, source_id, message))


@dataclasses.dataclass
class SplitReport:
    """What one input reader's files hold."""

    key: str  # train_input_reader or eval_input_reader
    files: list[str]
    records: int = 0
    images: int = 0  # valid examples
    boxes_per_class: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    sizes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    boxes_per_image: list[int] = dataclasses.field(default_factory=list)
    tidied: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    problems: dict[str, Problem] = dataclasses.field(default_factory=dict)

    def problem(self, rule: str) -> Problem:
        return self.problems.setdefault(rule, Problem())

    @property
    def num_problems(self) -> int:
        return sum(p.count for p in self.problems.values())

    def to_json(self) -> dict:
        per_image = np.array(self.boxes_per_image or [0])
        return {
            "files": self.files, "records": self.records, "images": self.images,
            "boxes_per_class": {str(k): v for k, v in sorted(self.boxes_per_class.items())},
            "image_sizes": {f"{h}x{w}": n for (h, w), n in self.sizes.most_common()},
            "boxes_per_image": {"min": int(per_image.min()), "max": int(per_image.max()),
                                "mean": round(float(per_image.mean()), 3),
                                "without_boxes": int((per_image == 0).sum())},
            "tidied": dict(self.tidied),
            "problems": {rule: {"count": p.count, "examples": [
                {"file": f, "record": i, "source_id": s, "message": m}
                for f, i, s, m in p.examples]} for rule, p in self.problems.items()},
        }


def _probe(num_classes: int, max_boxes: int):
    """The per-record function of the check: what the report needs of one record."""
    @tf.autograph.experimental.do_not_convert
    def probe(path, index, record):
        data = example_checks.decode_and_check(record, num_classes, max_boxes)
        message = tf.cond(tf.equal(data["rule"], 0), lambda: tf.constant(""),
                          lambda: example_checks.error_message(data, path, index, num_classes))
        return {"index": index, "rule": data["rule"], "message": message,
                "source_id": data["source_id"], "shape": tf.shape(data["image"])[:2],
                "classes": data["groundtruth_classes"], "counts": data["counts"]}
    return probe


def _add(report: SplitReport, path: str, item: dict) -> None:
    report.records += 1
    rule = int(item["rule"])
    counts = item["counts"]
    for name in example_checks.TIDY_COUNTERS:
        value = int(counts[example_checks.COUNTER_INDEX[name]])
        if value:
            report.tidied[name] += value
    if rule:
        message = item["message"].decode(errors="replace").split("): ", 1)[-1]
        report.problem(example_checks.RULES[rule].name).add(
            path, int(item["index"]), item["source_id"].decode(errors="replace"), message)
        return
    report.images += 1
    report.sizes[tuple(int(v) for v in item["shape"])] += 1
    report.boxes_per_image.append(len(item["classes"]))
    report.boxes_per_class.update(int(c) for c in item["classes"])


def _check_file(report: SplitReport, path: str, probe, num_classes: int, max_boxes: int,
                progress: Callable[[], None]) -> None:
    """Adds every record of `path` to `report`, stepping over undecodable ones."""
    start = 0
    while True:
        ds = tf.data.TFRecordDataset(path).enumerate().skip(start)
        ds = ds.map(lambda i, r: probe(tf.constant(path), i, r),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        index = start
        try:
            for item in ds.as_numpy_iterator():
                _add(report, path, item)
                index += 1
                progress()
            return
        except tf.errors.DataLossError as err:
            report.problem("unreadable").add(path, index, "", (
                f"the TFRecord file cannot be read from here on "
                f"({example_checks.first_line(err)}); write the file again"))
            return
        # UnicodeDecodeError: TensorFlow's message quoted a record that is not a
        # tf.train.Example, bytes that are not UTF-8 (it raises that instead of an OpError).
        except (tf.errors.OpError, UnicodeDecodeError):
            record = next(iter(tf.data.TFRecordDataset(path).skip(index)))
            reason = example_checks.explain_record(path, index, record, num_classes, max_boxes)
            report.records += 1
            report.problem("undecodable").add(path, index, example_checks.source_id_of(record),
                                              reason or "the record cannot be decoded")
            progress()
            start = index + 1


def check_files(key: str, files: list[str], num_classes: int, max_boxes: int,
                progress: Callable[[], None] = lambda: None) -> SplitReport:
    """Reads every record of `files` once and reports on them (see the module
    docstring). `progress` is called after each record."""
    report = SplitReport(key, files)
    probe = _probe(num_classes, max_boxes)
    for path in files:
        _check_file(report, path, probe, num_classes, max_boxes, progress)
    return report


def format_report(reports: list[SplitReport], label_map: dict[int, str], seconds: float
                  ) -> str:
    """The printed report: per split its contents, what was tidied, every problem."""
    total = sum(r.records for r in reports)
    lines = [f"Checked {_plural(total, 'record')} in "
             f"{_plural(sum(len(r.files) for r in reports), 'file')} "
             f"({seconds:.1f} s)."]
    for report in reports:
        lines += ["", f"{report.key} ({_plural(len(report.files), 'file')}): "
                      f"{_plural(report.records, 'record')}, "
                      f"{report.images} valid images, "
                      f"{sum(report.boxes_per_class.values())} boxes"]
        if report.boxes_per_class:
            lines.append("  boxes per class: " + ", ".join(
                f"{label_map.get(k, '?')} ({k}) {n}"
                for k, n in sorted(report.boxes_per_class.items())))
        if report.boxes_per_image:
            per_image = np.array(report.boxes_per_image)
            lines.append(f"  boxes per image: {per_image.min()} to {per_image.max()}, mean "
                         f"{per_image.mean():.1f}; {(per_image == 0).sum()} images without "
                         "boxes")
        if report.sizes:
            common = ", ".join(f"{h}x{w} ({n})" for (h, w), n in report.sizes.most_common(3))
            more = len(report.sizes) - 3
            lines.append(f"  image sizes (height x width): {common}"
                         + (f" and {more} other sizes" if more > 0 else ""))
        if report.tidied:
            lines.append("  tidied (not errors): " + ", ".join(
                f"{name} {n}" for name, n in sorted(report.tidied.items())))
        if not report.problems:
            lines.append("  problems: none")
        for rule, problem in report.problems.items():
            lines.append(f"  problem {rule}: {_plural(problem.count, 'record')}")
            for path, index, source_id, message in problem.examples:
                lines.append(f"    {path} record {index} (image/source_id {source_id!r}): "
                             f"{message}")
    problems = sum(r.num_problems for r in reports)
    lines += ["", "No problems found." if not problems else
              f"{problems} records break the data contract; fix them, or set "
              "train_input_reader.bad_example_policy: skip to train without them."]
    return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


class Progress:
    """A progress line on a terminal (`stream`), redrawn every 100 records."""

    def __init__(self, stream, enabled: bool):
        self._stream, self._enabled = stream, enabled
        self._count, self._began = 0, time.monotonic()

    def __call__(self) -> None:
        self._count += 1
        if self._enabled and self._count % 100 == 0:
            rate = self._count / max(time.monotonic() - self._began, 1e-6)
            self._stream.write(f"\r  {self._count} records checked ({rate:.0f}/s)")
            self._stream.flush()

    def clear(self) -> None:
        if self._enabled:
            self._stream.write("\r" + " " * 60 + "\r")
            self._stream.flush()
