"""Dynamic batching: concurrent requests run through the model together.

`DynamicBatcher.detect(image, settings)` queues one image; a single loop takes the oldest waiting image and,
for at most `max_wait_ms`, up to `batch - 1` more waiting images with the same settings (the same input size
and post-processing), and runs them as one batch on the engine in a worker thread. While a batch runs, new
requests queue up, so under load batches fill by themselves and an idle server answers a lone request after
`max_wait_ms`. The queue holds at most `max_queue` images (more get 503), a request that waited longer than
its timeout is answered 503 and dropped from the queue, and `stop()` finishes every queued image before it
returns (graceful shutdown).

`run_requests` is the part shared with the Ray Serve replicas (whose batching is Ray Serve's).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from yolonas_cli.engine.engine import Engine, EngineSettings
from yolonas_cli.modes.serve.problems import HTTPProblem


@dataclass(frozen=True)
class Detection:
    """The outcome of one image: detections float32 [K, 6] (x1, y1, x2, y2, conf, class) in its pixels, the
    size of its network input, its per-stage ms and how many images its model call ran."""

    detections: np.ndarray
    input_hw: tuple[int, int]
    speed: dict[str, float]
    batch_size: int


def run_requests(engine: Engine, images: Sequence[np.ndarray], settings: Sequence[EngineSettings]) -> list[Detection]:
    """Run images with their settings: one model call per group of equal settings (in order within a group)."""
    groups: dict[EngineSettings, list[int]] = {}
    for index, s in enumerate(settings):
        groups.setdefault(s, []).append(index)
    out: list[Detection | None] = [None] * len(images)
    for s, indices in groups.items():
        runner = engine if s == engine.settings else engine.with_settings(s)
        results = runner.run_batch([images[i] for i in indices])
        for i, (det, lb, speed) in zip(indices, results):
            out[i] = Detection(det, lb.padded_hw, dict(speed), len(indices))
    return [d for d in out if d is not None]


@dataclass
class BatchStats:
    """What the batcher did: requests answered, model calls, and how many calls ran each batch size."""

    images: int = 0
    batches: int = 0
    sizes: Counter[int] = field(default_factory=Counter)
    refused: int = 0  # queue full
    timed_out: int = 0
    in_flight: int = 0  # accepted and not answered yet

    def as_dict(self) -> dict[str, object]:
        return {
            "images": self.images,
            "batches": self.batches,
            "mean_batch": round(self.images / self.batches, 3) if self.batches else 0.0,
            "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
            "refused": self.refused,
            "timed_out": self.timed_out,
            "in_flight": self.in_flight,
        }


@dataclass
class _Waiting:
    image: np.ndarray
    settings: EngineSettings
    future: asyncio.Future


class DynamicBatcher:
    """Batches concurrent `detect` calls (see the module docstring). Start it with `start()` inside the running
    event loop, stop it with `stop()`."""

    def __init__(self, engine: Engine, batch: int, max_wait_ms: float, max_queue: int):
        self.engine = engine
        self.batch = batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.counts = BatchStats()
        self._waiting: deque[_Waiting] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="yolonas-model")

    def stats(self) -> dict[str, object]:
        """The counts so far (`GET /info`)."""
        return self.counts.as_dict()

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Refuse new images, finish the queued ones, end the loop."""
        self._stopping = True
        if self._arrived is not None:
            self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def detect(self, image: np.ndarray, settings: EngineSettings, timeout_s: float) -> Detection:
        """The detections of one image, once its batch has run; HTTPProblem 503 when the queue is full, the
        server is stopping, or the answer takes longer than `timeout_s`."""
        if self._stopping or self._arrived is None:
            raise HTTPProblem(503, "the server is shutting down: retry on another instance", {"Retry-After": "1"})
        if len(self._waiting) >= self.max_queue:
            self.counts.refused += 1
            raise HTTPProblem(
                503, f"the server is busy ({self.max_queue} images waiting): retry shortly", {"Retry-After": "1"}
            )
        waiting = _Waiting(image, settings, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._arrived.set()
        self.counts.in_flight += 1
        try:
            return await asyncio.wait_for(asyncio.shield(waiting.future), timeout=timeout_s)
        except asyncio.TimeoutError:
            self.counts.timed_out += 1
            waiting.future.cancel()  # dropped from the queue if it has not started
            raise HTTPProblem(503, f"no answer within {timeout_s:g} s: the server is overloaded, retry later") from None
        finally:
            self.counts.in_flight -= 1

    async def _loop(self) -> None:
        assert self._arrived is not None
        while not (self._stopping and not self._waiting):
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            group = await self._collect()
            if group:
                await self._run(group)

    async def _collect(self) -> list[_Waiting]:
        """The oldest waiting image and up to batch - 1 others with its settings, waiting at most max_wait."""
        first = self._waiting.popleft()
        if first.future.cancelled():
            return []
        group = [first]
        deadline = time.monotonic() + self.max_wait
        for _ in range(self.batch):  # bounded: each round adds an image, or ends at the deadline
            self._take_matching(group)
            remaining = deadline - time.monotonic()
            if len(group) >= self.batch or remaining <= 0 or self._stopping:
                break
            self._arrived.clear()  # type: ignore[union-attr]
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)  # type: ignore[union-attr]
        return group

    def _take_matching(self, group: list[_Waiting]) -> None:
        kept: deque[_Waiting] = deque()
        while self._waiting:
            item = self._waiting.popleft()
            if item.future.cancelled():
                continue
            if len(group) < self.batch and item.settings == group[0].settings:
                group.append(item)
            else:
                kept.append(item)
        self._waiting = kept

    async def _run(self, group: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        images, settings = [w.image for w in group], [w.settings for w in group]
        try:
            outcomes = await loop.run_in_executor(self._executor, run_requests, self.engine, images, settings)
        except Exception as exc:
            for waiting in group:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        self.counts.batches += 1
        self.counts.images += len(group)
        self.counts.sizes[len(group)] += 1
        for waiting, outcome in zip(group, outcomes):
            if not waiting.future.done():
                waiting.future.set_result(outcome)
