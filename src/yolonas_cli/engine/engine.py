"""The one inference engine every mode uses: preprocess -> infer -> postprocess, each stage timed.

Preprocessing and postprocessing reproduce the original YOLO-NAS predict pipeline (facts doc, section 6):
longest side to imgsz*636/640 (OpenCV linear), centre padding with 114, RGB /255; multi-label
class-aware NMS after a strict confidence filter and a pre-NMS top-k of `PRE_NMS_TOP_K`; boxes mapped back
by the same `Letterbox` that made the input. Saving and drawing are not done here (see `modes.predict`).

Variants are data, not subclasses: a `Pipeline` says how an image is planned into the input and turned into
it and whether boxes are clipped (`PREDICT`; `ORIGINAL_VAL`, the original's val protocol; the benchmark's
baseline), and the backend says whether its graph already ends with NMS (`Backend.graph_nms`), in which case
postprocessing only filters and maps back. The stages stay the same.

Sliced inference (`EngineSettings.slicing`, see `engine.slicing`): each image is cut into tiles that stream
through the same three stages in batches of up to `settings.batch` tiles (one image at a time, so memory
holds one image, one batch of tiles and the tiles' detections, whatever the image size); each tile's
detections are moved to image pixels, merged across tiles, and the best `max_det` are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from yolonas_cli.core import console
from yolonas_cli.data.frames import Frame
from yolonas_cli.data.results import Boxes, Result
from yolonas_cli.engine.backend import Backend, GraphNMS
from yolonas_cli.engine.batching import shape_batches
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.engine.postprocess import PRE_NMS_TOP_K, filter_detections, postprocess_batch
from yolonas_cli.engine.slicing import SliceConfig, TileMerger, iter_tiles, plan_tiles

STAGES = ("preprocess", "inference", "postprocess")


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
    pre_nms_top_k: int = PRE_NMS_TOP_K
    rect: bool = False
    batch: int = 1  # images per batch; with slicing, tiles per batch
    slicing: SliceConfig | None = None  # sliced inference: tiles, overlap, merging (None: whole images)


@dataclass(frozen=True)
class Pipeline:
    """The hooks that make a variant of the pipeline.

    truncate_resize: the letterbox truncates the resized size (the original's val protocol) instead of
        rounding it (its predict);
    clip_boxes: detections mapped back to the image are clipped to it (the original's predict does not clip;
        its val metric clips to the network-input canvas itself, see `metrics.sg`);
    to_input: (letterbox, BGR image) -> network input float32 [3, H, W] (default: `Letterbox.apply`).
    """

    truncate_resize: bool = False
    clip_boxes: bool = True
    to_input: Callable[[Letterbox, np.ndarray], np.ndarray] = Letterbox.apply


PREDICT = Pipeline()
ORIGINAL_VAL = Pipeline(truncate_resize=True, clip_boxes=False)


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

    The first batch is preceded by one untimed backend call at its input shape (`warm_up`): a runtime's
    one-time set-up (kernel selection, memory plans, graph compilation) is not reported as inference time.
    No stage changes a process-wide setting (thread counts are set once, see `core.cpus`), so engines may run
    in several threads at once."""

    def __init__(self, backend: Backend, names: dict[int, str], settings: EngineSettings, pipeline: Pipeline = PREDICT):
        self.backend = backend
        self.names = names
        self.settings = settings
        self.pipeline = pipeline
        self.timer = StageTimer()
        self.warm = False
        if backend.graph_nms is not None:
            _warn_unhonoured(settings, backend.graph_nms)

    def with_settings(self, settings: EngineSettings) -> Engine:
        """A new engine on the same backend and pipeline with other settings (and its own timer)."""
        return Engine(self.backend, self.names, settings, self.pipeline)

    def letterbox(self, orig_hw: tuple[int, int]) -> Letterbox:
        """The letterbox of an image of size (H, W): at the static input of an exported model, else at imgsz
        (padded to a stride multiple only with rect)."""
        fixed = self.backend.fixed_input
        return Letterbox.for_image(
            orig_hw,
            fixed or self.settings.imgsz,
            rect=self.settings.rect and fixed is None,
            truncate=self.pipeline.truncate_resize,
        )

    def input_shape(self, image: np.ndarray) -> tuple[int, int]:
        """(H, W) of the network input an image becomes (images batch together when these agree)."""
        return self.letterbox(image.shape[:2]).padded_hw

    # --- stages -------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray]) -> Prepared:
        """BGR (or grey/BGRA/16-bit) images of one padded shape -> network input. See `Letterbox`."""
        boxes = tuple(self.letterbox(img.shape[:2]) for img in images)
        inputs = np.stack([self.pipeline.to_input(lb, img) for lb, img in zip(boxes, images)])
        return Prepared(inputs, boxes)

    def infer(self, prepared: Prepared):
        """-> the backend's raw outputs (see `engine.backend`), on the backend's device."""
        return self.backend(prepared.inputs)

    def postprocess(self, raw, letterboxes: Sequence[Letterbox], max_det: int | None = None) -> list[np.ndarray]:
        """Raw outputs -> per image float32 [K,6] (x1, y1, x2, y2, conf, class) in original pixels; at most
        `max_det` per image (None: `settings.max_det`).

        NMS runs for the whole batch on the backend's device; the detections come to the host once, at the end."""
        s = self.settings
        max_det = s.max_det if max_det is None else max_det
        if self.backend.graph_nms is None:
            padded, counts = postprocess_batch(
                raw[0],
                raw[1],
                conf=s.conf,
                iou=s.iou,
                max_det=max_det,
                pre_nms_top_k=s.pre_nms_top_k,
                multi_label=s.multi_label,
                agnostic=s.agnostic_nms,
                classes=s.classes,
            )
            rows, sizes = padded.cpu().numpy(), counts.tolist()
            detections = [det[:n] for det, n in zip(rows, sizes)]
        else:  # the graph ran NMS: only the stricter conf, classes and max_det are left to apply
            kept = filter_detections(raw, conf=s.conf, max_det=max_det, classes=s.classes)
            detections = [det.cpu().numpy() for det in kept]
        return [
            np.asarray(lb.to_original(det, clip=self.pipeline.clip_boxes), dtype=np.float32)
            for lb, det in zip(letterboxes, detections)
        ]

    def warm_up(self, shape: tuple[int, ...]) -> None:
        """One untimed backend call on zeros of the input shape [B, 3, H, W] (then `warm` is True)."""
        self.backend(np.zeros(shape, dtype=np.float32))
        self.backend.synchronize()
        self.warm = True

    # --- loop ---------------------------------------------------------------------------------------
    @property
    def images_per_batch(self) -> int:
        """Images a caller should hand to `run_batch` at once: `settings.batch`, or 1 when slicing (the batch
        is then made of one image's tiles)."""
        return 1 if self.settings.slicing is not None else self.settings.batch

    def run_batch(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, Letterbox, dict[str, float]]]:
        """All three stages on images that share a padded shape; returns (detections, letterbox, speed ms).

        With slicing, each image is run tile by tile (`run_sliced`), whatever its shape. The first call warms the
        backend up first, outside the timing."""
        if self.settings.slicing is not None:
            return [self.run_sliced(image) for image in images]
        detections, letterboxes, totals, shape = self._stages(images)
        self._account(totals, len(images), shape)
        speed = {stage: ms / len(images) for stage, ms in totals.items()}
        return [(det, lb, dict(speed)) for det, lb in zip(detections, letterboxes)]

    def run_sliced(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox, dict[str, float]]:
        """Sliced inference on one image: its tiles (`slicing.iter_tiles`, streamed) in batches of up to
        `settings.batch` tiles of one input shape, detections moved to image pixels and merged
        (`slicing.TileMerger`), the best `max_det` kept. `max_det` limits the merged detections only: a tile
        keeps every box its NMS leaves (at most `pre_nms_top_k`), since merging may remove better ones.

        Returns (detections float32 [K, 6] in image pixels, the letterbox of the first tile (what the network
        saw), speed: ms per stage summed over the tiles). UsageError when the tile is larger than the image."""
        config = self.settings.slicing
        assert config is not None
        merger = TileMerger(config)
        totals = dict.fromkeys(STAGES, 0.0)
        first: Letterbox | None = None
        shape: tuple[int, ...] = ()
        tiles = iter_tiles(image, config)
        for group in shape_batches(tiles, self.settings.batch, lambda tile: self.input_shape(tile[1])):
            pixels = [tile_pixels for _, tile_pixels in group]
            detections, letterboxes, spent, shape = self._stages(pixels, max_det=self.settings.pre_nms_top_k)
            first = first or letterboxes[0]
            for (tile, _), det in zip(group, detections):
                merger.add(tile, torch.from_numpy(det))
            for stage in STAGES:
                totals[stage] += spent[stage]
        clock = time.perf_counter()
        merged = merger.result()[: self.settings.max_det].numpy().astype(np.float32)
        totals["postprocess"] += (time.perf_counter() - clock) * 1e3
        self._account(totals, 1, shape)
        assert first is not None  # a plan has at least one tile
        return merged, first, totals

    def tile_count(self, image_hw: tuple[int, int]) -> int:
        """How many tiles sliced inference runs on an image of (H, W) (1 without slicing)."""
        config = self.settings.slicing
        return 1 if config is None else len(plan_tiles(image_hw, config))

    def _stages(
        self, images: Sequence[np.ndarray], max_det: int | None = None
    ) -> tuple[list[np.ndarray], tuple[Letterbox, ...], dict[str, float], tuple[int, ...]]:
        """The three stages on images of one padded shape: (detections [K, 6] in the images' pixels, at most
        `max_det` each (None: `settings.max_det`), their letterboxes, ms per stage for the whole batch, the
        network input's shape). The first call warms the backend up first, outside the timing."""
        if not self.warm:
            self.warm_up((len(images), 3, *self.input_shape(images[0])))
        clock = time.perf_counter()
        prepared = self.preprocess(images)
        t_pre = time.perf_counter()
        raw = self.infer(prepared)
        self.backend.synchronize()
        t_inf = time.perf_counter()
        detections = self.postprocess(raw, prepared.letterboxes, max_det)
        t_post = time.perf_counter()
        totals = {
            "preprocess": (t_pre - clock) * 1e3,
            "inference": (t_inf - t_pre) * 1e3,
            "postprocess": (t_post - t_inf) * 1e3,
        }
        return detections, prepared.letterboxes, totals, tuple(prepared.inputs.shape)

    def _account(self, totals: dict[str, float], images: int, shape: tuple[int, ...]) -> None:
        """Add `images` images that took `totals` ms per stage (in all) to the timer."""
        for stage, ms in totals.items():
            self.timer.totals[stage] += ms
        self.timer.images += images
        self.timer.last_shape = shape

    def stream(self, frames: Iterable[Frame], keep_images: bool = True) -> Iterator[tuple[Frame, Result]]:
        """Yield (frame, result) in order, running batches of up to `images_per_batch` frames of one input
        shape (`batching.shape_batches`); streams stay streams: at most one batch of frames is held."""
        for group in shape_batches(frames, self.images_per_batch, lambda f: self.input_shape(f.image_bgr)):
            outputs = self.run_batch([f.image_bgr for f in group])
            for frame, (det, lb, speed) in zip(group, outputs):
                yield frame, self._result(frame, det, lb, speed, keep_images)

    def _result(
        self, frame: Frame, det: np.ndarray, lb: Letterbox, speed: dict[str, float], keep_image: bool
    ) -> Result:
        orig_shape = tuple(frame.image_bgr.shape[:2])
        return Result(
            boxes=Boxes(torch.from_numpy(det).to(self.backend.device), orig_shape),  # on the model's device
            names=self.names,
            orig_img=frame.image_bgr if keep_image else None,
            orig_shape=orig_shape,
            path=frame.path,
            speed=dict(speed),
            input_shape=lb.padded_hw,
        )


def _warn_unhonoured(settings: EngineSettings, graph: GraphNMS) -> None:
    """A graph with NMS inside was exported with fixed conf, iou and max_det: a higher conf, a lower max_det
    and classes are applied after it; settings it cannot honour (lower conf, another iou, agnostic NMS) are
    warned about once and the graph's values are used."""
    problems = []
    if graph.conf is not None and settings.conf < graph.conf:
        problems.append(f"conf={settings.conf:g} (the model keeps score > {graph.conf:g})")
    if graph.iou is not None and abs(settings.iou - graph.iou) > 1e-9:
        problems.append(f"iou={settings.iou:g} (the model uses {graph.iou:g})")
    if settings.agnostic_nms:
        problems.append("agnostic_nms=True (the model's NMS is class-aware)")
    if problems:
        console.warn(f"this model has NMS inside, exported with fixed settings: ignoring {', '.join(problems)}")
