"""`yolo-nas val ... ray=`: the images of a dataset decoded and run on Ray actors (`distributed.batch`), scored
here by the one validation loop (`metrics.evaluate.score`), so the metrics are a local run's.

The workers decode each image as the val loop does (BGR uint8) and run batches of `batch` consecutive images,
as a local run batches them; the driver reads the labels (it needs each image's size only, which comes back
with its detections), rebuilds the letterbox the image was run with, and scores the images in dataset order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from yolonas_cli.cfg import ValArgs
from yolonas_cli.core import console
from yolonas_cli.data.datasets.dataset import Dataset
from yolonas_cli.data.datasets.labels import CorruptSample
from yolonas_cli.detector import Detector
from yolonas_cli.distributed.batch import UNREADABLE, RemoteImage, WorkerSpec, detect_on_ray
from yolonas_cli.distributed.cluster import actor_shape, ray_cluster, ray_target
from yolonas_cli.distributed.shipping import ship_model
from yolonas_cli.engine.engine import Engine, StageTimer
from yolonas_cli.metrics.evaluate import Detected, Evaluation, OnImage, score


def ray_evaluate(
    model: Detector,
    args: ValArgs,
    engine: Engine,
    dataset: Dataset,
    *,
    original_metric: bool = False,
    on_image: OnImage = None,
    title: str = "val",
) -> Evaluation:
    """`metrics.evaluate.evaluate` with the images run on Ray (`args.ray`, `args.workers` actors); `engine` is
    the one a local run would use (its settings and pipeline go to the workers, its letterbox plans stay here)."""
    paths = [str(path.absolute()) for path in dataset.files]
    timer = StageTimer()
    with ray_cluster(ray_target(args.ray)) as cluster:
        actors = actor_shape(cluster, args.workers, args.device)
        spec = WorkerSpec(
            ship_model(model.path),
            engine.settings,
            args.device,
            args.half,
            engine.pipeline,
            weights_dir=args.weights_dir,
            runtime=args.backend,
            bgr_uint8=True,
        )
        console.info(f"running {len(paths)} images on {actors.count} Ray actors ({cluster.cpus} CPUs)")
        remote = detect_on_ray(spec, paths, [""] * len(paths), engine.settings.batch, actors)
        detected = with_truth(remote, dataset, engine, timer)
        return score(
            dataset,
            detected,
            timer,
            classes=args.classes,
            original_metric=original_metric,
            on_image=on_image,
            title=title,
        )


def with_truth(
    remote: Iterable[RemoteImage], dataset: Dataset, engine: Engine, timer: StageTimer
) -> Iterator[Detected]:
    """Each remote outcome with its image's labels and letterbox, or the CorruptSample a local run would skip;
    `timer` collects the workers' stage times."""
    for image in remote:
        path = dataset.files[image.index]
        if image.error:
            reason = f"{path} cannot be decoded as an image" if image.error == UNREADABLE else f"{path}: {image.error}"
            yield CorruptSample(reason)
            continue
        try:
            truth = dataset.truth(image.index, image.orig_hw)
        except CorruptSample as exc:
            yield exc
            continue
        for stage, ms in image.speed.items():
            timer.totals[stage] += ms
        timer.images += 1
        yield truth, image.detections, engine.letterbox(image.orig_hw)
