"""Strategy selection and each process's role: flags and TF_CONFIG -> tf.distribute.

Contract:
- `build_strategy` returns the tf.distribute strategy the flags ask for and logs
  what it chose and why. A malformed TF_CONFIG or flags that contradict it raise
  `DistributeError`, naming the flag or TF_CONFIG and the fix, before any worker
  connects. Build the strategy before any other TensorFlow work in the process
  (MultiWorkerMirroredStrategy requires it).
- `read_cluster` parses and checks TF_CONFIG (None when it is not set).
- `role_of(strategy)` says whether this process is the chief (the one worker that
  writes model_dir) and which input shard it reads.
- `gather_ints(strategy, values)` is a collective: every worker calls it at the same
  point and gets every worker's values.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping

import tensorflow as tf
from absl import logging

from train_lib.errors import UserError

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
WORKER_TASKS = ("chief", "worker")  # the task types that train, chief first
EXAMPLE_TF_CONFIG = ('{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                     '"task": {"type": "worker", "index": 0}}')


class DistributeError(UserError, ValueError):
    """The flags or TF_CONFIG cannot describe a job; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A checked TF_CONFIG: the task addresses by type, and this process's task."""

    tasks: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def workers(self) -> list[str]:
        """Addresses of the training processes, the chief (if any) first."""
        return [a for t in WORKER_TASKS for a in self.tasks.get(t, [])]

    @property
    def worker_index(self) -> int:
        return (self.task_index if self.task_type == "chief"
                else len(self.tasks.get("chief", [])) + self.task_index)


@dataclasses.dataclass(frozen=True)
class Role:
    """This process in the job: worker `worker_index` of `num_workers`; the chief
    (worker 0) alone writes model_dir, and worker i reads input shard i."""

    worker_index: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0

    @property
    def name(self) -> str:
        return "chief" if self.is_chief else f"worker {self.worker_index}"


def read_cluster(env: Mapping[str, str] | None = None) -> Cluster | None:
    """TF_CONFIG from `env` (default os.environ), checked; None when unset or empty."""
    text = (os.environ if env is None else env).get("TF_CONFIG", "").strip()
    if not text:
        return None

    def bad(what: str) -> DistributeError:
        return DistributeError(f"TF_CONFIG {what}. It should look like {EXAMPLE_TF_CONFIG} "
                               "(the same on every worker except task.index)")

    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise bad(f"is not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(parsed, dict):
        raise bad("must be a JSON object with 'cluster' and 'task'")
    cluster, task = parsed.get("cluster"), parsed.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise bad("has no 'cluster' object listing the workers' host:port addresses")
    tasks: dict[str, list[str]] = {}
    for kind, addresses in cluster.items():
        if isinstance(addresses, str):
            addresses = [addresses]
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and _is_address(a) for a in addresses)):
            raise bad(f"cluster.{kind} must be a list of 'host:port' strings, not "
                      f"{json.dumps(addresses)}")
        tasks[kind] = addresses
    if "ps" in tasks:
        raise bad("lists parameter servers ('ps'); parameter-server training is not "
                  "supported: list the machines as workers (multi_worker_mirrored)")
    if not any(t in tasks for t in WORKER_TASKS):
        raise bad(f"lists no 'worker' (or 'chief') task; it lists {', '.join(tasks)}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise bad("has no 'task' object with this process's 'type' and 'index'")
    task_type, index = task["type"], task["index"]
    if task_type == "evaluator":
        raise DistributeError(
            "TF_CONFIG says this process is the evaluator; evaluate with "
            "model_main_tf2.py --checkpoint_dir=<the training model_dir> instead")
    if task_type not in tasks:
        raise bad(f"task.type is {json.dumps(task_type)}, which cluster does not list "
                  f"(it lists {', '.join(tasks)})")
    if not isinstance(index, int) or not 0 <= index < len(tasks[task_type]):
        raise bad(f"task.index is {json.dumps(index)}; cluster.{task_type} has "
                  f"{len(tasks[task_type])} address(es), so it must be 0.."
                  f"{len(tasks[task_type]) - 1}")
    return Cluster(tasks, task_type, index)


def _is_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit()


def resolve_strategy(
    name: str,
    num_workers: int | None,
    use_tpu: bool,
    cluster: Cluster | None,
    num_gpus: int,
) -> str:
    """Which strategy `name` means here (`auto` resolved); DistributeError when the
    flags and TF_CONFIG disagree. Pure: no TensorFlow."""
    if name not in STRATEGIES:
        raise DistributeError(f"--strategy={name} is not one of {', '.join(STRATEGIES)}")
    if use_tpu:
        if name not in ("auto", "tpu"):
            raise DistributeError(f"--use_tpu asks for the tpu strategy but --strategy={name}; "
                                  "drop one of them")
        name = "tpu"
    in_config = len(cluster.workers) if cluster else 1
    if num_workers is not None:
        if num_workers < 1:
            raise DistributeError(f"--num_workers={num_workers} must be at least 1")
        if cluster is None and num_workers > 1:
            raise DistributeError(
                f"--num_workers={num_workers} needs TF_CONFIG listing {num_workers} workers "
                f"on every machine, e.g. {EXAMPLE_TF_CONFIG}")
        if cluster is not None and num_workers != in_config:
            raise DistributeError(
                f"--num_workers={num_workers} but TF_CONFIG lists {in_config} worker(s) "
                f"({', '.join(cluster.workers)}); make them agree (or drop --num_workers)")
    if name == "auto":
        if in_config > 1:
            return "multi_worker_mirrored"
        return "mirrored" if num_gpus > 1 else "one_device"
    if in_config > 1 and name in ("one_device", "mirrored"):
        raise DistributeError(
            f"TF_CONFIG lists {in_config} workers but --strategy={name} trains on one "
            "machine; use --strategy=multi_worker_mirrored (or auto), or unset TF_CONFIG")
    return name


def build_strategy(
    name: str = "auto",
    *,
    num_workers: int | None = None,
    use_tpu: bool = False,
    tpu_name: str | None = None,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = logging.info,
) -> tf.distribute.Strategy:
    """The strategy for `name` (see STRATEGIES): `auto` is multi_worker_mirrored when
    TF_CONFIG lists several workers, else mirrored over several visible GPUs, else
    one device; `mirrored` without GPUs spreads over the logical CPU devices."""
    cluster = read_cluster(env)
    # Physical devices: listing logical ones would start the runtime, after which a
    # multi-worker strategy can no longer be created.
    num_gpus = len(tf.config.list_physical_devices("GPU"))
    chosen = resolve_strategy(name, num_workers, use_tpu, cluster, num_gpus)
    if chosen == "tpu":
        return _tpu_strategy(tpu_name, log)
    if chosen == "multi_worker_mirrored":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        role = role_of(strategy)
        chief = " (the chief, which writes model_dir)" if role.is_chief else ""
        log(f"strategy multi_worker_mirrored: this process is worker {role.worker_index} of "
            f"{role.num_workers}{chief}; {strategy.num_replicas_in_sync} replicas in sync")
        return strategy
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if chosen == "mirrored":
        devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) == 1:
            log(f"strategy mirrored over a single device ({devices[0]}): it trains as "
                "one_device would; it spreads the batch when several GPUs are visible")
        else:
            log(f"strategy mirrored over {len(devices)} devices: {', '.join(devices)}")
        return tf.distribute.MirroredStrategy(devices)
    device = gpus[0] if gpus else "/cpu:0"
    log(f"strategy one_device on {device}")
    return tf.distribute.OneDeviceStrategy(device)


def _tpu_strategy(tpu_name: str | None, log: Callable[[str], None]) -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        where = f"--tpu_name={tpu_name}" if tpu_name else "this machine (no --tpu_name)"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DistributeError(f"no TPU found at {where}: {first}. Pass the TPU's name or "
                              "grpc:// address with --tpu_name, or train without --use_tpu "
                              "(--strategy=auto)") from None
    strategy = tf.distribute.TPUStrategy(resolver)
    log(f"strategy tpu: {strategy.num_replicas_in_sync} cores")
    return strategy


def role_of(strategy: tf.distribute.Strategy) -> Role:
    """This process's role: worker 0 of 1 unless a multi-worker strategy says otherwise."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return Role()
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict()
    if not spec:  # no TF_CONFIG: one local worker
        return Role()
    cluster = Cluster({k: list(v) for k, v in spec.items()}, resolver.task_type,
                      resolver.task_id)
    return Role(cluster.worker_index, len(cluster.workers))


def gather_ints(strategy: tf.distribute.Strategy, values: list[int]) -> list[list[int]]:
    """Every replica's `values` (one row per replica, all workers): a collective that
    every worker must call at the same point of the program."""
    return _gather_function(strategy)(tf.constant([values], tf.int64)).numpy().tolist()


@functools.lru_cache(maxsize=4)
def _gather_function(strategy: tf.distribute.Strategy):
    @tf.function
    def gather(local):
        per_replica = strategy.experimental_distribute_values_from_function(
            lambda _: tf.identity(local))
        return strategy.gather(per_replica, axis=0)
    return gather
