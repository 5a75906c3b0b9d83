"""What a val run returns: `BoxMetrics` (the printed numbers) inside `ValMetrics` (with speed, counts, every
COCOeval stat and the original's metric)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PR_DEFINITION = (
    "Ultralytics-style: precision and recall at IoU 0.5 at the confidence of the best smoothed mean F1 "
    "(best_f1_conf), mean over the classes with targets"
)


@dataclass
class BoxMetrics:
    """Box metrics of a val run (the numbers `yolo-nas val` prints).

    map, map50, map75, map_small, map_medium, map_large: pycocotools' COCOeval stats (0 when undefined).
    ap_class_index: int [C] the classes with targets; p, r, ap50, ap: float [C] per such class (P and R at the
    best-F1 confidence, AP from COCOeval). mp, mr: mean P and R over them. images, instances: int [nc] per
    class, images containing the class and its non-crowd boxes.
    """

    nc: int
    map: float = 0.0
    map50: float = 0.0
    map75: float = 0.0
    map_small: float = 0.0
    map_medium: float = 0.0
    map_large: float = 0.0
    mp: float = 0.0
    mr: float = 0.0
    ap_class_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    p: np.ndarray = field(default_factory=lambda: np.zeros(0))
    r: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ap50: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ap: np.ndarray = field(default_factory=lambda: np.zeros(0))
    images: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    instances: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    best_conf: float = 0.0

    @property
    def maps(self) -> np.ndarray:
        """float [nc] mAP50-95 per class; classes without targets get the overall `map` (as Ultralytics)."""
        out = np.full(self.nc, self.map, dtype=np.float64)
        out[self.ap_class_index] = self.ap
        return out

    @property
    def fitness(self) -> float:
        """0.1 mAP50 + 0.9 mAP50-95."""
        return 0.1 * self.map50 + 0.9 * self.map

    def class_result(self, i: int) -> tuple[float, float, float, float]:
        """(P, R, mAP50, mAP50-95) of the i-th class of `ap_class_index`."""
        return float(self.p[i]), float(self.r[i]), float(self.ap50[i]), float(self.ap[i])


@dataclass
class ValMetrics:
    """What `validate()` / `NAS.val()` returns.

    box: the `BoxMetrics`; speed: ms per image {preprocess, inference, loss, postprocess}; names: class
    names; seen: images evaluated; skipped: corrupt images skipped; coco: every COCOeval stat by name;
    sg: the original's metric (protocol=sg, `metrics.sg.SGResult.as_dict`: mAP50-95, mAP50, mAP75, its own
    precision, recall, f1 at score_threshold, best_score_threshold, pr_definition) or None; save_dir: the run
    folder.
    """

    box: BoxMetrics
    speed: dict[str, float]
    names: dict[int, str]
    seen: int = 0
    skipped: int = 0
    coco: dict[str, float] = field(default_factory=dict)
    sg: dict[str, Any] | None = None
    save_dir: Path | None = None
    protocol: str = "coco"

    @property
    def fitness(self) -> float:
        return self.box.fitness

    @property
    def keys(self) -> list[str]:
        return ["metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)"]

    @property
    def results_dict(self) -> dict[str, float]:
        """Ultralytics' keys: metrics/precision(B), metrics/recall(B), metrics/mAP50(B),
        metrics/mAP50-95(B), fitness."""
        values = [self.box.mp, self.box.mr, self.box.map50, self.box.map]
        return {**dict(zip(self.keys, map(float, values))), "fitness": float(self.fitness)}

    def to_dict(self) -> dict[str, Any]:
        """Every printed number, JSON-ready (metrics.json)."""
        b = self.box
        classes = [
            {
                "class": int(c),
                "name": self.names[int(c)],
                "images": int(b.images[c]),
                "instances": int(b.instances[c]),
                "precision": float(b.p[i]),
                "recall": float(b.r[i]),
                "mAP50": float(b.ap50[i]),
                "mAP50-95": float(b.ap[i]),
            }
            for i, c in enumerate(b.ap_class_index)
        ]
        return {
            "protocol": self.protocol,
            "images": self.seen,
            "skipped_images": self.skipped,
            "instances": int(b.instances.sum()) if len(b.instances) else 0,
            "all": {
                "precision": b.mp,
                "recall": b.mr,
                "mAP50": b.map50,
                "mAP50-95": b.map,
                "mAP75": b.map75,
                "mAP_small": b.map_small,
                "mAP_medium": b.map_medium,
                "mAP_large": b.map_large,
                "best_f1_conf": b.best_conf,
                "pr_definition": PR_DEFINITION,
            },
            "classes": classes,
            "coco": dict(self.coco),
            "sg": self.sg,
            "speed": dict(self.speed),
            "results_dict": self.results_dict,
        }

    def __repr__(self) -> str:
        b = self.box
        return (
            f"ValMetrics(images={self.seen}, mAP50-95={b.map:.4f}, mAP50={b.map50:.4f}, "
            f"mAP75={b.map75:.4f}, P={b.mp:.4f}, R={b.mr:.4f})"
        )
