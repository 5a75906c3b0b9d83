"""The one validation loop: a dataset streamed through an engine and scored. `yolo-nas val`, the benchmark's
mAP column and the INT8 cost report all run it.

    evaluation = evaluate(engine, load_dataset("coco8.yaml"))
    evaluation.metrics.box.map, evaluation.metrics.box.map50, evaluation.metrics.speed

Images are decoded by `workers` threads at most `2 * batch` ahead of the model (bounded memory), in dataset
order; a corrupt image is reported and skipped. Batches hold consecutive images of one input shape
(`engine.batching.shape_batches`; all of them unless `rect`). Each image's detections are scored as they come:
matched at IoU 0.5 for P/R (`matching`, `curves`), counted in the confusion matrix, kept compactly for
pycocotools (`coco`), and, with `original_metric`, given to the original's metric (`sg`) in input pixels.

`classes` keeps only those classes of the ground truth (the engine's settings filter the detections);
pycocotools is then restricted to their category ids.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Optional, Union

import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.data.datasets.dataset import Dataset, ImageTruth, Sample
from yolonas_cli.data.datasets.labels import CorruptSample, Labels
from yolonas_cli.engine.batching import shape_batches
from yolonas_cli.engine.engine import Engine, StageTimer
from yolonas_cli.engine.letterbox import Letterbox, to_bgr_uint8
from yolonas_cli.engine.ops import clip_boxes
from yolonas_cli.metrics.coco import COCO_STAT_NAMES, CocoDetections, CocoGroundTruth, CocoScores, coco_evaluate
from yolonas_cli.metrics.confusion import ConfusionMatrix
from yolonas_cli.metrics.curves import PRCurves, pr_curves
from yolonas_cli.metrics.matching import match_image
from yolonas_cli.metrics.sg import SGDetectionMetric
from yolonas_cli.metrics.val_metrics import BoxMetrics, ValMetrics

Loaded = Union[Sample, CorruptSample]
Image = Union[Sample, ImageTruth]  # scoring needs its path, image_id, hw and labels, not its pixels
Detected = Union[tuple[Image, np.ndarray, Letterbox], CorruptSample]
OnImage = Optional[Callable[[Image, np.ndarray], None]]


@dataclass(frozen=True)
class Evaluation:
    """What one run of the loop gives: the metrics, and what the val mode saves besides them."""

    metrics: ValMetrics
    scores: CocoScores  # pycocotools' numbers and its printed summary
    curves: PRCurves  # P, R and PR curves at IoU 0.5 (the PR plot)
    confusion: ConfusionMatrix
    detections: CocoDetections  # every image's detections (predictions.json)


def evaluate(
    engine: Engine,
    dataset: Dataset,
    *,
    classes: list[int] | None = None,
    original_metric: bool = False,
    workers: int = 0,
    on_image: OnImage = None,
    title: str = "val",
) -> Evaluation:
    """Run `engine` over every image of `dataset` and score its detections (see the module docstring).

    `on_image(sample, detections)` is called for each image (detections float32 [K, 6] in original pixels,
    unclipped with the original's val pipeline); `title` names the progress bar. Raises YoloNasError when no
    image could be read."""
    loaded = prefetch(partial(load_safely, dataset), len(dataset), workers, max(2 * engine.settings.batch, 4))
    with contextlib.closing(loaded):
        detected = detect(engine, loaded)
        return score(
            dataset,
            detected,
            engine.timer,
            classes=classes,
            original_metric=original_metric,
            on_image=on_image,
            title=title,
        )


def score(
    dataset: Dataset,
    detected: Iterable[Detected],
    timer: StageTimer,
    *,
    classes: list[int] | None = None,
    original_metric: bool = False,
    on_image: OnImage = None,
    title: str = "val",
) -> Evaluation:
    """Score the detections of the images of `dataset`, given in dataset order as (image, detections [K, 6] in
    original pixels, its letterbox), a CorruptSample for each image left out. `timer` gives the speed (read at
    the end). The loop of `evaluate`, and of runs whose detections come from elsewhere (Ray workers)."""
    tally = Accumulator(dataset, classes, original_metric)
    with console.count_progress(title, len(dataset)) as advance:
        for item in detected:
            advance(1)
            if isinstance(item, CorruptSample):
                console.warn(f"skipping a corrupt image: {item}")
                tally.skipped += 1
                continue
            image, det, lb = item
            tally.add(image, det, lb)
            if on_image is not None:
                on_image(image, det)
    if not tally.seen:
        raise YoloNasError(
            f"none of the {len(dataset)} images of split '{dataset.split}' of {dataset.yaml_path.name} could be read"
        )
    return tally.finish(timer)


def detect(engine: Engine, loaded: Iterable[Loaded]) -> Iterator[Detected]:
    """The engine run over loaded samples in batches of one input shape (`shape_batches`), in order; each
    CorruptSample is passed on (ahead of the batch it was found in)."""
    corrupt: list[CorruptSample] = []

    def samples() -> Iterator[Sample]:
        for item in loaded:
            if isinstance(item, CorruptSample):
                corrupt.append(item)
            else:
                yield item

    for group in shape_batches(samples(), engine.settings.batch, lambda sample: engine.input_shape(sample.image)):
        yield from corrupt
        corrupt.clear()
        for sample, (det, lb, _) in zip(group, engine.run_batch([s.image for s in group])):
            yield sample, det, lb
    yield from corrupt


# ---------------------------------------------------------------------------------------- data feeding


def load_safely(dataset: Dataset, index: int) -> Loaded:
    """Sample `index` with a BGR uint8 image, or the CorruptSample that says why it cannot be used."""
    try:
        sample = dataset.load(index)
        image = to_bgr_uint8(sample.image)
    except CorruptSample as exc:
        return exc
    except YoloNasError as exc:
        return CorruptSample(f"{dataset.files[index]}: {exc}")
    return Sample(sample.index, sample.path, sample.image_id, image, sample.labels)


def prefetch(load: Callable[[int], Loaded], count: int, workers: int, depth: int) -> Generator[Loaded, None, None]:
    """`load(0) ... load(count - 1)` in order, computed by `workers` threads at most `depth` ahead
    (workers=0: in the calling thread)."""
    if workers <= 0:
        yield from (load(i) for i in range(count))
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="val-load")
    try:
        pending: deque = deque(pool.submit(load, i) for i in range(min(depth, count)))
        upcoming = iter(range(len(pending), count))
        while pending:
            future = pending.popleft()
            nxt = next(upcoming, None)
            if nxt is not None:
                pending.append(pool.submit(load, nxt))
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------- scoring


def clipped(det: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Detections [K, 6] with boxes clipped to an image of size `hw` (a float32 copy)."""
    out = np.array(det, dtype=np.float32).reshape(-1, 6)
    out[:, :4] = clip_boxes(out[:, :4], hw)
    return out


class Accumulator:
    """Everything scored over the images of one run (see `add`), turned into an `Evaluation` by `finish`."""

    def __init__(self, dataset: Dataset, classes: list[int] | None, original_metric: bool):
        self.dataset, self.classes = dataset, classes
        self.nc = dataset.nc
        self.seen = self.skipped = 0
        self.img_ids: list[Any] = []
        self.detections = CocoDetections(dataset.category_ids)
        self.gt = CocoGroundTruth(dataset.names, dataset.category_ids)
        self.instances = np.zeros(self.nc, np.int64)
        self.images = np.zeros(self.nc, np.int64)
        self.tp: list[np.ndarray] = []
        self.ignored: list[np.ndarray] = []
        self.conf: list[np.ndarray] = []
        self.cls: list[np.ndarray] = []
        self.confusion = ConfusionMatrix(self.nc, names=dataset.names)
        self.sg_metric = SGDetectionMetric(self.nc) if original_metric else None

    def add(self, sample: Image, det: np.ndarray, lb: Letterbox) -> None:
        """Score one image: det [K, 6] in original pixels from the engine (unclipped with protocol=sg)."""
        labels = sample.labels.only_classes(self.classes)
        boxes = clipped(det, sample.hw)
        self.seen += 1
        self.img_ids.append(sample.image_id)
        self.detections.add(sample.image_id, boxes)
        if self.dataset.coco is None:
            self.gt.add(sample.image_id, sample.path.name, sample.hw, labels)
        tp, ignored = match_image(boxes, labels)
        self.tp.append(tp[:, 0])
        self.ignored.append(ignored[:, 0])
        self.conf.append(boxes[:, 4].astype(np.float64))
        self.cls.append(boxes[:, 5].astype(np.int64))
        counts = np.bincount(labels.cls[~labels.crowd], minlength=self.nc)[: self.nc]
        self.instances += counts
        self.images += counts > 0
        self.confusion.update(boxes, labels)
        if self.sg_metric is not None:
            targets, crowd = sg_targets(labels, lb)
            self.sg_metric.update(np.asarray(lb.to_input(np.asarray(det, np.float64))), targets, crowd, lb.padded_hw)

    def _cat_ids(self) -> list[int] | None:
        if self.classes is None:
            return None
        return [self.dataset.category_ids[c] for c in self.classes if 0 <= c < self.nc]

    def coco_scores(self) -> CocoScores:
        """pycocotools on the predictions (zeros, with a warning, when there are no labels)."""
        if not self.instances.sum():
            console.warn(f"no labels found in the {self.dataset.split} set, cannot compute metrics without labels")
            return CocoScores(np.zeros(len(COCO_STAT_NAMES)), {}, {})
        gt = self.dataset.coco.data if self.dataset.coco is not None else self.gt.to_dict()
        return coco_evaluate(gt, self.detections, self.img_ids, self._cat_ids())

    def curves(self) -> PRCurves:
        """P, R and PR curves at IoU 0.5 over every image so far."""
        return pr_curves(
            _cat(self.tp, bool),
            _cat(self.conf, np.float64),
            _cat(self.cls, np.int64),
            _cat(self.ignored, bool),
            self.instances,
        )

    def finish(self, timer: StageTimer) -> Evaluation:
        """Score the run: pycocotools, the curves, the original's metric; speed from the engine's timer."""
        scores, curves = self.coco_scores(), self.curves()
        per = timer.per_image()
        metrics = ValMetrics(
            box=self.box_metrics(scores, curves),
            speed={
                "preprocess": per["preprocess"],
                "inference": per["inference"],
                "loss": 0.0,
                "postprocess": per["postprocess"],
            },
            names=self.dataset.names,
            seen=self.seen,
            skipped=self.skipped,
            protocol="sg" if self.sg_metric is not None else "coco",
            coco={k: float(v) for k, v in zip(COCO_STAT_NAMES, scores.stats)},
            sg=self.sg_metric.compute().as_dict() if self.sg_metric is not None else None,
            confusion_matrix=self.confusion,
        )
        return Evaluation(metrics, scores, curves, self.confusion, self.detections)

    def box_metrics(self, scores: CocoScores, curves: PRCurves) -> BoxMetrics:
        """COCOeval stats (negative = undefined -> 0) and per-class AP, P and R."""
        stat = {name: max(float(v), 0.0) for name, v in zip(COCO_STAT_NAMES, scores.stats)}
        ids = self.dataset.category_ids
        classes = curves.classes
        ap = np.array([max(scores.ap.get(ids[c], 0.0), 0.0) for c in classes])
        ap50 = np.array([max(scores.ap50.get(ids[c], 0.0), 0.0) for c in classes])
        no_ap = np.zeros(10)
        all_ap = np.array([np.maximum(scores.ap_iou.get(ids[c], no_ap), 0.0) for c in classes]).reshape(-1, 10)
        p, r = curves.precision, curves.recall
        return BoxMetrics(
            nc=self.nc,
            map=stat["mAP50-95"],
            map50=stat["mAP50"],
            map75=stat["mAP75"],
            map_small=stat["mAP_small"],
            map_medium=stat["mAP_medium"],
            map_large=stat["mAP_large"],
            mp=float(p.mean()) if len(p) else 0.0,
            mr=float(r.mean()) if len(r) else 0.0,
            ap_class_index=classes,
            p=p,
            r=r,
            ap50=ap50,
            ap=ap,
            images=self.images,
            instances=self.instances,
            best_conf=curves.best_conf,
            f1=curves.f1_at_best,
            all_ap=all_ap,
            pr_curves=curves,
        )


def sg_targets(labels: Labels, lb: Letterbox) -> tuple[np.ndarray, np.ndarray]:
    """(targets, crowd boxes) [M, 5] rows (x1, y1, x2, y2, cls) in network-input pixels, as the original's
    metric takes them."""
    rows = np.concatenate([np.asarray(lb.to_input(labels.boxes)).reshape(-1, 4), labels.cls[:, None]], 1)
    return rows[~labels.crowd], rows[labels.crowd]


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)
