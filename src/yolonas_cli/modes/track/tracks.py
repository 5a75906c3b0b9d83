"""The tracks of one tracker as a table of arrays (one row per track), so that every step is vectorised.

A row is a track that is either *tracked* (matched in the last frame) or *lost* (unmatched, still kept for
re-identification). A tracked row that is not yet *confirmed* was started in the last frame from one detection
and has no id yet; it is confirmed (and gets the next id) when it is matched again in the next frame, or at
once in the first frame of a sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["TrackTable"]


def _floats(*shape: int) -> np.ndarray:
    return np.zeros((0, *shape), dtype=np.float64)


def _ints() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def _bools() -> np.ndarray:
    return np.zeros(0, dtype=bool)


@dataclass
class TrackTable:
    """Per-track arrays, all of length T (the number of rows)."""

    mean: np.ndarray = field(default_factory=lambda: _floats(8))  # [T, 8] Kalman state
    cov: np.ndarray = field(default_factory=lambda: _floats(8, 8))  # [T, 8, 8] its covariance
    track_id: np.ndarray = field(default_factory=_ints)  # [T] id shown to users; 0 until confirmed
    confirmed: np.ndarray = field(default_factory=_bools)  # [T]
    lost: np.ndarray = field(default_factory=_bools)  # [T] True: not matched in the last frame
    start_frame: np.ndarray = field(default_factory=_ints)  # [T] frame the track was started in
    last_frame: np.ndarray = field(default_factory=_ints)  # [T] last frame it was matched in
    score: np.ndarray = field(default_factory=lambda: _floats())  # [T] score of the last matched detection
    cls: np.ndarray = field(default_factory=lambda: _floats())  # [T] class of the last matched detection
    det_index: np.ndarray = field(default_factory=_ints)  # [T] index of that detection in its frame's input

    def __len__(self) -> int:
        return len(self.track_id)

    def keep(self, mask: np.ndarray) -> None:
        """Drop the rows where ``mask [T]`` is False."""
        for name, value in vars(self).items():
            setattr(self, name, value[mask])

    def append(self, mean: np.ndarray, cov: np.ndarray, frame: int, confirmed: bool, **det: np.ndarray) -> None:
        """Add N new tracked rows (``mean [N, 8]``, ``cov [N, 8, 8]``, ``det``: score, cls, det_index [N])."""
        n = len(mean)
        new = {
            "mean": mean,
            "cov": cov,
            "track_id": np.zeros(n, dtype=np.int64),
            "confirmed": np.full(n, confirmed),
            "lost": np.zeros(n, dtype=bool),
            "start_frame": np.full(n, frame, dtype=np.int64),
            "last_frame": np.full(n, frame, dtype=np.int64),
            **det,
        }
        for name, value in new.items():
            setattr(self, name, np.concatenate([getattr(self, name), value.astype(getattr(self, name).dtype)]))
