"""Global (camera) motion compensation for BoT-SORT: how the whole image moved since the previous frame.

The motion is a 2x3 partial affine matrix (rotation, uniform scale, translation) that maps a point of the
previous frame to the current one, fitted with RANSAC (``cv2.estimateAffinePartial2D``) to point pairs found
on frames downscaled by ``downscale`` (2: the translation is scaled back to full-resolution pixels):

- ``sparseOptFlow``: Shi-Tomasi corners of the previous frame (up to 1000, quality 0.01, distance 1, block 3)
  followed into the current frame by pyramidal Lucas-Kanade optical flow.
- ``orb``: FAST corners (threshold 20) with ORB descriptors, away from the image border (2%) and from the
  detection boxes (objects move on their own), matched by Hamming distance with a 0.9 ratio test and at most a
  quarter of the image size apart.

The first frame, a frame of another size than the last, or too few point pairs (5 at least) give the identity.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["CameraMotion"]

MIN_PAIRS = 5
_MAX_CORNERS, _CORNER_QUALITY, _CORNER_DISTANCE, _CORNER_BLOCK = 1000, 0.01, 1, 3  # Shi-Tomasi settings
_RATIO = 0.9  # ORB: best match distance below this fraction of the second best
_MAX_SHIFT = 0.25  # ORB: a pair's displacement below this fraction of the image width and height
_BORDER = 0.02  # ORB: no keypoints this close (fraction of the size) to the image border


def _identity() -> np.ndarray:
    return np.eye(2, 3, dtype=np.float64)


class CameraMotion:
    """Camera-motion estimator over a sequence of frames (one instance per sequence)."""

    def __init__(self, method: str, downscale: int = 2) -> None:
        if method not in ("sparseOptFlow", "orb"):
            raise ValueError(f"unknown camera-motion method {method!r}; expected sparseOptFlow or orb")
        self.method = method
        self.downscale = max(1, int(downscale))
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame."""
        self._previous: np.ndarray | None = None  # downscaled gray frame
        self._points: np.ndarray | None = None  # sparseOptFlow: [K, 1, 2] float32 corners of it
        self._keypoints: list[cv2.KeyPoint] = []  # orb: keypoints of it and their descriptors
        self._descriptors: np.ndarray | None = None

    def estimate(self, frame: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """The ``float64 [2, 3]`` motion from the previous frame to ``frame`` (BGR ``[H, W, 3]`` or gray ``[H, W]``).

        ``boxes [N, 4]`` xyxy (full-resolution pixels) are the current detections, kept out of ORB's keypoints.
        """
        gray = self._prepare(frame)
        first = self._previous is None or self._previous.shape != gray.shape
        if self.method == "sparseOptFlow":
            motion = _identity() if first else self._flow(gray)
            self._points = cv2.goodFeaturesToTrack(
                gray, _MAX_CORNERS, _CORNER_QUALITY, _CORNER_DISTANCE, blockSize=_CORNER_BLOCK
            )
        else:
            keypoints, descriptors = self._orb_features(gray, boxes)
            motion = _identity() if first else self._orb(gray.shape, keypoints, descriptors)
            self._keypoints, self._descriptors = keypoints, descriptors
        self._previous = gray
        return motion

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim not in (2, 3):
            raise ValueError(f"frame must be [H, W] or [H, W, 3], got shape {frame.shape}")
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        if self.downscale > 1:
            h, w = gray.shape
            gray = cv2.resize(gray, (max(1, w // self.downscale), max(1, h // self.downscale)))
        return np.ascontiguousarray(gray)

    def _fit(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """RANSAC partial affine of point pairs ``[K, 2]`` (downscaled), translation in full-resolution pixels."""
        if len(before) < MIN_PAIRS:
            return _identity()
        matrix, _ = cv2.estimateAffinePartial2D(before, after, method=cv2.RANSAC)
        if matrix is None:
            return _identity()
        matrix = matrix.astype(np.float64)
        matrix[:, 2] *= self.downscale
        return matrix

    def _flow(self, gray: np.ndarray) -> np.ndarray:
        previous, points = self._previous, self._points
        if previous is None or points is None or len(points) == 0:
            return _identity()
        moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, gray, points, None)  # type: ignore[call-overload]
        found = status.reshape(-1) == 1
        return self._fit(points.reshape(-1, 2)[found], moved.reshape(-1, 2)[found])

    def _orb_features(self, gray: np.ndarray, boxes: np.ndarray | None) -> tuple[list, np.ndarray | None]:
        h, w = gray.shape
        mask = np.zeros_like(gray)
        mask[int(_BORDER * h) : int((1 - _BORDER) * h), int(_BORDER * w) : int((1 - _BORDER) * w)] = 255
        if boxes is not None:
            for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / self.downscale:
                mask[max(0, int(y1)) : max(0, int(y2)), max(0, int(x1)) : max(0, int(x2))] = 0
        keypoints = cv2.FastFeatureDetector.create(20).detect(gray, mask)
        keypoints, descriptors = cv2.ORB.create().compute(gray, keypoints)
        return list(keypoints), descriptors

    def _orb(self, shape: tuple[int, ...], keypoints: list, descriptors: np.ndarray | None) -> np.ndarray:
        if descriptors is None or self._descriptors is None or len(keypoints) < 2 or len(self._keypoints) < 2:
            return _identity()
        h, w = shape
        limit = _MAX_SHIFT * np.array([w, h])
        before, after = [], []
        for pair in cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(self._descriptors, descriptors, k=2):
            if len(pair) < 2 or not pair[0].distance < _RATIO * pair[1].distance:
                continue
            a, b = self._keypoints[pair[0].queryIdx].pt, keypoints[pair[0].trainIdx].pt
            if np.all(np.abs(np.subtract(b, a)) < limit):
                before.append(a)
                after.append(b)
        return self._fit(np.array(before, np.float32).reshape(-1, 2), np.array(after, np.float32).reshape(-1, 2))
