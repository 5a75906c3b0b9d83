"""The training data: a torch Dataset over a dataset YAML split, its sampler and its collate function.

`build_train_dataset(data, ...)` reads the split the way `val` does (`datasets.load_dataset`: Ultralytics
YAML, YOLO txt labels or COCO JSON) and checks every label file once, up front:
- a label file with a malformed line: warned, its image left out (training on an image whose labels are
  partly lost would teach that the lost objects are background; val and Ultralytics skip such images too);
- a class id >= nc: a UsageError naming the file and line (the labels or the YAML's names are wrong);
- COCO crowd annotations: dropped (the original's train sets use `with_crowd: False`);
- images without labels: kept as background (the Roboflow recipe's `ignore_empty_annotations: False`;
  the COCO recipe leaves them out);
- no label at all in the split: an error.
Only the image paths and the labels stay in memory, as flat arrays (`PathTable`, `LabelTable`).

Each item is one sample of the original's pipeline (`pipelines.py`): the image loaded BGR and fitted into
imgsz (`cache.py`), its boxes scaled by the same ratio, then the transforms. The sampler yields `Draw`s
(item, epoch, position in the epoch); the sample's random Generator is seeded from (seed, epoch, position,
item), so a run is reproducible for a given seed whatever the number of workers or processes, and an
image drawn twice in an epoch gets two different augmentations. An image that cannot be read any more
(deleted or damaged after the dataset was built) is warned about once and replaced by another random image
of the dataset; the epoch goes on.

`collate` stacks a batch into images [B, 3, H, W] float32 in [0, 1] and targets [N, 6] (image index,
class, cx, cy, w, h) in input pixels (training-facts.md §2). `TrainSampler` is the epoch: a plain shuffle
(Ultralytics' epoch, one pass over the data) or, with `min_samples`, the original Roboflow loader's rule
(a dataset smaller than `min_samples` images is drawn `min_samples` times with replacement); it shards an
epoch over DDP ranks like torch's DistributedSampler (padded to a multiple of the world size, rank r takes
positions r, r + world, ...) and `set_epoch` reshuffles.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError, YoloNasError
from yolonas_cli.data.datasets.dataset import Dataset, load_dataset
from yolonas_cli.data.datasets.labels import ClassIdOutOfRange, CorruptSample, label_path, read_txt_labels
from yolonas_cli.engine.threads import single_opencv_thread
from yolonas_cli.modes.train.augment import TrainSample
from yolonas_cli.modes.train.cache import ImageStore, PathTable, cache_mode
from yolonas_cli.modes.train.pipelines import PipelineSchedule, train_pipelines
from yolonas_cli.modes.train.recipe import Augmentation, recipe_for

__all__ = [
    "Draw",
    "LabelTable",
    "TrainDataset",
    "TrainLoader",
    "TrainSampler",
    "build_train_dataset",
    "collate",
    "read_labels",
    "train_loader",
]

HW = tuple[int, int]
STRIDE = 32  # network inputs are multiples of the largest stride
MAX_REPLACEMENTS = 64  # unreadable images in a row before a sample gives up
SAMPLER_STREAM = 0x5A3F  # separates the sampler's random stream from the samples'
WARNINGS_SHOWN = 5


class Draw(NamedTuple):
    """One draw of an epoch: which image, in which epoch, at which position of the epoch's global order."""

    item: int
    epoch: int
    position: int


# ---------------------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelTable:
    """The boxes of every image in flat arrays: image i owns rows offsets[i]:offsets[i + 1].

    boxes: float32 [total, 4] xyxy, fractions of the image size (`normalized`, YOLO txt labels) or original
    pixels (COCO JSON); classes: int32 [total].
    """

    offsets: np.ndarray
    classes: np.ndarray
    boxes: np.ndarray
    normalized: bool

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, index: int, original_hw: HW) -> tuple[np.ndarray, np.ndarray]:
        """(boxes float32 [k, 4] xyxy in original pixels, classes int64 [k]) of image `index`."""
        rows = slice(self.offsets[index], self.offsets[index + 1])
        boxes = self.boxes[rows]
        if self.normalized:
            height, width = original_hw
            boxes = boxes * np.array([width, height, width, height], np.float32)
        return boxes, self.classes[rows].astype(np.int64)

    @property
    def total(self) -> int:
        return int(self.offsets[-1])


def read_labels(split: Dataset, indices: Sequence[int], keep_empty: bool = True) -> tuple[list[int], LabelTable]:
    """Read and check the labels of images `indices` of `split` (module docstring). Returns the indices
    kept and their labels; `keep_empty=False` also leaves out images without boxes (the COCO recipe's
    `ignore_empty_annotations`). Raises UsageError for a class id >= nc."""
    kept: list[int] = []
    classes: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    skipped: list[str] = []
    for index in indices:
        try:
            cls, xyxy = _labels_of(split, index)
        except ClassIdOutOfRange as exc:
            raise UsageError(f"{exc}: fix the label, or add the class to the names of {split.yaml_path.name}") from None
        except CorruptSample as exc:
            skipped.append(str(exc))
            continue
        if not keep_empty and len(cls) == 0:
            continue
        kept.append(index)
        classes.append(cls)
        boxes.append(xyxy)
    _warn_skipped(skipped)
    offsets = np.zeros(len(kept) + 1, np.int64)
    np.cumsum([len(c) for c in classes], out=offsets[1:])
    table = LabelTable(
        offsets, _concat(classes, np.int32, (0,)), _concat(boxes, np.float32, (0, 4)), normalized=split.coco is None
    )
    return kept, table


def _labels_of(split: Dataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes [k], boxes [k, 4] xyxy: fractions for txt labels, pixels for COCO) of image `index`."""
    if split.coco is not None:
        labels = split.coco.labels(split.image_ids[index])
        labels = labels.select(~labels.crowd)
    else:
        labels = read_txt_labels(label_path(split.files[index]), (1, 1), split.nc)  # (1, 1): fractions
    return labels.cls, labels.boxes


def _concat(parts: list[np.ndarray], dtype: type, empty_shape: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(empty_shape, dtype)


def _warn_skipped(reasons: list[str]) -> None:
    for reason in reasons[:WARNINGS_SHOWN]:
        console.warn(f"{reason}: image left out of training")
    if len(reasons) > WARNINGS_SHOWN:
        console.warn(f"... {len(reasons)} images left out of training in all for malformed labels")


# ---------------------------------------------------------------------------------------- dataset


class TrainDataset(TorchDataset):
    """Augmented training samples. `dataset[Draw(item, epoch, position)]` (or `dataset[index]`, read as
    `Draw(index, self.epoch, index)`) -> (image float32 [3, H, W] in [0, 1] BGR, targets float32 [n, 5]
    (class, cx, cy, w, h) pixels).

    With a sampler of plain indices (torch's DistributedSampler, say) the epoch is `self.epoch`, which
    worker processes copy when they start: every epoch would repeat the same augmentations. `TrainSampler`
    carries the epoch in each Draw instead."""

    def __init__(
        self,
        images: ImageStore,
        labels: LabelTable,
        schedule: PipelineSchedule,
        seed: int = 0,
        names: dict[int, str] | None = None,
    ):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label entries")
        self.images = images
        self.labels = labels
        self.schedule = schedule
        self.seed = seed
        self.names = names or {}
        self.epoch = 0
        self._unreadable: set[int] = set()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def input_hw(self) -> HW:
        return self.schedule.main.input_hw

    def load_sample(self, index: int) -> TrainSample:
        """Image `index` load-resized (BGR uint8) with its boxes scaled alike, clipped, zero-area boxes
        dropped. Raises CorruptSample."""
        image, original = self.images.load(index)
        boxes, classes = self.labels.of(index, original)
        ratio = min(self.images.input_dim[0] / original[0], self.images.input_dim[1] / original[1])
        return TrainSample.make(image, boxes * np.float32(ratio), classes)

    def __getitem__(self, key: Draw | int) -> tuple[np.ndarray, np.ndarray]:
        draw = key if isinstance(key, Draw) else Draw(int(key), self.epoch, int(key))
        rng = np.random.default_rng([self.seed, draw.epoch, draw.position, draw.item])
        sample = self._readable_sample(draw.item, rng)
        return self.schedule.at(draw.epoch)(sample, rng, lambda: self._readable_sample(None, rng))

    def _readable_sample(self, index: int | None, rng: np.random.Generator) -> TrainSample:
        """Sample `index` (None: a random one); an unreadable image is warned about once (per process) and
        another random image takes its place."""
        for _ in range(MAX_REPLACEMENTS):
            if index is None or index in self._unreadable:
                index = int(rng.integers(len(self)))
                continue
            try:
                return self.load_sample(index)
            except CorruptSample as exc:
                self._unreadable.add(index)
                console.warn(f"{exc}: skipped, another training image takes its place")
        raise YoloNasError(
            f"{MAX_REPLACEMENTS} training images in a row cannot be read (the last: "
            f"{self.images.paths[index or 0]}); check that the dataset is still in place"
        )


# ---------------------------------------------------------------------------------------- batches


def collate(batch: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples -> (images float32 [B, 3, H, W], targets float32 [N, 6] (image index, class, cx, cy, w, h)),
    rows of an image contiguous and in batch order; images without boxes give no rows."""
    # Contiguous NCHW: np.stack keeps the samples' HWC memory order (a channels-last tensor), and torch 2.13's CPU
    # backward through the model crashes (segmentation fault) on a channels-last input batch.
    images = torch.from_numpy(np.ascontiguousarray(np.stack([image for image, _ in batch])))
    counts = [len(targets) for _, targets in batch]
    index = np.repeat(np.arange(len(batch), dtype=np.float32), counts)[:, None]
    rows = np.concatenate([targets for _, targets in batch]) if batch else np.zeros((0, 5), np.float32)
    return images, torch.from_numpy(np.concatenate([index, rows.reshape(-1, 5)], axis=1))


class TrainSampler(Sampler[Draw]):
    """An epoch of `Draw`s over a dataset of `size` images (module docstring), this rank's share.

    Order: `permutation(size)` from a Generator seeded by (seed, epoch); with `min_samples > size`,
    `min_samples` indices drawn uniformly with replacement instead. Sharding: padded with the order's first
    entries to a multiple of `world_size`; rank r takes positions r, r + world_size, ... `set_epoch(e, skip)`
    also drops this rank's first `skip` draws of the epoch (a run resumed in the middle of an epoch).
    """

    def __init__(self, size: int, seed: int = 0, min_samples: int = 0, rank: int = 0, world_size: int = 1):
        if size < 1:
            raise ValueError("a sampler needs at least one image")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.size, self.seed, self.min_samples = size, seed, min_samples
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    @property
    def draws_per_epoch(self) -> int:
        """Draws of the whole epoch, all ranks together, before padding."""
        return max(self.size, self.min_samples)

    @property
    def per_rank(self) -> int:
        """This rank's draws in a whole epoch."""
        return -(-self.draws_per_epoch // self.world_size)

    def __len__(self) -> int:
        return max(self.per_rank - self.skip, 0)

    def order(self) -> np.ndarray:
        """The epoch's dataset indices in order (all ranks), int64 [draws_per_epoch]."""
        rng = np.random.default_rng([self.seed, self.epoch, SAMPLER_STREAM])
        if self.min_samples > self.size:
            return rng.integers(0, self.size, self.min_samples)
        return rng.permutation(self.size)

    def __iter__(self) -> Iterator[Draw]:
        order = self.order()
        positions = range(self.rank, self.per_rank * self.world_size, self.world_size)[self.skip :]
        return iter([Draw(int(order[p % len(order)]), self.epoch, p) for p in positions])


class TrainLoader(DataLoader):
    """A DataLoader whose worker processes start while OpenCV runs on one thread.

    Workers are forked; a fork taken while OpenCV's thread pool exists leaves the child a pool whose threads
    are gone, and changing its size there blocks for ever (seen: `cv2.setNumThreads(1)` in a worker hung in
    `pthread_cond_destroy`). Starting the workers with the pool stopped gives each worker a single-threaded
    OpenCV (the workers are the parallelism); the main process gets its thread count back right after.
    """

    def __iter__(self):
        with single_opencv_thread():
            return super().__iter__()


def train_loader(
    dataset: TrainDataset,
    sampler: TrainSampler,
    batch_size: int,
    workers: int,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> TrainLoader:
    """The DataLoader of a training run: `collate`d batches, persistent workers (the epoch travels in each
    Draw, so workers need no restart between epochs) that leave Ctrl-C and SIGTERM to the main process."""
    if batch_size < 1:
        raise UsageError(f"batch={batch_size} must be at least 1")
    return TrainLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=ignore_stop_signals,
    )


def ignore_stop_signals(worker_id: int) -> None:
    """In a DataLoader worker: ignore Ctrl-C (SIGINT, which a terminal sends to every process of the run) and leave
    quietly on SIGTERM.

    The main process gets the same signals, finishes its step, saves and shuts the workers down; a worker killed by
    SIGINT would break the batch it is waiting for. SIGTERM must still end a worker (multiprocessing ends its
    daemon processes with SIGTERM when the interpreter exits, and waits for them), but with exit code 0: torch's
    watchdog in the main process treats a worker killed by a signal as a crash and raises at once, in the middle
    of whatever the main process is doing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _leave_quietly)


def _leave_quietly(signum: int, frame: object) -> None:
    os._exit(0)


# ---------------------------------------------------------------------------------------- building


def input_hw(imgsz: int | Sequence[int]) -> HW:
    """imgsz (an int or (h, w)) -> (h, w), each a positive multiple of 32 (UsageError otherwise)."""
    pair = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 and v % STRIDE == 0 for v in pair):
        raise UsageError(f"imgsz={imgsz} for training must be a multiple of {STRIDE} (or two: h, w), e.g. 640")
    return int(pair[0]), int(pair[1])


def build_train_dataset(
    data: str | os.PathLike[str],
    *,
    imgsz: int | Sequence[int] = 640,
    recipe: str = "roboflow",
    augmentation: Augmentation | None = None,
    epochs: int = 100,
    seed: int = 0,
    cache: object = False,
    fraction: float = 1.0,
    split: str = "train",
    cache_dir: Path | None = None,
) -> TrainDataset:
    """The training dataset of `data=` (module docstring). `augmentation`: the data parameters (None: those of
    `recipe`). `fraction`: use the first fraction of the images. `cache_dir`: where cache=disk writes (default:
    `.yolonas_cache/<split>` under the dataset root)."""
    hw = input_hw(imgsz)
    if not 0.0 < fraction <= 1.0:
        raise UsageError(f"fraction={fraction} must be in (0, 1]")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed={seed} must be a whole number >= 0")
    mode = cache_mode(cache)
    aug = augmentation or recipe_for(recipe, None).augment
    split_data = load_dataset(data, split)
    count = max(1, round(len(split_data) * fraction))
    kept, labels = read_labels(split_data, range(count), keep_empty=not aug.skip_empty_images)
    if labels.total == 0:
        raise YoloNasError(
            f"the '{split}' split of {split_data.yaml_path.name} has no usable labels: YOLO labels belong in a "
            f"labels/ folder beside images/ (e.g. {label_path(split_data.files[0])})"
        )
    paths = PathTable.of([split_data.files[i] for i in kept])
    root = cache_dir or split_data.root / ".yolonas_cache" / split
    images = ImageStore(paths, hw, mode, root)
    schedule = train_pipelines(aug, hw, epochs)
    return TrainDataset(images, labels, schedule, seed, split_data.names)
