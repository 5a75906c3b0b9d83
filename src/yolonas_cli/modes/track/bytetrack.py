"""ByteTrack: multi-object tracking by associating every detection box (Zhang et al., ECCV 2022).

Interface (shared with :class:`~yolonas_cli.modes.track.botsort.BotSort`)::

    tracker = ByteTrack(ByteTrackConfig(), frame_rate=30)
    rows = tracker.update(boxes_xyxy, scores, classes, frame=None)   # once per frame, in order
    tracker.reset()                                                   # before an unrelated sequence

``update`` takes one frame's detections, ``boxes_xyxy [N, 4]`` (pixels), ``scores [N]`` and ``classes [N]``
(numpy or anything ``np.asarray`` takes), and returns ``float64 [M, 8]`` rows
``(x1, y1, x2, y2, track id, score, class, detection index)`` for the confirmed tracks matched in this frame,
sorted by detection index: the box is the Kalman-filtered one, score and class are the matched detection's and
the detection index is its row in this call's input (``boxes[idx]``). Ids start at 1 and count up in the order
tracks are confirmed. ``frame`` (the image) is only used by BoT-SORT's camera-motion compensation. Detections
with a non-finite value or a non-positive width or height are ignored.

One frame (``f``), as in the paper and its reference implementation:

1. Split detections: *high* ``score >= track_high_thresh``, *low* ``track_low_thresh < score < high``.
2. Predict every confirmed track (tracked and lost; a lost track's height velocity is zeroed first) one frame
   ahead with the Kalman filter (:mod:`.kalman`, ``xyah`` state); unconfirmed tracks are not predicted.
3. First association: confirmed tracks with high detections, cost ``1 - IoU`` (``1 - IoU * score`` when
   ``fuse_score``), thresholded optimal assignment at ``match_thresh`` (:mod:`.matching`).
4. Second association: the tracks still unmatched that were tracked in the last frame with the low detections,
   cost ``1 - IoU``, threshold 0.5. Tracked tracks left unmatched become lost.
5. Unconfirmed tracks (started in the last frame) with the high detections left, cost as in 3, threshold
   0.7; an unconfirmed track left unmatched is dropped.
6. A high detection still unmatched and scoring at least ``new_track_thresh`` starts a track: confirmed at
   once in the first frame, otherwise unconfirmed (no id, not reported) until matched in the next frame.
7. A lost track is dropped once ``f - last matched frame > max_time_lost + 1`` with ``max_time_lost =
   int(frame_rate / 30 * track_buffer)``: it is found again after up to ``max_time_lost + 1`` frames without
   a match, not after more (the reference implementations mark it removed after ``max_time_lost`` frames but
   take it out of their lists one frame later; kept for parity).
8. A tracked and a lost track with IoU above 0.85 are duplicates: the one tracked for fewer frames is dropped
   (the tracked one on a tie).

Matched tracks take the detection's box (Kalman update), score, class and index. Memory is bounded: a track is
one table row (:mod:`.tracks`) and rows are dropped as above.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from yolonas_cli.modes.track.config import ByteTrackConfig
from yolonas_cli.modes.track.kalman import XYAH, BoxState, KalmanFilter
from yolonas_cli.modes.track.matching import fuse_score, iou_cost, linear_assignment
from yolonas_cli.modes.track.tracks import TrackTable

__all__ = ["ByteTrack"]

SECOND_MATCH_THRESH = 0.5  # step 4 (fixed in the paper's code)
UNCONFIRMED_MATCH_THRESH = 0.7  # step 5
DUPLICATE_COST = 0.15  # step 8: 1 - IoU below this


class ByteTrack:
    """ByteTrack over one sequence of frames; see the module docstring for the interface and the steps."""

    box_state: BoxState = XYAH
    frozen_velocity: tuple[int, ...] = (7,)  # state indices zeroed before a lost track's prediction: vh

    def __init__(self, config: ByteTrackConfig | None = None, frame_rate: float = 30.0) -> None:
        self.config = config if config is not None else ByteTrackConfig()
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be positive, got {frame_rate}")
        self.max_time_lost = int(frame_rate / 30.0 * self.config.track_buffer)
        self.kalman = KalmanFilter(self.box_state)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks; the next frame is frame 1 and ids start again at 1."""
        self.frame_id = 0
        self.tracks = TrackTable()
        self._next_id = 1

    # ------------------------------------------------------------------------------------------- update

    def update(self, boxes: Any, scores: Any, classes: Any, frame: np.ndarray | None = None) -> np.ndarray:
        """Track one frame's detections; returns ``[M, 8]`` rows (see the module docstring)."""
        boxes, scores, classes = _checked(boxes, scores, classes)
        self.frame_id += 1
        usable = _usable(boxes, scores)
        cfg = self.config
        high = np.flatnonzero(usable & (scores >= cfg.track_high_thresh))
        low = np.flatnonzero(usable & (scores > cfg.track_low_thresh) & (scores < cfg.track_high_thresh))

        t = self.tracks
        pool = np.flatnonzero(t.confirmed)
        unconfirmed = np.flatnonzero(~t.confirmed)
        self._predict(pool)
        self._compensate_motion(frame, boxes[high], np.concatenate([pool, unconfirmed]))

        # first association: confirmed tracks (tracked and lost) with the high detections
        first, rest, high_left = linear_assignment(self._cost(pool, boxes[high], scores[high]), cfg.match_thresh)
        # second association: tracks tracked in the last frame with the low detections, IoU only
        was_tracked = pool[rest][~t.lost[pool[rest]]]
        second, unmatched, _ = linear_assignment(iou_cost(self._boxes(was_tracked), boxes[low]), SECOND_MATCH_THRESH)
        # unconfirmed tracks with the high detections nobody took
        left = high[high_left]
        third, dropped, new = linear_assignment(
            self._cost(unconfirmed, boxes[left], scores[left]), UNCONFIRMED_MATCH_THRESH
        )

        rows = np.concatenate([pool[first[:, 0]], was_tracked[second[:, 0]], unconfirmed[third[:, 0]]])
        dets = np.concatenate([high[first[:, 1]], low[second[:, 1]], left[third[:, 1]]])
        self._apply_matches(rows, dets, boxes, scores, classes)
        t.lost[was_tracked[unmatched]] = True
        self._drop(unconfirmed[dropped])
        starts = left[new]
        self._start_tracks(starts[scores[starts] >= cfg.new_track_thresh], boxes, scores, classes)
        self._remove_duplicates()
        self._assign_ids()
        return self._report()

    # ------------------------------------------------------------------------------------------- steps

    def _predict(self, rows: np.ndarray) -> None:
        """Kalman-predict ``rows``; lost tracks first stop changing size (the reference's zeroed velocity)."""
        if rows.size == 0:
            return
        t = self.tracks
        mean = t.mean[rows]
        mean[np.ix_(t.lost[rows], self.frozen_velocity)] = 0.0
        t.mean[rows], t.cov[rows] = self.kalman.predict(mean, t.cov[rows])

    def _compensate_motion(self, frame: np.ndarray | None, det_boxes: np.ndarray, rows: np.ndarray) -> None:
        """Hook for camera-motion compensation (BoT-SORT); ByteTrack has none."""

    def _boxes(self, rows: np.ndarray) -> np.ndarray:
        return self.box_state.to_xyxy(self.tracks.mean[rows])

    def _cost(self, rows: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray) -> np.ndarray:
        """Cost of steps 3 and 5: ``1 - IoU``, score-fused when ``fuse_score``."""
        cost = iou_cost(self._boxes(rows), det_boxes)
        return fuse_score(cost, det_scores) if self.config.fuse_score else cost

    def _apply_matches(
        self, rows: np.ndarray, dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray
    ) -> None:
        """Kalman-update the matched ``rows`` with detections ``dets``; they become tracked and confirmed."""
        if rows.size == 0:
            return
        t = self.tracks
        measurements = self.box_state.from_xyxy(boxes[dets])
        t.mean[rows], t.cov[rows] = self.kalman.update(t.mean[rows], t.cov[rows], measurements)
        t.lost[rows] = False
        t.confirmed[rows] = True
        t.last_frame[rows] = self.frame_id
        t.score[rows], t.cls[rows], t.det_index[rows] = scores[dets], classes[dets], dets

    def _drop(self, rows: np.ndarray) -> None:
        """Drop ``rows`` and the lost tracks past the buffer (step 7)."""
        t = self.tracks
        keep = ~(t.lost & (self.frame_id - t.last_frame > self.max_time_lost + 1))
        keep[rows] = False
        t.keep(keep)

    def _start_tracks(self, dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> None:
        mean, cov = self.kalman.initiate(self.box_state.from_xyxy(boxes[dets]))
        self.tracks.append(
            mean, cov, self.frame_id, self.frame_id == 1, score=scores[dets], cls=classes[dets], det_index=dets
        )

    def _remove_duplicates(self) -> None:
        """Step 8: of a tracked and a lost track with ``1 - IoU < 0.15``, drop the younger (the tracked on ties)."""
        t = self.tracks
        tracked, lost = np.flatnonzero(~t.lost), np.flatnonzero(t.lost)
        if tracked.size == 0 or lost.size == 0:
            return
        pairs = np.argwhere(iou_cost(self._boxes(tracked), self._boxes(lost)) < DUPLICATE_COST)
        if pairs.size == 0:
            return
        a, b = tracked[pairs[:, 0]], lost[pairs[:, 1]]
        age = t.last_frame - t.start_frame
        keep = np.ones(len(t), dtype=bool)
        keep[np.where(age[a] > age[b], b, a)] = False
        t.keep(keep)

    def _assign_ids(self) -> None:
        """Give the next ids to newly confirmed tracks, in row (creation) order."""
        t = self.tracks
        fresh = np.flatnonzero(t.confirmed & (t.track_id == 0))
        t.track_id[fresh] = np.arange(self._next_id, self._next_id + fresh.size)
        self._next_id += fresh.size

    def _report(self) -> np.ndarray:
        """``[M, 8]`` rows of the confirmed tracks matched in this frame, by detection index."""
        t = self.tracks
        rows = np.flatnonzero(t.confirmed & (t.last_frame == self.frame_id))
        rows = rows[np.argsort(t.det_index[rows], kind="stable")]
        return np.concatenate(
            [self._boxes(rows), np.stack([t.track_id[rows], t.score[rows], t.cls[rows], t.det_index[rows]], 1)],
            axis=1,
        ).astype(np.float64)


def _checked(boxes: Any, scores: Any, classes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detections as float64 arrays ``[N, 4]``, ``[N]``, ``[N]``; ValueError on mismatched shapes."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = np.asarray(classes, dtype=np.float64).reshape(-1)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {b.shape}")
    if s.shape != (len(b),) or c.shape != (len(b),):
        raise ValueError(f"scores and classes must have shape [{len(b)}], got {s.shape} and {c.shape}")
    return b, s, c


def _usable(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``[N]`` True for detections with finite values and a positive width and height."""
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
    with np.errstate(invalid="ignore"):
        return finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
