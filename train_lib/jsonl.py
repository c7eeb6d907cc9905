"""Reading append-only JSON-lines files (checkpoints.jsonl, eval_metrics.jsonl).

No TensorFlow and no train_lib imports: every package may use it.
"""

from __future__ import annotations

import json

__all__ = ["read_jsonl"]


def read_jsonl(path: str) -> list[dict]:
    """The JSON objects of an append-only JSON-lines file, oldest first; [] if it
    does not exist. Lines that are not a JSON object (one truncated by a crash)
    are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
