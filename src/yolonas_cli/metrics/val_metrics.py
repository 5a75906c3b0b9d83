"""What a val run returns: `BoxMetrics` (the printed numbers) inside `ValMetrics` (with speed, counts, every
COCOeval stat, the original's metric, the curves and the confusion matrix), with Ultralytics' `DetMetrics`
API: `metrics.box.map`, `.map50`, `.map75`, `.maps`, `.f1`, `.all_ap`, `.mean_results()`, `results_dict`,
`summary()`, `to_df()`, `to_csv()`, `to_json()`, `curves`, `curves_results`, `confusion_matrix`."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolonas_cli.core.install import require
from yolonas_cli.metrics.confusion import ConfusionMatrix
from yolonas_cli.metrics.curves import CONF_GRID, PRCurves

_CURVE_AXES = (("Recall", "Precision"), ("Confidence", "F1"), ("Confidence", "Precision"), ("Confidence", "Recall"))
_SUMMARY_METRICS = ("Box-P", "Box-R", "Box-F1", "mAP50", "mAP50-95")
_SUMMARY_COLUMNS = ("Class", "Images", "Instances", *_SUMMARY_METRICS)
PR_DEFINITION = (
    "Ultralytics-style: precision and recall at IoU 0.5 at the confidence of the best smoothed mean F1 "
    "(best_f1_conf), mean over the classes with targets"
)


@dataclass
class BoxMetrics:
    """Box metrics of a val run (the numbers `yolo-nas val` prints).

    map, map50, map75, map_small, map_medium, map_large: pycocotools' COCOeval stats (0 when undefined).
    ap_class_index: int [C] the classes with targets; p, r, f1, ap50, ap: float [C] per such class (P, R and F1
    at the best-F1 confidence, AP from COCOeval); all_ap: float [C, 10] COCOeval's AP of each class at IoU
    0.50:0.05:0.95 (its mean over the thresholds is `ap`, its first column `ap50`). mp, mr: mean P and R over
    the classes. images, instances: int [nc] per class, images containing the class and its non-crowd boxes.
    pr_curves: the curves at IoU 0.5 behind P, R and F1 (Ultralytics' `px`, `p_curve`, `r_curve`, `f1_curve`,
    `prec_values`, `curves_results`).
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
    f1: np.ndarray = field(default_factory=lambda: np.zeros(0))
    all_ap: np.ndarray = field(default_factory=lambda: np.zeros((0, 10)))
    pr_curves: PRCurves | None = None

    @property
    def maps(self) -> np.ndarray:
        """float [nc] mAP50-95 per class; classes without targets get the overall `map` (as Ultralytics)."""
        out = np.full(self.nc, self.map, dtype=np.float64)
        out[self.ap_class_index] = self.ap
        return out

    def fitness(self) -> float:
        """0.1 mAP50 + 0.9 mAP50-95 (a method, as Ultralytics' `Metric.fitness()`)."""
        return 0.1 * self.map50 + 0.9 * self.map

    # --- the curves at IoU 0.5, per class of `ap_class_index` -----------------------------------------
    @property
    def px(self) -> np.ndarray:
        """[1000] the confidence (and recall) grid the curves are sampled on."""
        return CONF_GRID

    @property
    def p_curve(self) -> np.ndarray:
        """[C, 1000] precision against confidence."""
        return self._curve("p")

    @property
    def r_curve(self) -> np.ndarray:
        """[C, 1000] recall against confidence."""
        return self._curve("r")

    @property
    def f1_curve(self) -> np.ndarray:
        """[C, 1000] F1 against confidence."""
        return self._curve("f1")

    @property
    def prec_values(self) -> np.ndarray:
        """[C, 1000] the precision envelope against recall (the PR curve)."""
        return self._curve("pr")

    @property
    def curves_results(self) -> list[list[Any]]:
        """One [x [1000], y [C, 1000], x label, y label] per curve of `ValMetrics.curves`: precision against
        recall, then F1, precision and recall against the confidence."""
        values = (self.prec_values, self.f1_curve, self.p_curve, self.r_curve)
        return [[CONF_GRID, y, x_label, y_label] for y, (x_label, y_label) in zip(values, _CURVE_AXES)]

    def _curve(self, name: str) -> np.ndarray:
        if self.pr_curves is None:
            return np.zeros((0, len(CONF_GRID)))
        return getattr(self.pr_curves, name)

    def mean_results(self) -> list[float]:
        """[mean P, mean R, mAP50, mAP50-95] (Ultralytics' order)."""
        return [float(self.mp), float(self.mr), float(self.map50), float(self.map)]

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
    folder; confusion_matrix: the `ConfusionMatrix` (`.matrix` [nc + 1, nc + 1], rows predicted, columns
    true, the last one background).
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
    confusion_matrix: ConfusionMatrix | None = None

    @property
    def fitness(self) -> float:
        """0.1 mAP50 + 0.9 mAP50-95."""
        return self.box.fitness()

    @property
    def maps(self) -> np.ndarray:
        """float [nc] mAP50-95 per class (see `BoxMetrics.maps`)."""
        return self.box.maps

    @property
    def ap_class_index(self) -> np.ndarray:
        """int [C] the classes with targets."""
        return self.box.ap_class_index

    def mean_results(self) -> list[float]:
        """[mean P, mean R, mAP50, mAP50-95]."""
        return self.box.mean_results()

    def class_result(self, i: int) -> tuple[float, float, float, float]:
        """(P, R, mAP50, mAP50-95) of the i-th class of `ap_class_index`."""
        return self.box.class_result(i)

    @property
    def curves(self) -> list[str]:
        """The names of the curves in `curves_results`, in order."""
        return ["Precision-Recall(B)", "F1-Confidence(B)", "Precision-Confidence(B)", "Recall-Confidence(B)"]

    @property
    def curves_results(self) -> list[list[Any]]:
        """One [x [1000], y [C, 1000], x label, y label] per name of `curves` (see `BoxMetrics.curves_results`)."""
        return self.box.curves_results

    def summary(self, normalize: bool = True, decimals: int = 5) -> list[dict[str, Any]]:
        """One dict per class with targets: Class, Images, Instances, Box-P, Box-R, Box-F1, mAP50, mAP50-95
        (rounded to `decimals`; `normalize` is accepted for Ultralytics' signature and changes nothing here)."""
        b = self.box
        rows = []
        for i, c in enumerate(b.ap_class_index):
            values = (b.p[i], b.r[i], b.f1[i] if len(b.f1) else 0.0, b.ap50[i], b.ap[i])
            rows.append(
                {
                    "Class": self.names[int(c)],
                    "Images": int(b.images[c]),
                    "Instances": int(b.instances[c]),
                    **{key: round(float(v), decimals) for key, v in zip(_SUMMARY_METRICS, values)},
                }
            )
        return rows

    def to_df(self, normalize: bool = True, decimals: int = 5) -> Any:
        """`summary()` as a pandas DataFrame (a row per class); needs pandas."""
        pandas = require("pandas", "to_df()")
        return pandas.DataFrame(self.summary(normalize, decimals), columns=list(_SUMMARY_COLUMNS))

    def to_csv(self, normalize: bool = True, decimals: int = 5) -> str:
        """`summary()` as CSV text (standard library only)."""
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(_SUMMARY_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.summary(normalize, decimals))
        return text.getvalue()

    def to_json(self, normalize: bool = True, decimals: int = 5) -> str:
        """`summary()` as a JSON array (indented)."""
        return json.dumps(self.summary(normalize, decimals), indent=2)

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
                "f1": float(b.f1[i]) if len(b.f1) else 0.0,
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
