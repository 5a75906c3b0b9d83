"""`yolo-nas serve ... ray=`: the same HTTP API as a Ray Serve deployment of `replicas` copies of the model.

Ray Serve's proxy listens on host:port and spreads requests over the replicas; each replica loads the model
once (`distributed.shipping`: the driver's file when it sees it, else the bytes sent through the object store,
checked by sha256), serves the routes of `app` and batches its concurrent requests with Ray Serve's own
`serve.batch` (up to `batch`, waiting at most `max_wait_ms`). Ctrl-C or SIGTERM deletes the application
gracefully (Ray Serve lets each replica finish its requests) and exits with code 0; on a cluster this command
joined, Serve itself (its controller and proxy) keeps running (`serve shutdown` stops it).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from yolonas_cli.cfg import ServeArgs
from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError
from yolonas_cli.detector import Detector
from yolonas_cli.distributed.cluster import actor_shape, import_ray, quiet_logger, ray_cluster, ray_target
from yolonas_cli.distributed.shipping import ShippedModel, fetch_model, ship_model
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.modes.serve.batcher import BatchStats, Detection, run_requests
from yolonas_cli.modes.serve.problems import HTTPProblem
from yolonas_cli.modes.serve.settings import ServedModel, limits, server_settings

APP_NAME = "yolo-nas"
STOP_CHECK_S = 0.5  # how often the driver looks for a stop signal


@dataclass(frozen=True)
class ReplicaSpec:
    """What each replica needs: the model file and the server's arguments."""

    model: ShippedModel
    args: ServeArgs


def serve_on_ray(args: ServeArgs) -> int:
    """Deploy, print where, block until Ctrl-C or SIGTERM, shut down; returns the exit code."""
    if args.port == 0:
        raise UsageError("serve with ray= needs a fixed port= (Ray Serve's proxy does not pick a free one)")
    serve = import_ray("serve")
    model = Detector(args.model, weights_dir=args.weights_dir)
    quiet = {"log_level": "WARNING", "enable_access_log": False}  # our console says what matters
    with ray_cluster(ray_target(args.ray)) as cluster, quiet_logger("ray.serve"):
        shape = actor_shape(cluster, args.replicas, args.device)
        serve.start(http_options={"host": args.host, "port": args.port}, logging_config=quiet)
        deployment = replica_deployment(serve).options(
            num_replicas=args.replicas,
            ray_actor_options={"num_cpus": shape.cpus, "num_gpus": shape.gpus},
            max_ongoing_requests=args.max_queue,
            logging_config=quiet,
        )
        serve.run(deployment.bind(ReplicaSpec(ship_model(model.path), args)), name=APP_NAME, route_prefix="/")
        console.info(
            f"serving {model.path.name} on http://{args.host}:{args.port} with {args.replicas} Ray Serve "
            f"replicas (POST /predict, GET /health, GET /info); Ctrl-C or SIGTERM stops it"
        )
        _wait_for_stop()
        console.info("stopping: the replicas finish their requests")
        serve.delete(APP_NAME)  # graceful; Serve itself stays on a cluster we joined, ends with one we started
    console.info("stopped")
    return 0


def _wait_for_stop() -> None:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(STOP_CHECK_S):  # a server runs until it is stopped
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def replica_deployment(serve: Any) -> Any:
    """The Ray Serve deployment class (built here so that importing this module does not import Ray)."""

    @serve.deployment(name="YoloNas")
    @serve.ingress()
    class YoloNasReplica:
        """One copy of the model behind the routes of `app`, batching with `serve.batch`."""

        def __init__(self, spec: ReplicaSpec):
            console.set_verbose(False)
            args = spec.args
            detector = Detector(fetch_model(spec.model, args.weights_dir), weights_dir=args.weights_dir)
            self.engine = detector.make_engine(server_settings(args), args.device, args.half, runtime=args.backend)
            self.served = ServedModel(
                spec.model.name,
                detector.variant,
                detector.names,
                server_settings(args),
                limits(args),
                args.batch,
                args.max_wait_ms,
                str(self.engine.backend.device),
            )
            self.counts = BatchStats()
            self.batched.set_max_batch_size(args.batch)
            self.batched.set_batch_wait_timeout_s(args.max_wait_ms / 1000)

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
        async def batched(self, items: list[tuple[np.ndarray, EngineSettings]]) -> list[Detection]:
            images, settings = [i[0] for i in items], [i[1] for i in items]
            loop = asyncio.get_running_loop()
            outcomes = await loop.run_in_executor(None, run_requests, self.engine, images, settings)
            calls = Counter(settings).values()  # one model call per group of equal settings
            self.counts.batches += len(calls)
            self.counts.images += len(items)
            self.counts.sizes.update(calls)
            return outcomes

        async def detect(self, image: np.ndarray, settings: EngineSettings, timeout_s: float) -> Detection:
            self.counts.in_flight += 1
            try:
                return await asyncio.wait_for(self.batched((image, settings)), timeout=timeout_s)
            except asyncio.TimeoutError:
                self.counts.timed_out += 1
                raise HTTPProblem(503, f"no answer within {timeout_s:g} s: the server is overloaded") from None
            finally:
                self.counts.in_flight -= 1

        def stats(self) -> dict[str, Any]:
            return self.counts.as_dict()

        def __serve_build_asgi_app__(self) -> Any:
            from yolonas_cli.modes.serve.app import create_app

            return create_app(self, self.served)

    return YoloNasReplica
