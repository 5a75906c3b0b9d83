"""The val loop: dataset images streamed through the shared engine, scored with pycocotools (and, with
`protocol=sg`, with the original's own metric), printed as an Ultralytics-style table and saved.

    from yolonas_cli.validator import validate
    metrics = validate(nas, make_args("val", data="coco8.yaml", batch=8))
    metrics.box.map, metrics.box.map50, metrics.box.maps, metrics.speed, metrics.results_dict

Images are decoded by `workers` threads at most `2 * batch` ahead of the model (bounded memory), in dataset
order; a corrupt image is reported and skipped. Batches hold consecutive images of one padded input shape
(all of them unless `rect=True`). Validation NMS is multi-label with `conf` 0.001, `iou` 0.7, `max_det` 300
and a pre-NMS top-k of 1024 (the original's predict value) by default.

`classes=` keeps only those classes on both sides: detections (in NMS) and ground truth; pycocotools is
restricted to their category ids.

Files in the run folder `runs/val/exp{N}` (always created): metrics.json (every printed number),
predictions.json (`save_json`, COCO results format: image_id, category_id, bbox [x, y, w, h] rounded to 3
decimals, score to 5 - exactly what was scored), BoxPR_curve.png and confusion_matrix.png (`plots`),
labels/<stem>.txt (`save_txt`: `class xc yc w h conf`, normalised).
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Union

import numpy as np

from yolonas_cli import console
from yolonas_cli.cfg import ValArgs
from yolonas_cli.datasets import CorruptSample, Dataset, Labels, Sample, load_dataset
from yolonas_cli.engine import Engine, EngineSettings
from yolonas_cli.errors import UsageError, YoloNasError
from yolonas_cli.letterbox import Letterbox, to_bgr_uint8
from yolonas_cli.metrics import (
    COCO_STAT_NAMES,
    BoxMetrics,
    CocoDetections,
    CocoGroundTruth,
    CocoScores,
    ConfusionMatrix,
    PRCurves,
    ValMetrics,
    coco_evaluate,
    match_image,
    plot_confusion_matrix,
    plot_pr_curve,
    pr_curves,
)
from yolonas_cli.ops import clip_boxes
from yolonas_cli.results import Boxes, Result
from yolonas_cli.sg_metric import SG_POSTPROCESS, SGDetectionMetric, sg_letterbox
from yolonas_cli.sinks import atomic_write_bytes, atomic_write_chunks, make_run_dir

if TYPE_CHECKING:
    from yolonas_cli.api import NAS

__all__ = ["HEADER", "VAL_PRE_NMS_TOP_K", "validate"]

VAL_PRE_NMS_TOP_K = 1024
HEADER = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)")
ROW = "%22s" + "%11i" * 2 + "%11.3g" * 4
Loaded = Union[Sample, CorruptSample]


# ---------------------------------------------------------------------------------------- public entry


def validate(nas: NAS, args: ValArgs) -> ValMetrics:
    """Evaluate `nas` on `args.data` (split `args.split`) and return the metrics; prints and saves as `args`
    says (console verbosity follows `args.verbose` for the duration of the call)."""
    previous = console.is_verbose()
    console.set_verbose(args.verbose)
    try:
        return Validator(nas, args).run()
    finally:
        console.set_verbose(previous)


def engine_settings(args: ValArgs) -> EngineSettings:
    """The engine settings of a val run (protocol=sg: the original's published post-processing)."""
    size: tuple[int, int] = (args.imgsz, args.imgsz) if isinstance(args.imgsz, int) else args.imgsz
    classes = tuple(args.classes) if args.classes is not None else None
    if args.protocol == "sg":
        sg = SG_POSTPROCESS
        return EngineSettings(imgsz=size, conf=sg.conf, iou=sg.iou, max_det=sg.max_det, classes=classes,
                              multi_label=True, pre_nms_top_k=sg.pre_nms_top_k, rect=False, batch=args.batch)
    return EngineSettings(imgsz=size, conf=args.conf, iou=args.iou, max_det=args.max_det, classes=classes,
                          multi_label=True, pre_nms_top_k=VAL_PRE_NMS_TOP_K, rect=args.rect, batch=args.batch)


class SGEngine(Engine):
    """The engine with the original's val preprocessing (`sg_letterbox`: truncated resize). Its boxes are not
    clipped to the image: the original's metric clips them to the network-input canvas itself (see
    `sg_metric`), and pycocotools gets them clipped to the image (`RunState.clipped`)."""

    clip_boxes = False

    def letterbox(self, orig_hw: tuple[int, int]) -> Letterbox:
        return sg_letterbox(orig_hw, self.settings.imgsz)


# ---------------------------------------------------------------------------------------- data feeding


def _load_safely(dataset: Dataset, index: int) -> Loaded:
    """Sample `index` with a BGR uint8 image, or the CorruptSample that says why it cannot be used."""
    try:
        sample = dataset.load(index)
        image = to_bgr_uint8(sample.image)
    except CorruptSample as exc:
        return exc
    except YoloNasError as exc:
        return CorruptSample(f"{dataset.files[index]}: {exc}")
    return Sample(sample.index, sample.path, sample.image_id, image, sample.labels)


def prefetch(load: Callable[[int], Loaded], count: int, workers: int, depth: int
             ) -> Generator[Loaded, None, None]:
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


def batches(items: Iterable[Loaded], size: int, shape_of: Callable[[np.ndarray], tuple[int, int]]
            ) -> Iterator[tuple[list[Sample], list[CorruptSample]]]:
    """Groups of at most `size` consecutive samples of one padded shape, each with the corrupt samples met
    since the previous group (the last group may be empty when only corrupt ones remain)."""
    group: list[Sample] = []
    skipped: list[CorruptSample] = []
    shape = None
    for item in items:
        if isinstance(item, CorruptSample):
            skipped.append(item)
            continue
        item_shape = shape_of(item.image)
        if group and (len(group) >= size or item_shape != shape):
            yield group, skipped
            group, skipped = [], []
        group.append(item)
        shape = item_shape
    if group or skipped:
        yield group, skipped


# ---------------------------------------------------------------------------------------- the loop


class Validator:
    """One val run: build everything from `args`, `run()` the loop, return `ValMetrics`."""

    def __init__(self, nas: NAS, args: ValArgs):
        self.args = args
        self.dataset = load_dataset(args.data, args.split)
        self.names = self.dataset.names
        if len(nas.names) != self.dataset.nc:
            raise UsageError(f"data={args.data} has {self.dataset.nc} classes but the model has "
                             f"{len(nas.names)}: use a dataset labelled with the model's classes")
        self.sg = args.protocol == "sg"
        self._announce_protocol()
        settings = engine_settings(args)
        engine = nas.make_engine(settings, args.device, args.half)
        if self.sg and getattr(engine.backend, "end2end", False):
            raise UsageError("protocol=sg runs the original's own NMS, but this exported model has NMS in its "
                             "graph: export it without nms=True, or use protocol=coco")
        self.engine = SGEngine(engine.backend, engine.names, settings) if self.sg else engine
        self.run_dir = make_run_dir(args.project, args.name, args.exist_ok, "val", create=True)
        self.state = RunState(self.dataset, args.classes, self.sg)

    def _announce_protocol(self) -> None:
        a = self.args
        if not self.sg:
            return
        console.info("protocol=sg: the original's evaluation (longest side 636 truncated, centre pad 640, "
                     "conf 0.03, NMS IoU 0.65, top-k 1000, max 300, multi-label); conf, iou, max_det and "
                     "rect are not used")
        if a.imgsz not in (640, (640, 640)):
            console.warn(f"protocol=sg was published at imgsz=640; running it at imgsz={a.imgsz}")

    def _shape_of(self, image: np.ndarray) -> tuple[int, int]:
        backend, s = self.engine.backend, self.engine.settings
        if self.sg:
            return s.imgsz
        imgsz = backend.fixed_input or s.imgsz
        rect = s.rect and backend.fixed_input is None
        return Letterbox.for_image(image.shape[:2], imgsz, rect=rect).padded_hw

    def run(self) -> ValMetrics:
        """Stream the dataset through the engine, then score, print and save."""
        a = self.args
        loaded = prefetch(lambda i: _load_safely(self.dataset, i), len(self.dataset), a.workers,
                          max(2 * a.batch, 4))
        with contextlib.closing(loaded), console.count_progress(HEADER, len(self.dataset)) as advance:
            for group, skipped in batches(loaded, a.batch, self._shape_of):
                for bad in skipped:
                    console.warn(f"skipping a corrupt image: {bad}")
                if group:
                    outputs = self.engine.run_batch([s.image for s in group])
                    for sample, (det, lb, _) in zip(group, outputs):
                        self.state.add(sample, det, lb)
                        self._save_txt(sample, det)
                self.state.skipped += len(skipped)
                advance(len(group) + len(skipped))
        if not self.state.seen:
            raise YoloNasError(f"none of the {len(self.dataset)} images of split '{a.split}' of "
                               f"{self.dataset.yaml_path.name} could be read")
        return self._finish()

    def _save_txt(self, sample: Sample, det: np.ndarray) -> None:
        if not self.args.save_txt:
            return
        det = self.state.clipped(det, sample.hw)
        result = Result(Boxes(det, sample.hw), self.names, None, sample.hw, str(sample.path))
        result.save_txt(self.run_dir / "labels" / f"{self.state.stem(sample)}.txt", save_conf=True)

    def _finish(self) -> ValMetrics:
        a, st = self.args, self.state
        if a.save_json:
            atomic_write_chunks(self.run_dir / "predictions.json", st.detections.json_chunks())
        scores = st.evaluate()
        curves = st.curves()
        metrics = ValMetrics(box=box_metrics(st, scores, curves), speed=self._speed(), names=self.names,
                             seen=st.seen, skipped=st.skipped, protocol=a.protocol, save_dir=self.run_dir,
                             coco={k: float(v) for k, v in zip(COCO_STAT_NAMES, scores.stats)})
        if st.sg_metric is not None:
            metrics.sg = st.sg_metric.compute().as_dict()
        print_metrics(metrics, verbose=a.verbose and len(self.names) > 1)
        if a.save_json and scores.summary:
            console.info(scores.summary.rstrip())
        self._save(metrics, curves)
        console.info(f"Results saved to {self.run_dir}")
        return metrics

    def _speed(self) -> dict[str, float]:
        per = self.engine.timer.per_image()
        return {"preprocess": per["preprocess"], "inference": per["inference"], "loss": 0.0,
                "postprocess": per["postprocess"]}

    def _save(self, metrics: ValMetrics, curves: PRCurves) -> None:
        if self.args.plots:
            box = metrics.box
            plot_pr_curve(self.run_dir / "BoxPR_curve.png", curves, self.names, box.ap50, box.map50)
            plot_confusion_matrix(self.run_dir / "confusion_matrix.png", self.state.confusion.matrix,
                                  self.names)
        atomic_write_bytes(self.run_dir / "metrics.json", json.dumps(metrics.to_dict(), indent=2).encode())


class RunState:
    """Everything accumulated over the images of one run (see `add`)."""

    def __init__(self, dataset: Dataset, classes: list[int] | None, sg: bool):
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
        self.confusion = ConfusionMatrix(self.nc)
        self.sg_metric = SGDetectionMetric(self.nc) if sg else None
        self._unique_stems = len({p.stem for p in dataset.files}) == len(dataset.files)

    def stem(self, sample: Sample) -> str:
        """A file stem unique in the run (the image's stem, or its id when stems repeat)."""
        return sample.path.stem if self._unique_stems else str(sample.image_id).replace("/", "__")

    @staticmethod
    def clipped(det: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """Detections [K, 6] with boxes clipped to the image (a copy)."""
        out = np.array(det, dtype=np.float32).reshape(-1, 6)
        out[:, :4] = clip_boxes(out[:, :4], hw)
        return out

    def add(self, sample: Sample, det: np.ndarray, lb: Letterbox) -> None:
        """Score one image: det [K, 6] in original pixels from the engine (unclipped with protocol=sg)."""
        labels = sample.labels.only_classes(self.classes)
        boxes = self.clipped(det, sample.hw)
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

    def evaluate(self) -> CocoScores:
        """pycocotools on the predictions (zeros, with a warning, when there are no labels)."""
        if not self.instances.sum():
            console.warn(f"no labels found in the {self.dataset.split} set, "
                         "cannot compute metrics without labels")
            return CocoScores(np.zeros(len(COCO_STAT_NAMES)), {}, {})
        gt = self.dataset.coco.data if self.dataset.coco is not None else self.gt.to_dict()
        return coco_evaluate(gt, self.detections, self.img_ids, self._cat_ids())

    def curves(self) -> PRCurves:
        """P, R and PR curves at IoU 0.5 over every image so far."""
        return pr_curves(_cat(self.tp, bool), _cat(self.conf, np.float64), _cat(self.cls, np.int64),
                         _cat(self.ignored, bool), self.instances)


def sg_targets(labels: Labels, lb: Letterbox) -> tuple[np.ndarray, np.ndarray]:
    """(targets, crowd boxes) [M, 5] rows (x1, y1, x2, y2, cls) in network-input pixels, as the original's
    metric takes them."""
    rows = np.concatenate([np.asarray(lb.to_input(labels.boxes)).reshape(-1, 4), labels.cls[:, None]], 1)
    return rows[~labels.crowd], rows[labels.crowd]


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def box_metrics(state: RunState, scores: CocoScores, curves: PRCurves) -> BoxMetrics:
    """The `BoxMetrics` of a run: COCOeval stats (negative = undefined -> 0) and per-class AP, P and R."""
    stat = {name: max(float(v), 0.0) for name, v in zip(COCO_STAT_NAMES, scores.stats)}
    ids = state.dataset.category_ids
    classes = curves.classes
    ap = np.array([max(scores.ap.get(ids[c], 0.0), 0.0) for c in classes])
    ap50 = np.array([max(scores.ap50.get(ids[c], 0.0), 0.0) for c in classes])
    p, r = curves.precision, curves.recall
    return BoxMetrics(nc=state.nc, map=stat["mAP50-95"], map50=stat["mAP50"], map75=stat["mAP75"],
                      map_small=stat["mAP_small"], map_medium=stat["mAP_medium"], map_large=stat["mAP_large"],
                      mp=float(p.mean()) if len(p) else 0.0, mr=float(r.mean()) if len(r) else 0.0,
                      ap_class_index=classes, p=p, r=r, ap50=ap50, ap=ap, images=state.images,
                      instances=state.instances, best_conf=curves.best_conf)


# ---------------------------------------------------------------------------------------- printing


def table_lines(metrics: ValMetrics, per_class: bool) -> list[str]:
    """The Ultralytics-style table: header, the "all" row, then one row per class with targets."""
    b = metrics.box
    lines = [HEADER, ROW % ("all", metrics.seen, int(b.instances.sum()), b.mp, b.mr, b.map50, b.map)]
    if per_class:
        for i, c in enumerate(b.ap_class_index):
            counts = (metrics.names[int(c)], int(b.images[c]), int(b.instances[c]))
            lines.append(ROW % (*counts, *b.class_result(i)))
    return lines


def print_metrics(metrics: ValMetrics, verbose: bool) -> None:
    """Table on stdout; pycocotools' extra numbers, the original's metric and the speed line on stderr."""
    if not console.is_verbose():
        return
    for line in table_lines(metrics, verbose):
        console.out_console.print(line, markup=False, highlight=False, emoji=False)
    b, s = metrics.box, metrics.speed
    console.info(f"pycocotools: mAP50-95 {b.map:.4f}, mAP50 {b.map50:.4f}, mAP75 {b.map75:.4f}, "
                 f"small {b.map_small:.4f}, medium {b.map_medium:.4f}, large {b.map_large:.4f}")
    if metrics.sg is not None:
        print_sg_metrics(metrics)
    console.info(f"Speed: {s['preprocess']:.1f}ms preprocess, {s['inference']:.1f}ms inference, "
                 f"{s['loss']:.1f}ms loss, {s['postprocess']:.1f}ms postprocess per image")


def print_sg_metrics(metrics: ValMetrics) -> None:
    """protocol=sg: the original's mAP beside pycocotools', its own P, R and F1, and the table's Ultralytics-style
    P and R, each labelled with its definition."""
    b, sg = metrics.box, metrics.sg or {}
    console.info(f"protocol=sg: the original's DetectionMetrics mAP50-95 {sg['mAP50-95']:.4f}, "
                 f"mAP50 {sg['mAP50']:.4f} | pycocotools on the same detections mAP50-95 "
                 f"{b.map:.4f}, mAP50 {b.map50:.4f}")
    console.info(f"protocol=sg: the original's P {sg['precision']:.4f}, R {sg['recall']:.4f}, F1 {sg['f1']:.4f} "
                 f"(its definition: confidence >= {sg['score_threshold']:g}, mean over classes and IoU 0.50:0.95), "
                 f"its best score threshold {sg['best_score_threshold']:.2f}")
    console.info(f"Ultralytics-style P {b.mp:.4f}, R {b.mr:.4f} (the table's: IoU 0.5, at the best-F1 confidence "
                 f"{b.best_conf:.3f})")
