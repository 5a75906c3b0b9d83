"""The Ultralytics dataset YAML: where a dataset is, its splits, class names and the images of a split.

`data=` is a YAML path, a folder holding one YAML, or a bundled name (`coco8`, `coco8.yaml`, `coco128`,
`coco`; see `src/yolonas_cli/bundled/datasets`). YAML keys (the Ultralytics format):

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
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from yolonas_cli.core import console, safe_yaml
from yolonas_cli.core.errors import UsageError
from yolonas_cli.core.paths import SpecialFileError, expand_user, read_regular_text, special_file_kind
from yolonas_cli.data.sources import IMAGE_SUFFIXES

DATASETS_DIR_ENV = "YOLONAS_DATASETS_DIR"
SPLITS = ("train", "val", "test")
_settings: dict[str, Path | None] = {"datasets_dir": None}


def set_datasets_dir(path: str | os.PathLike[str] | None) -> None:
    """Set the datasets directory for this process (None: back to the environment variable or default)."""
    _settings["datasets_dir"] = expand_user(path) if path is not None else None


def datasets_dir() -> Path:
    """`set_datasets_dir()`'s folder, else `$YOLONAS_DATASETS_DIR`, else `./datasets` (absolute)."""
    chosen = _settings["datasets_dir"]
    if chosen is None and os.environ.get(DATASETS_DIR_ENV):
        chosen = expand_user(os.environ[DATASETS_DIR_ENV])
    return (chosen or Path("datasets")).absolute()


def bundled_dir() -> Path:
    """The folder of the bundled dataset YAMLs."""
    return Path(__file__).parents[2] / "bundled" / "datasets"


def bundled_datasets() -> list[str]:
    """Names of the bundled dataset YAMLs (without .yaml)."""
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def find_yaml(data: str | os.PathLike[str]) -> Path:
    """The YAML file `data=` names: an existing file, a folder holding one YAML, or a bundled name."""
    text = os.fspath(data)
    path = expand_user(text)
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
    raise UsageError(
        f"data={text} not found: give a dataset YAML path or a bundled name ({', '.join(bundled_datasets())})"
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """The dataset YAML as a dict (validated: a split, names or nc)."""
    try:
        spec = safe_yaml.read(path)  # bounded: an alias bomb is refused before it is built
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
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
    path = expand_user(str(raw))
    if path.is_absolute():
        return [path]
    return [(yaml_path.parent / path).absolute(), datasets_dir() / path]


def split_entry(root: Path, entry: str) -> Path:
    path = expand_user(entry)
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
    return [split_entry(root, str(e)) for e in entries]


def list_images(paths: Sequence[Path]) -> list[Path]:
    """Image files of folders (recursive), `.txt` lists and single images, in order (folders sorted).

    Named pipes, devices and sockets are skipped with a warning, never opened (reading a pipe blocks)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and _is_file_like(p))
        elif path.suffix.lower() == ".txt":
            base = path.parent
            lines = _read_list(path).splitlines()
            files += [_list_entry(base, line.strip()) for line in lines if line.strip()]
        else:
            files.append(path)
    return [path for path in files if not _skip_special(path)]


def _is_file_like(path: Path) -> bool:
    """A regular file, or a pipe, device or socket (listed so that it is reported, then skipped)."""
    return path.is_file() or special_file_kind(path) is not None


def _read_list(path: Path) -> str:
    try:
        return read_regular_text(path)
    except SpecialFileError:
        raise UsageError(f"the image list '{path}' is {special_file_kind(path)}, not a text file") from None


def _skip_special(path: Path) -> bool:
    """True (after a warning) for a pipe, device or socket."""
    kind = special_file_kind(path)
    if kind is not None:
        console.warn(f"skipping '{path}': it is {kind}, not an image file")
    return kind is not None


def _list_entry(base: Path, line: str) -> Path:
    path = expand_user(line[2:] if line.startswith("./") else line)
    return path if path.is_absolute() else base / path


def split_ready(path: Path) -> bool:
    """True when a split entry exists; for a `.txt` list, when its first image exists too (a labels-only
    download of COCO has the lists but not the images)."""
    if path.suffix.lower() != ".txt" or not path.is_file():
        return path.exists()
    with path.open(encoding="utf-8") as f:
        first = next((line.strip() for line in f if line.strip()), None)
    return first is None or _list_entry(path.parent, first).exists()
