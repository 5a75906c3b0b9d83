"""The one inference engine every mode uses: preprocess -> infer -> postprocess, each stage timed.

Preprocessing and postprocessing reproduce the original YOLO-NAS predict pipeline (facts doc, section 6):
longest side to imgsz*636/640 (OpenCV linear), centre padding with 114, RGB /255; multi-label
class-aware NMS after a strict confidence filter and a pre-NMS top-k of 1024; boxes mapped back by the
same `Letterbox` that made the input. Saving and drawing are not done here (see `predictor`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from yolonas_cli.data.results import Boxes, Result
from yolonas_cli.data.sources import Frame
from yolonas_cli.engine.backend import Backend
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.engine.postprocess import postprocess

STAGES = ("preprocess", "inference", "postprocess")


@contextmanager
def _one_thread(get_count: Callable[[], int], set_count: Callable[[int], None]) -> Iterator[None]:
    """Set a library's thread count to 1 for the enclosed calls, then restore it."""
    previous = get_count()
    set_count(1)
    try:
        yield
    finally:
        set_count(previous)


def single_opencv_thread() -> AbstractContextManager[None]:
    """Run the enclosed OpenCV calls on the calling thread.

    Letterboxing one photo takes well under a millisecond either way, but OpenCV's worker threads keep
    spinning after a parallel resize and take CPU time from the inference that follows (measured on 2 cores:
    S at 640 end to end 99-107 ms with OpenCV threads, 87 ms without; the model alone 85 ms)."""
    return _one_thread(cv2.getNumThreads, cv2.setNumThreads)


def single_torch_thread() -> AbstractContextManager[None]:
    """Run the enclosed torch ops on one intra-op thread."""
    return _one_thread(torch.get_num_threads, torch.set_num_threads)


@dataclass(frozen=True)
class EngineSettings:
    """What the engine needs to know, whatever the mode."""

    imgsz: tuple[int, int] = (640, 640)  # (h, w) network input (the padded size unless rect)
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    classes: tuple[int, ...] | None = None
    agnostic_nms: bool = False
    multi_label: bool = True
    pre_nms_top_k: int = 1024
    rect: bool = False
    batch: int = 1


@dataclass
class StageTimer:
    """Accumulated milliseconds per stage and the number of images they cover."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    images: int = 0
    last_shape: tuple[int, ...] | None = None

    def per_image(self) -> dict[str, float]:
        count = max(self.images, 1)
        return {stage: total / count for stage, total in self.totals.items()}


@dataclass(frozen=True)
class Prepared:
    """A preprocessed batch: input [B,3,H,W] float32 and the letterbox of each image."""

    inputs: np.ndarray
    letterboxes: tuple[Letterbox, ...]


class Engine:
    """Runs a backend over images and returns one `Result` per image, in input order.

    Variants of the pipeline change the two hooks, not the stages: `letterbox()` (how an image is planned
    into the input) and `clip_boxes` (whether mapped-back boxes are clipped to the image)."""

    clip_boxes = True

    def __init__(self, backend: Backend, names: dict[int, str], settings: EngineSettings):
        self.backend = backend
        self.names = names
        self.settings = settings
        self.timer = StageTimer()

    def letterbox(self, orig_hw: tuple[int, int]) -> Letterbox:
        """The letterbox of an image of size (H, W): the original predict preprocessing at imgsz (or rect)."""
        imgsz = self.backend.fixed_input or self.settings.imgsz
        rect = self.settings.rect and self.backend.fixed_input is None
        return Letterbox.for_image(orig_hw, imgsz, rect=rect)

    # --- stages -------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray]) -> Prepared:
        """BGR (or grey/BGRA/16-bit) images of one padded shape -> network input. See `Letterbox`."""
        boxes = tuple(self.letterbox(img.shape[:2]) for img in images)
        with single_opencv_thread():
            inputs = np.stack([lb.apply(img) for lb, img in zip(boxes, images)])
        return Prepared(inputs, boxes)

    def infer(self, prepared: Prepared):
        """-> (boxes [B,N,4] xyxy input pixels, scores [B,N,C]) as tensors on the backend's device."""
        return self.backend(prepared.inputs)

    def postprocess(self, raw, letterboxes: Sequence[Letterbox]) -> list[np.ndarray]:
        """Raw outputs -> per image float32 [K,6] (x1, y1, x2, y2, conf, class) in original pixels, clipped."""
        s = self.settings
        with single_torch_thread():  # a few small ops: thread hand-offs would cost more than they save
            detections = postprocess(
                raw[0],
                raw[1],
                conf=s.conf,
                iou=s.iou,
                max_det=s.max_det,
                pre_nms_top_k=s.pre_nms_top_k,
                multi_label=s.multi_label,
                agnostic=s.agnostic_nms,
                classes=s.classes,
            )
        return [
            np.asarray(lb.to_original(det.cpu().numpy(), clip=self.clip_boxes), dtype=np.float32)
            for lb, det in zip(letterboxes, detections)
        ]

    # --- loop ---------------------------------------------------------------------------------------
    def run_batch(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, Letterbox, dict[str, float]]]:
        """All three stages on images that share a padded shape; returns (detections, letterbox, speed ms)."""
        clock = time.perf_counter()
        prepared = self.preprocess(images)
        t_pre = time.perf_counter()
        raw = self.infer(prepared)
        self.backend.synchronize()
        t_inf = time.perf_counter()
        detections = self.postprocess(raw, prepared.letterboxes)
        t_post = time.perf_counter()
        count = len(images)
        speed = {
            "preprocess": (t_pre - clock) * 1e3 / count,
            "inference": (t_inf - t_pre) * 1e3 / count,
            "postprocess": (t_post - t_inf) * 1e3 / count,
        }
        for stage, ms in speed.items():
            self.timer.totals[stage] += ms * count
        self.timer.images += count
        self.timer.last_shape = tuple(prepared.inputs.shape)
        return [(det, lb, speed) for det, lb in zip(detections, prepared.letterboxes)]

    def stream(self, frames: Iterable[Frame], keep_images: bool = True) -> Iterator[tuple[Frame, Result]]:
        """Batch `frames` (settings.batch at a time), yield (frame, result) in order. Streams: bounded memory."""
        pending: list[Frame] = []
        for frame in frames:
            pending.append(frame)
            if len(pending) >= self.settings.batch:
                yield from self._flush(pending, keep_images)
                pending = []
        if pending:
            yield from self._flush(pending, keep_images)

    def _flush(self, frames: list[Frame], keep_images: bool) -> Iterator[tuple[Frame, Result]]:
        for group in self._same_shape_groups(frames):
            outputs = self.run_batch([f.image_bgr for f in group])
            for frame, (det, lb, speed) in zip(group, outputs):
                yield frame, self._result(frame, det, lb, speed, keep_images)

    def _same_shape_groups(self, frames: list[Frame]) -> list[list[Frame]]:
        """Consecutive runs of frames whose padded inputs have the same shape (always one group unless rect)."""
        groups: list[list[Frame]] = []
        last_shape = None
        for frame in frames:
            shape = self.letterbox(frame.image_bgr.shape[:2]).padded_hw
            if not groups or shape != last_shape:
                groups.append([])
            groups[-1].append(frame)
            last_shape = shape
        return groups

    def _result(
        self, frame: Frame, det: np.ndarray, lb: Letterbox, speed: dict[str, float], keep_image: bool
    ) -> Result:
        orig_shape = tuple(frame.image_bgr.shape[:2])
        return Result(
            boxes=Boxes(det, orig_shape),
            names=self.names,
            orig_img=frame.image_bgr if keep_image else None,
            orig_shape=orig_shape,
            path=frame.path,
            speed=dict(speed),
            input_shape=lb.padded_hw,
        )
