"""Every settable key of the config schema is honoured by `--params_override`
(train_lib/config/overrides.py), walked from the schema's dataclasses so that a new key
is covered without editing this file.

Each leaf key is overridden with a legal value other than its default, in both of the
flag's forms (`a.b.c=value` pairs and a nested mapping), on top of our YAML with all
defaults and on top of an OD API pipeline.config of its meta-architecture; the loaded
config must hold that value. A key whose generic value is not legal gets one in
`SPECIAL` (a failure here names the key and the problem).
"""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
from test_odapi_rows import FASTER_RCNN_BASE, SSD_BASE, _text

from train_lib.config import ConfigError, load_config
from train_lib.config.initializer_schema import PARTS
from train_lib.config.schema import PipelineConfig, belongs_to


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, type, default) of every leaf field below dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, key = hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(kind):
            out += _leaves(kind, key + ".")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append((key, kind, default))
    return out


LEAVES = _leaves(PipelineConfig)

# Keys whose generic value is not legal: (value, the other keys it needs).
# The keys that hold only with another key's value, with the generic value.
NEEDS: dict[str, dict] = {
    "model.backbone.scale_last_layer": {"model.backbone.type": "mobilenet",
                                        "model.backbone.model_id": "MobileNetV2"},
    "model.backbone.regularize_depthwise": {"model.backbone.type": "mobilenet",
                                            "model.backbone.model_id": "MobileNetV2"},
}
SPECIAL: dict[str, tuple[object, dict]] = {
    "model.architecture": ("faster_rcnn", {}),
    "model.backbone.type": ("resnet", {"model.backbone.model_id": "50"}),
    "model.backbone.model_id": ("MobileNetV1", {"model.backbone.type": "mobilenet"}),
    "model.backbone.resnet_variant": ("keras_v1", {"model.backbone.type": "resnet",
                                                   "model.backbone.model_id": "50"}),
    "model.backbone.se_activation": ("swish", {"model.backbone.type": "efficientnet",
                                                "model.backbone.model_id": "b0"}),
    "model.backbone.efficientnet_endpoints": ("odapi", {"model.backbone.type": "efficientnet",
                                                        "model.backbone.model_id": "b1"}),
    "model.fpn.type": ("none", {"model.architecture": "faster_rcnn", "model.min_level": 4,
                                "model.max_level": 4}),
    "model.norm.activation": ("swish", {}),
    "model.input_size": ([128, 256], {}),  # multiples of 2**max_level of every base
    "model.pixel_mean": ([10.0, 20.0, 30.0], {}),  # one per RGB channel
    "model.pixel_stddev": ([2.0, 4.0, 8.0], {}),
    "model.loss.normalizer": ("positives", {}),
    "model.anchor.match_threshold": (0.75, {}),
    "model.anchor.box_coder_weights": ([10.0, 10.0, 5.0, 5.0], {}),
    "model.roi_sampler.foreground_iou_threshold": (0.75, {}),
    "model.proposals.num_proposals": (600, {}),  # at least roi_sampler.num_sampled_rois
    "model.roi_sampler.num_sampled_rois": (300, {}),
    "train_config.optimizer.type": ("adam", {}),
    "train_config.learning_rate.schedule": ("step", {"train_config.learning_rate.boundaries":
                                                     [10, 20]}),
    "train_config.augmentation.scale_max": (2.0, {}),
    "train_config.fine_tune_checkpoint_type": ("detection", {}),
    "train_config.mixed_precision": ("mixed_bfloat16", {}),
    "train_config.graph_optimization": ("enabled", {}),
    "train_input_reader.bad_example_policy": ("skip", {}),
    "eval_input_reader.bad_example_policy": ("skip", {}),
    "train_input_reader.num_parallel_calls": (3, {}),
    "eval_input_reader.num_parallel_calls": (3, {}),
    "eval_config.metric_for_best": ("AP50", {}),
    "train_input_reader.sample_1_of_n_examples": (0, {}),  # training takes only 0 or 1
}
for _part in PARTS:  # model.initializers' parts, both architectures'
    SPECIAL[f"model.initializers.{_part}.type"] = ("random_normal", {})
    SPECIAL[f"model.initializers.{_part}.mode"] = ("fan_out", {})


def _generic(kind: object, default: object) -> object:
    """A value of type `kind` other than `default`."""
    if kind is bool:
        return not default
    if kind == bool | None:  # None: each part's own
        return default is not True
    if kind is int:
        return default + 1
    if kind is float or kind == float | None:  # None: not set
        return default / 2 if default is not None and default > 0 else 0.5
    if kind is str:
        return "probe/value"
    item = typing.get_args(kind)[0]
    return {int: [64, 128], float: [1.5], str: ["probe/a.tfrecord"]}[item]


def _override(key: str, kind: object, default: object) -> dict:
    """The keys to override for `key` (itself and what it needs)."""
    value, needs = SPECIAL.get(key, (_generic(kind, default), NEEDS.get(key, {})))
    assert value != default, key
    if belongs_to(key) == "faster_rcnn":
        needs = {"model.architecture": "faster_rcnn", **needs}
    return {**needs, key: value}


def _get(config: PipelineConfig, key: str) -> object:
    node = config
    for name in key.split("."):
        node = getattr(node, name)
    return node


def _nested(pairs: dict) -> dict:
    tree: dict = {}
    for key, value in pairs.items():
        *parents, leaf = key.split(".")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("bases")
    paths = {}
    for name, text in (("yaml", "{}\n"), ("ssd", _text(SSD_BASE) + "\n"),
                       ("faster_rcnn", _text(FASTER_RCNN_BASE) + "\n")):
        path = folder / f"{name}.config"
        path.write_text(text)
        paths[name] = str(path)
    return paths


@pytest.mark.parametrize("key, kind, default", LEAVES, ids=[k for k, _, _ in LEAVES])
def test_override_sets_the_key(key, kind, default, bases):
    pairs = _override(key, kind, default)
    value = pairs[key]
    for form in (",".join(f"{k}={json.dumps(v)}" for k, v in pairs.items()),
                 json.dumps(_nested(pairs))):
        config = load_config(bases["yaml"], form)
        assert _get(config, key) == value, (form, _get(config, key))
    if key == "model.architecture":
        return  # a pipeline.config's meta-architecture decides it
    odapi = "faster_rcnn" if pairs.get("model.architecture") == "faster_rcnn" else "ssd"
    odapi_pairs = {k: v for k, v in pairs.items() if k != "model.architecture"}
    if odapi == "ssd" and pairs.get("model.backbone.type", "resnet") != "resnet":
        # the base's ResNet-50 extractor maps to keras_v1, which no other backbone has
        odapi_pairs = {"model.backbone.resnet_variant": "model_garden", **odapi_pairs}
    config = load_config(bases[odapi], ",".join(f"{k}={json.dumps(v)}"
                                                 for k, v in odapi_pairs.items()))
    assert _get(config, key) == value


def test_every_section_has_leaves():
    """The walk reaches every section of the schema (a new section is walked too)."""
    sections = {key.rsplit(".", 1)[0] for key, _, _ in LEAVES}
    for name in ("model.backbone", "model.roi_sampler", "train_config.learning_rate",
                 "eval_input_reader", "shapes_dataset"):
        assert name in sections
    assert len(LEAVES) == len({key for key, _, _ in LEAVES}) > 100


def test_another_backbone_over_a_keras_v1_resnet_says_what_to_set(bases):
    """An OD API ResNet extractor maps to keras_v1; overriding the backbone alone is
    refused with the key to set, not trained as a half-ResNet."""
    with pytest.raises(ConfigError, match="set resnet_variant: model_garden"):
        load_config(bases["ssd"], "model.backbone.type=mobilenet,"
                    "model.backbone.model_id=MobileNetV2")
    config = load_config(bases["ssd"], "model.backbone.type=mobilenet,"
                         "model.backbone.model_id=MobileNetV2,"
                         "model.backbone.resnet_variant=model_garden")
    assert config.model.backbone.type == "mobilenet"


def test_values_as_typed_on_a_command_line(bases):
    """Unquoted pair values are read as YAML and coerced as the config file's would be."""
    config = load_config(bases["ssd"], "model.backbone.model_id=101,"
                         "train_config.graph_optimization=off,"
                         "train_input_reader.input_path=data/train-*.tfrecord,"
                         "model.input_size=[128, 128],eval_config.eval_at_end=no")
    assert config.model.backbone.model_id == "101"
    assert config.train_config.graph_optimization == "disabled"
    assert config.train_input_reader.input_path == ["data/train-*.tfrecord"]
    assert (config.model.input_size, config.eval_config.eval_at_end) == ([128, 128], False)
