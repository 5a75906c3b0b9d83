"""`yolo-nas val`: a model validated on a dataset YAML by the one validation loop (`metrics.evaluate`), printed
as an Ultralytics-style table and saved.

    from yolonas_cli.modes.val import validate
    metrics = validate(model, make_args("val", data="coco8.yaml", batch=8))
    metrics.box.map, metrics.box.map50, metrics.box.maps, metrics.speed, metrics.results_dict

Validation NMS is multi-label with `conf` 0.001, `iou` 0.7, `max_det` 300 and a pre-NMS top-k of
`PRE_NMS_TOP_K` (the original's predict value) by default. `protocol=sg` also runs the original's published
evaluation: its val letterbox (`engine.ORIGINAL_VAL`), its post-processing (`metrics.sg.SG_POSTPROCESS`) and its
metric, printed next to pycocotools' numbers on the same detections.

`slice=` validates sliced inference (`engine.slicing`: tiles batched through the engine, merged per image) with
the coco protocol; the original's protocol has no tiles, so `protocol=sg` with `slice=` is a usage error.

`classes=` keeps only those classes on both sides: detections (in NMS) and ground truth; pycocotools is
restricted to their category ids.

Files in the run folder `runs/detect/val{N}` (always created): metrics.json (every printed number),
predictions.json (`save_json`, COCO results format: image_id, category_id, bbox [x, y, w, h] rounded to 3
decimals, score to 5 - exactly what was scored), BoxPR_curve.png and confusion_matrix.png (`plots`),
labels/<stem>.txt (`save_txt`: `class xc yc w h conf`, normalised).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from yolonas_cli.cfg import ValArgs, defaults, slice_config
from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError
from yolonas_cli.core.files import atomic_write_bytes, atomic_write_chunks
from yolonas_cli.core.sizes import imgsz_pair
from yolonas_cli.data.datasets.dataset import Dataset, ImageTruth, Sample, load_dataset
from yolonas_cli.data.results import Boxes, Result
from yolonas_cli.data.sinks import make_run_dir
from yolonas_cli.detector import Detector
from yolonas_cli.engine.engine import ORIGINAL_VAL, PREDICT, EngineSettings
from yolonas_cli.engine.postprocess import PRE_NMS_TOP_K
from yolonas_cli.metrics.evaluate import Evaluation, clipped, evaluate
from yolonas_cli.metrics.plots import plot_confusion_matrix, plot_pr_curve
from yolonas_cli.metrics.sg import SG_POSTPROCESS
from yolonas_cli.metrics.val_metrics import ValMetrics
from yolonas_cli.modes.header import print_header, warn_fixed_size

__all__ = ["HEADER", "engine_settings", "run", "validate"]

HEADER = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)")
ROW = "%22s" + "%11i" * 2 + "%11.3g" * 4


def run(args: ValArgs) -> int:
    """`yolo-nas val`: load `args.model`, validate it on `args.data`, print the table; exit code 0."""
    validate(Detector(args.model, weights_dir=args.weights_dir), args)
    return 0


def validate(model: Detector, args: ValArgs) -> ValMetrics:
    """Evaluate `model` on `args.data` (split `args.split`) and return the metrics; prints and saves as `args`
    says (console verbosity follows `args.verbose` for the duration of the call)."""
    with console.verbosity(args.verbose):
        dataset = load_dataset(args.data, args.split)
        if len(model.names) != dataset.nc:
            raise UsageError(
                f"data={args.data} has {dataset.nc} classes but the model has "
                f"{len(model.names)}: use a dataset labelled with the model's classes"
            )
        original = args.protocol == "sg"
        if original and args.slice is not None:
            raise UsageError("protocol=sg is the original's whole-image evaluation: use slice= with protocol=coco")
        if original:
            _announce_original_protocol(args)
        pipeline = ORIGINAL_VAL if original else PREDICT
        engine = model.make_engine(engine_settings(args), args.device, args.half, pipeline, args.backend)
        print_header(model, engine)
        warn_fixed_size(engine, args.imgsz, defaults("val")["imgsz"])
        if original and engine.backend.graph_nms is not None:
            raise UsageError(
                "protocol=sg runs the original's own NMS, but this exported model has NMS in its "
                "graph: export it without nms=True, or use protocol=coco"
            )
        run_dir = make_run_dir(args.project, args.name, args.exist_ok, "val", create=True)
        labels = LabelWriter(run_dir, dataset) if args.save_txt else None
        on_image = labels.write if labels else None
        if args.ray is not None:
            from yolonas_cli.modes.ray_val import ray_evaluate

            evaluation = ray_evaluate(
                model, args, engine, dataset, original_metric=original, on_image=on_image, title=HEADER
            )
        else:
            evaluation = evaluate(
                engine,
                dataset,
                classes=args.classes,
                original_metric=original,
                workers=args.workers,
                on_image=on_image,
                title=HEADER,
            )
        return _report(evaluation, args, run_dir)


def engine_settings(args: ValArgs) -> EngineSettings:
    """The engine settings of a val run (protocol=sg: the original's published post-processing)."""
    size = imgsz_pair(args.imgsz)
    classes = tuple(args.classes) if args.classes is not None else None
    if args.protocol == "sg":
        sg = SG_POSTPROCESS
        return EngineSettings(
            imgsz=size,
            conf=sg.conf,
            iou=sg.iou,
            max_det=sg.max_det,
            classes=classes,
            multi_label=True,
            pre_nms_top_k=sg.pre_nms_top_k,
            rect=False,
            batch=args.batch,
        )
    return EngineSettings(
        imgsz=size,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        classes=classes,
        multi_label=True,
        pre_nms_top_k=PRE_NMS_TOP_K,
        rect=args.rect,
        batch=args.batch,
        slicing=slice_config(args),
    )


def _announce_original_protocol(args: ValArgs) -> None:
    console.info(
        "protocol=sg: the original's evaluation (longest side 636 truncated, centre pad 640, "
        "conf 0.03, NMS IoU 0.65, top-k 1000, max 300, multi-label); conf, iou, max_det and "
        "rect are not used"
    )
    if args.imgsz not in (640, (640, 640)):
        console.warn(f"protocol=sg was published at imgsz=640; running it at imgsz={args.imgsz}")


class LabelWriter:
    """`save_txt`: each image's detections as labels/<stem>.txt (`class xc yc w h conf`, boxes clipped)."""

    def __init__(self, run_dir: Path, dataset: Dataset):
        self.folder = run_dir / "labels"
        self.names = dataset.names
        self.unique_stems = len({p.stem for p in dataset.files}) == len(dataset.files)

    def stem(self, sample: Sample | ImageTruth) -> str:
        """A file stem unique in the run (the image's stem, or its id when stems repeat)."""
        return sample.path.stem if self.unique_stems else str(sample.image_id).replace("/", "__")

    def write(self, sample: Sample | ImageTruth, det: np.ndarray) -> None:
        result = Result(Boxes(clipped(det, sample.hw), sample.hw), self.names, None, sample.hw, str(sample.path))
        result.save_txt(self.folder / f"{self.stem(sample)}.txt", save_conf=True)


def _report(evaluation: Evaluation, args: ValArgs, run_dir: Path) -> ValMetrics:
    """Print the metrics and write the run folder's files."""
    metrics = evaluation.metrics
    metrics.save_dir = run_dir
    if args.save_json:
        atomic_write_chunks(run_dir / "predictions.json", evaluation.detections.json_chunks())
    print_metrics(metrics, verbose=args.verbose and len(metrics.names) > 1)
    if args.save_json and evaluation.scores.summary:
        console.info(evaluation.scores.summary.rstrip())
    if args.plots:
        box = metrics.box
        plot_pr_curve(run_dir / "BoxPR_curve.png", evaluation.curves, metrics.names, box.ap50, box.map50)
        plot_confusion_matrix(run_dir / "confusion_matrix.png", evaluation.confusion.matrix, metrics.names)
    atomic_write_bytes(run_dir / "metrics.json", json.dumps(metrics.to_dict(), indent=2).encode())
    console.info(f"Results saved to {run_dir}")
    return metrics


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
    console.info(
        f"pycocotools: mAP50-95 {b.map:.4f}, mAP50 {b.map50:.4f}, mAP75 {b.map75:.4f}, "
        f"small {b.map_small:.4f}, medium {b.map_medium:.4f}, large {b.map_large:.4f}"
    )
    if metrics.sg is not None:
        print_sg_metrics(metrics)
    console.info(
        f"Speed: {s['preprocess']:.1f}ms preprocess, {s['inference']:.1f}ms inference, "
        f"{s['loss']:.1f}ms loss, {s['postprocess']:.1f}ms postprocess per image"
    )


def print_sg_metrics(metrics: ValMetrics) -> None:
    """protocol=sg: the original's mAP beside pycocotools', its own P, R and F1, and the table's Ultralytics-style
    P and R, each labelled with its definition."""
    b, sg = metrics.box, metrics.sg or {}
    console.info(
        f"protocol=sg: the original's DetectionMetrics mAP50-95 {sg['mAP50-95']:.4f}, "
        f"mAP50 {sg['mAP50']:.4f} | pycocotools on the same detections mAP50-95 "
        f"{b.map:.4f}, mAP50 {b.map50:.4f}"
    )
    console.info(
        f"protocol=sg: the original's P {sg['precision']:.4f}, R {sg['recall']:.4f}, F1 {sg['f1']:.4f} "
        f"(its definition: confidence >= {sg['score_threshold']:g}, mean over classes and IoU 0.50:0.95), "
        f"its best score threshold {sg['best_score_threshold']:.2f}"
    )
    console.info(
        f"Ultralytics-style P {b.mp:.4f}, R {b.mr:.4f} (the table's: IoU 0.5, at the best-F1 confidence "
        f"{b.best_conf:.3f})"
    )
