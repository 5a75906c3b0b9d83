"""COCO JSON annotations as the ground truth of a split (boxes, crowd flags, areas, category ids)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolonas_cli.core.errors import YoloNasError
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
        return Labels.from_xyxy(
            [self.class_of[a["category_id"]] for a in rows], boxes, [bool(a.get("iscrowd", 0)) for a in rows], area
        )


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
