"""The anchors a built model generates for its input, as its own `call` does.

RetinaNet's and Faster R-CNN's Model Garden models generate their anchors from
their config (min_level, max_level, num_scales, aspect_ratios, anchor_size) and
the input's size; the code that runs a model's inference path layer by layer
(retinanet.decoded_detections, retinanet_serving.py, faster_rcnn_serving.py)
takes them from here.
"""

from __future__ import annotations

import tensorflow as tf
from official.vision.ops import anchor


def batch_anchors(model, images: tf.Tensor) -> dict:
    """The anchors of the built `model` (a RetinaNetModel or a MaskRCNNModel) for
    `images` [B, H, W, 3] of static height and width: per level (str), boxes
    [B, H_level, W_level, 4 * anchors per location] in model-input pixels, the
    same for every image of the batch."""
    config = model.get_config()
    anchors = anchor.Anchor(
        min_level=config["min_level"], max_level=config["max_level"],
        num_scales=config["num_scales"], aspect_ratios=config["aspect_ratios"],
        anchor_size=config["anchor_size"], image_size=tuple(images.shape[1:3]),
    ).multilevel_boxes
    batch = tf.shape(images)[0]
    return {level: tf.tile(boxes[tf.newaxis], [batch, 1, 1, 1])
            for level, boxes in anchors.items()}
