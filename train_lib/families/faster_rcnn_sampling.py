"""Faster R-CNN's two samplers, made deterministic.

Model Garden samples the anchors that train the RPN (in its input parser) and the
proposals that train the second stage (inside the model) with stateful random
ops, so neither can be replayed after a resume. Here both draw with stateless
ops instead:

- `sample_anchors`: the RPN's anchors of one example, keyed by that example's
  augmentation key (seed, epoch, index), so its targets are a function of the
  input position like the augmentation itself.
- `DeterministicBoxSampler`: in place of Model Garden's BoxSampler in the model's
  ROI sampler; each image's draw is keyed by which proposals matched an object
  and which did not (a function of the batch and the weights, the same in a
  resumed run as in an uninterrupted one).

Either keeps at most `foreground_fraction * num_samples` positives and fills the
rest with negatives, uniformly at random among each, as Model Garden's balanced
sampler does.
"""

from __future__ import annotations

import tensorflow as tf
from official.vision.modeling.layers import box_sampler


def _take(mask: tf.Tensor, draw: tf.Tensor, count: tf.Tensor, most: int) -> tf.Tensor:
    """The `count` (at most `most`) entries of the 1-D bool `mask` with the highest
    `draw`, as a bool vector like `mask`."""
    size = mask.shape[0]
    k = min(most, size)
    _, indices = tf.math.top_k(tf.where(mask, draw, -1.0), k=k)
    keep = tf.logical_and(tf.gather(mask, indices), tf.range(k) < count)
    return tf.scatter_nd(indices[:, tf.newaxis], tf.cast(keep, tf.int32), [size]) > 0


def balanced_sample(positives: tf.Tensor, negatives: tf.Tensor, num_samples: int,
                    foreground_fraction: float, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(sampled positives, sampled negatives) of 1-D bool masks of static length:
    up to `foreground_fraction * num_samples` positives, negatives for the rest,
    chosen by a stateless draw with `seed` (int64 [2])."""
    draw = tf.random.stateless_uniform(tf.shape(positives), seed=seed)
    most_positives = int(foreground_fraction * num_samples)
    chosen_positives = _take(positives, draw, tf.constant(most_positives), most_positives)
    remaining = num_samples - tf.reduce_sum(tf.cast(chosen_positives, tf.int32))
    chosen_negatives = _take(negatives, draw, remaining, num_samples)
    return chosen_positives, chosen_negatives


def sample_anchors(match_indicators: tf.Tensor, num_samples: int, foreground_fraction: float,
                   key: tf.Tensor) -> tf.Tensor:
    """The RPN's score targets of one example's anchors from their matches (1 object,
    -1 background, -2 ignored): 1 for a sampled positive, 0 for a sampled negative,
    -1 for an anchor that does not train the RPN (Model Garden's convention)."""
    positives, negatives = balanced_sample(
        tf.equal(match_indicators, 1), tf.equal(match_indicators, -1), num_samples,
        foreground_fraction, tf.random.experimental.stateless_fold_in(key, 0x52504E))
    return tf.where(positives, 1, tf.where(negatives, 0, -1))


class DeterministicBoxSampler(box_sampler.BoxSampler):
    """Model Garden's BoxSampler with a stateless draw per image (module docstring)."""

    def call(self, positive_matches: tf.Tensor, negative_matches: tf.Tensor,
             ignored_matches: tf.Tensor) -> tf.Tensor:
        num_samples = self._config_dict["num_samples"]
        fraction = self._config_dict["foreground_fraction"]
        positives = tf.logical_and(positive_matches, tf.logical_not(ignored_matches))
        negatives = tf.logical_and(negative_matches, tf.logical_not(ignored_matches))
        size = positives.shape[1]
        ranks = tf.range(1, size + 1, dtype=tf.int64)
        indicators = []
        for i in range(positives.shape[0]):
            seed = tf.stack([
                tf.reduce_sum(tf.where(positives[i], ranks * ranks, 0)),
                tf.reduce_sum(tf.where(negatives[i], ranks, 0))])
            chosen_pos, chosen_neg = balanced_sample(positives[i], negatives[i], num_samples,
                                                     fraction, seed)
            indicators.append(tf.logical_or(chosen_pos, chosen_neg))
        # The sampled ones first (in index order); short of them, the first others.
        _, selected = tf.nn.top_k(tf.cast(tf.stack(indicators), tf.int32), k=num_samples,
                                  sorted=True)
        return selected
