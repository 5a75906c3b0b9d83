"""`yolo-nas track` and `NAS.track`: the trackers (tested in test_track.py) wired to predict.

The fixture formula weights find the same things in the bundled astronaut photo wherever it moves, so a clip of
two copies of the photo gliding over a grey background gives detections that the trackers follow. Every check
compares the mode with an independent run of its parts: predict's detections of the same frames fed to the
tracker classes by hand (ids, boxes, frame numbers), and the MOTChallenge and JSON files written out of the
results by the test itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from yolonas_cli import NAS
from yolonas_cli.cli.app import app
from yolonas_cli.data.plotting import colour, draw_trails
from yolonas_cli.data.results import Boxes, Result
from yolonas_cli.data.sinks import MotSink
from yolonas_cli.data.sources import default_source
from yolonas_cli.modes.track import BotSort, BotSortConfig, ByteTrack, ByteTrackConfig
from yolonas_cli.modes.track.session import Trails

SCRIPT = Path(sys.executable).parent / "yolo-nas"
IMGSZ = 160
FPS = 30  # the clip's rate: the tracker's track_buffer is counted at this rate, as for in-memory frames
FRAMES = 14


def clip_frames(frames: int = FRAMES, hw: tuple[int, int] = (192, 256)) -> list[np.ndarray]:
    """Two copies of the astronaut photo moving in opposite directions over grey, BGR uint8."""
    photo = cv2.imread(str(default_source() / "astronaut.png"))
    big, small = cv2.resize(photo, (110, 110)), cv2.resize(photo, (80, 80))
    out = []
    for f in range(frames):
        image = np.full((*hw, 3), 114, np.uint8)
        image[20:130, 10 + 5 * f : 120 + 5 * f] = big
        image[100:180, 170 - 4 * f : 250 - 4 * f] = small
        out.append(image)
    return out


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path) -> NAS:
    return NAS(tiny_checkpoint)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.avi", clip_frames())


@pytest.fixture(scope="module")
def predicted(tiny: NAS, clip: Path) -> list[Result]:
    """Plain predict on the clip at track's default conf (0.1): what the tracker is fed."""
    return tiny.predict(str(clip), imgsz=IMGSZ, conf=0.1, verbose=False)


def track_by_hand(tracker: ByteTrack, results: list[Result]) -> list[np.ndarray]:
    """The tracker run on predict's detections, frame by frame: per frame float32 [M, 7] rows (x1, y1, x2, y2,
    id, conf, class) clipped to the image, as a tracked result holds them."""
    out = []
    for r in results:
        boxes = r.boxes.numpy()
        rows = tracker.update(boxes.xyxy, boxes.conf, boxes.cls, frame=r.orig_img)[:, :7].astype(np.float32)
        h, w = r.orig_shape
        rows[:, [0, 2]] = rows[:, [0, 2]].clip(0, w)
        rows[:, [1, 3]] = rows[:, [1, 3]].clip(0, h)
        out.append(rows)
    return out


def data(results: list[Result]) -> list[np.ndarray]:
    return [r.boxes.numpy().data for r in results]


def assert_same_tracks(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for frame, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, f"frame {frame + 1}"
        np.testing.assert_array_equal(a[:, 4], b[:, 4], err_msg=f"ids of frame {frame + 1}")
        np.testing.assert_array_equal(a, b, err_msg=f"frame {frame + 1}")


# ------------------------------------------------------------------------------------------- the tracks


@pytest.mark.parametrize("tracker", ["bytetrack.yaml", "botsort.yaml"])
def test_video_tracks_are_the_tracker_run_on_predicted_detections(tiny, clip, predicted, tracker) -> None:
    reference = ByteTrack(ByteTrackConfig(), FPS) if tracker == "bytetrack.yaml" else BotSort(BotSortConfig(), FPS)
    expected = track_by_hand(reference, predicted)
    results = tiny.track(str(clip), imgsz=IMGSZ, tracker=tracker, verbose=False)
    assert all(r.boxes.is_track and isinstance(r.boxes.data, torch.Tensor) for r in results)
    assert_same_tracks(data(results), expected)
    frames_per_id = Counter(int(i) for r in results for i in r.boxes.id)
    assert len(frames_per_id) > 10 and max(frames_per_id.values()) == FRAMES  # followed through the whole clip
    assert all(r.speed["track"] > 0 for r in results)


def test_a_single_image_gives_every_object_a_new_id(tiny: NAS) -> None:
    """One frame: every detection scoring at least track_high_thresh = new_track_thresh = 0.25 starts a
    confirmed track (ids 1, 2, ... in detection order); those below take part in no track. Also sliced."""
    photo = str(default_source() / "astronaut.png")
    for extra in ({}, {"slice": 256, "slice_overlap": 0.5}):
        detections = tiny.predict(photo, imgsz=IMGSZ, conf=0.1, verbose=False, **extra)[0].boxes.numpy()
        expected = detections.data[detections.conf >= 0.25]
        tracked = tiny.track(photo, imgsz=IMGSZ, verbose=False, **extra)[0].boxes.numpy()
        assert 0 < len(expected) < len(detections)
        np.testing.assert_array_equal(tracked.id, np.arange(1, len(expected) + 1))
        np.testing.assert_array_equal(tracked.data[:, 5:], expected[:, 4:])  # conf and class
        np.testing.assert_allclose(tracked.xyxy, expected[:, :4], atol=1e-3)  # the Kalman filter's first state


def test_persist_continues_the_ids_across_calls(tiny_checkpoint: Path, clip: Path, predicted: list[Result]) -> None:
    """One frame per call with persist=True tracks as one call over the clip does (on a model that has not
    tracked before: persist would go on from an earlier call's tracker); without persist each call starts again
    (ids from 1)."""
    whole = track_by_hand(ByteTrack(ByteTrackConfig(), FPS), predicted)
    capture = cv2.VideoCapture(str(clip))
    frames = [capture.read()[1] for _ in range(FRAMES)]
    capture.release()
    fresh_model = NAS(tiny_checkpoint)
    one_by_one = [fresh_model.track(f, imgsz=IMGSZ, persist=True, verbose=False)[0] for f in frames]
    assert_same_tracks(data(one_by_one), whole)
    restarted = [fresh_model.track(f, imgsz=IMGSZ, verbose=False)[0] for f in frames[:3]]
    for r in restarted:
        np.testing.assert_array_equal(r.boxes.numpy().id, np.arange(1, len(r.boxes) + 1))
    assert any(r.boxes.numpy().id.max() > len(r.boxes) for r in one_by_one)  # ids there did continue


def test_each_video_is_a_sequence_and_a_folder_of_frames_is_one(tiny_checkpoint, tiny, clip, predicted, tmp_path):
    """Two videos in one source: the second starts again (the same clip gives the same tracks); with persist the
    tracker goes on into it, as one tracker over both clips (a model that has not tracked before: persist would
    also go on from the previous call). A folder of the clip's frames tracks as the clip."""
    whole = track_by_hand(ByteTrack(ByteTrackConfig(), FPS), predicted)
    twice = data(tiny.track([str(clip), str(clip)], imgsz=IMGSZ, verbose=False))
    assert_same_tracks(twice, whole + whole)
    persisted = data(NAS(tiny_checkpoint).track([str(clip), str(clip)], imgsz=IMGSZ, persist=True, verbose=False))
    assert_same_tracks(persisted, track_by_hand(ByteTrack(ByteTrackConfig(), FPS), predicted + predicted))
    capture = cv2.VideoCapture(str(clip))
    for n in range(FRAMES):
        cv2.imwrite(str(tmp_path / f"frame_{n:03d}.png"), capture.read()[1])
    capture.release()
    assert_same_tracks(data(tiny.track(str(tmp_path), imgsz=IMGSZ, verbose=False)), whole)


# --------------------------------------------------------------------------------------------- outputs


def mot_text(results: list[Result], frame_numbers: list[int]) -> str:
    """The MOTChallenge lines of the results, written here: frame,id,left,top,width,height,conf,-1,-1,-1."""
    lines = []
    for n, r in zip(frame_numbers, results):
        boxes = r.boxes.numpy()
        for (x1, y1, x2, y2), i, c in zip(boxes.xyxy.tolist(), boxes.id.tolist(), boxes.conf.tolist()):
            lines.append(f"{n},{int(i)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{c:.5f},-1,-1,-1\n")
    return "".join(lines)


def test_saved_video_mot_file_and_json(tiny: NAS, clip: Path, tmp_path: Path) -> None:
    """vid_stride=2: frames 1, 3, 5, ... of the clip; the MOTChallenge file and predictions.json hold the results'
    tracks under those frame numbers; the annotated video has every tracked frame."""
    results = tiny.track(
        str(clip), imgsz=IMGSZ, vid_stride=2, save=True, save_txt=True, save_json=True, project=str(tmp_path), name="t"
    )
    run = tmp_path / "t"
    assert [r.save_dir for r in results] == [str(run)] * (FRAMES // 2)
    numbers = list(range(1, FRAMES + 1, 2))
    assert (run / "labels" / "clip.txt").read_text() == mot_text(results, numbers)
    entries = json.loads((run / "predictions.json").read_text())
    assert [e["frame"] for e in entries] == numbers
    for entry, r in zip(entries, results):
        assert [d["id"] for d in entry["detections"]] == r.boxes.numpy().id.astype(int).tolist()
    video = cv2.VideoCapture(str(run / "clip.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES // 2
    video.release()
    assert sorted(p.name for p in run.rglob("*") if p.is_file()) == ["clip.avi", "clip.txt", "predictions.json"]


def near_segments(shape: tuple[int, int], segments: list[tuple[np.ndarray, np.ndarray]], radius: float) -> np.ndarray:
    """Bool [H, W]: pixels within `radius` of any segment (a, b)."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    points = np.stack([xs, ys], axis=-1).astype(np.float64)
    near = np.zeros(shape, dtype=bool)
    for a, b in segments:
        t = np.clip(((points - a) @ (b - a)) / max(float((b - a) @ (b - a)), 1e-9), 0, 1)
        near |= np.linalg.norm(points - (a + t[..., None] * (b - a)), axis=-1) <= radius
    return near


def test_annotated_frames_carry_the_trails(tiny: NAS, clip: Path, tmp_path: Path) -> None:
    """The saved frame differs from the result's own plot (boxes and "id:N" labels) only along the tracks'
    trails: polylines through the centres of each id's boxes in the frames so far."""
    results = tiny.track(str(clip), imgsz=IMGSZ, save=False, save_frames=True, project=str(tmp_path), name="t")
    last = results[-1]
    saved = cv2.imread(str(tmp_path / "t" / "clip_frames" / f"clip_{FRAMES}.jpg")).astype(int)
    changed = np.abs(saved - last.plot().astype(int)).max(axis=2) > 60  # well above JPEG noise
    centres: dict[int, list[np.ndarray]] = {}
    for r in results:
        boxes = r.boxes.numpy()
        for i, (x1, y1, x2, y2) in zip(boxes.id.astype(int), boxes.xyxy):
            centres.setdefault(int(i), []).append(np.array([(x1 + x2) / 2, (y1 + y2) / 2]))
    ongoing = set(last.boxes.numpy().id.astype(int).tolist())
    segments = [(p[k], p[k + 1]) for i, p in centres.items() if i in ongoing for k in range(len(p) - 1)]
    trails = near_segments(changed.shape, segments, radius=4)  # line width 2 at this size, antialiased, JPEG
    assert changed.sum() > 100
    assert (changed & trails).sum() >= 0.95 * changed.sum()


def test_trails_are_bounded_and_drawn_in_the_track_colour() -> None:
    trails = Trails(length=3)
    for f in range(5):  # track 7 moves right by 10 px a frame; track 9 is seen in the first two frames only
        ids = [7, 9] if f < 2 else [7]
        trails.add(np.array(ids), np.array([[10.0 * f, 0, 10.0 * f + 10, 20], [0, 30, 10, 40]])[: len(ids)])
    points = trails.points()
    assert points[7] == ((25.0, 10.0), (35.0, 10.0), (45.0, 10.0))  # the last 3 centres
    assert 9 not in points  # not seen for 3 frames: forgotten
    canvas = draw_trails(np.zeros((40, 60, 3), np.uint8), points, 1)
    assert tuple(canvas[10, 30]) == colour(7) and tuple(canvas[30, 30]) == (0, 0, 0)


def test_mot_sink_is_atomic_and_empty_without_tracks(tmp_path: Path) -> None:
    sink = MotSink(tmp_path / "labels" / "a.txt")
    boxes = np.array([[10, 20, 40, 60, 3, 0.875, 0]], np.float32)
    sink.add(4, Result(Boxes(boxes, (100, 100)), {0: "x"}, None, (100, 100), "a"))
    assert not (tmp_path / "labels" / "a.txt").exists()  # still under its temporary name
    sink.close()
    assert (tmp_path / "labels" / "a.txt").read_text() == "4,3,10.00,20.00,30.00,40.00,0.87500,-1,-1,-1\n"
    empty = MotSink(tmp_path / "b.txt")
    empty.close()
    assert (tmp_path / "b.txt").read_text() == ""
    aborted = MotSink(tmp_path / "c.txt")
    aborted.add(1, Result(Boxes(boxes, (100, 100)), {0: "x"}, None, (100, 100), "a"))
    aborted.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt", "labels"]


# ------------------------------------------------------------------------------------------ command line


def test_track_on_the_command_line(tiny_checkpoint: Path, clip: Path, tmp_path: Path, tiny: NAS) -> None:
    done = subprocess.run(
        [str(SCRIPT), "track", f"model={tiny_checkpoint}", f"source={clip}", f"imgsz={IMGSZ}", "save_txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "YOLONAS_DEBUG"},
    )
    assert done.returncode == 0, done.stderr
    assert "Track: " in done.stderr and "ms per frame (bytetrack, over 14 frames)" in done.stderr
    run = tmp_path / "runs" / "detect" / "track"
    results = tiny.track(str(clip), imgsz=IMGSZ, verbose=False)
    assert (run / "labels" / "clip.txt").read_text() == mot_text(results, list(range(1, FRAMES + 1)))
    assert (run / "clip.avi").is_file()


def test_help_and_cfg_of_track() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["help", "track"]).stdout
    for text in ("tracker=bytetrack.yaml", "persist=False", "conf=0.1", "slice=None", "slice_merge=nmm"):
        assert text in shown
    cfg = runner.invoke(app, ["cfg", "track"]).stdout
    assert "tracker: bytetrack.yaml" in cfg and "conf: 0.1" in cfg and "slice_overlap: 0.2" in cfg
    assert "track " in runner.invoke(app, ["help"]).stdout
