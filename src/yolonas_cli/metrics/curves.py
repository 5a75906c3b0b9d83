"""Precision, recall and F1 against confidence at IoU 0.5, per class, and the best-F1 confidence: how P and R
are reported (the way Ultralytics reports them), and what the PR plot draws."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONF_GRID = np.linspace(0, 1, 1000)
_EPS = 1e-16


@dataclass
class PRCurves:
    """Per-class curves at IoU 0.5 for the classes with targets (`classes`, ascending).

    p, r, f1: [C, 1000] precision, recall and F1 against the confidence grid `CONF_GRID`;
    pr: [C, 1000] the precision envelope against recall `CONF_GRID` (for the PR plot);
    best: index into the grid of the confidence with the highest smoothed mean F1.
    """

    classes: np.ndarray
    p: np.ndarray
    r: np.ndarray
    f1: np.ndarray
    pr: np.ndarray
    best: int

    @property
    def precision(self) -> np.ndarray:
        """[C] precision of each class at the best-F1 confidence."""
        return self.p[:, self.best] if len(self.classes) else np.zeros(0)

    @property
    def recall(self) -> np.ndarray:
        """[C] recall of each class at the best-F1 confidence."""
        return self.r[:, self.best] if len(self.classes) else np.zeros(0)

    @property
    def f1_at_best(self) -> np.ndarray:
        """[C] F1 of each class at the best-F1 confidence."""
        return self.f1[:, self.best] if len(self.classes) else np.zeros(0)

    @property
    def best_conf(self) -> float:
        return float(CONF_GRID[self.best])


def _class_curves(tp: np.ndarray, conf: np.ndarray, n_gt: int) -> tuple[np.ndarray, ...]:
    """(p, r, pr) curves of one class from its detections' tp [n] and conf [n] (ignored ones removed)."""
    order = np.argsort(-conf, kind="stable")
    tpc = np.cumsum(tp[order])
    fpc = np.cumsum(~tp[order])
    recall = tpc / (n_gt + _EPS)
    precision = tpc / np.maximum(tpc + fpc, 1)
    x = -conf[order]
    r = np.interp(-CONF_GRID, x, recall, left=0)
    p = np.interp(-CONF_GRID, x, precision, left=1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.flip(np.maximum.accumulate(np.flip(np.concatenate([[1.0], precision, [0.0]]))))
    return p, r, np.interp(CONF_GRID, mrec, mpre)


def _smooth(y: np.ndarray, width: int = 101) -> np.ndarray:
    """Box-filter smoothing with edge padding (same length)."""
    half = width // 2
    padded = np.concatenate([np.full(half, y[0]), y, np.full(half, y[-1])])
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def pr_curves(
    tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, ignored: np.ndarray, n_gt: np.ndarray
) -> PRCurves:
    """Curves at IoU 0.5 from all detections of a run.

    Args:
        tp, ignored: bool [N] (the IoU-0.5 column of `match_image`'s outputs); conf, pred_cls: [N].
        n_gt: int [nc] non-crowd targets per class.
    """
    classes = np.nonzero(n_gt > 0)[0]
    shape = (len(classes), len(CONF_GRID))
    p, r, pr = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    keep = ~ignored
    for row, c in enumerate(classes):
        sel = keep & (pred_cls == c)
        if sel.any():
            p[row], r[row], pr[row] = _class_curves(tp[sel], conf[sel], int(n_gt[c]))
    f1 = 2 * p * r / (p + r + _EPS)
    best = int(_smooth(f1.mean(0)).argmax()) if len(classes) else 0
    return PRCurves(classes, p, r, f1, pr, best)
