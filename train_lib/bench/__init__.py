"""What the benchmark scripts share (scripts/benchmark.py and its tests): the
measurements of whole training processes and of each entry point's start-up
(`processes.py`), and figures over several rounds (`rounds.py`)."""
