"""Multi-object tracking: ByteTrack and BoT-SORT (without ReID) over per-frame detections.

- :mod:`.config`: tracker settings from Ultralytics-style YAML (``bytetrack.yaml``, ``botsort.yaml`` ship here).
- :mod:`.bytetrack`, :mod:`.botsort`: the trackers; the interface is in :mod:`.bytetrack`'s docstring.
- :mod:`.kalman` (box Kalman filter), :mod:`.matching` (IoU cost and assignment), :mod:`.tracks` (track
  table), :mod:`.gmc` (camera motion).

``make_tracker(load_tracker_config("bytetrack.yaml"), frame_rate)`` builds the tracker a config names.
"""

from __future__ import annotations

from yolonas_cli.modes.track.botsort import BotSort
from yolonas_cli.modes.track.bytetrack import ByteTrack
from yolonas_cli.modes.track.config import (
    BotSortConfig,
    ByteTrackConfig,
    TrackerConfig,
    config_from_mapping,
    load_tracker_config,
)

__all__ = [
    "BotSort",
    "BotSortConfig",
    "ByteTrack",
    "ByteTrackConfig",
    "TrackerConfig",
    "config_from_mapping",
    "load_tracker_config",
    "make_tracker",
]


def make_tracker(config: TrackerConfig, frame_rate: float = 30.0) -> ByteTrack:
    """The tracker of ``config`` (:class:`BotSort` for a :class:`BotSortConfig`, else :class:`ByteTrack`)."""
    if isinstance(config, BotSortConfig):
        return BotSort(config, frame_rate)
    return ByteTrack(config, frame_rate)
