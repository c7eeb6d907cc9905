"""scripts/benchmark.py's parts that decide what is compared: Model Garden's experiment
is the same detector and training as ours, its trainer runs in the user's environment,
and the steady rate leaves the traced first interval out. (The benchmark itself is
minutes long: docs/performance.md holds its figures.)"""

from __future__ import annotations

import os
import sys

import pytest

from tests.conftest import REPO
from train_lib.bench import processes
from train_lib.bench.rounds import summarize


def test_steady_rate_leaves_the_first_interval_out():
    assert processes.steady_rate([0.5, 3.0, 2.0, 4.0]) == 3.0
    assert processes.steady_rate([2.5]) == 2.5


def test_run_timed_unsets_what_it_is_told_and_keeps_the_rest(monkeypatch):
    monkeypatch.setenv("BENCH_GONE", "ours")
    monkeypatch.setenv("BENCH_KEPT", "user")
    code = ("import os, sys; print(os.environ.get('BENCH_GONE'), "
            "os.environ.get('BENCH_KEPT'), file=sys.stderr)")
    _, lines = processes.run_timed([sys.executable, "-c", code], unset=("BENCH_GONE",))
    assert [line for _, line in lines] == ["None user"]


def test_model_garden_experiment_is_our_detector_and_training():
    """The experiment overrides Model Garden's `retinanet_resnetfpn_coco` strictly
    (no key it does not know), and its model, built by Model Garden's factory as its
    trainer builds it, has our model's variables, shapes and all."""
    import tensorflow as tf
    import tf_keras
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401  (registers the experiments)
    from official.vision.modeling import factory

    from train_lib import families
    from train_lib.config import load_config

    config = load_config(os.path.join(REPO, "configs", "shapes_retinanet.yaml"))
    experiment = exp_factory.get_exp_config("retinanet_resnetfpn_coco")
    experiment.override(processes.model_garden_experiment(
        config, ["train-0.tfrecord"], steps=400, checkpoint_every_n=1000), is_strict=True)
    experiment.validate()
    task, trainer = experiment.task, experiment.trainer
    assert task.init_checkpoint == "" and not task.model.norm_activation.use_sync_bn
    assert task.train_data.global_batch_size == config.train_config.batch_size
    assert (trainer.train_steps, trainer.checkpoint_interval, trainer.steps_per_loop) == (
        400, 1000, 100)
    assert trainer.optimizer_config.optimizer.type == config.train_config.optimizer.type
    assert trainer.optimizer_config.learning_rate.cosine.initial_learning_rate == (
        pytest.approx(config.train_config.learning_rate.base))

    height, width = config.model.input_size
    theirs = factory.build_retinanet(
        input_specs=tf_keras.layers.InputSpec(shape=[None, height, width, 3]),
        model_config=task.model)
    theirs(tf.zeros([1, height, width, 3]), training=False)
    ours = families.build_model(config.model)

    def shapes(model):
        return sorted((v.name.split("/", 1)[-1], tuple(v.shape)) for v in model.variables)
    assert shapes(theirs) == shapes(ours)


def test_a_start_up_that_never_logs_its_line_is_a_failed_run():
    lines = [(0.5, "starting"), (2.0, "evaluated step 4 on 8 images in 1.0 s: AP 0.1")]
    assert processes._first(lines, processes._EVALUATED, "the evaluation") == 2.0
    with pytest.raises(processes.RunFailed, match="the exporter logged no line"):
        processes._first(lines, processes._EXPORTED, "the exporter")


def test_each_figure_is_summarised_by_its_median_and_spread_over_the_rounds():
    rounds = [{"a": 3.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, {"a": 2.0, "b": 4.0}]
    assert summarize(rounds) == {"a": {"median": 2.0, "min": 1.0, "max": 3.0},
                                 "b": {"median": 1.0, "min": 1.0, "max": 4.0}}
