"""Constant-velocity Kalman filter for boxes, vectorised over many tracks at once.

The filter of SORT/DeepSORT as ByteTrack (Zhang et al., 2022) and BoT-SORT (Aharonov et al., 2022) use it.
The state of one track is 8 numbers: a box ``(p1, p2, p3, p4)`` and its per-frame velocity ``(v1, v2, v3, v4)``;
the measurement is the box alone (observation matrix ``H = [I 0]``), the motion model ``p += v`` once per frame
(``F = [[I, I], [0, I]]``). Two box parametrisations (:data:`XYAH`, :data:`XYWH`):

- ``xyah`` (ByteTrack): centre x, centre y, aspect ratio ``w / h``, height.
- ``xywh`` (BoT-SORT): centre x, centre y, width, height.

Noise is diagonal, each standard deviation proportional to the box size (the reference implementations'
weights: 1/20 of the size for positions, 1/160 for velocities). The size of a component is the height in
``xyah`` and, in ``xywh``, the width for x and w and the height for y and h. With ``s`` that size:

- new track (initial covariance P): position std ``2 * s / 20``, velocity std ``10 * s / 160``;
- prediction (process noise Q): position std ``s / 20``, velocity std ``s / 160``;
- measurement (R): std ``s / 20``.

The aspect ratio of ``xyah`` has fixed deviations instead: 1e-2 (P and Q), 1e-1 (R), velocity 1e-5 (P and Q).

Arrays: ``mean`` is ``float64 [N, 8]``, ``cov`` is ``float64 [N, 8, 8]``, measurements ``[N, 4]`` in the
filter's parametrisation; every method takes and returns N tracks at once (N may be 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yolonas_cli.engine.ops import xywh_to_xyxy, xyxy_to_xywh

__all__ = ["XYAH", "XYWH", "BoxState", "KalmanFilter"]

_CONSTANT = -1  # in BoxState.size_of: this component's deviations are fixed numbers, not proportional to a size


@dataclass(frozen=True)
class BoxState:
    """One box parametrisation of the filter and its noise weights."""

    name: str
    size_of: tuple[int, int, int, int]  # per box component: index of the measurement it scales with, or -1
    position_weight: float = 1 / 20  # position std = weight * size (times 2 for a new track)
    velocity_weight: float = 1 / 160  # velocity std = weight * size (times 10 for a new track)
    constant_position_std: float = 1e-2  # for a component with size_of -1: initial and process std
    constant_velocity_std: float = 1e-5  # its velocity's initial and process std
    constant_measurement_std: float = 1e-1  # its measurement std

    def from_xyxy(self, boxes: np.ndarray) -> np.ndarray:
        """``[N, 4]`` xyxy -> ``float64 [N, 4]`` measurements in this parametrisation."""
        out = xyxy_to_xywh(np.asarray(boxes, dtype=np.float64))
        if self.name == "xyah":
            out[:, 2] /= out[:, 3]
        return out

    def to_xyxy(self, mean: np.ndarray) -> np.ndarray:
        """The boxes ``[N, 4]`` xyxy of states ``[N, >=4]`` (velocities ignored)."""
        box = np.array(mean[:, :4], dtype=np.float64)
        if self.name == "xyah":
            box[:, 2] *= box[:, 3]
        return xywh_to_xyxy(box)


XYAH = BoxState("xyah", size_of=(3, 3, _CONSTANT, 3))
XYWH = BoxState("xywh", size_of=(2, 3, 2, 3))


class KalmanFilter:
    """The filter for one :class:`BoxState`; stateless (tracks hold their own mean and covariance)."""

    def __init__(self, state: BoxState = XYAH) -> None:
        self.state = state
        self._sized = np.array([i != _CONSTANT for i in state.size_of])
        self._size_index = np.array([max(i, 0) for i in state.size_of])

    def _std(self, boxes: np.ndarray, weight: float, constant: float) -> np.ndarray:
        """``[N, 4]`` deviations: ``weight * size`` per component, ``constant`` for the fixed ones."""
        return np.where(self._sized, weight * boxes[:, self._size_index], constant)

    def initiate(self, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks at ``measurements [N, 4]`` with zero velocity -> ``(mean [N, 8], cov [N, 8, 8])``."""
        z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
        s = self.state
        std = np.concatenate(
            [
                self._std(z, 2 * s.position_weight, s.constant_position_std),
                self._std(z, 10 * s.velocity_weight, s.constant_velocity_std),
            ],
            axis=1,
        )
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        return mean, _diag(std**2)

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead: ``mean' = F mean``, ``cov' = F cov F^T + Q`` (Q from the sizes before the step)."""
        s = self.state
        std = np.concatenate(
            [
                self._std(mean, s.position_weight, s.constant_position_std),
                self._std(mean, s.velocity_weight, s.constant_velocity_std),
            ],
            axis=1,
        )
        new_mean = mean.copy()
        new_mean[:, :4] += mean[:, 4:]
        return new_mean, _MOTION @ cov @ _MOTION.T + _diag(std**2)

    def project(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The predicted measurement: ``(H mean [N, 4], H cov H^T + R [N, 4, 4])``."""
        s = self.state
        std = self._std(mean, s.position_weight, s.constant_measurement_std)
        return mean[:, :4].copy(), cov[:, :4, :4] + _diag(std**2)

    def update(self, mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct N states with their measurements ``[N, 4]``: the standard Kalman update.

        ``S = H P H^T + R``, ``K = P H^T S^-1``, ``mean' = mean + K (z - H mean)``, ``P' = P - K S K^T``.
        """
        predicted, innovation_cov = self.project(mean, cov)
        cross = cov[:, :, :4]  # P H^T, [N, 8, 4]
        gain = np.linalg.solve(innovation_cov, cross.transpose(0, 2, 1)).transpose(0, 2, 1)  # S symmetric
        innovation = np.asarray(measurements, dtype=np.float64) - predicted
        new_mean = mean + (gain @ innovation[:, :, None])[:, :, 0]
        return new_mean, cov - gain @ innovation_cov @ gain.transpose(0, 2, 1)

    @staticmethod
    def warp(mean: np.ndarray, cov: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move N states by the camera motion ``affine [2, 3]`` (previous frame -> this frame; BoT-SORT).

        The 2x2 part multiplies each pair of the state, ``(p1, p2), (p3, p4), (v1, v2), (v3, v4)``, the
        translation moves the centre only; meant for the ``xywh`` state.
        """
        rotation = np.kron(np.eye(4), np.asarray(affine, dtype=np.float64)[:, :2])
        new_mean = mean @ rotation.T
        new_mean[:, :2] += np.asarray(affine, dtype=np.float64)[:, 2]
        return new_mean, rotation @ cov @ rotation.T


_MOTION = np.eye(8) + np.eye(8, k=4)  # F: position += velocity, one frame


def _diag(values: np.ndarray) -> np.ndarray:
    """``[N, K]`` -> ``[N, K, K]`` diagonal matrices."""
    out = np.zeros((*values.shape, values.shape[-1]), dtype=np.float64)
    idx = np.arange(values.shape[-1])
    out[:, idx, idx] = values
    return out
