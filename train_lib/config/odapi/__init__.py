"""The OD API's protobuf-text pipeline.config, read into our config's keys.

`map_pipeline_config` (pipeline.py) is the entry point; loading.py merges and
validates what it returns (`OdapiConfig`). The modules:

- fields.py: the fields of the OD API's messages (its .proto files);
- table.py: the one table of what becomes of each field (exact, approximated,
  ignored, unsupported) that docs/coming_from_odapi.md shows, with
  table_faster_rcnn.py (the faster_rcnn rows) and rows.py (`Row`, and the row
  groups both meta-architectures share);
- mapper.py: `Mapper`, a parsed file read field by field and our keys written,
  each field decided by its row;
- ssd.py (ssd -> RetinaNet), faster_rcnn.py (faster_rcnn -> Faster R-CNN),
  shared.py (the blocks both share: image resizer, conv hyperparams) and
  train.py (train_config and the input readers): the keys that combine several
  fields.
"""

from train_lib.config.odapi.mapper import OdapiConfig
from train_lib.config.odapi.pipeline import map_pipeline_config

__all__ = ["OdapiConfig", "map_pipeline_config"]
