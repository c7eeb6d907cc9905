"""Detector families: the one place that knows which family is running.

A family provides its model (from Model Garden), its loss terms and its outputs
for evaluation and export. Today: RetinaNet (`retinanet.py`).
"""

from train_lib.families.retinanet import LOSS_KEYS, build_model, compute_losses

__all__ = ["LOSS_KEYS", "build_model", "compute_losses"]
