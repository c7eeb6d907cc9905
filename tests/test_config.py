"""Tests for train_lib.config (loading, overrides, validation, file checks, diffs)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
from conftest import ODAPI_SAMPLES, odapi_sample_id

from train_lib import config as C
from train_lib.config import ConfigError, PipelineConfig
from train_lib.config.overrides import parse_params_override, split_pairs
from train_lib.data.input_files import check_label_map, resolve_input_files


def write(tmp_path, text: str, name: str = "pipeline.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load_text(tmp_path, text: str, override: str = "") -> PipelineConfig:
    return C.load_config(write(tmp_path, text), override)


def error_of(fn, *args) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return str(info.value)


# ---------------------------------------------------------------- defaults and round trip


def test_empty_mapping_gives_defaults(tmp_path):
    assert load_text(tmp_path, "{}\n") == PipelineConfig()
    assert C.config_from_dict({}) == PipelineConfig()
    C.validate(PipelineConfig())


def test_null_and_omitted_sections_keep_defaults(tmp_path):
    config = load_text(tmp_path, "model:\ntrain_config: null\neval_config:\n  batch_size: 2\n")
    expected = PipelineConfig()
    expected.eval_config.batch_size = 2
    assert config == expected


def full_config() -> PipelineConfig:
    """A config with non-default values in every section."""
    c = PipelineConfig()
    c.model.num_classes = 3
    c.model.input_size = [128, 192]
    c.model.min_level, c.model.max_level = 3, 6
    c.model.backbone.type = "resnet"
    c.model.backbone.model_id = "50"
    c.model.backbone.width_multiplier = 0.5
    c.model.fpn.num_filters = 64
    c.model.fpn.use_separable_conv = True
    c.model.head.num_convs = 2
    c.model.anchor.aspect_ratios = [1.0, 2.0]
    c.model.anchor.match_threshold = 0.6
    c.model.anchor.unmatched_threshold = 0.4
    c.model.loss.l2_weight_decay = 1e-4
    c.model.post_processing.max_detections = 50
    c.model.norm.activation = "swish"
    t = c.train_config
    t.batch_size, t.num_steps, t.seed = 4, 3000, 7
    t.optimizer.type = "adam"
    t.optimizer.epsilon = 1e-8
    t.learning_rate.schedule = "step"
    t.learning_rate.base = 0.02
    t.learning_rate.warmup_steps = 100
    t.learning_rate.boundaries = [2000, 2500]
    t.learning_rate.decay_factor = 0.5
    t.augmentation.random_horizontal_flip = False
    t.augmentation.scale_min, t.augmentation.scale_max = 0.8, 1.25
    t.fine_tune_checkpoint = "runs/previous/ckpt-3000"
    t.fine_tune_checkpoint_type = "detection"
    c.train_input_reader.input_path = ["data/train-*.tfrecord", "extra.tfrecord"]
    c.train_input_reader.label_map_path = "data/label_map.pbtxt"
    c.eval_input_reader.input_path = ["data/val-*.tfrecord"]
    c.eval_input_reader.num_parallel_calls = 4
    c.eval_config.metric_for_best = "AP50"
    c.eval_config.eval_every_n = 500
    c.shapes_dataset.output_dir = "data"
    c.shapes_dataset.num_train = 100
    return c


def test_full_round_trip(tmp_path):
    original = full_config()
    path = str(tmp_path / "sub" / "pipeline.yaml")
    C.dump_config(original, path)
    text = open(path).read()
    assert text.startswith("model:\n  architecture: retinanet\n")
    assert "input_size: [128, 192]" in text
    loaded = C.load_config(path)
    assert loaded == original
    assert loaded.model.backbone.model_id == "50"
    assert loaded.model.loss.l2_weight_decay == 1e-4
    C.dump_config(loaded, path)
    assert open(path).read() == text
    assert not [n for n in os.listdir(tmp_path / "sub") if n != "pipeline.yaml"]


def test_config_from_dict_round_trips_to_dict():
    original = full_config()
    assert C.config_from_dict(C.to_dict(original)) == original


def test_scalar_conveniences(tmp_path):
    config = load_text(tmp_path, (
        "model:\n"
        "  backbone: {type: resnet, model_id: 101, width_multiplier: 2}\n"
        "train_config:\n"
        "  learning_rate: {base: 1e-3}\n"
        "train_input_reader:\n"
        "  input_path: data/train-*.tfrecord\n"
    ))
    assert config.model.backbone.model_id == "101"
    assert config.model.backbone.width_multiplier == 2.0
    assert isinstance(config.model.backbone.width_multiplier, float)
    assert config.train_config.learning_rate.base == 0.001
    assert config.train_input_reader.input_path == ["data/train-*.tfrecord"]


def test_import_is_light():
    code = "import sys, train_lib.config; assert 'tensorflow' not in sys.modules"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo)


# ---------------------------------------------------------------- file-level errors


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    message = error_of(C.load_config, path)
    assert path in message
    assert "not found" in message
    assert "--pipeline_config_path" in message


@pytest.mark.parametrize("sample", ODAPI_SAMPLES, ids=odapi_sample_id)
def test_odapi_fixture_is_read_as_pipeline_config(sample):
    """Decided from the content: an OD API config is mapped, and its placeholder
    paths are the first thing it asks for."""
    message = error_of(C.load_config, sample.path)
    line = sample.line_of("fine_tune_checkpoint:")
    assert message.startswith(f"{sample.path}:{line}: train_config.fine_tune_checkpoint still "
                              "holds PATH_TO_BE_CONFIGURED")


def test_small_pbtxt_after_comments_is_read_as_pipeline_config(tmp_path):
    text = ("# SSD\n\nmodel {\n  ssd {\n    num_classes: 3\n    feature_extractor { type: "
            "'ssd_mobilenet_v2_fpn_keras' }\n  }\n}\n")
    config = load_text(tmp_path, text)
    assert config.model.num_classes == 3
    yaml_text = "# SSD\nmodel:\n  num_classes: 3\n"
    assert load_text(tmp_path, yaml_text).model.num_classes == 3


@pytest.mark.parametrize("text, where, problem", [
    ("model:\n  num_classes: 3\ntrain_config:\n  batch_size: 4\n   num_steps: 10\n",
     "line 5, column 13", "mapping values are not allowed here"),
    ("model:\n  input_size: [64, 64\ntrain_config:\n  batch_size: 4\n",
     "line 3, column 13", "expected ',' or ']'"),
    ("model:\n\tnum_classes: 3\n", "line 2, column 1", "use spaces"),
])
def test_yaml_syntax_error_has_line_and_column(tmp_path, text, where, problem):
    path = write(tmp_path, text)
    message = error_of(C.load_config, path)
    assert message.startswith(f"{path}: YAML syntax error at {where}: ")
    assert problem in message


@pytest.mark.parametrize("text, expected", [
    ("", "is empty"),
    ("# just a comment\n", "is empty"),
    ("- model\n", "the top level must be a mapping"),
    ("42\n", "the top level must be a mapping"),
])
def test_top_level_must_be_a_mapping(tmp_path, text, expected):
    assert expected in error_of(load_text, tmp_path, text)


def test_duplicate_key(tmp_path):
    message = error_of(load_text, tmp_path, "model:\n  num_classes: 3\n  num_classes: 4\n")
    assert ":3: duplicate key `model.num_classes` (first given at line 2)" in message


# ---------------------------------------------------------------- strict conversion


@pytest.mark.parametrize("text, expected", [
    ("train_config:\n  optimizr: {type: adam}\n",
     "pipeline.yaml:2: unknown key `train_config.optimizr`; "
     "did you mean `train_config.optimizer`?"),
    ("trian_config: {}\n", "unknown key `trian_config`; did you mean `train_config`?"),
    ("model:\n  anchor:\n    aspect_ratio: [1.0]\n",
     ":3: unknown key `model.anchor.aspect_ratio`; did you mean `model.anchor.aspect_ratios`?"),
    ("model:\n  zzz: 1\n",
     "unknown key `model.zzz`; valid keys under `model`: architecture, num_classes, input_size"),
    ("zzz: 1\n", "valid keys at the top level: model, train_config, train_input_reader"),
    ("model:\n  batch_size: 1\n",
     "unknown key `model.batch_size`; `batch_size` belongs under `train_config` or `eval_config`"),
    ("train_input_reader:\n  tf_record_input_reader: {input_path: x}\n",
     "takes `train_input_reader.input_path` directly"),
])
def test_unknown_keys(tmp_path, text, expected):
    assert expected in error_of(load_text, tmp_path, text)


@pytest.mark.parametrize("text, expected", [
    ("model: {num_classes: '3'}", "`model.num_classes` must be an integer, got string '3'"),
    ("model: {num_classes: 3.0}",
     "`model.num_classes` must be an integer, got number 3.0; write 3"),
    ("train_config: {batch_size: true}",
     "`train_config.batch_size` must be an integer, got boolean"),
    ("train_config: {learning_rate: {base: true}}",
     "`train_config.learning_rate.base` must be a number, got boolean True"),
    ("train_config: {learning_rate: {base: '0.01'}}",
     "`train_config.learning_rate.base` must be a number, got string '0.01'"),
    ("train_config: {num_steps: }", "`train_config.num_steps` must be an integer, got nothing"),
    ("model: {input_size: [64, '64']}", "`model.input_size[1]` must be an integer, got string"),
    ("model: {input_size: 64}", "`model.input_size` must be a list of integers, got integer 64"),
    ("model: {anchor: {aspect_ratios: [1.0, true]}}",
     "`model.anchor.aspect_ratios[1]` must be a number, got boolean True"),
    ("model: {norm: {use_sync_bn: maybe}}",
     "`model.norm.use_sync_bn` must be true or false, got string 'maybe'"),
    ("model: {backbone: {model_id: 1.5}}",
     "`model.backbone.model_id` must be a string or an integer, got number 1.5"),
    ("model: {architecture: 1}", "`model.architecture` must be a string, got integer 1"),
    ("train_input_reader: {input_path: 5}", "`train_input_reader.input_path` must be a file path"),
    ("eval_input_reader: {input_path: [a.tfrecord, 3]}", "`eval_input_reader.input_path` must be"),
    ("train_config: 5", "`train_config` must be a mapping (a section of keys), got integer 5"),
    ("train_config: {augmentation: [1]}", "`train_config.augmentation` must be a mapping"),
])
def test_wrong_types(tmp_path, text, expected):
    message = error_of(load_text, tmp_path, text + "\n")
    assert expected in message
    assert message.startswith(str(tmp_path / "pipeline.yaml") + ":1: ")


# ---------------------------------------------------------------- value checks

VALUE_ERRORS = [
    ("model.architecture=ssd", "model.architecture is 'ssd'; must be one of retinanet"),
    ("model.backbone.type=mobilnet", "did you mean 'mobilenet'?"),
    ("model.backbone.model_id=mobilenetv2", "(did you mean 'MobileNetV2'?)"),
    ("model.backbone.type=resnet",
     "model.backbone.model_id is 'MobileNetV2'; must be one of 18, 34, 50, 101, 152 for "
     "model.backbone.type: resnet"),
    ("model.backbone.type=resnet,model.backbone.model_id=200",
     "model.backbone.model_id is '200'; must be one of 18, 34, 50, 101, 152"),
    ("model.backbone.width_multiplier=0", "model.backbone.width_multiplier is 0.0; must be > 0"),
    ("model.backbone.type=efficientnet,model.backbone.model_id=b0,"
     "model.backbone.se_activation=sigmoid",
     "model.backbone.se_activation is 'sigmoid'; must be one of relu, swish"),
    ("model.backbone.se_activation=swish",
     "model.backbone.se_activation is 'swish'; applies to type: efficientnet only"),
    ("model.backbone.type=efficientnet,model.backbone.model_id=b1,"
     "model.backbone.efficientnet_endpoints=keras",
     "model.backbone.efficientnet_endpoints is 'keras'; must be one of model_garden, odapi"),
    ("model.backbone.efficientnet_endpoints=odapi",
     "model.backbone.efficientnet_endpoints is 'odapi'; applies to type: efficientnet only"),
    ("model.num_classes=0", "model.num_classes is 0; must be >= 1"),
    ("model.input_size=[100,128]",
     "model.input_size [100, 128] must be a multiple of 32 (2**min(max_level, 5), the "
     "backbone's deepest stride; model.max_level: 5); try [96, 128]"),
    ("model.input_size=[200,72],model.max_level=6",
     "must be a multiple of 32 (2**min(max_level, 5), the backbone's deepest stride; "
     "model.max_level: 6); try [192, 64]"),
    ("model.input_size=[72,64],model.min_level=4,model.max_level=4",
     "must be a multiple of 16 (2**min(max_level, 5), the backbone's deepest stride; "
     "model.max_level: 4); try [80, 64]"),
    ("model.input_size=[64]", "model.input_size is [64]; must be [height, width]"),
    ("model.input_size=[0,64]", "height and width must be positive"),
    ("model.min_level=1", "model.min_level is 1; must be in [2, 7]"),
    ("model.max_level=8", "model.max_level is 8; must be in [2, 7]"),
    ("model.min_level=6", "model.min_level is 6; must be <= model.max_level (5)"),
    ("model.anchor.num_scales=0", "model.anchor.num_scales is 0; must be >= 1"),
    ("model.anchor.aspect_ratios=[]", "model.anchor.aspect_ratios is []; must be a non-empty"),
    ("model.anchor.aspect_ratios=[1.0,-2]", "model.anchor.aspect_ratios is [1.0, -2.0]"),
    ("model.anchor.anchor_size=0", "model.anchor.anchor_size is 0.0; must be > 0"),
    ("model.anchor.unmatched_threshold=0.6",
     "model.anchor.unmatched_threshold is 0.6 and model.anchor.match_threshold is 0.5; "
     "they must satisfy 0 < unmatched_threshold <= match_threshold <= 1"),
    ("model.anchor.unmatched_threshold=0", "0 < unmatched_threshold"),
    ("model.anchor.match_threshold=1.5", "match_threshold is 1.5"),
    ("model.loss.box_loss_weight=-1", "model.loss.box_loss_weight is -1.0; must be >= 0"),
    ("model.loss.focal_loss_alpha=1.5", "model.loss.focal_loss_alpha is 1.5; must be in [0, 1]"),
    ("model.post_processing.score_threshold=1",
     "model.post_processing.score_threshold is 1.0; must be in [0, 1)"),
    ("model.post_processing.iou_threshold=0",
     "model.post_processing.iou_threshold is 0.0; must be in (0, 1]"),
    ("model.post_processing.max_detections=0", "model.post_processing.max_detections is 0"),
    ("model.post_processing.pre_nms_top_k=50",
     "model.post_processing.pre_nms_top_k is 50; must be >= "
     "model.post_processing.max_detections (100)"),
    ("model.norm.activation=gelu",
     "model.norm.activation is 'gelu'; must be one of relu, relu6, swish, hard_swish"),
    ("train_config.batch_size=0", "train_config.batch_size is 0; must be >= 1"),
    ("train_config.num_steps=0", "train_config.num_steps is 0; must be >= 1"),
    ("train_config.steps_per_loop=0", "train_config.steps_per_loop is 0; must be >= 1"),
    ("train_config.graph_optimization=none",
     "train_config.graph_optimization is 'none'; must be one of auto, enabled, disabled"),
    ("train_config.log_every_n=0", "train_config.log_every_n is 0; must be >= 1"),
    ("train_config.summary_every_n=-1", "train_config.summary_every_n is -1; must be >= 1"),
    ("train_config.optimizer.type=rmsprop",
     "train_config.optimizer.type is 'rmsprop'; must be one of sgd, adam"),
    ("train_config.optimizer.momentum=1",
     "train_config.optimizer.momentum is 1.0; must be in [0, 1)"),
    ("train_config.optimizer.gradient_clip_norm=-1",
     "train_config.optimizer.gradient_clip_norm is -1.0; must be >= 0"),
    ("train_config.learning_rate.schedule=linear",
     "train_config.learning_rate.schedule is 'linear'; must be one of constant, cosine, step"),
    ("train_config.learning_rate.base=0", "train_config.learning_rate.base is 0.0; must be > 0"),
    ("train_config.learning_rate.warmup_steps=-1", "warmup_steps is -1; must be >= 0"),
    ("train_config.learning_rate.warmup_start=-0.1", "warmup_start is -0.1; must be >= 0"),
    ("train_config.learning_rate.cosine_alpha=1.5", "cosine_alpha is 1.5; must be in [0, 1]"),
    ("train_config.learning_rate.schedule=step",
     "train_config.learning_rate.boundaries is []; the step schedule needs at least one"),
    ("train_config.learning_rate.schedule=step,train_config.learning_rate.boundaries=[600,300]",
     "boundaries is [600, 300]; must be strictly increasing positive steps"),
    ("train_config.learning_rate.schedule=step,train_config.learning_rate.boundaries=[0,500]",
     "boundaries is [0, 500]"),
    ("train_config.learning_rate.schedule=step,train_config.learning_rate.boundaries=[500],"
     "train_config.learning_rate.decay_factor=0", "decay_factor is 0.0; must be in (0, 1]"),
    ("train_config.learning_rate.schedule=step,train_config.learning_rate.boundaries=[500],"
     "train_config.learning_rate.decay_factor=1.5", "decay_factor is 1.5"),
    ("train_config.augmentation.scale_min=0", "scale_min is 0.0 and scale_max is 1.0"),
    ("train_config.augmentation.scale_min=1.5,train_config.augmentation.scale_max=1.2",
     "they must satisfy 0 < scale_min <= scale_max"),
    ("train_config.fine_tune_checkpoint_type=fine_tune",
     "train_config.fine_tune_checkpoint_type is 'fine_tune'; must be one of backbone, "
     "detection, full"),
    ("train_input_reader.shuffle_buffer_size=0",
     "train_input_reader.shuffle_buffer_size is 0; must be >= 1"),
    ("eval_input_reader.num_parallel_calls=0",
     "eval_input_reader.num_parallel_calls is 0; must be -1 (autotune) or >= 1"),
    ("train_input_reader.num_parallel_calls=-2", "train_input_reader.num_parallel_calls is -2"),
    ("train_input_reader.decoded_cache_mb=-1",
     "train_input_reader.decoded_cache_mb is -1; must be >= 0 (0: no cache)"),
    ("train_input_reader.sample_1_of_n_examples=2",
     "train_input_reader.sample_1_of_n_examples is 2; training reads every record: set 0 "
     "or 1, and keep only the records to train on in its files"),
    ("eval_input_reader.sample_1_of_n_examples=-1",
     "eval_input_reader.sample_1_of_n_examples is -1; must be >= 0 (0 and 1: every example)"),
    ("eval_config.batch_size=0", "eval_config.batch_size is 0; must be >= 1"),
    ("eval_config.eval_every_n=-1", "eval_config.eval_every_n is -1; must be >= 0"),
    ("eval_config.metric_for_best=ap50", "eval_config.metric_for_best is 'ap50'; must be one of "
     "AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100 (did you mean 'AP50'?)"),
    ("shapes_dataset.output_dir=data,shapes_dataset.num_train=0",
     "shapes_dataset.num_train is 0; must be >= 1"),
    ("shapes_dataset.output_dir=data,shapes_dataset.num_val=0", "shapes_dataset.num_val is 0"),
    ("shapes_dataset.output_dir=data,shapes_dataset.num_shards=0",
     "shapes_dataset.num_shards is 0"),
    ("shapes_dataset.output_dir=data,shapes_dataset.image_size=8",
     "shapes_dataset.image_size is 8; must be >= 16"),
]


@pytest.mark.parametrize("override, expected", VALUE_ERRORS)
def test_invalid_values(tmp_path, override, expected):
    path = write(tmp_path, "{}\n")
    message = error_of(C.load_config, path, override)
    assert message.startswith(f"{path} with --params_override: ")
    assert expected in message
    # The same config built in code fails validate() the same way.
    data = parse_params_override(override)
    with pytest.raises(ConfigError) as info:
        C.config_from_dict(data)
    assert expected in str(info.value)


@pytest.mark.parametrize("override", [
    "model.backbone.type=resnet,model.backbone.model_id=18",
    "model.backbone.type=efficientnet,model.backbone.model_id=b0,"
    "model.backbone.se_activation=swish",
    "model.backbone.type=efficientnet,model.backbone.model_id=b3,"
    "model.backbone.se_activation=swish,model.backbone.efficientnet_endpoints=odapi",
    "model.backbone.model_id=MobileNetV3Large,model.norm.activation=hard_swish",
    "model.min_level=2,model.max_level=7,model.input_size=[256,384]",
    "model.max_level=7,model.input_size=[320,288]",  # multiples of 32: level 7 is 3x3
    "model.anchor.unmatched_threshold=0.4,model.anchor.match_threshold=1",
    "train_config.learning_rate.schedule=step,train_config.learning_rate.boundaries=[1,999]",
    "train_config.learning_rate.schedule=constant,train_config.learning_rate.warmup_steps=999",
    "train_config.learning_rate.warmup_steps=5000",  # past num_steps: a short run stops first
    "train_config.learning_rate.schedule=step,train_config.learning_rate.boundaries=[500,2000]",
    "train_config.optimizer.type=adam,train_config.optimizer.momentum=0",
    "shapes_dataset.num_train=0",  # no output_dir: nothing is generated
    "eval_input_reader.num_parallel_calls=-1,train_input_reader.shuffle_buffer_size=1",
])
def test_valid_edge_values(tmp_path, override):
    C.load_config(write(tmp_path, "{}\n"), override)


def test_all_invalid_values_are_reported_together(tmp_path):
    text = "model: {num_classes: 0}\ntrain_config: {batch_size: 0}\n"
    message = error_of(load_text, tmp_path, text)
    assert "2 invalid values:" in message
    assert "\n  - model.num_classes is 0; must be >= 1" in message
    assert "\n  - train_config.batch_size is 0; must be >= 1" in message


def test_validate_checks_configs_built_in_code():
    config = PipelineConfig()
    config.model.backbone.type = "resnet"
    config.model.backbone.model_id = 50  # an int, as YAML would give; accepted
    C.validate(config)
    config.model.num_classes = "3"
    assert "`model.num_classes` must be an integer, got string '3'" in error_of(C.validate, config)
    config.model.num_classes = 0
    assert error_of(C.validate, config).startswith("model.num_classes is 0; must be >= 1")


# ---------------------------------------------------------------- --params_override


BASE = (
    "model:\n  num_classes: 3\n"
    "train_config:\n  batch_size: 8\n  learning_rate: {schedule: constant, base: 0.1}\n"
)


def test_override_pairs(tmp_path):
    config = load_text(tmp_path, BASE, (
        "train_config.learning_rate.base=0.02, model.input_size=[64,64],"
        "model.backbone.type=resnet,model.backbone.model_id=50,"
        "train_input_reader.input_path=[data/a-*.tfrecord, 'b,c.tfrecord'],"
        "eval_input_reader.input_path=*.tfrecord,train_config.fine_tune_checkpoint="
    ))
    assert config.train_config.learning_rate.base == 0.02
    assert config.train_config.learning_rate.schedule == "constant"  # kept from the file
    assert config.train_config.batch_size == 8
    assert config.model.num_classes == 3
    assert config.model.input_size == [64, 64]
    assert config.model.backbone.model_id == "50"
    assert config.train_input_reader.input_path == ["data/a-*.tfrecord", "b,c.tfrecord"]
    assert config.eval_input_reader.input_path == ["*.tfrecord"]
    assert config.train_config.fine_tune_checkpoint == ""


def test_override_mapping_merges_recursively(tmp_path):
    config = load_text(tmp_path, BASE, "train_config: {batch_size: 4, learning_rate: {base: 1e-3}}")
    assert config.train_config.batch_size == 4
    assert config.train_config.learning_rate.base == 0.001
    assert config.train_config.learning_rate.schedule == "constant"
    assert config.model.num_classes == 3


def test_override_json_and_dotted_mapping_keys(tmp_path):
    override = '{"model": {"input_size": [96, 96]}, "model.num_classes": 5}'
    config = load_text(tmp_path, BASE, override)
    assert config.model.input_size == [96, 96]
    assert config.model.num_classes == 5


def test_override_into_null_section_and_later_pair_wins(tmp_path):
    config = load_text(tmp_path, "eval_config:\n",
                       "eval_config.batch_size=2,eval_config.batch_size=3,model={num_classes: 2}")
    assert config.eval_config.batch_size == 3
    assert config.model.num_classes == 2


def test_override_fixes_an_invalid_file_value(tmp_path):
    config = load_text(tmp_path, "model: {input_size: [100, 128]}\n", "model.input_size=[96,128]")
    assert config.model.input_size == [96, 128]


@pytest.mark.parametrize("override, expected", [
    ("train_config.optimizr.type=adam",
     "--params_override: unknown key `train_config.optimizr`; "
     "did you mean `train_config.optimizer`?"),
    ("train_config: {optimizr: {type: adam}}", "--params_override: unknown key"),
    ("model.num_steps=5", "--params_override: unknown key `model.num_steps`; `num_steps` belongs "
     "under `train_config`"),
    ("model.num_classes='3'", "--params_override: `model.num_classes` must be an integer"),
    ("model.input_size=[64,64", "--params_override: unclosed bracket"),
    ("model.input_size=[64,64]]", "--params_override: unbalanced ']'"),
    ("model.input_size=[64, {]", "--params_override: unbalanced ']' at character 24"),
    ("model.input_size=[64, *x]",
     "--params_override: cannot parse the value of `model.input_size` at column 6: "
     "found undefined alias 'x'"),
    ("model.num_classes=3,oops", "'oops' is not a `key=value` pair"),
    ("just some words", "--params_override: cannot read 'just some words'"),
    ("model: [1", "--params_override: YAML syntax error at line 1, column"),
    ("model.num_classes=3,model.num_classes.x=1", "`model.num_classes` is given a value and also"),
])
def test_override_errors(tmp_path, override, expected):
    assert expected in error_of(load_text, tmp_path, BASE, override)


def test_split_pairs_respects_brackets_and_quotes():
    assert split_pairs("a=[1,2],b={x: 1, y: 2},c='p,q',d=\"r,s\",e=it's,") == [
        "a=[1,2]", "b={x: 1, y: 2}", "c='p,q'", 'd="r,s"', "e=it's"]


def test_parse_params_override_values():
    assert parse_params_override("") == {}
    assert parse_params_override("a.b=1,a.c=x,a.d=[0.5, 1],a.e=true,d=null") == {
        "a": {"b": 1, "c": "x", "d": [0.5, 1], "e": True}, "d": None}


# ---------------------------------------------------------------- files named by the config


@pytest.fixture
def record_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train-0.tfrecord", "train-1.tfrecord", "val-0.tfrecord"):
        (data / name).write_bytes(b"record")
    return data


def reader(*paths: str) -> C.InputReaderConfig:
    return C.InputReaderConfig(input_path=list(paths))


def test_resolve_input_files_glob_list_and_dedup(record_dir):
    d = str(record_dir)
    assert resolve_input_files(reader(f"{d}/train-*.tfrecord"), "train_input_reader") == [
        f"{d}/train-0.tfrecord", f"{d}/train-1.tfrecord"]
    files = resolve_input_files(
        reader(f"{d}/val-0.tfrecord", f"{d}/*.tfrecord", f"{d}/./train-1.tfrecord"), "x")
    assert files == [f"{d}/train-0.tfrecord", f"{d}/train-1.tfrecord", f"{d}/val-0.tfrecord"]


def test_resolve_input_files_sorts_across_entries(record_dir):
    d = str(record_dir)
    names = [f"part-{i:02d}.tfrecord" for i in range(12)]
    for name in names:
        (record_dir / name).write_bytes(b"record")
    entries = [f"{d}/{n}" for n in reversed(names[6:])] + [f"{d}/part-0?.tfrecord"]
    assert resolve_input_files(reader(*entries), "k") == [f"{d}/{n}" for n in names]


def test_resolve_input_files_relative_to_cwd(record_dir, monkeypatch):
    monkeypatch.chdir(record_dir.parent)
    assert resolve_input_files(reader("data/val-?.tfrecord", "data/train-1.tfrecord"), "k") == [
        "data/train-1.tfrecord", "data/val-0.tfrecord"]


def test_resolve_input_files_errors(record_dir, monkeypatch):
    monkeypatch.chdir(record_dir)
    message = error_of(resolve_input_files, reader(), "eval_input_reader")
    assert "set `eval_input_reader.input_path`" in message
    message = error_of(resolve_input_files, reader("train-*.tfrecord", "test-*.tfrecord"),
                       "eval_input_reader")
    assert "`eval_input_reader.input_path` entry 'test-*.tfrecord' matches no file" in message
    assert str(record_dir) in message
    message = error_of(resolve_input_files, reader("missing.tfrecord"), "train_input_reader")
    assert "'missing.tfrecord' matches no file" in message
    message = error_of(resolve_input_files, reader("."), "train_input_reader")
    assert "is a directory" in message
    (record_dir / "empty.tfrecord").write_bytes(b"")
    message = error_of(resolve_input_files, reader("*.tfrecord"), "train_input_reader")
    assert message.startswith("`train_input_reader.input_path`: empty.tfrecord has no records")


LABEL_MAP = "item { id: 1 name: 'square' }\nitem { id: 2 name: 'circle' }\n" \
            "item {\n  id: 3\n  name: 'triangle'\n}\n"


def test_check_label_map(tmp_path):
    path = write(tmp_path, LABEL_MAP, "label_map.pbtxt")
    config = PipelineConfig()
    config.model.num_classes = 3
    config.train_input_reader.label_map_path = path
    assert check_label_map(config, config.train_input_reader, "train_input_reader") == {
        1: "square", 2: "circle", 3: "triangle"}
    config.model.num_classes = 4
    message = error_of(check_label_map, config, config.train_input_reader, "train_input_reader")
    assert message == (f"model.num_classes is 4 but the label map {path} has ids 1..3; "
                       "set model.num_classes: 3")


def test_check_label_map_errors(tmp_path):
    config = PipelineConfig()
    message = error_of(check_label_map, config, config.eval_input_reader, "eval_input_reader")
    assert "set `eval_input_reader.label_map_path`" in message
    config.eval_input_reader.label_map_path = str(tmp_path / "none.pbtxt")
    message = error_of(check_label_map, config, config.eval_input_reader, "eval_input_reader")
    assert "`eval_input_reader.label_map_path`" in message and "none.pbtxt" in message
    path = write(tmp_path, "item { id: 1 name: 'a' }\nitem { id: 5 name: 'b' }\n", "gaps.pbtxt")
    config.eval_input_reader.label_map_path = path
    message = error_of(check_label_map, config, config.eval_input_reader, "eval_input_reader")
    assert message.endswith("has ids 1, 5; set model.num_classes: 5")


# ---------------------------------------------------------------- differences


def test_structural_and_other_differences():
    old = full_config()
    new = copy.deepcopy(old)
    assert C.structural_differences(old, new) == []
    assert C.other_differences(old, new) == []
    new.model.num_classes = 4
    new.model.backbone.model_id = "101"
    new.model.anchor.aspect_ratios = [1.0]
    new.train_config.learning_rate.base = 0.05
    new.train_config.num_steps = 5000
    new.eval_input_reader.input_path = ["other-*.tfrecord"]
    new.model.loss.box_loss_weight = 10.0  # no new variables: may change on resume
    new.model.backbone.regularize_depthwise = True  # the loss only, as above
    new.model.post_processing.iou_threshold = 0.6
    new.train_config.optimizer.type = "adam" if old.train_config.optimizer.type == "sgd" else "sgd"
    assert C.structural_differences(old, new) == [
        "model.num_classes", "model.backbone.model_id", "model.anchor.aspect_ratios",
        "train_config.optimizer.type"]
    assert C.other_differences(old, new) == [
        "model.backbone.regularize_depthwise",
        "model.loss.box_loss_weight", "model.post_processing.iou_threshold",
        "train_config.num_steps", "train_config.learning_rate.base",
        "eval_input_reader.input_path"]
    assert C.structural_differences(new, old) == C.structural_differences(old, new)


@pytest.mark.parametrize("before, after, structural", [
    ("mixed_bfloat16", "mixed_bfloat16_on_tpu", False),  # a run mapped before the latter
    ("mixed_bfloat16_on_tpu", "float32", False), ("float32", "mixed_bfloat16", False),
    ("float32", "mixed_float16", True), ("mixed_float16", "mixed_bfloat16", True)])
def test_a_precision_change_is_structural_only_into_or_out_of_float16(before, after,
                                                                      structural):
    """mixed_float16 alone adds variables (the loss-scale optimizer's)."""
    old = full_config()
    old.train_config.mixed_precision = before
    new = copy.deepcopy(old)
    new.train_config.mixed_precision = after
    key = ["train_config.mixed_precision"]
    assert C.structural_differences(old, new) == (key if structural else [])
    assert C.other_differences(old, new) == ([] if structural else key)


@pytest.mark.parametrize("text, expected", [
    ("off", "disabled"), ("on", "enabled"), ("false", "disabled"), ("auto", "auto"),
    ("disabled", "disabled")])
def test_graph_optimization_takes_yaml_switches(tmp_path, text, expected):
    in_file = load_text(tmp_path, f"train_config: {{graph_optimization: {text}}}\n")
    override = load_text(tmp_path, "{}\n", f"train_config.graph_optimization={text}")
    assert in_file.train_config.graph_optimization == expected
    assert override.train_config.graph_optimization == expected


def test_a_seed_of_0_is_refused_by_its_key():
    """TensorFlow reads a global seed of 0 as none, and its seeded input shuffle then
    fails while tracing: one error line instead of that traceback."""
    with pytest.raises(ConfigError, match=r"train_config\.seed is 0; must not be 0"):
        C.config_from_dict({"train_config": {"seed": 0}})
    assert C.config_from_dict({"train_config": {"seed": 1}}).train_config.seed == 1
