"""The words of an inspection: `format_report` renders a `Report` (records.py) for
people, `report_json` as the JSON object scripts/inspect_checkpoints.py --json prints.
"""

from __future__ import annotations

import dataclasses
import datetime

from train_lib.report.records import Report


def report_json(report: Report) -> dict:
    """{checkpoints, summary (with the "why" lines), expected, anomalies}: JSON-ready."""
    return {"checkpoints": [dataclasses.asdict(c) for c in report.checkpoints],
            "summary": dict(report.summary, model_dir=report.model_dir, why=report.why),
            "expected": report.expected, "anomalies": list(report.anomalies)}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def format_report(report: Report) -> str:
    """The human-readable report: a table, "Why N checkpoints:", then the anomalies."""
    out = []
    if not report.checkpoints:
        out.append(f"No checkpoints in {report.model_dir}.")
    else:
        out.append(f"Checkpoints in {report.model_dir}:")
        rows = [("step", "written", "size", "reason", "latest", "kept", "valid", "opt step")]
        for c in report.checkpoints:
            when = datetime.datetime.fromtimestamp(c.time).strftime("%Y-%m-%d %H:%M:%S")
            rows.append((str(c.step), when + ("~" if c.time_source == "mtime" else ""),
                         _size(c.size_bytes), c.reason or "?", "yes" if c.latest else "-",
                         "forever" if c.kept_forever else "-", "yes" if c.valid else "NO",
                         "-" if c.optimizer_step is None else str(c.optimizer_step)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            out.append("  " + "  ".join(cell.rjust(w) if i in (0, 2, 7) else cell.ljust(w)
                                        for i, (cell, w) in enumerate(zip(row, widths,
                                                                          strict=True))).rstrip())
        notes = [text for flag, text in (
            (any(c.time_source == "mtime" for c in report.checkpoints),
             "~ time of the index file (no saved event)"),
            (any(c.reason is None for c in report.checkpoints), "? reason not recorded"))
            if flag]
        if notes:
            out.append("  " + "; ".join(notes))
    out.append(f"Why {len(report.checkpoints)} checkpoints:")
    out.extend(f"  {line}" for line in report.why)
    if report.anomalies:
        out.append("Anomalies:")
        out.extend(f"  - {line}" for line in report.anomalies)
    else:
        out.append("No anomalies.")
    return "\n".join(out)
