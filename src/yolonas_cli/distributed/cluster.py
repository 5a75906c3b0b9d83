"""The Ray cluster a run uses (`ray=` of predict, val and serve): imported lazily, connected or started, and
left as it was found.

    with ray_cluster("local", num_cpus=2):     # a local cluster bound to 127.0.0.1, shut down afterwards
        ...

`ray=auto` joins the running cluster (`RAY_ADDRESS`, else the one `ray start --head` left on this machine),
`ray=local` starts one on this machine for the run, `ray=ray://host:10001` connects through Ray Client and
`ray=host:6379` to a cluster's GCS. When Ray is already initialised in this process (a notebook, the tests),
that connection is used whatever `ray=` says, and kept open afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from yolonas_cli.core import console
from yolonas_cli.core.errors import MissingExtraError, UsageError, YoloNasError

LOOPBACK = "127.0.0.1"


def import_ray(part: str = "") -> Any:
    """`import ray` (or `ray.<part>`, e.g. "data", "serve"), or MissingExtraError naming the extra."""
    try:
        import ray

        if part:
            import importlib

            return importlib.import_module(f"ray.{part}")
    except ImportError:
        what = f"ray[{part}]" if part else "ray"
        raise MissingExtraError(f"{what} is not installed (needed for ray=): pip install 'yolo-nas[ray]'") from None
    return ray


def ray_target(value: str | None) -> str:
    """The `ray=` value of a run that needs Ray (UsageError when it is None)."""
    if value is None:
        raise UsageError("this needs ray= (auto, local or a cluster address such as ray://host:10001)")
    return value


@dataclass(frozen=True)
class Cluster:
    """What a run needs to know of the cluster it got."""

    cpus: int  # CPUs of the whole cluster
    gpus: int  # GPUs of the whole cluster
    node_cpus: int  # CPUs of its smallest node (an actor cannot span nodes)
    started_here: bool  # True when this run started (or connected) Ray and shuts it down at the end


@dataclass(frozen=True)
class ActorShape:
    """How many actors a run starts and what each one reserves."""

    count: int
    cpus: float
    gpus: float


@contextmanager
def ray_cluster(target: str, num_cpus: int | None = None) -> Iterator[Cluster]:
    """Ray connected for the enclosed block (see the module docstring). `num_cpus` sizes a `local` cluster
    (None = every CPU of this machine). Raises YoloNasError when no cluster can be reached."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        _connect(ray, target, num_cpus)
    try:
        resources = ray.cluster_resources()
        nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        cpus = int(resources.get("CPU", 0))
        yield Cluster(cpus, int(resources.get("GPU", 0)), int(min(nodes, default=cpus)), started)
    finally:
        if started:
            ray.shutdown()


def _connect(ray: Any, target: str, num_cpus: int | None) -> None:
    quiet = {"logging_level": logging.ERROR, "configure_logging": True}  # our console reports the run
    try:
        if target == "local":
            console.info(f"starting a local Ray cluster on {LOOPBACK}")
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                _node_ip_address=LOOPBACK,
                **quiet,
            )
        else:
            ray.init(address=target, **quiet)
    except ConnectionError as exc:
        hint = "start one with `ray start --head`, or use ray=local" if target == "auto" else "check the address"
        raise YoloNasError(f"ray={target}: no Ray cluster could be reached ({exc}); {hint}") from None


@contextmanager
def quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """The logger `name` (e.g. "ray.data", whose INFO lines narrate every run) at `level` for the block."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def actor_shape(cluster: Cluster, workers: int, device: str) -> ActorShape:
    """`workers` actors (0 = one per GPU on a cluster with GPUs and device auto/cuda, else one per CPU).

    On GPUs each actor reserves a share of one GPU and one CPU. On CPUs the CPUs are divided between the
    actors (whole CPUs, at most a node's worth, each actor's torch using as many threads; a fraction of one
    when there are more actors than CPUs)."""
    use_gpu = cluster.gpus > 0 and device != "cpu" and device != "mps"
    if use_gpu:
        count = workers or cluster.gpus
        return ActorShape(count, 1.0 if cluster.cpus >= count else cluster.cpus / count, min(cluster.gpus / count, 1.0))
    count = workers or max(cluster.cpus, 1)
    if cluster.cpus >= count:
        return ActorShape(count, float(max(1, min(cluster.node_cpus, cluster.cpus // count))), 0.0)
    return ActorShape(count, max(cluster.cpus, 1) / count, 0.0)
