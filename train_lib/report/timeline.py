"""A picture of a run: loss and learning rate over steps, every checkpoint event
marked (saves by reason, removals, keeps), the checkpoints present at the end
highlighted. Reads model_dir/train event files and checkpoints.jsonl."""

from __future__ import annotations

import glob
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import tensorflow as tf  # noqa: E402

from train_lib.checkpointing.events import read_events  # noqa: E402
from train_lib.checkpointing.files import list_steps  # noqa: E402
from train_lib.checkpointing.policy import SaveReason

SAVE_STYLES = {  # reason -> (marker, colour, label)
    SaveReason.INTERVAL: ("o", "tab:blue", "saved (interval)"),
    SaveReason.END: ("*", "tab:green", "final save (end)"),
    SaveReason.SIGNAL: ("s", "tab:orange", "saved on a signal"),
    SaveReason.ERROR: ("X", "tab:red", "saved before failing"),
}


def read_scalars(log_dir: str, tags: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} sorted by step, from the TF2 summary event files
    of `log_dir`; a step written twice (a resumed run) keeps its latest value."""
    found: dict[str, dict[int, float]] = {tag: {} for tag in tags}
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag in found:
                    number = float(tf.make_ndarray(value.tensor)) if value.HasField(
                        "tensor") else value.simple_value
                    found[value.tag][event.step] = number
    return {tag: sorted(points.items()) for tag, points in found.items()}


def present_steps(model_dir: str) -> list[int]:
    """Steps of the `ckpt-<step>.index` files in model_dir, ascending."""
    return list_steps(model_dir)


def plot_timeline(model_dir: str, out_path: str, width: float = 9.0,
                  height: float = 5.0, dpi: int = 100) -> str:
    """Draws the timeline of `model_dir` into the PNG `out_path`; returns the path."""
    fig = timeline_figure(model_dir, width, height)
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return out_path


def timeline_figure(model_dir: str, width: float = 9.0, height: float = 5.0):
    """The timeline of `model_dir` as a matplotlib Figure (close it when done): the
    loss axes first, then the learning rate's. The legend is to the right of the
    axes, so it covers no curve and no marker."""
    scalars = read_scalars(os.path.join(model_dir, "train"),
                           ("Loss/total_loss", "learning_rate"))
    events = read_events(model_dir)
    present = set(present_steps(model_dir))
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, sharex=True, figsize=(width, height),
                                         gridspec_kw={"height_ratios": [3, 1]})
    loss = scalars["Loss/total_loss"]
    if loss:
        ax_loss.plot(*zip(*loss, strict=True), color="0.3", linewidth=1, label="total loss")
    ax_loss.set_ylabel("total loss")
    for reason, (marker, colour, label) in SAVE_STYLES.items():
        steps = sorted({e["step"] for e in events
                        if e.get("event") == "saved" and e.get("reason") == reason})
        for i, step in enumerate(steps):
            ax_loss.axvline(step, color=colour, alpha=0.25, linewidth=1)
            ax_loss.plot([step], [1.0], marker=marker, color=colour, markersize=9,
                         transform=ax_loss.get_xaxis_transform(), clip_on=False,
                         label=label if i == 0 else None, linestyle="none")
    removed = sorted({e["step"] for e in events if e.get("event") == "removed"})
    if removed:
        ax_loss.plot(removed, [0.0] * len(removed), marker="x", color="0.5", markersize=8,
                     transform=ax_loss.get_xaxis_transform(), clip_on=False,
                     linestyle="none", label="removed (max_to_keep)")
    kept = sorted({e["step"] for e in events if e.get("event") == "kept"})
    if kept:
        ax_loss.plot(kept, [0.0] * len(kept), marker="^", color="tab:purple", markersize=8,
                     transform=ax_loss.get_xaxis_transform(), clip_on=False,
                     linestyle="none", label="kept (every n hours)")
    resumed = sorted({e["step"] for e in events if e.get("event") == "restored"})
    for i, step in enumerate(resumed):
        ax_loss.axvline(step, color="black", linestyle="--", linewidth=1,
                        label="resumed here" if i == 0 else None)
    for i, step in enumerate(sorted(present)):
        ax_loss.axvspan(step, step, color="gold", linewidth=4, alpha=0.9,
                        label="present at the end" if i == 0 else None)
    ax_loss.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                   fontsize=8, framealpha=0.9)
    ax_loss.set_title(f"{os.path.basename(os.path.normpath(model_dir))}: "
                      f"{len(present)} checkpoint(s) present "
                      f"({', '.join(f'ckpt-{s}' for s in sorted(present)) or 'none'})",
                      fontsize=10, pad=10)  # above the save markers
    rate = scalars["learning_rate"]
    if rate:
        ax_lr.plot(*zip(*rate, strict=True), color="tab:brown", linewidth=1)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("global step")
    fig.tight_layout()
    return fig
