"""One split of a detection dataset (`Dataset`) and its images with their ground truth (`Sample`), resolved
from `data=` by `load_dataset`: the YAML (`yaml_spec`), YOLO txt labels (`labels`) or COCO JSON annotations
(`coco_json`), and the download of a missing dataset (`download`).

An image that cannot be decoded, or whose label file is malformed, is a `CorruptSample`: reported and skipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.coco import COCO80_NAMES, COCO80_TO_COCO91
from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.data.datasets.coco_json import CocoAnnotations
from yolonas_cli.data.datasets.download import download_or_fail
from yolonas_cli.data.datasets.labels import CorruptSample, Labels, label_path, read_txt_labels
from yolonas_cli.data.datasets.yaml_spec import (
    candidate_roots,
    find_yaml,
    list_images,
    read_yaml,
    split_entry,
    split_paths,
    split_ready,
)
from yolonas_cli.data.frames import read_image

ImageId = Union[int, str]


@dataclass(frozen=True)
class Sample:
    """One decoded image with its ground truth: `image` BGR (as decoded) HxW[xC], labels in its pixels."""

    index: int
    path: Path
    image_id: ImageId
    image: np.ndarray
    labels: Labels

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass(frozen=True)
class ImageTruth:
    """An image's ground truth without its pixels (what scoring needs): `hw` its (height, width), labels in
    its pixels."""

    index: int
    path: Path
    image_id: ImageId
    hw: tuple[int, int]
    labels: Labels


@dataclass
class Dataset:
    """One split of a dataset: its image files, class names, label source and COCO category ids.

    `category_ids[i]` is the COCO category id of class i: the JSON's when annotations are given, COCO's
    1..90 ids when the names are the 80 COCO names, else i + 1.
    """

    yaml_path: Path
    root: Path
    split: str
    names: dict[int, str]
    files: list[Path]
    coco: CocoAnnotations | None = None
    image_ids: list[ImageId] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.coco is not None:
            self.files, self.image_ids = _files_in_json(self.files, self.coco)
        else:
            self.image_ids = image_ids_for(self.files, self.root)
        self.category_ids = _category_ids(self.names, self.coco)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def is_coco_names(self) -> bool:
        return tuple(self.names[i] for i in range(self.nc)) == COCO80_NAMES

    def head(self, count: int) -> Dataset:
        """The same split restricted to its first `count` images."""
        return replace(self, files=self.files[:count])

    def load(self, index: int) -> Sample:
        """Decode image `index` and read its labels. Raises CorruptSample."""
        path = self.files[index]
        image = read_image(path)
        if image is None or image.size == 0 or image.ndim not in (2, 3):
            raise CorruptSample(f"{path} cannot be decoded as an image")
        truth = self.truth(index, (int(image.shape[0]), int(image.shape[1])))
        return Sample(index, path, truth.image_id, image, truth.labels)

    def truth(self, index: int, hw: tuple[int, int]) -> ImageTruth:
        """The labels of image `index`, whose size is `hw`, without decoding it. Raises CorruptSample."""
        path, image_id = self.files[index], self.image_ids[index]
        labels = self.coco.labels(image_id) if self.coco else read_txt_labels(label_path(path), hw, self.nc)
        return ImageTruth(index, path, image_id, hw, labels)


def image_ids_for(files: Sequence[Path], root: Path) -> list[ImageId]:
    """COCO image ids of txt-labelled images: int(stem) when every stem is numeric and unique, else the stem
    when stems are unique, else the path relative to the root without its suffix."""
    stems = [p.stem for p in files]
    unique = len(set(stems)) == len(stems)
    if unique and all(s.isdigit() for s in stems):
        ints = [int(s) for s in stems]
        if len(set(ints)) == len(ints):
            return list(ints)
    if unique:
        return list(stems)
    return [_relative(p, root).with_suffix("").as_posix() for p in files]


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path


def _files_in_json(files: list[Path], coco: CocoAnnotations) -> tuple[list[Path], list[ImageId]]:
    kept = [p for p in files if p.name in coco.by_file]
    if len(kept) < len(files):
        console.warn(f"{len(files) - len(kept)} of {len(files)} images are not in {coco.path}: skipped")
    return kept, [coco.by_file[p.name]["id"] for p in kept]


def _category_ids(names: dict[int, str], coco: CocoAnnotations | None) -> list[int]:
    if coco is not None:
        inverse = {cls: cat for cat, cls in coco.class_of.items()}
        return [inverse.get(i, i + 1) for i in range(len(names))]
    if tuple(names.get(i) for i in range(len(names))) == COCO80_NAMES:
        return list(COCO80_TO_COCO91)
    return list(range(1, len(names) + 1))


def load_dataset(data: str | os.PathLike[str], split: str = "val", *, download: bool = True) -> Dataset:
    """Resolve `data=` and `split` into a `Dataset`, downloading a missing dataset when the YAML says how.

    Raises UsageError (bad YAML, unknown split) or YoloNasError (images missing, download failed, no images).
    """
    yaml_path = find_yaml(data).absolute()
    spec = read_yaml(yaml_path)
    root = _existing_root(spec, yaml_path, split)
    if root is None:
        root = candidate_roots(spec, yaml_path)[-1]
        download_or_fail(spec, yaml_path, root, split, download)
    files = list_images(split_paths(spec, split, root))
    if not files:
        raise YoloNasError(
            f"no images found for split '{split}' of {yaml_path.name} under "
            f"{', '.join(map(str, split_paths(spec, split, root)))}"
        )
    coco = _annotations(spec, split, root)
    dataset = Dataset(yaml_path, root, split, spec["names"], files, coco)
    if not len(dataset):
        raise YoloNasError(
            f"none of the {len(files)} '{split}' images of {yaml_path.name} is listed in "
            f"{coco.path if coco else 'the annotations'} (images are matched by file name)"
        )
    return dataset


def _existing_root(spec: dict[str, Any], yaml_path: Path, split: str) -> Path | None:
    for root in candidate_roots(spec, yaml_path):
        if all(map(split_ready, split_paths(spec, split, root))):
            return root
    return None


def _annotations(spec: dict[str, Any], split: str, root: Path) -> CocoAnnotations | None:
    entry = spec.get("annotations")
    entry = entry.get(split) if isinstance(entry, dict) else (entry if split == "val" else None)
    if not entry:
        return None
    path = split_entry(root, str(entry))
    if not path.is_file():
        raise YoloNasError(f"the COCO annotations {path} named by the dataset YAML are missing")
    return CocoAnnotations.load(path, spec["names"])
