"""The confusion matrix: detections with conf >= 0.25 matched to non-crowd boxes at IoU > 0.45
(class-agnostic, greedy by IoU); rows are predicted classes, columns true classes, the last row/column is
background."""

from __future__ import annotations

from typing import Any

import numpy as np

from yolonas_cli.core.install import require
from yolonas_cli.data.datasets.labels import Labels
from yolonas_cli.metrics.matching import box_iou_np


class ConfusionMatrix:
    """Counts [nc + 1, nc + 1]: rows predicted class, columns true class, index nc = background. `names` (class
    id -> name) labels `summary()` and `to_df()`."""

    def __init__(self, nc: int, conf: float = 0.25, iou: float = 0.45, names: dict[int, str] | None = None):
        self.nc, self.conf, self.iou = nc, conf, iou
        self.names = dict(names) if names is not None else {i: str(i) for i in range(nc)}
        self.matrix = np.zeros((nc + 1, nc + 1), np.int64)

    def tp_fp(self) -> tuple[np.ndarray, np.ndarray]:
        """(true positives [nc], false positives [nc]) per class: the diagonal, and the rest of each row."""
        tp = np.diag(self.matrix)[: self.nc]
        return tp, self.matrix[: self.nc].sum(1) - tp

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict[str, Any]]:
        """One dict per predicted class (background last): {"Predicted": name, <true class name>: count, ...};
        with `normalize` each true class's column sums to 1."""
        labels = [self.names.get(i, str(i)) for i in range(self.nc)] + ["background"]
        values = self.matrix.astype(np.float64)
        if normalize:
            values = values / np.maximum(values.sum(0, keepdims=True), 1)
        rows = []
        for label, counts in zip(labels, values):
            rows.append({"Predicted": label, **{name: round(float(v), decimals) for name, v in zip(labels, counts)}})
        return rows

    def to_df(self, normalize: bool = False, decimals: int = 5) -> Any:
        """`summary()` as a pandas DataFrame; needs pandas."""
        pandas = require("pandas", "to_df()")
        return pandas.DataFrame(self.summary(normalize, decimals))

    def update(self, det: np.ndarray, gt: Labels) -> None:
        """Add one image: det [K, 6] (xyxy, conf, cls), its labels (crowd rows are left out)."""
        det = det[det[:, 4] >= self.conf]
        gt = gt.select(~gt.crowd)
        pred_cls, true_cls = det[:, 5].astype(np.int64), gt.cls
        used_p, used_t = np.zeros(len(det), bool), np.zeros(len(gt), bool)
        if len(det) and len(gt):
            iou = box_iou_np(det[:, :4], gt.boxes)
            pairs = np.argwhere(iou > self.iou)
            for i, j in pairs[np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")]:
                if not used_p[i] and not used_t[j]:
                    used_p[i] = used_t[j] = True
                    self.matrix[pred_cls[i], true_cls[j]] += 1
        np.add.at(self.matrix[self.nc], true_cls[~used_t], 1)  # missed: predicted background
        np.add.at(self.matrix[:, self.nc], pred_cls[~used_p], 1)  # false: true background
