"""BoT-SORT without ReID (Aharonov et al., 2022): ByteTrack's association with BoT-SORT's motion model.

Same interface and steps as :class:`~yolonas_cli.modes.track.bytetrack.ByteTrack` (see there), with:

- the Kalman state ``xywh`` (width and height filtered directly, each noise term proportional to the width or
  the height: :data:`~yolonas_cli.modes.track.kalman.XYWH`); a lost track's width and height velocities are
  zeroed before prediction;
- camera-motion compensation (``gmc_method``: ``sparseOptFlow`` or ``orb``, :mod:`.gmc`): after the
  prediction, every track (confirmed or not) is moved by the camera motion estimated from ``frame`` (the BGR
  image passed to ``update``). With ``gmc_method: none`` or no ``frame`` it is skipped.

ReID (``with_reid``) is not supported, so ``proximity_thresh`` and ``appearance_thresh`` (which only gate
appearance matches) have no effect, as in Ultralytics' BoT-SORT without ReID.
"""

from __future__ import annotations

import numpy as np

from yolonas_cli.modes.track.bytetrack import ByteTrack
from yolonas_cli.modes.track.config import BotSortConfig
from yolonas_cli.modes.track.gmc import CameraMotion
from yolonas_cli.modes.track.kalman import XYWH

__all__ = ["BotSort"]


class BotSort(ByteTrack):
    """BoT-SORT over one sequence of frames (``update(boxes, scores, classes, frame)``, ``reset()``)."""

    box_state = XYWH
    frozen_velocity = (6, 7)  # vw, vh
    config: BotSortConfig

    def __init__(self, config: BotSortConfig | None = None, frame_rate: float = 30.0) -> None:
        config = config if config is not None else BotSortConfig()
        self.camera = None if config.gmc_method == "none" else CameraMotion(config.gmc_method)
        super().__init__(config, frame_rate)

    def reset(self) -> None:
        super().reset()
        if self.camera is not None:
            self.camera.reset()

    def _compensate_motion(self, frame: np.ndarray | None, det_boxes: np.ndarray, rows: np.ndarray) -> None:
        if self.camera is None or frame is None:
            return
        motion = self.camera.estimate(frame, det_boxes)
        if rows.size:
            t = self.tracks
            t.mean[rows], t.cov[rows] = self.kalman.warp(t.mean[rows], t.cov[rows], motion)
