"""Detection datasets for `yolo-nas val`: the Ultralytics dataset YAML, YOLO txt labels, COCO JSON
annotations, and the download of a missing dataset.

`data=` is a YAML path, a folder holding one YAML, or a bundled name (`coco8`, `coco8.yaml`, `coco128`,
`coco`; see `src/yolonas_cli/data/datasets`). YAML keys (the Ultralytics format):

- `path`: the dataset root. Relative roots are tried next to the YAML first, then in the datasets
  directory; with no `path` the root is the YAML's folder.
- `train`, `val`, `test`: a folder of images (searched recursively), a `.txt` list of image paths
  (relative lines are relative to the list's folder, as in COCO's `./images/val2017/...`), one image, or a
  list of these; relative to the root (`../x` that does not exist is tried as `x`). A `validation` key
  counts as `val`.
- `names` ({id: name} or a list) and/or `nc` (alone: names `class_0`...).
- `download`: a URL of a .zip/.tar(.gz) archive, or a list of URLs or of {url, dir, sha256, size, splits}
  mappings: `dir` is where the archive unpacks, relative to the root (default `..`: archives whose top folder
  is the dataset, as Ultralytics' are); `splits` limits an entry to the splits that need it. Scripts
  (`bash ...`, inline Python) are never run.
- `annotations` (our addition): a COCO JSON file per split, e.g. `{val: annotations/instances_val2017.json}`
  (relative to the root). Where given, it is the ground truth (boxes, crowd flags, areas and category ids)
  instead of the txt labels.

The datasets directory is `set_datasets_dir(path)` if called, else `$YOLONAS_DATASETS_DIR`, else
`./datasets` under the current working directory (Ultralytics' default layout `datasets/coco8/...`).

Labels: the last `/images/` segment of an image path becomes `/labels/` and the suffix `.txt`; one object per
line, `class xc yc w h` normalised to [0, 1] (a polygon `class x1 y1 x2 y2 ...` counts as its bounding box).
A missing or empty label file is a background image. An image that cannot be decoded, or whose label file is
malformed, is reported and skipped (`CorruptSample`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import yaml

from yolonas_cli import console
from yolonas_cli.coco import COCO80_NAMES, COCO80_TO_COCO91
from yolonas_cli.errors import DownloadError, UsageError, YoloNasError
from yolonas_cli.sources import IMAGE_SUFFIXES, read_image

__all__ = [
    "DATASETS_DIR_ENV",
    "ClassIdOutOfRange",
    "CorruptSample",
    "Dataset",
    "Labels",
    "Sample",
    "bundled_datasets",
    "datasets_dir",
    "find_yaml",
    "load_dataset",
    "set_datasets_dir",
]

DATASETS_DIR_ENV = "YOLONAS_DATASETS_DIR"
SPLITS = ("train", "val", "test")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_settings: dict[str, Path | None] = {"datasets_dir": None}

ImageId = Union[int, str]


# ---------------------------------------------------------------------------------------- locations


def set_datasets_dir(path: str | os.PathLike[str] | None) -> None:
    """Set the datasets directory for this process (None: back to the environment variable or default)."""
    _settings["datasets_dir"] = Path(path).expanduser() if path is not None else None


def datasets_dir() -> Path:
    """`set_datasets_dir()`'s folder, else `$YOLONAS_DATASETS_DIR`, else `./datasets` (absolute)."""
    chosen = _settings["datasets_dir"]
    if chosen is None and os.environ.get(DATASETS_DIR_ENV):
        chosen = Path(os.environ[DATASETS_DIR_ENV]).expanduser()
    return (chosen or Path("datasets")).absolute()


def bundled_dir() -> Path:
    """The folder of the bundled dataset YAMLs."""
    return Path(__file__).parent / "data" / "datasets"


def bundled_datasets() -> list[str]:
    """Names of the bundled dataset YAMLs (without .yaml)."""
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def find_yaml(data: str | os.PathLike[str]) -> Path:
    """The YAML file `data=` names: an existing file, a folder holding one YAML, or a bundled name."""
    text = os.fspath(data)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    found = (sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise UsageError(f"data={text} is a folder with {len(found)} YAML files; name the YAML file itself")
    name = text if text.endswith((".yaml", ".yml")) else f"{text}.yaml"
    if "/" not in name and os.sep not in name and (bundled_dir() / name).is_file():
        return bundled_dir() / name  # also when a folder of that name (e.g. the unpacked dataset) is here
    raise UsageError(f"data={text} not found: give a dataset YAML path or a bundled name "
                     f"({', '.join(bundled_datasets())})")


# ---------------------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class Labels:
    """Ground truth of one image.

    cls: int64 [N] contiguous class ids; boxes: float64 [N, 4] xyxy in original-image pixels;
    crowd: bool [N] (COCO `iscrowd`; never set by txt labels); area: float64 [N] (the COCO JSON `area`, else
    the box area).
    """

    cls: np.ndarray
    boxes: np.ndarray
    crowd: np.ndarray
    area: np.ndarray

    @staticmethod
    def empty() -> Labels:
        return Labels(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, bool), np.zeros(0))

    @staticmethod
    def from_xyxy(cls: Any, boxes: Any, crowd: Any = None, area: Any = None) -> Labels:
        """Labels from class ids [N] and xyxy pixel boxes [N, 4] (crowd: all False, area: the box area)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        n = len(boxes)
        crowd = np.zeros(n, bool) if crowd is None else np.asarray(crowd, dtype=bool)
        if area is None:
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return Labels(np.asarray(cls, dtype=np.int64).reshape(n), boxes, crowd, np.asarray(area, np.float64))

    def __len__(self) -> int:
        return len(self.cls)

    def select(self, keep: np.ndarray) -> Labels:
        """The rows where `keep` (bool [N]) is True."""
        return Labels(self.cls[keep], self.boxes[keep], self.crowd[keep], self.area[keep])

    def only_classes(self, classes: Sequence[int] | None) -> Labels:
        """Rows of these class ids (None: all)."""
        return self if classes is None else self.select(np.isin(self.cls, list(classes)))


class CorruptSample(YoloNasError):
    """An image that cannot be decoded or whose labels cannot be read; the loop reports and skips it."""


class ClassIdOutOfRange(CorruptSample):
    """A label line whose class id is a whole number >= nc: `val` skips the image like any CorruptSample,
    `train` stops on it (a class the model cannot learn means the labels or the YAML's names are wrong)."""


class _ClassIdTooLarge(ValueError):
    """`_parse_line`'s error for a whole-number class id >= nc."""


def label_path(image: Path) -> Path:
    """`.../images/x/a.jpg` -> `.../labels/x/a.txt` (the last `images` folder; else next to the image)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _parse_line(line: str, nc: int) -> tuple[int, list[float]]:
    """One txt label line -> (class, [xc, yc, w, h] normalised). Raises ValueError when malformed."""
    values = line.split()
    numbers = [float(v) for v in values]
    if len(numbers) == 5:
        box = numbers[1:]
    elif len(numbers) >= 7 and len(numbers) % 2 == 1:  # a polygon: its bounding box
        xs, ys = numbers[1::2], numbers[2::2]
        box = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
    else:
        raise ValueError(f"expected 'class xc yc w h', got {len(values)} values")
    cls = numbers[0]
    if not np.isfinite(cls) or cls != int(cls) or cls < 0:
        raise ValueError(f"class {values[0]} is not an id in 0..{nc - 1}")
    if cls >= nc:
        raise _ClassIdTooLarge(f"class {values[0]} is not an id in 0..{nc - 1}")
    if not all(np.isfinite(box)) or min(box) < 0 or max(box) > 1.0 + 1e-6:
        raise ValueError("coordinates are not normalised to [0, 1]")
    return int(cls), box


def read_txt_labels(path: Path, hw: tuple[int, int], nc: int) -> Labels:
    """The labels of `path` for an image of size `hw` = (H, W); empty when the file is missing or empty.

    Boxes: `x1 = (xc - w / 2) * W`, `y1 = (yc - h / 2) * H`, `x2 = (xc + w / 2) * W`, `y2 = (yc + h / 2) * H`,
    float64, not clipped. Raises CorruptSample for a malformed line (ClassIdOutOfRange, a subclass, for a
    whole-number class id >= nc).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Labels.empty()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptSample(f"label file {path} cannot be read ({exc})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(_parse_line(line, nc))
        except _ClassIdTooLarge as exc:
            raise ClassIdOutOfRange(f"{path} line {number}: {exc}") from None
        except ValueError as exc:
            raise CorruptSample(f"{path} line {number}: {exc}") from None
    if not rows:
        return Labels.empty()
    height, width = hw
    xywh = np.array([box for _, box in rows], dtype=np.float64)
    xc, yc, w, h = xywh.T
    x1, y1, x2, y2 = (xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height
    boxes = np.stack([x1, y1, x2, y2], 1)
    return Labels.from_xyxy([c for c, _ in rows], boxes)


# ---------------------------------------------------------------------------------------- COCO JSON


@dataclass
class CocoAnnotations:
    """A COCO JSON file indexed for lookup: `data` is the parsed file (the pycocotools ground truth),
    `by_file` maps an image file name to its image record, `anns` maps an image id to its annotations and
    `class_of` maps a category id to a contiguous class id."""

    path: Path
    data: dict[str, Any]
    by_file: dict[str, dict[str, Any]]
    anns: dict[Any, list[dict[str, Any]]]
    class_of: dict[int, int]

    @staticmethod
    def load(path: Path, names: dict[int, str]) -> CocoAnnotations:
        """Parse `path`; categories map to classes by name when all names match, else by sorted id."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise YoloNasError(f"cannot read the COCO annotations {path} ({exc})") from None
        by_file = {Path(img["file_name"]).name: img for img in data.get("images", [])}
        anns: dict[Any, list[dict[str, Any]]] = {}
        for ann in data.get("annotations", []):
            anns.setdefault(ann["image_id"], []).append(ann)
        return CocoAnnotations(path, data, by_file, anns, _class_of(data.get("categories", []), names, path))

    def labels(self, image_id: Any) -> Labels:
        """The labels of one image: bbox (ltwh) -> xyxy, iscrowd, area."""
        rows = [a for a in self.anns.get(image_id, []) if a["category_id"] in self.class_of]
        if not rows:
            return Labels.empty()
        ltwh = np.array([a["bbox"] for a in rows], dtype=np.float64).reshape(-1, 4)
        boxes = np.concatenate([ltwh[:, :2], ltwh[:, :2] + ltwh[:, 2:]], axis=1)
        area = [a.get("area", w * h) for a, (_, _, w, h) in zip(rows, ltwh)]
        return Labels.from_xyxy([self.class_of[a["category_id"]] for a in rows], boxes,
                                [bool(a.get("iscrowd", 0)) for a in rows], area)


def _class_of(categories: list[dict[str, Any]], names: dict[int, str], path: Path) -> dict[int, int]:
    by_name = {name: idx for idx, name in names.items()}
    if categories and all(c.get("name") in by_name for c in categories):
        return {int(c["id"]): by_name[c["name"]] for c in categories}
    ids = sorted(int(c["id"]) for c in categories)
    if len(ids) != len(names):
        raise YoloNasError(f"{path} has {len(ids)} categories whose names do not match the {len(names)} "
                           "class names of the dataset YAML; make the names agree")
    return {cat: idx for idx, cat in enumerate(ids)}


# ---------------------------------------------------------------------------------------- dataset


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

    def load(self, index: int) -> Sample:
        """Decode image `index` and read its labels. Raises CorruptSample."""
        path = self.files[index]
        image = read_image(path)
        if image is None or image.size == 0 or image.ndim not in (2, 3):
            raise CorruptSample(f"{path} cannot be decoded as an image")
        hw = (int(image.shape[0]), int(image.shape[1]))
        image_id = self.image_ids[index]
        labels = self.coco.labels(image_id) if self.coco else read_txt_labels(label_path(path), hw, self.nc)
        return Sample(index, path, image_id, image, labels)


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


# ---------------------------------------------------------------------------------------- YAML


def read_yaml(path: Path) -> dict[str, Any]:
    """The dataset YAML as a dict (validated: a split, names or nc)."""
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise UsageError(f"cannot read the dataset YAML {path} ({reason})") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{path} is not a dataset YAML (expected keys path, train, val, names)")
    if "validation" in spec and "val" not in spec:
        console.warn(f"{path}: 'validation' is read as 'val'")
        spec["val"] = spec.pop("validation")
    spec["names"] = parse_names(spec, path)
    return spec


def parse_names(spec: dict[str, Any], path: Path) -> dict[int, str]:
    """{id: name} from `names` (dict or list) and/or `nc`; ids must be 0..nc-1."""
    names, nc = spec.get("names"), spec.get("nc")
    if names is None and nc is None:
        raise UsageError(f"{path} has neither 'names' nor 'nc'")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 1):
        raise UsageError(f"{path}: nc={nc} is not a positive whole number")
    if names is None:
        return {i: f"class_{i}" for i in range(nc or 0)}
    parsed = dict(enumerate(names)) if isinstance(names, (list, tuple)) else names
    if not isinstance(parsed, dict) or sorted(parsed) != list(range(len(parsed))):
        raise UsageError(f"{path}: 'names' must be a list or a mapping of ids 0..N-1 to names")
    if nc is not None and nc != len(parsed):
        raise UsageError(f"{path}: nc={nc} but 'names' lists {len(parsed)} classes")
    return {int(k): str(v) for k, v in parsed.items()}


def candidate_roots(spec: dict[str, Any], yaml_path: Path) -> list[Path]:
    """Where the dataset root may be, in order of preference (the last one is where downloads go)."""
    raw = spec.get("path")
    if not raw:
        return [yaml_path.parent.absolute()]
    path = Path(str(raw)).expanduser()
    if path.is_absolute():
        return [path]
    return [(yaml_path.parent / path).absolute(), datasets_dir() / path]


def _split_entry(root: Path, entry: str) -> Path:
    path = Path(entry).expanduser()
    if path.is_absolute():
        return path
    joined = root / path
    if not joined.exists() and entry.startswith("../") and (root / entry[3:]).exists():
        return root / entry[3:]
    return joined


def split_paths(spec: dict[str, Any], split: str, root: Path) -> list[Path]:
    """The folders, lists or images of `split`, joined to `root`."""
    entry = spec.get(split)
    if not entry:
        raise UsageError(f"the dataset YAML has no '{split}' split: add it or choose split=val/test/train")
    entries = entry if isinstance(entry, (list, tuple)) else [entry]
    return [_split_entry(root, str(e)) for e in entries]


def list_images(paths: Sequence[Path]) -> list[Path]:
    """Image files of folders (recursive), `.txt` lists and single images, in order (folders sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.suffix.lower() == ".txt":
            base = path.parent
            lines = path.read_text(encoding="utf-8").splitlines()
            files += [_list_entry(base, line.strip()) for line in lines if line.strip()]
        else:
            files.append(path)
    return files


def _list_entry(base: Path, line: str) -> Path:
    path = Path(line[2:] if line.startswith("./") else line).expanduser()
    return path if path.is_absolute() else base / path


def load_dataset(data: str | os.PathLike[str], split: str = "val", *, download: bool = True) -> Dataset:
    """Resolve `data=` and `split` into a `Dataset`, downloading a missing dataset when the YAML says how.

    Raises UsageError (bad YAML, unknown split) or YoloNasError (images missing, download failed, no images).
    """
    yaml_path = find_yaml(data).absolute()
    spec = read_yaml(yaml_path)
    root = _existing_root(spec, yaml_path, split)
    if root is None:
        root = candidate_roots(spec, yaml_path)[-1]
        _download_or_fail(spec, yaml_path, root, split, download)
    files = list_images(split_paths(spec, split, root))
    if not files:
        raise YoloNasError(f"no images found for split '{split}' of {yaml_path.name} under "
                           f"{', '.join(map(str, split_paths(spec, split, root)))}")
    coco = _annotations(spec, split, root)
    dataset = Dataset(yaml_path, root, split, spec["names"], files, coco)
    if not len(dataset):
        raise YoloNasError(f"none of the {len(files)} '{split}' images of {yaml_path.name} is listed in "
                           f"{coco.path if coco else 'the annotations'} (images are matched by file name)")
    return dataset


def _existing_root(spec: dict[str, Any], yaml_path: Path, split: str) -> Path | None:
    for root in candidate_roots(spec, yaml_path):
        if all(map(_split_ready, split_paths(spec, split, root))):
            return root
    return None


def _split_ready(path: Path) -> bool:
    """True when a split entry exists; for a `.txt` list, when its first image exists too (a labels-only
    download of COCO has the lists but not the images)."""
    if path.suffix.lower() != ".txt" or not path.is_file():
        return path.exists()
    with path.open(encoding="utf-8") as f:
        first = next((line.strip() for line in f if line.strip()), None)
    return first is None or _list_entry(path.parent, first).exists()


def _annotations(spec: dict[str, Any], split: str, root: Path) -> CocoAnnotations | None:
    entry = spec.get("annotations")
    entry = entry.get(split) if isinstance(entry, dict) else (entry if split == "val" else None)
    if not entry:
        return None
    path = _split_entry(root, str(entry))
    if not path.is_file():
        raise YoloNasError(f"the COCO annotations {path} named by the dataset YAML are missing")
    return CocoAnnotations.load(path, spec["names"])


# ---------------------------------------------------------------------------------------- download


@dataclass(frozen=True)
class DownloadEntry:
    """One archive to fetch: unpacked into `dir` (relative to the dataset root)."""

    url: str
    dir: str = ".."
    sha256: str | None = None
    size: int | None = None
    splits: tuple[str, ...] | None = None


def download_entries(spec: dict[str, Any], yaml_path: Path) -> list[DownloadEntry]:
    """The archives of the YAML's `download` key (UsageError for scripts and unknown forms)."""
    raw = spec.get("download")
    if not raw:
        return []
    items = raw if isinstance(raw, list) else [raw]
    entries = []
    for item in items:
        if isinstance(item, str):
            item = {"url": item}
        if not isinstance(item, dict) or not isinstance(item.get("url"), str) or "://" not in item["url"]:
            raise YoloNasError(f"{yaml_path.name}: 'download' is a script or not a URL; yolo-nas runs no "
                               "scripts: download the dataset by hand")
        splits = item.get("splits")
        entries.append(DownloadEntry(item["url"], str(item.get("dir", "..")), item.get("sha256"),
                                     item.get("size"), tuple(splits) if splits else None))
    return entries


def _layout_hint(spec: dict[str, Any], root: Path, split: str) -> str:
    where = ", ".join(str(p) for p in split_paths(spec, split, root))
    return f"the '{split}' images belong at {where} and their YOLO labels in the matching labels/ folder"


def _download_or_fail(spec: dict[str, Any], yaml_path: Path, root: Path, split: str, allowed: bool) -> None:
    entries = [e for e in download_entries(spec, yaml_path) if e.splits is None or split in e.splits]
    hint = _layout_hint(spec, root, split)
    if not entries or not allowed:
        raise YoloNasError(f"dataset {yaml_path.name} not found: {hint} (datasets directory "
                           f"{datasets_dir()}, set {DATASETS_DIR_ENV} to change it)")
    for entry in entries:
        try:
            unpack_url(entry, (root / entry.dir).resolve())
        except DownloadError as exc:
            raise YoloNasError(f"dataset {yaml_path.name} is missing and its download failed: {exc}; "
                               f"otherwise unpack it by hand: {hint}") from None
    if not all(map(_split_ready, split_paths(spec, split, root))):
        raise YoloNasError(f"dataset {yaml_path.name} was downloaded but {hint}")


def archive_name(url: str) -> str:
    """The file name of an archive URL (query string dropped)."""
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not name.lower().endswith(ARCHIVE_SUFFIXES):
        raise YoloNasError(f"{url} is not a .zip or .tar archive; download the dataset by hand")
    return name


def unpack_url(entry: DownloadEntry, dest: Path) -> None:
    """Download `entry.url` next to `dest` (progress, resume, sha256/size when known) and unpack it into
    `dest`; the archive is deleted after a complete unpack."""
    from yolonas_cli.weights.download import fetch  # lazy: the downloader is only needed here

    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / archive_name(entry.url)
    if not _usable(archive, entry):
        console.info(f"Downloading {entry.url} to {archive}")
        fetch(entry.url, archive, sha256=entry.sha256, size=entry.size,
              description=f"Downloading {archive.name}")
    console.info(f"Unpacking {archive.name} into {dest}")
    unpack_archive(archive, dest)
    archive.unlink()


def _usable(archive: Path, entry: DownloadEntry) -> bool:
    """True when `archive` is already there (put by hand) and matches the known size and sha256."""
    from yolonas_cli.weights.download import sha256_file

    if not archive.is_file():
        return False
    if entry.size is not None and archive.stat().st_size != entry.size:
        return False
    return entry.sha256 is None or sha256_file(archive) == entry.sha256.lower()


def unpack_archive(archive: Path, dest: Path) -> list[Path]:
    """Unpack `archive` into `dest` atomically per top-level entry: everything is first extracted into a
    hidden temporary folder inside `dest`, then each top-level file or folder is moved into place with
    `os.replace` (merged into an existing folder). Members with absolute paths or `..` are refused.
    Returns the top-level paths created or merged."""
    tmp = dest / f".{archive.name}.{secrets.token_hex(4)}.partial"
    tmp.mkdir(parents=True)
    try:
        _extract(archive, tmp)
        placed = []
        for item in sorted(tmp.iterdir()):
            if item.name == "__MACOSX":
                continue
            _merge(item, dest / item.name)
            placed.append(dest / item.name)
        return placed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _safe_member(name: str) -> bool:
    parts = Path(name).parts
    return not (Path(name).is_absolute() or ".." in parts or name.startswith(("/", "\\")))


def _extract(archive: Path, into: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                bad = [n for n in zf.namelist() if not _safe_member(n)]
                if bad:
                    raise YoloNasError(f"{archive} has unsafe member paths such as {bad[0]!r}; not unpacked")
                zf.extractall(into)
            return
        with tarfile.open(archive) as tf:
            bad = [m.name for m in tf.getmembers() if not _safe_member(m.name) or m.issym() or m.islnk()]
            if bad:
                raise YoloNasError(f"{archive} has unsafe members such as {bad[0]!r}; not unpacked")
            if hasattr(tarfile, "data_filter"):
                tf.extractall(into, filter="data")
            else:  # pragma: no cover (Python < 3.11.4; members were checked above)
                tf.extractall(into)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        with contextlib.suppress(FileNotFoundError):
            archive.unlink()
        raise YoloNasError(f"{archive} is not a valid archive ({exc}); it was deleted, run again") from None


def _merge(src: Path, dst: Path) -> None:
    """Move `src` to `dst`; a folder onto an existing folder is merged (existing files are kept)."""
    if not dst.exists():
        os.replace(src, dst)
        return
    if src.is_dir() and dst.is_dir():
        for child in sorted(src.iterdir()):
            _merge(child, dst / child.name)
