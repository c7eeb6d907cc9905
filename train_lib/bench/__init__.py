"""What the benchmark scripts share (scripts/benchmark.py and its tests): the
measurements of whole training processes (`processes.py`)."""
