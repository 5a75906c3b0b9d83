"""The original's metric on known data (tests/fixtures/sg_metric, README there): inputs per image and the
original's numbers, and the largest difference from them (light: used by a subprocess test too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "sg_metric"
SCENARIOS = ("base", "outside", "exact", "recall_grid")
# sg.json entry: (IoU thresholds (None: the original's default 0.50:0.95), top_k, the suffix of its keys)
SETTINGS: dict[str, tuple[list[float] | None, int, str]] = {
    "main": (None, 100, "@0.50:0.95"),
    "at50": ([0.5], 100, "@0.50"),
    "topk300": (None, 300, "@0.50:0.95"),
}


def fixture_inputs(scenario: str) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per image: detections [K, 6] (x1, y1, x2, y2, conf, cls), targets and crowd boxes [M, 5] (xyxy, cls)."""
    with np.load(FIXTURE / "data.npz") as data:
        n, gt, det = int(data[f"{scenario}/n_images"]), data[f"{scenario}/gt"], data[f"{scenario}/det"]
    dets = [det[det[:, 0] == i][:, 1:] for i in range(n)]
    per_image = [gt[gt[:, 0] == i] for i in range(n)]
    targets = [g[g[:, 6] == 0][:, [2, 3, 4, 5, 1]] for g in per_image]
    crowd = [g[g[:, 6] == 1][:, [2, 3, 4, 5, 1]] for g in per_image]
    return dets, targets, crowd


def original(scenario: str) -> dict[str, Any]:
    """The original's numbers for one scenario (sg.json)."""
    return json.loads((FIXTURE / "sg.json").read_text())[scenario]


def scored(scenario: str, setting: str) -> tuple[list[float], list[float]]:
    """(ours, the original's): mAP, precision, recall, F1 and best score threshold of one scenario and setting."""
    from yolonas_cli.metrics.sg import SG_IOU_THRESHOLDS, sg_evaluate

    thresholds, top_k, suffix = SETTINGS[setting]
    iou = SG_IOU_THRESHOLDS if thresholds is None else thresholds
    r = sg_evaluate(*fixture_inputs(scenario), num_classes=6, top_k=top_k, iou_thresholds=iou)
    e = original(scenario)[setting]
    ours = [r.map, r.precision, r.recall, r.f1, r.best_score_threshold]
    theirs = [e[f"{name}{suffix}"] for name in ("mAP", "Precision", "Recall", "F1")] + [e["Best_score_threshold"]]
    return ours, theirs


def worst_difference() -> float:
    """The largest |ours - the original's| over every scenario, setting and number of `scored`."""
    worst = 0.0
    for scenario in SCENARIOS:
        for setting in SETTINGS:
            ours, theirs = scored(scenario, setting)
            worst = max(worst, *(abs(a - b) for a, b in zip(ours, theirs)))
    return worst
