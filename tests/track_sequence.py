"""Synthetic tracking sequences with known ground truth, and MOT metrics of a tracker's output on them.

A sequence is objects moving at constant velocity over a ``width x height`` image: some there from the first
frame, some entering later from a side and leaving through another, pairs crossing each other, and objects
hidden for a few frames (no detection at all). The detector is simulated: every visible object gets a box with
Gaussian noise and a high score, except while hidden (nothing) or while partly hidden behind a crossing
partner (a low score, below the tracker's high threshold); false positives are scattered at random places, one
frame each, most of them with low scores.

``ideal_errors`` counts what no online tracker of the ByteTrack family can avoid on a sequence: a hidden object
cannot be reported, and an object that appears after the first frame is reported from its second detection on
(its first detection only starts an unconfirmed track). The bounds of the tests are derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT = 1280, 720


@dataclass(frozen=True)
class Frame:
    """One frame: ground truth and the simulated detector's output."""

    gt_ids: np.ndarray  # [G] int, object ids (1, 2, ...)
    gt_boxes: np.ndarray  # [G, 4] xyxy
    boxes: np.ndarray  # [N, 4] xyxy detections
    scores: np.ndarray  # [N]
    classes: np.ndarray  # [N]
    det_gt: np.ndarray  # [N] the object a detection belongs to, -1 for a false positive


@dataclass(frozen=True)
class Walker:
    """One object: a box of size ``(w, h)`` whose centre moves from ``start`` by ``velocity`` per frame."""

    first: int  # first frame index it exists in
    start: tuple[float, float]
    velocity: tuple[float, float]
    size: tuple[float, float]
    cls: int
    hidden: tuple[int, int] = (0, 0)  # frames [a, b) without any detection

    def box(self, f: int) -> np.ndarray:
        cx = self.start[0] + self.velocity[0] * (f - self.first)
        cy = self.start[1] + self.velocity[1] * (f - self.first)
        w, h = self.size
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _walkers(rng: np.random.Generator, n_frames: int) -> list[Walker]:
    """Free walkers (some entering late, some hidden a few frames) and crossing pairs."""
    walkers = []
    for k in range(14):
        late = k % 3 == 0
        first = int(rng.integers(5, n_frames // 2)) if late else 0
        speed = rng.uniform(1.0, 5.0, size=2) * rng.choice([-1, 1], size=2)
        start = (rng.uniform(150, WIDTH - 150), rng.uniform(100, HEIGHT - 100))
        if late:  # enters from the left or right border
            start = (20.0 if speed[0] > 0 else WIDTH - 20.0, start[1])
        size = (rng.uniform(30, 60), rng.uniform(60, 120))
        hidden = (0, 0)
        if k % 4 == 1:
            a = int(rng.integers(first + 10, first + 40))
            hidden = (a, a + int(rng.integers(3, 9)))
        walkers.append(Walker(first, start, (float(speed[0]), float(speed[1])), size, k % 3, hidden))
    for k in range(3):  # crossing pairs: opposite horizontal motion, centres 12 px apart vertically
        y = 150.0 + 200.0 * k
        first = 10 * k
        size = (40.0, 90.0)
        walkers.append(Walker(first, (300.0, y), (4.0, 0.0), size, 0))
        walkers.append(Walker(first, (980.0, y + 12.0), (-4.0, 0.3), size, 0))
    return walkers


def _visible(box: np.ndarray) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return 0 <= cx < WIDTH and 0 <= cy < HEIGHT


def _clip(box: np.ndarray) -> np.ndarray:
    return np.clip(box, [0, 0, 0, 0], [WIDTH, HEIGHT, WIDTH, HEIGHT])


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of xyxy boxes (plain numpy, independent of the code under test)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _behind(ids: list[int], boxes: np.ndarray) -> set[int]:
    """Objects partly hidden behind another (IoU above 0.3 with it): the one with the larger id."""
    if len(ids) < 2:
        return set()
    iou = _iou(boxes, boxes)
    np.fill_diagonal(iou, 0)
    return {max(ids[i], ids[j]) for i, j in zip(*np.nonzero(iou > 0.3))}


def make_sequence(seed: int = 0, n_frames: int = 150, noise: float = 1.5, false_positives: float = 1.0) -> list[Frame]:
    """A reproducible sequence of ``n_frames`` frames (see the module docstring)."""
    rng = np.random.default_rng(seed)
    walkers = _walkers(rng, n_frames)
    frames = []
    for f in range(n_frames):
        ids, gts = [], []
        for i, w in enumerate(walkers, start=1):
            box = w.box(f)
            if f >= w.first and _visible(box):
                ids.append(i)
                gts.append(_clip(box))
        gt = np.array(gts).reshape(-1, 4)
        partly = _behind(ids, gt)
        boxes, scores, owners = [], [], []
        for i, box in zip(ids, gt):
            a, b = walkers[i - 1].hidden
            if a <= f < b:
                continue
            boxes.append(box + rng.normal(0, noise, 4))
            scores.append(rng.uniform(0.12, 0.24) if i in partly else rng.uniform(0.5, 0.95))
            owners.append(i)
        for _ in range(rng.poisson(false_positives)):
            x, y = rng.uniform(0, WIDTH - 60), rng.uniform(0, HEIGHT - 100)
            boxes.append(np.array([x, y, x + rng.uniform(20, 60), y + rng.uniform(40, 100)]))
            scores.append(rng.uniform(0.1, 0.6) if rng.random() < 0.3 else rng.uniform(0.1, 0.3))
            owners.append(-1)
        order = rng.permutation(len(boxes))  # detectors list boxes in no particular order
        det = np.array(boxes).reshape(-1, 4)[order]
        cls = np.array([walkers[o - 1].cls if o > 0 else 0 for o in owners], dtype=np.float64)[order]
        frames.append(
            Frame(np.array(ids, dtype=np.int64), gt, det, np.array(scores)[order], cls, np.array(owners)[order])
        )
    return frames


def ideal_errors(frames: list[Frame], high: float = 0.25, low: float = 0.1, buffer: int = 30) -> int:
    """Misses that ByteTrack's rules cannot avoid even with a perfect association, summed over objects and frames.

    An object is reported in a frame when it has a detection and a track. It gets a track at a high detection
    (score >= ``high``) in the first frame, later at the second of two consecutive high detections (the first
    only starts an unconfirmed track, which matches high detections only). A tracked object stays tracked
    through low detections (score > ``low``); with no detection it is lost, and a lost track is found again
    only by a high detection within ``buffer + 1`` frames. Everything else is a miss.
    """
    misses = 0
    state: dict[int, tuple[str, int]] = {}  # object -> (untracked | pending | tracked | lost, last reported frame)
    for f, frame in enumerate(frames):
        score_of = {int(o): s for o, s in zip(frame.det_gt, frame.scores) if o > 0 and s > low}
        for obj in frame.gt_ids.tolist():
            kind, last = state.get(obj, ("untracked", -1))
            if kind == "lost" and f - last > buffer + 1:
                kind = "untracked"
            score = score_of.get(obj)
            is_high = score is not None and score >= high
            if score is not None and (
                kind == "tracked" or (is_high and (kind == "lost" or kind == "pending" or f == 0))
            ):
                state[obj] = ("tracked", f)
                continue
            misses += 1
            if kind in ("tracked", "lost"):
                state[obj] = ("lost", last)
            else:
                state[obj] = ("pending" if is_high else "untracked", last)
    return misses


def gt_count(frames: list[Frame]) -> int:
    return sum(len(frame.gt_ids) for frame in frames)


def mot_metrics(frames: list[Frame], outputs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """MOTA, IDF1 and counts (motmetrics) of per-frame ``(track ids [M], boxes [M, 4] xyxy)``; match at IoU 0.5."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for frame, (ids, boxes) in zip(frames, outputs):
        distance = 1.0 - _iou(frame.gt_boxes, np.asarray(boxes).reshape(-1, 4))
        distance[distance > 0.5] = np.nan  # motmetrics: NaN = cannot match
        acc.update(frame.gt_ids.tolist(), [int(i) for i in ids], distance)
    names = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="seq")
    return {name: float(summary[name].iloc[0]) for name in names}
