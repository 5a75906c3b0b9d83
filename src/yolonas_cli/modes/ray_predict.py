"""`yolo-nas predict ... ray=`: predict over image files on Ray actors (`distributed.batch`), with the outputs
of a local run.

The driver (this process) lists the files, gives each a unique stem (as a local run names its outputs), and
writes what needs no pixels as the results arrive in input order: the console line of each image, the label
files and predictions.json. The workers hold the pixels, so they write the annotated images and the crops
into the same run folder under the driver's stems (every file atomically: an image a retried block runs twice
is written twice to the same name, never half). The run folder must therefore be reachable from every node,
as the images are (one machine, or a shared file system).

Only image files are distributed (videos keep their frames in order and streams never end: run them without
ray=). One difference from a local run: stems are given to every listed file, so when an earlier file with
the same stem cannot be decoded, the later one is still numbered (`x-2.jpg` where a local run writes `x.jpg`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from yolonas_cli.cfg import PredictArgs
from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError, YoloNasError
from yolonas_cli.core.files import atomic_imwrite
from yolonas_cli.data.results import Boxes, Result
from yolonas_cli.data.sinks import JsonSink, make_run_dir, warn_unsaved
from yolonas_cli.data.sources import Source, default_source, open_source
from yolonas_cli.detector import Detector
from yolonas_cli.distributed.batch import RemoteImage, WorkerSpec, detect_on_ray
from yolonas_cli.distributed.cluster import actor_shape, ray_cluster, ray_target
from yolonas_cli.distributed.shipping import ship_model
from yolonas_cli.engine.engine import EngineSettings


@dataclass(frozen=True)
class PixelOutputs:
    """What the workers write from the pixels (annotated images, crops) and how."""

    run_dir: str
    save: bool
    save_crop: bool
    line_width: int | None
    show_labels: bool
    show_conf: bool
    show_boxes: bool = True


def save_pixels(outputs: PixelOutputs, result: Result, stem: str) -> None:
    """On a worker: the annotated image `<stem>.jpg` and the crops of one image, as a local run writes them."""
    run_dir = Path(outputs.run_dir)
    if outputs.save:
        annotated = result.plot(
            line_width=outputs.line_width, labels=outputs.show_labels, conf=outputs.show_conf, boxes=outputs.show_boxes
        )
        atomic_imwrite(run_dir / f"{stem}.jpg", annotated)
    if outputs.save_crop:
        result.save_crop(run_dir / "crops", f"{stem}.jpg")


def ray_predict_stream(model: Detector, args: PredictArgs, settings: EngineSettings) -> Iterator[Result]:
    """Predict over the image files of `args.source` on Ray (see the module docstring); yields one Result per
    decoded image (without its pixels: `orig_img` is None), in input order."""
    paths = image_paths(args)
    stems = unique_stems(paths)
    saving = args.save or args.save_txt or args.save_crop or args.save_json
    run_dir = make_run_dir(args.project, args.name, args.exist_ok, "predict", create=True) if saving else None
    json_sink = JsonSink(run_dir) if args.save_json and run_dir else None
    pixels = None
    if run_dir is not None and (args.save or args.save_crop):
        pixels = PixelOutputs(
            str(run_dir.absolute()),
            args.save,
            args.save_crop,
            args.line_width,
            args.show_labels,
            args.show_conf,
            args.show_boxes,
        )
    tally = Tally()
    try:
        with ray_cluster(ray_target(args.ray)) as cluster:
            actors = actor_shape(cluster, args.workers, args.device)
            _check_device(args.device, cluster.gpus)
            spec = WorkerSpec(
                ship_model(model.path),
                settings,
                args.device,
                args.half,
                weights_dir=args.weights_dir,
                runtime=args.backend,
                after_image=partial(save_pixels, pixels) if pixels else None,
            )
            console.info(f"predicting {len(paths)} images on {actors.count} Ray actors ({cluster.cpus} CPUs)")
            for remote in detect_on_ray(spec, paths, stems, args.batch, actors):
                result = tally.add(remote, model.names, len(paths))
                if result is None:
                    continue
                if args.save_txt and run_dir is not None:
                    result.save_txt(run_dir / "labels" / f"{stems[remote.index]}.txt", save_conf=args.save_conf)
                if json_sink is not None:
                    json_sink.add(result)
                yield result
    except (GeneratorExit, KeyboardInterrupt) as stop:  # as a local run: what was saved so far is kept
        if json_sink is not None:
            json_sink.close()
        if isinstance(stop, KeyboardInterrupt):
            console.warn(f"interrupted after {tally.seen} images; the files saved so far are complete")
        raise
    except BaseException:
        if json_sink is not None:
            json_sink.abort()
        raise
    if json_sink is not None:
        json_sink.close()
    tally.finish(len(paths), run_dir)


def image_paths(args: PredictArgs) -> list[str]:
    """The absolute paths of the image files of `args.source`; UsageError for videos, streams and arrays."""
    source: Source = open_source(default_source() if args.source is None else args.source)
    others = sorted({item.kind for item in source.items} - {"image"})
    if others:
        raise UsageError(
            f"ray= runs image files, and source={args.source} holds {' and '.join(others)} items: "
            "predict videos, streams and in-memory images without ray="
        )
    return [str(item.name) for item in source.items]


def unique_stems(paths: list[str]) -> list[str]:
    """A file stem per path, unique within the run ("a", then "a-2", "a-3", ... for more files named a)."""
    taken: set[str] = set()
    stems = []
    for path in paths:
        base = Path(path).stem or "image"
        stem, n = base, 1
        while stem in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem)
        stems.append(stem)
    return stems


def _check_device(device: str, gpus: int) -> None:
    if device.startswith("cuda") and gpus == 0:
        raise UsageError(f"device={device} but the Ray cluster has no GPU: use device=cpu or device=auto")


class Tally:
    """The console side of a Ray run: a line per image, the skipped files, the speed and the workers."""

    def __init__(self) -> None:
        self.seen = 0
        self.skipped = 0
        self.unsaved = 0
        self.started = time.perf_counter()
        self.totals = Counter[str]()
        self.per_worker = Counter[str]()

    def add(self, remote: RemoteImage, names: dict[int, str], total: int) -> Result | None:
        """The Result of one file, printed (None, with a warning, when it could not be decoded)."""
        if remote.error:
            console.warn(f"skipping '{remote.path}': {remote.error}")
            self.skipped += 1
            return None
        result = Result(
            Boxes(remote.detections, remote.orig_hw),
            names,
            None,
            remote.orig_hw,
            remote.path,
            dict(remote.speed),
            remote.input_hw,
        )
        if remote.save_error:
            console.warn(f"could not save the pictures of '{remote.path}': {remote.save_error}; going on")
            self.unsaved += 1
        h, w = remote.input_hw
        prefix = f"image {remote.index + 1}/{total} {remote.path}: "
        console.info(f"{prefix}{h}x{w} {result.verbose()}{remote.speed['inference']:.1f}ms")
        self.seen += 1
        self.totals.update(remote.speed)
        self.per_worker[remote.worker] += 1
        return result

    def finish(self, files: int, run_dir: Path | None) -> None:
        """YoloNasError when no file decoded (as a local run), else the summary lines."""
        if files and not self.seen:
            raise YoloNasError(
                f"none of the {files} file(s) of the source could be decoded; check that they are valid images"
            )
        warn_unsaved(self.unsaved, self.seen, "images")
        seconds = time.perf_counter() - self.started
        speed = {stage: ms / max(self.seen, 1) for stage, ms in self.totals.items()}
        console.info(
            f"Speed: {speed.get('preprocess', 0):.1f}ms preprocess, {speed.get('inference', 0):.1f}ms inference, "
            f"{speed.get('postprocess', 0):.1f}ms postprocess per image on a worker; "
            f"{self.seen / max(seconds, 1e-9):.1f} images/s in all"
        )
        workers = ", ".join(f"{name} {count}" for name, count in sorted(self.per_worker.items()))
        console.info(f"images per Ray worker: {workers}")
        if run_dir is not None:
            console.info(f"Results saved to {run_dir}")
