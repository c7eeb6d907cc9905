"""What an input-pipeline error says about the data, for the user's message.

`inputs.py` stops at an invalid example with an assertion naming its file and
record (`INPUT_ERROR_MARK` first); `explain_input_error` turns that, a corrupt
TFRecord or a record that cannot be decoded into one sentence naming the file,
the record, its source id and the rule. Eager and slow: runs after a failure.
"""

from __future__ import annotations

import re

import tensorflow as tf

from train_lib.config import InputReaderConfig
from train_lib.data import example_checks
from train_lib.data.inputs import INPUT_ERROR_MARK


def explain_input_error(err: tf.errors.OpError | UnicodeDecodeError, files: list[str],
                        reader: InputReaderConfig, num_classes: int) -> tuple[str, str] | None:
    """What an input-pipeline error says about the data: ("bad", "<file> record <i>
    (image/source_id '<id>'): <rule's problem>; <what to do> (rule <name>)") for a
    record our checks stopped at or that cannot be parsed or decoded (found by
    reading the records again), ("corrupt", which file and record cannot be read),
    or None when it is not one of those. A UnicodeDecodeError is what TensorFlow
    raises instead of an OpError when its parse error quotes a record that is not a
    tf.train.Example, in bytes that are not UTF-8."""
    if isinstance(err, UnicodeDecodeError):
        return _bad_record(files, reader, num_classes)
    found = _ASSERTION_RE.search(err.message)
    if found:
        path, index = found.group(1), int(found.group(2))
        record = next(iter(tf.data.TFRecordDataset(path).skip(index).take(1)))
        reason = example_checks.explain_record(path, index, record, num_classes,
                                               reader.max_number_of_boxes)
        return "bad", (f"{path} record {index} (image/source_id "
                       f"'{example_checks.source_id_of(record)}'): {reason}")
    if isinstance(err, tf.errors.DataLossError):
        found = find_corrupt_tfrecord(files)
        return "corrupt", (f"{found[0]} is corrupt at record {found[1]} ({found[2]})" if found
                           else err.message.splitlines()[0])
    if isinstance(err, tf.errors.InvalidArgumentError):
        return _bad_record(files, reader, num_classes)
    return None


def _bad_record(files: list[str], reader: InputReaderConfig, num_classes: int
                ) -> tuple[str, str] | None:
    """("bad", which record fails and why), found by reading `files` again, or None."""
    found = example_checks.find_bad_record(files, num_classes, reader.max_number_of_boxes)
    if found is None:
        return None
    path, index, source_id, reason = found
    return "bad", f"{path} record {index} (image/source_id '{source_id}'): {reason}"


# How TensorFlow prints `_checked`'s assertion: [INPUT_ERROR: ] [<file>] [<record>].
_ASSERTION_RE = re.compile(re.escape(INPUT_ERROR_MARK) + r"\] \[(.*?)\] \[(\d+)\]")


def find_corrupt_tfrecord(files: list[str]) -> tuple[str, int, str] | None:
    """Reads every record of `files`; returns (file, record index, error) of the
    first unreadable one, or None when all read back. For error reports only."""
    for path in files:
        index = 0
        try:
            for _ in tf.data.TFRecordDataset(path):
                index += 1
        except (tf.errors.DataLossError, tf.errors.OutOfRangeError,
                tf.errors.InvalidArgumentError) as err:
            return path, index, err.message.splitlines()[0]
    return None
