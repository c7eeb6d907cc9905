"""What a person sees: TensorBoard event files, checkpoint log lines, the live
progress line, the timeline picture."""

from __future__ import annotations

import glob
import io
import os

import matplotlib.pyplot as plt
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import make_tiny_config
from train_lib.report.timeline import plot_timeline, read_scalars, timeline_figure
from train_lib.training.hooks import ProgressLine
from train_lib.training.trainer import train


@pytest.fixture(scope="module")
def logged_run(tiny_dataset, tmp_path_factory):
    """A 6-step run saving every 2 steps, keeping 1, summaries every 2 steps."""
    model_dir = str(tmp_path_factory.mktemp("visible") / "run")
    config = make_tiny_config(tiny_dataset, num_steps=6, log_every_n=2, summary_every_n=2)
    config.eval_config.num_visualizations = 3
    lines: list[str] = []
    train(config, model_dir, checkpoint_every_n=2, max_to_keep=1, log=lines.append)
    return model_dir, lines


def _events(log_dir: str) -> list:
    events = []
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            events.append(tf.compat.v1.Event.FromString(record.numpy()))
    return events


def test_event_files_hold_every_loss_term_rate_and_throughput(logged_run):
    model_dir, _ = logged_run
    tags = ("Loss/classification_loss", "Loss/localization_loss", "Loss/regularization_loss",
            "Loss/total_loss", "learning_rate", "steps_per_sec", "images_per_sec")
    scalars = read_scalars(os.path.join(model_dir, "train"), tags)
    for tag in tags:
        assert [step for step, _ in scalars[tag]] == [2, 4, 6], tag
        assert all(np.isfinite(v) and v >= 0 for _, v in scalars[tag]), tag
    assert scalars["learning_rate"][0][1] == pytest.approx(0.001)
    total = dict(scalars["Loss/total_loss"])
    parts = [dict(scalars[f"Loss/{k}_loss"]) for k in ("classification", "localization",
                                                       "regularization")]
    assert total[6] == pytest.approx(sum(p[6] for p in parts), rel=1e-5)


def test_event_files_hold_training_images_with_boxes(logged_run):
    model_dir, _ = logged_run
    images = [(e.step, v) for e in _events(os.path.join(model_dir, "train"))
              for v in e.summary.value if v.tag == "train/images"]
    assert [step for step, _ in images] == [2, 4, 6]
    encoded = tf.make_ndarray(images[0][1].tensor)
    assert encoded[:2].tolist() == [b"128", b"128"]  # 64-px inputs drawn twice as large
    pictures = [tf.io.decode_png(png).numpy() for png in encoded[2:]]
    assert len(pictures) == 3
    # the boxes and labels are drawn in class colours, which the shapes images lack
    assert all((p == (230, 25, 75)).all(-1).any() or (p == (60, 180, 75)).all(-1).any()
               or (p == (255, 225, 25)).all(-1).any() for p in pictures)


def test_log_lines_name_each_save_and_removal(logged_run):
    _, lines = logged_run
    checkpoint_lines = [line for line in lines if line.startswith(("saved ckpt", "removed ckpt"))]
    assert [line.split(" in ")[0] for line in checkpoint_lines] == [
        "saved ckpt-2 (interval)",
        "saved ckpt-4 (interval)", "removed ckpt-2 (max_to_keep=1)",
        "saved ckpt-6 (interval)", "removed ckpt-4 (max_to_keep=1)",
    ]
    steps = [line for line in lines if line.startswith("Step ")]
    assert [line.split()[1] for line in steps] == ["2", "4", "6"]
    assert all("ETA" in line and "learning_rate=" in line for line in steps)


def test_timeline_png_from_a_real_model_dir(logged_run, tmp_path):
    model_dir, _ = logged_run
    out = plot_timeline(model_dir, str(tmp_path / "timeline.png"))
    with Image.open(out) as picture:
        assert picture.format == "PNG"
        assert picture.size == (900, 500)
        colours = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    assert 10_000 < os.path.getsize(out) < 300_000
    assert len(np.unique(colours, axis=0)) > 20  # lines and markers, not a blank canvas


def test_timeline_legend_covers_no_marker(logged_run):
    """The legend lies beside the loss axes, so no curve or checkpoint marker (the
    last checkpoint's at the right end included) is under it."""
    model_dir, _ = logged_run
    figure = timeline_figure(model_dir)
    try:
        figure.canvas.draw()
        ax_loss = figure.axes[0]
        legend = ax_loss.get_legend().get_window_extent()
        assert not legend.overlaps(ax_loss.get_window_extent())
        points = np.concatenate([line.get_transform().transform(line.get_xydata())
                                 for line in ax_loss.lines])
        assert len(points) > 3
        assert not any(legend.contains(x, y) for x, y in points)
        assert legend.x1 <= figure.bbox.x1  # and the legend is inside the picture
    finally:
        plt.close(figure)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal():
    outputs = {"total_loss": 0.5}
    terminal, plain = _Terminal(), io.StringIO()
    for stream in (terminal, plain):
        line = ProgressLine(num_steps=100, stream=stream)
        logged: list[str] = []
        log = line.wrap(logged.append)
        line.after_steps(10, outputs)
        line.after_steps(20, outputs)
        log("saved ckpt-20 (interval)")
    assert plain.getvalue() == ""
    text = terminal.getvalue()
    assert text.count("\r\033[K") == 3  # two updates, one clear before the log line
    assert "step 20/100 loss 0.5000" in text and "ETA" in text
