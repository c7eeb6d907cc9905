"""Sharded TFRecord files written whole or not at all.

Names follow the OD API's dataset tools: one shard is `output_path` itself; N > 1
shards are `output_path-0000K-of-0000N` (read them with the glob
`output_path-?????-of-0000N`). Record i goes to shard i % N. Every shard is
written under a hidden temporary name beside it and renamed only by `commit()`;
an error (or no commit) removes the temporary files (and the output directory if
it made it), leaving earlier files alone.
"""

from __future__ import annotations

import os

import tensorflow as tf

__all__ = ["ShardedWriter", "shard_paths", "shard_pattern"]


def shard_paths(output_path: str, num_shards: int) -> list[str]:
    """The files `ShardedWriter(output_path, num_shards)` writes."""
    if num_shards == 1:
        return [output_path]
    return [f"{output_path}-{k:05d}-of-{num_shards:05d}" for k in range(num_shards)]


def shard_pattern(output_path: str, num_shards: int) -> str:
    """The glob that matches exactly those files (an input_path for the config)."""
    return output_path if num_shards == 1 else f"{output_path}-?????-of-{num_shards:05d}"


def _temporary(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}")


class ShardedWriter:
    """`with ShardedWriter(path, n) as w: w.write(record); ...; w.commit()`.

    Local paths. The output directory is created if missing.
    """

    def __init__(self, output_path: str, num_shards: int):
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        self.paths = shard_paths(os.fspath(output_path), num_shards)
        self._temps = [_temporary(p) for p in self.paths]
        self._writers: list[tf.io.TFRecordWriter] = []
        self.count = 0
        self._committed = False
        self._made_dir: str | None = None

    def __enter__(self) -> ShardedWriter:
        directory = os.path.dirname(os.path.abspath(self.paths[0]))
        if not os.path.isdir(directory):
            os.makedirs(directory)
            self._made_dir = directory
        self._writers = [tf.io.TFRecordWriter(t) for t in self._temps]
        return self

    def write(self, record: bytes) -> None:
        """Appends one serialized example to shard count % num_shards."""
        self._writers[self.count % len(self._writers)].write(record)
        self.count += 1

    def commit(self) -> None:
        """Closes the shards and gives them their final names."""
        for writer in self._writers:
            writer.close()
        for temp, path in zip(self._temps, self.paths, strict=True):
            os.replace(temp, path)
        self._committed = True

    def __exit__(self, *exc_info) -> None:
        if self._committed:
            return
        for writer in self._writers:
            writer.close()
        for temp in self._temps:
            if os.path.exists(temp):
                os.remove(temp)
        if self._made_dir and not os.listdir(self._made_dir):
            os.rmdir(self._made_dir)
