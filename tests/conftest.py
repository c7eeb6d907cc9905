"""Shared fixtures: one tiny shapes dataset per test session and tiny configs over it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from train_lib import cli
from train_lib.config import PipelineConfig, dump_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class OdapiSample:
    """An OD API SSD pipeline.config the tests read, with what it holds: its
    `num_classes`, its anchors' `aspect_ratios` as written, and what it maps to
    (`levels`: min and max level, `input_size`, `focal_alpha`)."""

    path: str
    num_classes: int
    aspect_ratios: tuple[str, ...]
    levels: tuple[int, int]
    input_size: list[int]
    focal_alpha: float

    def line_of(self, text: str) -> int:
        """The number of the first line of the file that contains `text`."""
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if text in line:
                    return number
        raise AssertionError(f"{text!r} is not in {self.path}")


# The repository's own sample, written in the shape of the OD API's TF2 SSD configs
# (tests/fixtures/odapi/), always; and a config as the OD API publishes it when one is
# beside the repository (../shared/fixtures/odapi/, not part of a clone).
ODAPI_SAMPLES = [OdapiSample(
    os.path.join(REPO, "tests", "fixtures", "odapi", "ssd_mobilenet_v2_shapes.config"),
    num_classes=6, aspect_ratios=("1.0", "2.0", "0.5"), levels=(4, 7), input_size=[384, 384],
    focal_alpha=0.5)]
_PUBLISHED = os.path.join(os.path.dirname(REPO), "shared", "fixtures", "odapi",
                          "ssd_mobilenet_v2_320x320_coco17_tpu-8.config")
if os.path.isfile(_PUBLISHED):
    ODAPI_SAMPLES.append(OdapiSample(
        _PUBLISHED, num_classes=90, aspect_ratios=("1.0", "2.0", "0.5", "3.0", "0.3333"),
        levels=(4, 7), input_size=[288, 288], focal_alpha=0.75))


def odapi_sample_id(sample: OdapiSample) -> str:
    return os.path.basename(sample.path)

# Before TensorFlow is imported: the tests (and the programs they start) run with
# the driver's TensorFlow settings, oneDNN's kernels included (cli.py).
cli.tensorflow_defaults()


@pytest.fixture(autouse=True)
def _no_global_seed_left_behind():
    """TensorFlow's global seed is unset after each test: one test's seed (0 in
    particular, which TensorFlow's seeded tf.data shuffle cannot take) must not reach
    the next test a worker runs."""
    yield
    import tensorflow as tf

    tf.random.set_seed(None)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> dict:
    """A 64-px shapes dataset: 48 train and 8 val images in OD API TFRecords."""
    from train_lib.data import shapes_dataset

    out = tmp_path_factory.mktemp("shapes")
    return shapes_dataset.generate(str(out / "data"), num_train=48, num_val=8, image_size=64,
                                   num_shards=2, seed=0)


def make_tiny_config(dataset: dict, **train_overrides) -> PipelineConfig:
    """A RetinaNet small enough for a few CPU steps a second: 64 px, a ResNet-18 a quarter
    wide (16 to 128 filters), thin FPN and head. ResNet-18 because its ~20 convolutions
    build and trace in about half the time of MobileNetV2's ~50, a cost every training
    of the suite pays; tests of a particular backbone set their own."""
    config = PipelineConfig()
    model = config.model
    model.num_classes = 3
    model.input_size = [64, 64]
    model.min_level, model.max_level = 3, 5
    model.backbone.type = "resnet"
    model.backbone.model_id = "18"
    model.backbone.width_multiplier = 0.25
    model.fpn.num_filters = 32
    model.head.num_convs = 1
    model.head.num_filters = 32
    model.anchor.anchor_size = 3.0
    train = config.train_config
    train.batch_size = 4
    train.num_steps = 10
    train.optimizer.type = "adam"
    train.learning_rate.schedule = "constant"
    train.learning_rate.base = 0.001
    train.log_every_n = 5
    train.summary_every_n = 5
    for key, value in train_overrides.items():
        setattr(train, key, value)
    for reader, pattern in ((config.train_input_reader, dataset["train_pattern"]),
                            (config.eval_input_reader, dataset["val_pattern"])):
        reader.input_path = [pattern]
        reader.label_map_path = dataset["label_map_path"]
        reader.shuffle_buffer_size = 16
    config.eval_config.batch_size = 4
    config.eval_config.eval_at_end = False  # tests that want the final evaluation say so
    return config


def use_mobilenet(config: PipelineConfig, model_id: str = "MobileNetV2",
                  width: float = 0.35) -> PipelineConfig:
    """`config` (returned) with a Model Garden MobileNet backbone, `model_id` x `width`
    (by default the default config's MobileNetV2, as thin as the OD API fixture's), for
    the tests of a MobileNet's own behaviour."""
    backbone = config.model.backbone
    backbone.type, backbone.model_id, backbone.width_multiplier = "mobilenet", model_id, width
    return config


def make_tiny_faster_rcnn_config(dataset: dict, **train_overrides) -> PipelineConfig:
    """make_tiny_config's settings (ResNet-18 x0.25) as a Faster R-CNN: one anchor
    scale, thin RPN and detection head, 64 proposals and 32 sampled ROIs per image."""
    config = make_tiny_config(dataset, **train_overrides)
    model = config.model
    model.architecture = "faster_rcnn"
    model.anchor.num_scales = 1
    model.rpn_head.num_filters = 32
    model.rpn.batch_size_per_image = 64
    proposals = model.proposals
    proposals.pre_nms_top_k = proposals.test_pre_nms_top_k = 256
    proposals.num_proposals = proposals.test_num_proposals = 64
    model.roi_sampler.num_sampled_rois = 32
    head = model.detection_head
    head.num_convs, head.num_filters, head.fc_dims = 0, 32, 64
    return config


@pytest.fixture
def tiny_config(tiny_dataset) -> PipelineConfig:
    return make_tiny_config(tiny_dataset)


@pytest.fixture
def tiny_config_file(tiny_config, tmp_path) -> str:
    path = str(tmp_path / "tiny.yaml")
    dump_config(tiny_config, path)
    return path


def ckpt_steps(model_dir) -> list[int]:
    """The global steps of the checkpoints in model_dir, by their index files."""
    from train_lib.checkpointing.files import list_steps

    return list_steps(model_dir)


def write_records_with_a_non_example(pattern: str, path: str, count: int) -> None:
    """Writes the first `count` records of the first file of `pattern` to `path`, the
    last replaced by bytes that are not a tf.train.Example nor UTF-8 (TensorFlow raises
    UnicodeDecodeError quoting them, not an OpError). Its index: count - 1."""
    import tensorflow as tf

    src = sorted(tf.io.gfile.glob(pattern))[0]
    with tf.io.TFRecordWriter(path) as writer:
        for index, record in enumerate(tf.data.TFRecordDataset(src).take(count)):
            writer.write(b"\x80\x81 not an example" if index == count - 1
                         else record.numpy())


def write_odapi_fixture_config(name: str, directory, replacements: dict[str, str],
                               label_map_path: str = "labels.pbtxt",
                               input_path: str = "train.tfrecord") -> str:
    """tests/fixtures/odapi/<name>/pipeline.config written as `directory`/pipeline.config:
    each key of `replacements` (which the fixture must hold) replaced by its value (e.g.
    its PATH_TO_BE_CONFIGURED fine_tune_checkpoint by a checkpoint), and a
    train_input_reader added (the fixture has none) naming `label_map_path` and
    `input_path`. Returns its path."""
    with open(os.path.join(REPO, "tests", "fixtures", "odapi", name, "pipeline.config")) as f:
        text = f.read()
    for old, new in replacements.items():
        assert old in text, f"{name}/pipeline.config does not hold {old!r}"
        text = text.replace(old, new)
    text += (f'train_input_reader {{ label_map_path: "{label_map_path}" '
             f'tf_record_input_reader {{ input_path: "{input_path}" }} }}\n')
    path = os.path.join(str(directory), "pipeline.config")
    with open(path, "w") as f:
        f.write(text)
    return path


def run_trainer(*args: str, timeout: float = 600, env: dict | None = None,
                script: str = "model_main_tf2.py", **popen) -> subprocess.CompletedProcess:
    """Runs model_main_tf2.py (or another `script` of the repository) in a subprocess
    (with `env` added to the environment); returns the completed process (text)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run(
        [sys.executable, os.path.join(REPO, script), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=popen.get("cwd", REPO),
    )


@pytest.fixture(scope="session")
def trained_run(tiny_dataset, tmp_path_factory) -> dict:
    """A tiny model trained 4 steps with train() (ckpt-2 and ckpt-4, pipeline.yaml, its
    log lines in "log"); tests only read its model_dir. Its post-processing keeps every
    score (threshold 0), so even this barely trained model returns detections."""
    from train_lib.training.trainer import train

    config = make_tiny_config(tiny_dataset, num_steps=4)
    config.model.post_processing.score_threshold = 0.0
    model_dir = str(tmp_path_factory.mktemp("trained") / "run")
    lines: list[str] = []
    train(config, model_dir, checkpoint_every_n=2, record_summaries=False, log=lines.append)
    assert ckpt_steps(model_dir) == [2, 4]
    return {"model_dir": model_dir, "config": config, "log": lines}


@pytest.fixture(scope="session")
def trained_faster_rcnn_run(tiny_dataset, tmp_path_factory) -> dict:
    """A tiny Faster R-CNN trained 40 steps with train() (ckpt-20 and ckpt-40, a log line
    every 5 steps in `result.loss_history`): the one trained Faster R-CNN that every
    test of the family reads (learning, evaluation, export, fine-tuning); tests only read
    its model_dir. Its post-processing keeps every score (threshold 0)."""
    from train_lib.training.trainer import train

    config = make_tiny_faster_rcnn_config(tiny_dataset, num_steps=40, log_every_n=5)
    config.model.post_processing.score_threshold = 0.0
    model_dir = str(tmp_path_factory.mktemp("trained_frcnn") / "run")
    result = train(config, model_dir, checkpoint_every_n=20, record_summaries=False)
    assert ckpt_steps(model_dir) == [20, 40]
    return {"model_dir": model_dir, "config": config, "result": result}


@pytest.fixture
def trained_config(trained_run) -> PipelineConfig:
    """A copy of trained_run's config that a test may change."""
    import copy

    return copy.deepcopy(trained_run["config"])


@pytest.fixture(scope="session")
def saved_model_export(trained_run, tmp_path_factory) -> str:
    """trained_run's ckpt-4 exported as a SavedModel (export_saved_model); returns the
    output directory (saved_model/, checkpoint/, pipeline.yaml, label_map.pbtxt)."""
    from train_lib.export.saved_model import export_saved_model

    out = str(tmp_path_factory.mktemp("exported"))
    path = export_saved_model(trained_run["config"],
                              os.path.join(trained_run["model_dir"], "ckpt-4"), out)
    assert path == os.path.join(out, "saved_model")
    return out


# Under `-n 2 --dist loadfile` each file runs whole on one worker, and xdist would queue
# the files by their number of tests, most first: the long files of few tests (the
# README's commands, the multi-worker job) would start last, and one of them alone would
# set the end of the run. Instead the files start longest first (by measured serial
# time), then the other files that start subprocesses (tests marked slow), then the rest,
# each group in collection order. The order decides only when a file starts.
LONGEST_FIRST = (
    "test_faults.py",
    "test_faster_rcnn.py",
    "test_readme.py",
    "test_train.py",
    "test_distribute.py",
    "test_multi_worker.py",
    "test_evaluation.py",
    "test_export.py",
    "test_cli.py",
    "test_data_contract.py",
    "test_odapi_faster_rcnn.py",
    "test_tflite.py",  # about 2 min alone
    "test_model_parity.py",  # about 5 min alone: it builds 19 published models
)


def pytest_configure(config) -> None:
    if getattr(config.option, "dist", "no") == "loadfile":
        config.option.loadscopereorder = False  # keep the order of the collection


def pytest_collection_modifyitems(config, items) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a run without workers keeps pytest's order
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    slow = {item.path.name for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), item.path.name not in slow))
