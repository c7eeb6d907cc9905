"""The training pictures in TensorBoard: a few augmented training images, as the
model sees them at that step, with their ground-truth boxes and class names drawn.

`hooks.SummaryHook` writes them every summary_every_n steps; there are
eval_config.num_visualizations of them (0: none).
"""

from __future__ import annotations

from collections.abc import Callable

from train_lib.config import PipelineConfig
from train_lib.data import inputs, label_map
from train_lib.report import visualize


def training_pictures(config: PipelineConfig,
                      files: list[str]) -> Callable[[int], list] | None:
    """A function of the step giving the pictures (uint8 arrays [H, W, 3], drawn at
    twice the model's input size), or None when none are asked for. Each step shows
    other augmentations (keys offset by the step)."""
    count = config.eval_config.num_visualizations
    if not count:
        return None
    names = label_map.load_label_map(config.train_input_reader.label_map_path)

    def pictures(step: int) -> list:
        return [visualize.draw_boxes(image, boxes, classes, names, scale=2)
                for image, boxes, classes in inputs.training_examples(config, files, count,
                                                                      key_offset=step)]
    return pictures
