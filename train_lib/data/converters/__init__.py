"""Annotation converters: COCO JSON, Pascal VOC XML and labelling-tool CSV -> OD API
TFRecords and a label map (scripts/create_tf_record.py is their command line).

- records.py: the plain per-image records every reader produces, the box check,
  ConvertError.
- coco.py, voc.py, csv_format.py: one reader per format (annotations -> records).
- labels.py: which label id each class name gets (a given label map, or the source).
- images.py: reading and checking the image files, in parallel, in order.
- writer.py: sharded TFRecords written to temporary names, renamed when complete.
- convert.py: one conversion end to end; summary.py: what it wrote and skipped;
  progress.py: the progress bar.

Everything but writer.py (and the example builder, data/tf_example.py) runs
without TensorFlow, so bad annotations fail fast.
"""

from train_lib.data.converters.records import ConvertError

__all__ = ["ConvertError"]
