"""Batch inference on Ray actors with Ray Data: image files in, one `RemoteImage` per file out, in input
order, streamed.

The driver cuts the list of paths into chunks of `batch` consecutive files (the batches a local run makes when
every file decodes and shares an input shape) and hands them to Ray Data, which feeds a pool of `ImageWorker`
actors with backpressure: only a few blocks of chunks are in flight, and what comes back is a few bytes of
detections per image, so memory stays bounded for any number of images. Each actor loads the model once
(`shipping.fetch_model`), decodes its files itself (the paths must be readable on every node: one machine or
a shared file system) and runs the shared engine. An actor that dies is restarted and its unfinished block is
run again (at most `RETRIES` times); rows reach the driver only from finished blocks, so every image comes
back exactly once.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError, YoloNasError, one_line
from yolonas_cli.data.frames import read_image
from yolonas_cli.data.results import Boxes, Result
from yolonas_cli.detector import Detector
from yolonas_cli.distributed.cluster import ActorShape, import_ray, quiet_logger
from yolonas_cli.distributed.shipping import ShippedModel, fetch_model
from yolonas_cli.engine.batching import shape_batches
from yolonas_cli.engine.engine import PREDICT, EngineSettings, Pipeline
from yolonas_cli.engine.letterbox import to_bgr_uint8

RETRIES = 3  # restarts of a dead actor, and runs of a block whose actor died
IMAGES_PER_BLOCK = 8  # images in one Ray Data block (a unit of scheduling and of re-running)
UNREADABLE = "it cannot be decoded as an image"

AfterImage = Callable[[Result, str], None]  # (result with its image, the driver's tag of the file) on the worker


@dataclass(frozen=True)
class WorkerSpec:
    """What every actor needs to build its engine and treat its files.

    `bgr_uint8`: decode as the val loop does (to BGR uint8, grey and 16-bit converted), else as predict
    does (as stored). `after_image`: called on the worker for each decoded image (a module-level function:
    it is pickled by name), e.g. to save annotated images where the pixels are."""

    model: ShippedModel
    settings: EngineSettings
    device: str = "auto"
    half: bool = False
    pipeline: Pipeline = PREDICT
    weights_dir: str | None = None
    runtime: str = "torch"  # backend= (auto: each actor's machine converts the weights once, see formats.auto)
    bgr_uint8: bool = False
    after_image: AfterImage | None = None


@dataclass(frozen=True)
class RemoteImage:
    """One file's outcome. `detections` float32 [K, 6] (x1, y1, x2, y2, conf, class) in original pixels;
    `error` says why the file was skipped ("" when it was not), `save_error` why its pictures could not be
    saved; `speed` ms per stage; `worker` host:pid of the
    actor that ran it and `worker_started` when that actor started (seconds since the epoch: a restarted
    actor is a new one)."""

    index: int
    path: str
    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]
    detections: np.ndarray
    speed: dict[str, float]
    worker: str
    worker_started: float
    error: str = ""
    save_error: str = ""  # why `after_image` failed on this file (the detections are still good)


class ImageWorker:
    """A Ray Data actor: the engine built once, then chunks of files in, one row per file out."""

    def __init__(self, spec: WorkerSpec):
        console.set_verbose(False)  # the driver reports; a worker's prints would interleave
        detector = Detector(fetch_model(spec.model, spec.weights_dir), weights_dir=spec.weights_dir)
        self.engine = detector.make_engine(spec.settings, spec.device, spec.half, spec.pipeline, spec.runtime)
        self.names = detector.names
        self.spec = spec
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.started = time.time()

    def __call__(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """chunk: {start, paths, tags} -> rows of `RemoteImage` fields, in the chunk's order."""
        rows: dict[int, dict[str, Any]] = {}
        decoded = []
        for offset, (path, tag) in enumerate(zip(chunk["paths"], chunk["tags"])):
            index = int(chunk["start"]) + offset
            image, error = self._decode(path)
            if image is None:
                rows[index] = self._row(index, path, error=error)
            else:
                decoded.append((index, path, tag, image))
        size = self.engine.images_per_batch  # 1 with slicing: a batch is then one image's tiles
        for group in shape_batches(decoded, size, lambda item: self.engine.input_shape(item[3])):
            for (index, path, tag, image), (det, lb, speed) in zip(group, self.engine.run_batch([g[3] for g in group])):
                rows[index] = self._row(index, path, image.shape[:2], lb.padded_hw, det, speed)
                if self.spec.after_image is not None:
                    rows[index]["save_error"] = self._after_image(path, image, det, lb.padded_hw, speed, tag)
        return [rows[i] for i in sorted(rows)]

    def _after_image(self, path: str, image: np.ndarray, det: np.ndarray, input_hw: Any, speed: dict, tag: str) -> str:
        """Run `after_image` on one file; a failure of that file's own (YoloNasError, cv2.error: e.g. an image
        OpenCV cannot encode) is returned as one line, so the run goes on as a local run does."""
        import cv2

        assert self.spec.after_image is not None
        try:
            self.spec.after_image(self._result(path, image, det, input_hw, speed), tag)
        except (YoloNasError, cv2.error) as exc:
            return one_line(str(exc))
        return ""

    def _decode(self, path: str) -> tuple[np.ndarray | None, str]:
        image = read_image(path)
        if image is None or image.size == 0 or image.ndim not in (2, 3):
            return None, UNREADABLE
        if not self.spec.bgr_uint8:
            return image, ""
        try:
            return to_bgr_uint8(image), ""
        except UsageError as exc:
            return None, str(exc)

    def _result(self, path: str, image: np.ndarray, det: np.ndarray, input_hw: Any, speed: dict) -> Result:
        hw = (int(image.shape[0]), int(image.shape[1]))
        return Result(Boxes(det, hw), self.names, image, hw, path, dict(speed), tuple(input_hw))

    def _row(
        self,
        index: int,
        path: str,
        orig_hw: Sequence[int] = (0, 0),
        input_hw: Sequence[int] = (0, 0),
        det: np.ndarray | None = None,
        speed: dict[str, float] | None = None,
        error: str = "",
    ) -> dict[str, Any]:
        speed = speed or {}
        return {
            "index": index,
            "path": path,
            "orig_hw": [int(v) for v in orig_hw],
            "input_hw": [int(v) for v in input_hw],
            "detections": np.ascontiguousarray(det if det is not None else np.zeros((0, 6)), np.float32).tobytes(),
            "speed": [float(speed.get(stage, 0.0)) for stage in STAGES],
            "worker": self.worker,
            "worker_started": self.started,
            "error": error,
            "save_error": "",
        }


STAGES = ("preprocess", "inference", "postprocess")


def detect_on_ray(
    spec: WorkerSpec, paths: Sequence[str], tags: Sequence[str], batch: int, actors: ActorShape
) -> Iterator[RemoteImage]:
    """Run `spec` over `paths` on `actors` (chunks of `batch`); yields one RemoteImage per path, in order.

    `tags[i]` goes with `paths[i]` to `spec.after_image`. A worker failure that retries cannot fix becomes
    one YoloNasError (the original one when our code raised it)."""
    data = import_ray("data")
    chunks = [
        {"start": s, "paths": list(paths[s : s + batch]), "tags": list(tags[s : s + batch])}
        for s in range(0, len(paths), batch)
    ]
    per_block = max(1, IMAGES_PER_BLOCK // batch)
    blocks = min(len(chunks), max(-(-len(chunks) // per_block), 2 * actors.count))  # every actor gets work
    dataset = data.from_items(chunks, override_num_blocks=max(blocks, 1))
    dataset.context.execution_options.preserve_order = True
    dataset.context.enable_progress_bars = False
    with warnings.catch_warnings():  # Ray 2.60 deprecates passing these, and offers no other way to bound them
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        dataset = dataset.flat_map(
            ImageWorker,
            fn_constructor_args=(spec,),
            compute=data.ActorPoolStrategy(size=actors.count),
            num_cpus=actors.cpus,
            num_gpus=actors.gpus,
            max_restarts=RETRIES,
            max_task_retries=RETRIES,
        )
    with quiet_logger("ray.data"):
        rows = iter(dataset.iter_rows())
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except Exception as exc:
                raise worker_failure(exc) from None
            yield remote_image(row)


def remote_image(row: dict[str, Any]) -> RemoteImage:
    """A row of `ImageWorker` back as a RemoteImage."""
    return RemoteImage(
        index=int(row["index"]),
        path=str(row["path"]),
        orig_hw=(int(row["orig_hw"][0]), int(row["orig_hw"][1])),
        input_hw=(int(row["input_hw"][0]), int(row["input_hw"][1])),
        detections=np.frombuffer(row["detections"], dtype=np.float32).reshape(-1, 6).copy(),
        speed=dict(zip(STAGES, map(float, row["speed"]))),
        worker=str(row["worker"]),
        worker_started=float(row["worker_started"]),
        error=str(row["error"]),
        save_error=str(row.get("save_error", "")),
    )


def worker_failure(exc: BaseException) -> YoloNasError:
    """The YoloNasError a worker raised (found in the chain of Ray's wrappers), else one naming the failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, YoloNasError):
            return current
        seen.add(id(current))
        current = getattr(current, "cause", None) or current.__cause__
    first_line = (str(exc).strip().splitlines() or [""])[-1]
    return YoloNasError(f"a Ray worker failed: {type(exc).__name__}: {first_line}")
