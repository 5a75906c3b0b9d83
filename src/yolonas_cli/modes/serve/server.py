"""One process serving the app with uvicorn: the socket bound first (so `port=0` can say which port it got),
the model warmed up, the dynamic batcher started, and a graceful stop on Ctrl-C or SIGTERM: no new
connections, the requests in flight answered (within `timeout`), the batcher drained, exit code 0."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import numpy as np

from yolonas_cli.cfg import ServeArgs
from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError
from yolonas_cli.detector import Detector
from yolonas_cli.engine.engine import Engine
from yolonas_cli.modes.serve.app import create_app
from yolonas_cli.modes.serve.batcher import DynamicBatcher
from yolonas_cli.modes.serve.settings import ServedModel, require_serve_extra, served_model, server_settings

BACKLOG = 128


def serve_locally(args: ServeArgs) -> int:
    """`yolo-nas serve` without Ray: blocks until stopped; returns the exit code."""
    uvicorn = require_serve_extra()
    sock = bind(args.host, args.port)  # first: a busy port fails before the model loads
    host, port = sock.getsockname()[:2]
    model = Detector(args.model, weights_dir=args.weights_dir)
    engine = model.make_engine(server_settings(args), args.device, args.half, runtime=args.backend)
    batcher = DynamicBatcher(engine, args.batch, args.max_wait_ms, args.max_queue)
    served = served_model(model, args, str(engine.backend.device))
    app = create_app(batcher, served, lifespan=_lifespan(batcher, engine, served, f"http://{_url_host(host)}:{port}"))
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=args.timeout,
        limit_concurrency=args.max_queue + args.batch,  # bounds the bodies held at once (each <= max_body_mb)
        timeout_keep_alive=5,
    )
    with _signals_end_quietly():
        uvicorn.Server(config).run(sockets=[sock])
    console.info("stopped")
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); UsageError when the address cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise UsageError(f"cannot listen on {host}:{port} ({reason}): choose another host= or port=") from None
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _lifespan(batcher: DynamicBatcher, engine: Engine, served: ServedModel, url: str) -> Any:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(warm_up, engine)
        await batcher.start()
        console.info(
            f"serving {served.name} on {url} (POST /predict, GET /health, GET /info, docs at /docs); "
            "Ctrl-C or SIGTERM stops it"
        )
        yield
        await batcher.stop()
        counts = batcher.counts
        console.info(f"answered {counts.images} images in {counts.batches} model calls")

    return lifespan


def warm_up(engine: Engine) -> None:
    """One run on a blank image, so that the first request does not pay for the first call."""
    h, w = engine.backend.fixed_input or engine.settings.imgsz
    engine.with_settings(engine.settings).run_batch([np.full((h, w, 3), 114, np.uint8)])


@contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """uvicorn stops gracefully on SIGINT and SIGTERM, then raises the signal again for the handler it found:
    make that handler a no-op, so a graceful stop ends with exit code 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
