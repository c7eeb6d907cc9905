"""An OD API protobuf-text pipeline.config -> our config data, field by field.

`map_pipeline_config(text, source)` parses the text (train_lib/textproto.py)
into a `Mapper` (mapper.py), which checks every field and decides it by its row
in table.py; the fields that combine (backbone and levels, anchors, box-loss
scaling, learning-rate schedules, augmentation) are then computed by ssd.py
(ssd: RetinaNet) or faster_rcnn.py (faster_rcnn: Faster R-CNN), and train.py.
Nothing is dropped silently: what cannot be honoured is one error listing every
such field.
"""

from __future__ import annotations

from train_lib.config.errors import ConfigError
from train_lib.config.odapi import faster_rcnn, ssd, train
from train_lib.config.odapi.fields import FASTER_RCNN_EXTRACTORS, SUPPORTED_EXTRACTORS
from train_lib.config.odapi.mapper import Mapper, OdapiConfig
from train_lib.textproto import parse

__all__ = ["map_pipeline_config"]


def map_pipeline_config(text: str, source: str) -> OdapiConfig:
    """Maps the pipeline.config `text` (named `source` in messages) to our config data.

    Raises:
        ConfigError (TextProtoError for syntax): a syntax error (file:line:column), an
            unknown field (its path and the nearest known one), a field of the wrong
            kind, or every unsupported field at once, each by file:line and path.
    """
    m = Mapper(parse(text, source), source)
    is_ssd = m.one("model.ssd") is not None
    is_faster_rcnn = m.one("model.faster_rcnn") is not None
    if not is_ssd and not is_faster_rcnn:
        arch = [n.name for n in (m.one("model").children if m.one("model") else [])]
        if not arch:
            raise ConfigError(f"{source}: no `model.ssd {{ ... }}` or `model.faster_rcnn "
                              f"{{ ... }}`; supported: the ssd meta-architecture with feature "
                              f"extractors {', '.join(SUPPORTED_EXTRACTORS)}, and faster_rcnn "
                              f"with {', '.join(FASTER_RCNN_EXTRACTORS)}")
    m.classify()
    if is_ssd and is_faster_rcnn:
        m.refuse("model.faster_rcnn", "give one meta-architecture: model.ssd or "
                                      "model.faster_rcnn")
    elif is_ssd:
        ssd.map_model(m)
    elif is_faster_rcnn:
        faster_rcnn.map_model(m)
    train.map_training(m)
    if m.unsupported:
        count = len(m.unsupported)
        raise ConfigError(
            f"{source}: {count} field{'s' if count > 1 else ''} of this pipeline.config "
            "cannot be honoured (ignoring them would change what is trained); remove or change "
            "them (docs/coming_from_odapi.md):\n  - " + "\n  - ".join(m.unsupported))
    return m.out
