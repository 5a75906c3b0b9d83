"""COCO JSON annotations as the ground truth of a split (boxes, crowd flags, areas, category ids).

The file is checked entry by entry when it is read (`validated`), so a malformed one is one line naming the
file, the entry and what is wrong, never a KeyError deep in the evaluation: an object with the lists
`images` (each with `id` and `file_name`), `annotations` (each with `image_id`, `category_id` and `bbox`
[x, y, w, h] of finite numbers, w and h >= 0) and `categories` (each with `id` and `name`). An annotation
without `area`, `iscrowd` or `id` gets w * h, 0 and its position + 1 (what pycocotools needs)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.paths import read_regular_text
from yolonas_cli.data.datasets.labels import Labels


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
            data = validated(json.loads(read_regular_text(path)), path)
        except (OSError, ValueError) as exc:
            raise YoloNasError(f"cannot read the COCO annotations {path} ({exc})") from None
        by_file = {Path(img["file_name"]).name: img for img in data["images"]}
        anns: dict[Any, list[dict[str, Any]]] = {}
        for ann in data["annotations"]:
            anns.setdefault(ann["image_id"], []).append(ann)
        return CocoAnnotations(path, data, by_file, anns, _class_of(data["categories"], names, path))

    def labels(self, image_id: Any) -> Labels:
        """The labels of one image: bbox (ltwh) -> xyxy, iscrowd, area."""
        rows = [a for a in self.anns.get(image_id, []) if a["category_id"] in self.class_of]
        if not rows:
            return Labels.empty()
        ltwh = np.array([a["bbox"] for a in rows], dtype=np.float64).reshape(-1, 4)
        boxes = np.concatenate([ltwh[:, :2], ltwh[:, :2] + ltwh[:, 2:]], axis=1)
        area = [a.get("area", w * h) for a, (_, _, w, h) in zip(rows, ltwh)]
        return Labels.from_xyxy(
            [self.class_of[a["category_id"]] for a in rows], boxes, [bool(a.get("iscrowd", 0)) for a in rows], area
        )


class CocoFormatError(YoloNasError):
    """A COCO JSON file whose structure is not COCO's; the message names the file and the entry."""


def validated(data: Any, path: Path) -> dict[str, Any]:
    """`data` (parsed JSON) checked as a COCO detection file, with the defaults of the module docstring
    filled in. Raises CocoFormatError naming `path`, the entry and the problem."""
    if not isinstance(data, dict):
        raise _bad(path, "the top level", f"is a JSON {_json_kind(data)}, not an object with images and annotations")
    for key in ("images", "annotations", "categories"):
        data.setdefault(key, [])
        if not isinstance(data[key], list):
            raise _bad(path, f"'{key}'", f"is a JSON {_json_kind(data[key])}, not a list")
    for i, image in enumerate(data["images"]):
        _check_image(image, f"images[{i}]", path)
    for i, ann in enumerate(data["annotations"]):
        _check_annotation(ann, i, path)
    for i, category in enumerate(data["categories"]):
        where = f"categories[{i}]"
        _need(category, ("id", "name"), where, path)
        _integer(category["id"], f"{where}.id", path)
        if not isinstance(category["name"], str):
            raise _bad(path, f"{where}.name", "is not a name (text)")
    return data


def _check_image(image: Any, where: str, path: Path) -> None:
    _need(image, ("id", "file_name"), where, path)
    if not isinstance(image["file_name"], str) or not image["file_name"]:
        raise _bad(path, f"{where}.file_name", "is not a file name (text)")
    if not isinstance(image["id"], (int, str)) or isinstance(image["id"], bool):
        raise _bad(path, f"{where}.id", "is not an id (a whole number or text)")


def _check_annotation(ann: Any, index: int, path: Path) -> None:
    where = f"annotations[{index}]"
    _need(ann, ("image_id", "category_id", "bbox"), where, path)
    _integer(ann["category_id"], f"{where}.category_id", path)
    box = ann["bbox"]
    numbers = isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)
    if not numbers or box[2] < 0 or box[3] < 0:
        raise _bad(path, f"{where}.bbox", "is not [x, y, width, height] of four finite numbers with width, height >= 0")
    ann.setdefault("area", box[2] * box[3])
    ann.setdefault("iscrowd", 0)
    ann.setdefault("id", index + 1)
    if not _finite(ann["area"]):
        raise _bad(path, f"{where}.area", "is not a finite number")
    if ann["iscrowd"] not in (0, 1):
        raise _bad(path, f"{where}.iscrowd", "is not 0 or 1")


def _need(entry: Any, keys: tuple[str, ...], where: str, path: Path) -> None:
    if not isinstance(entry, dict):
        raise _bad(path, where, f"is a JSON {_json_kind(entry)}, not an object")
    missing = [key for key in keys if key not in entry]
    if missing:
        raise _bad(path, where, f"has no '{missing[0]}' (each needs {', '.join(keys)})")


def _integer(value: Any, where: str, path: Path) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(path, where, "is not a whole number")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_kind(value: Any) -> str:
    kinds = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def _bad(path: Path, where: str, problem: str) -> CocoFormatError:
    return CocoFormatError(f"the COCO annotations {path} are malformed: {where} {problem}")


def _class_of(categories: list[dict[str, Any]], names: dict[int, str], path: Path) -> dict[int, int]:
    by_name = {name: idx for idx, name in names.items()}
    if categories and all(c.get("name") in by_name for c in categories):
        return {int(c["id"]): by_name[c["name"]] for c in categories}
    ids = sorted(int(c["id"]) for c in categories)
    if len(ids) != len(names):
        raise YoloNasError(
            f"{path} has {len(ids)} categories whose names do not match the {len(names)} "
            "class names of the dataset YAML; make the names agree"
        )
    return {cat: idx for idx, cat in enumerate(ids)}
