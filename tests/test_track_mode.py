"""`yolo-nas track` and `NAS.track`: the trackers (tested in test_track.py) wired to predict.

The fixture formula weights find the same things in the bundled astronaut photo wherever it moves, so a clip of
two copies of the photo gliding over a grey background gives detections that the trackers follow. Every check
compares the mode with an independent run of its parts: predict's detections of the same frames fed to the
tracker classes by hand (ids, boxes, frame numbers), and the MOTChallenge and JSON files written out of the
results by the test itself. One tracked run with every output (`tracked`) serves several tests, to keep the
model runs few.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from yolonas_cli import NAS
from yolonas_cli.cli.app import app
from yolonas_cli.data.frames import Frame
from yolonas_cli.data.plotting import colour, draw_trails, label_text
from yolonas_cli.data.results import Boxes, Result
from yolonas_cli.data.sinks import MotSink
from yolonas_cli.data.sources import default_source
from yolonas_cli.modes.track import BotSort, BotSortConfig, ByteTrack, ByteTrackConfig
from yolonas_cli.modes.track.session import TrackSession, Trails

IMGSZ = 128
FPS = 30  # the clip's rate: the tracker's track_buffer is counted at this rate, as for in-memory frames
FRAMES = 8


def astronaut(side: int) -> np.ndarray:
    """The bundled astronaut photo (512 x 512) resized to side x side, BGR uint8."""
    return cv2.resize(cv2.imread(str(default_source() / "astronaut.png")), (side, side), interpolation=cv2.INTER_AREA)


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


@pytest.fixture(scope="module")
def tracked(tiny: NAS, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Result], Path]:
    """`track` on the clip with ByteTrack saving everything: (the results, the run folder)."""
    project = tmp_path_factory.mktemp("tracked")
    results = tiny.track(
        str(clip),
        imgsz=IMGSZ,
        save=True,
        save_frames=True,
        save_txt=True,
        save_json=True,
        project=str(project),
        name="t",
        verbose=False,
    )
    return results, project / "t"


def test_video_tracks_are_the_tracker_run_on_predicted_detections(tracked, predicted) -> None:
    results, _ = tracked
    expected = track_by_hand(ByteTrack(ByteTrackConfig(), FPS), predicted)
    assert all(r.boxes.is_track and isinstance(r.boxes.data, torch.Tensor) for r in results)
    assert_same_tracks(data(results), expected)
    frames_per_id = Counter(int(i) for r in results for i in r.boxes.id)
    assert len(frames_per_id) > 10 and max(frames_per_id.values()) == FRAMES  # followed through the whole clip
    assert all(r.speed["track"] > 0 for r in results)


def test_botsort_tracks_are_botsort_run_on_predicted_detections(tiny, clip, predicted) -> None:
    """tracker=botsort.yaml: BoT-SORT with camera-motion compensation on the frames (which tracks otherwise
    than ByteTrack here: the check below fails with ByteTrack's tracks)."""
    expected = track_by_hand(BotSort(BotSortConfig(), FPS), predicted)
    results = tiny.track(str(clip), imgsz=IMGSZ, tracker="botsort.yaml", verbose=False)
    assert_same_tracks(data(results), expected)


def test_a_single_image_gives_every_object_a_new_id(tiny: NAS, tmp_path: Path) -> None:
    """One frame: every detection scoring at least track_high_thresh = new_track_thresh (0.25 in
    bytetrack.yaml; 0.4 in a tracker YAML given by path) starts a confirmed track (ids 1, 2, ... in detection
    order); those below take part in no track."""
    photo = astronaut(IMGSZ)
    detections = tiny.predict(photo, imgsz=IMGSZ, conf=0.1, verbose=False)[0].boxes.numpy()
    custom = tmp_path / "strict.yaml"
    custom.write_text("tracker_type: bytetrack\ntrack_high_thresh: 0.4\nnew_track_thresh: 0.4\n")
    assert ((detections.conf >= 0.25) & (detections.conf < 0.4)).any()  # so the two trackers differ here
    for tracker, thresh in (("bytetrack.yaml", 0.25), (str(custom), 0.4)):
        expected = detections.data[detections.conf >= thresh]
        tracked = tiny.track(photo, imgsz=IMGSZ, tracker=tracker, verbose=False)[0].boxes.numpy()
        assert 0 < len(expected) < len(detections)
        np.testing.assert_array_equal(tracked.id, np.arange(1, len(expected) + 1))
        np.testing.assert_array_equal(tracked.data[:, 5:], expected[:, 4:])  # conf and class
        np.testing.assert_allclose(tracked.xyxy, expected[:, :4], atol=1e-3)  # the Kalman filter's first state


def test_persist_continues_the_ids_across_calls(tiny_checkpoint: Path, clip: Path, predicted: list[Result]) -> None:
    """One frame per call with persist=True (Ultralytics' `model.track(frame, persist=True)` loop; with and without
    stream=True) tracks as one call over the clip does (on a model that has not tracked before: persist would go
    on from an earlier call's tracker); without persist each call starts again (ids from 1)."""
    whole = track_by_hand(ByteTrack(ByteTrackConfig(), FPS), predicted)
    capture = cv2.VideoCapture(str(clip))
    frames = [capture.read()[1] for _ in range(FRAMES)]
    capture.release()
    fresh_model = NAS(tiny_checkpoint)
    one_by_one = []
    for n, f in enumerate(frames):  # a list, or a generator with stream=True (every other call)
        called = fresh_model.track(f, imgsz=IMGSZ, persist=True, stream=n % 2 == 1, verbose=False)
        assert isinstance(called, list) == (n % 2 == 0)
        one_by_one += list(called)
    assert_same_tracks(data(one_by_one), whole)
    assert not np.array_equal(whole[1][:, 4], np.arange(1, len(whole[1]) + 1))  # the ids of frame 2 continue...
    for f in frames[:2]:
        restarted = fresh_model.track(f, imgsz=IMGSZ, verbose=False)[0]
        np.testing.assert_array_equal(restarted.boxes.numpy().id, np.arange(1, len(restarted.boxes) + 1))  # ...not here


def test_each_video_of_a_source_is_a_sequence(tiny, clip, predicted, capfd) -> None:
    """Two videos in one source: the second starts again (the same clip gives the same tracks); verbose=False
    prints nothing."""
    whole = track_by_hand(ByteTrack(ByteTrackConfig(), FPS), predicted)
    capfd.readouterr()
    assert_same_tracks(data(tiny.track([str(clip), str(clip)], imgsz=IMGSZ, verbose=False)), whole + whole)
    assert capfd.readouterr() == ("", "")


def test_images_around_a_video_are_two_sequences(tiny: NAS, clip: Path, predicted, tmp_path: Path) -> None:
    """A folder holding a.png, b.avi, c.png (a and c: the clip's first frame, lossless): a, the video (vid_stride=4:
    frames 1 and 5) and c are three sequences, each tracked afresh, in labels/<folder>.txt, b.txt and c.txt."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    capture = cv2.VideoCapture(str(clip))
    first = capture.read()[1]
    capture.release()
    cv2.imwrite(str(folder / "a.png"), first)
    cv2.imwrite(str(folder / "c.png"), first)
    (folder / "b.avi").write_bytes(clip.read_bytes())
    tiny.track(str(folder), imgsz=IMGSZ, vid_stride=4, save=False, save_txt=True, project=str(tmp_path), name="t")
    labels = tmp_path / "t" / "labels"
    image_tracks = mot_lines(track_by_hand(ByteTrack(ByteTrackConfig(), FPS), predicted[:1]), [1])
    video_tracks = mot_lines(track_by_hand(ByteTrack(ByteTrackConfig(), FPS / 4), predicted[0:5:4]), [1, 5])
    assert sorted(p.name for p in labels.iterdir()) == ["b.txt", "c.txt", "mixed.txt"]
    assert (labels / "mixed.txt").read_text() == image_tracks == (labels / "c.txt").read_text()
    assert (labels / "b.txt").read_text() == video_tracks


def session_frames(predicted: list[Result], index: int, kind: str = "video") -> list[tuple[Frame, Result]]:
    """Frames of item `index` of a source (a video or stream of the clip) and fresh copies of their detections."""
    out = []
    for n, r in enumerate(predicted):
        frame = Frame(np.zeros((*r.orig_shape, 3), np.uint8), f"clip{index}.avi", index, 2, kind, n + 1, FRAMES, FPS)
        out.append((frame, Result(Boxes(r.boxes.numpy().data.copy(), r.orig_shape), r.names, None, r.orig_shape, "")))
    return out


@pytest.mark.parametrize("kind", ["video", "stream"])
def test_session_restarts_at_each_sequence_unless_persist(predicted: list[Result], kind: str) -> None:
    """The session on two items of a source: a new tracker at the second unless persist (then one tracker over
    both, as Ultralytics' persist=True); MOTChallenge frame numbers restart at 1 in each sequence."""
    whole = track_by_hand(ByteTrack(ByteTrackConfig(), FPS), predicted)
    for persist, expected in (
        (False, whole + whole),
        (True, track_by_hand(ByteTrack(ByteTrackConfig(), FPS), predicted + predicted)),
    ):
        session = TrackSession(ByteTrackConfig(), persist=persist)
        got, numbers = [], []
        for frame, result in session_frames(predicted, 0, kind) + session_frames(predicted, 1, kind):
            got.append(session.track(frame, result).boxes.numpy().data)
            numbers.append(session.frame_number)
        assert_same_tracks(got, expected)
        assert numbers == list(range(1, FRAMES + 1)) * 2


def test_session_frame_numbers_and_rate_follow_vid_stride(predicted: list[Result]) -> None:
    """vid_stride=3: the video's frames 1, 4, 7, ... are numbered so in the MOTChallenge file, and the tracker
    runs at fps / 3 (its track_buffer counts the frames it sees)."""
    session = TrackSession(ByteTrackConfig(), vid_stride=3)
    numbers = []
    for frame, result in session_frames(predicted, 0)[:3]:
        session.track(frame, result)
        numbers.append(session.frame_number)
    assert numbers == [1, 4, 7]
    assert (
        session.tracker is not None
        and session.tracker.max_time_lost == ByteTrack(ByteTrackConfig(), FPS / 3).max_time_lost
    )


# --------------------------------------------------------------------------------------------- outputs


def mot_lines(tracks: list[np.ndarray], frame_numbers: list[int]) -> str:
    """The MOTChallenge lines of per-frame tracks [M, 7], written here: frame,id,left,top,width,height,conf,-1,-1,-1."""
    lines = []
    for n, rows in zip(frame_numbers, tracks):
        for x1, y1, x2, y2, i, c, _ in rows.tolist():
            lines.append(f"{n},{int(i)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{c:.5f},-1,-1,-1\n")
    return "".join(lines)


def test_saved_video_mot_file_and_json(tracked) -> None:
    """The MOTChallenge file and predictions.json hold the results' tracks under the frame numbers; the
    annotated video has every frame."""
    results, run = tracked
    assert [r.save_dir for r in results] == [str(run)] * FRAMES
    numbers = list(range(1, FRAMES + 1))
    assert (run / "labels" / "clip.txt").read_text() == mot_lines(data(results), numbers)
    entries = json.loads((run / "predictions.json").read_text())
    assert [e["frame"] for e in entries] == numbers
    for entry, r in zip(entries, results):
        assert [d["id"] for d in entry["detections"]] == r.boxes.numpy().id.astype(int).tolist()
    video = cv2.VideoCapture(str(run / "clip.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    video.release()
    frames = [f"clip_frames/clip_{n}.jpg" for n in numbers]
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()) == sorted(
        ["clip.avi", "labels/clip.txt", "predictions.json", *frames]
    )


def near_segments(shape: tuple[int, int], segments: list[tuple[np.ndarray, np.ndarray]], radius: float) -> np.ndarray:
    """Bool [H, W]: pixels within `radius` of any segment (a, b)."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    points = np.stack([xs, ys], axis=-1).astype(np.float64)
    near = np.zeros(shape, dtype=bool)
    for a, b in segments:
        t = np.clip(((points - a) @ (b - a)) / max(float((b - a) @ (b - a)), 1e-9), 0, 1)
        near |= np.linalg.norm(points - (a + t[..., None] * (b - a)), axis=-1) <= radius
    return near


def jpeg_blocks(mask: np.ndarray) -> np.ndarray:
    """Bool [H/16, W/16]: the 16x16 blocks (a JPEG's 4:2:0 coding units, coded independently) with a True pixel."""
    h, w = mask.shape
    padded = np.zeros((-(-h // 16) * 16, -(-w // 16) * 16), dtype=bool)
    padded[:h, :w] = mask
    return padded.reshape(padded.shape[0] // 16, 16, padded.shape[1] // 16, 16).any(axis=(1, 3))


def test_annotated_frames_carry_the_trails(tracked) -> None:
    """The saved frame (a JPEG) differs from the result's own plot (boxes and "id:N" labels) encoded the same way
    only around the JPEG blocks that the trails of the frame's tracks cross (polylines through the centres of each
    id's boxes in the frames so far), and in nearly all of those."""
    results, run = tracked
    last = results[-1]
    saved = cv2.imread(str(run / "clip_frames" / f"clip_{FRAMES}.jpg"))
    plain = cv2.imdecode(cv2.imencode(".jpg", last.plot())[1], cv2.IMREAD_COLOR)
    changed = jpeg_blocks((saved != plain).any(axis=2))
    centres: dict[int, list[np.ndarray]] = {}
    for r in results:
        boxes = r.boxes.numpy()
        for i, (x1, y1, x2, y2) in zip(boxes.id.astype(int), boxes.xyxy):
            centres.setdefault(int(i), []).append(np.array([(x1 + x2) / 2, (y1 + y2) / 2]))
    current = set(last.boxes.numpy().id.astype(int).tolist())
    segments = [(p[k], p[k + 1]) for i, p in centres.items() if i in current for k in range(len(p) - 1)]
    trails = jpeg_blocks(near_segments(saved.shape[:2], segments, radius=3))  # line width 2, antialiased
    # decoding upsamples the chroma from the neighbouring blocks too, so a block next to a trail's may change
    next_to_trails = cv2.dilate(trails.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert trails.sum() >= 10
    assert not (changed & ~next_to_trails).any()  # nothing drawn away from the trails
    assert (changed & trails).sum() >= 0.9 * trails.sum()  # and the trails are there (measured: all 27 blocks)


def test_trails_are_bounded_and_drawn_in_the_track_colour() -> None:
    trails = Trails(length=3)
    for f in range(5):  # track 7 moves right by 10 px a frame; track 9 is seen in the first two frames only
        ids = [7, 9] if f < 2 else [7]
        trails.add(np.array(ids), np.array([[10.0 * f, 0, 10.0 * f + 10, 20], [0, 30, 10, 40]])[: len(ids)])
    points = trails.points()
    assert points[7] == ((25.0, 10.0), (35.0, 10.0), (45.0, 10.0))  # the last 3 centres
    assert 9 not in points  # not seen for 3 frames: forgotten
    canvas = draw_trails(np.zeros((40, 60, 3), np.uint8), points, 3)  # wide enough for a solid middle row
    assert tuple(canvas[10, 30]) == colour(7) and tuple(canvas[30, 30]) == (0, 0, 0)


def test_tracked_boxes_are_labelled_with_their_ids() -> None:
    """A tracked box's label reads "id:7 person 0.87": the plot differs from the untracked one's only in the label
    above the box, which is wider (it starts at the same corner)."""
    assert label_text("person", 0.871, True, 7) == "id:7 person 0.87"
    assert label_text("person", 0.871, False, 7) == "id:7 person"
    image = np.full((120, 160, 3), 114, np.uint8)
    row = [20.0, 60.0, 90.0, 110.0, 7.0, 0.87, 0.0]
    plots = {}
    for tracked in (False, True):
        boxes = np.array([row if tracked else row[:4] + row[5:]], np.float32)
        plots[tracked] = Result(Boxes(boxes, (120, 160)), {0: "person"}, image, (120, 160), "a").plot(line_width=2)
    changed = (plots[True] != plots[False]).any(axis=2)
    ys, xs = np.nonzero(changed)
    # in the label band above the box from its corner; the band's filled background ends on the box's top edge
    # (y = 60), which antialiasing widens by a pixel
    assert len(ys) > 0 and ys.max() <= 61 and xs.min() >= 20
    label = (plots[True] != image).any(axis=2)[:60]  # the tracked label's extent: wider than the box's label
    assert (
        np.nonzero(label.any(axis=0))[0].max()
        > np.nonzero((plots[False] != image).any(axis=2)[:60].any(axis=0))[0].max()
    )


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


def test_track_a_video_on_the_command_line(tiny_checkpoint: Path, clip: Path, predicted, tmp_path: Path) -> None:
    """`yolo-nas track` on the clip with vid_stride=2 (in process; the bad-input matrix runs the installed
    command): the tracker sees frames 1, 3, 5, 7 at half the clip's rate, and the MOTChallenge file and
    predictions.json number them so."""
    tokens = [f"model={tiny_checkpoint}", f"source={clip}", f"imgsz={IMGSZ}", "vid_stride=2", "save_txt", "save_json"]
    done = CliRunner().invoke(app, ["track", *tokens, f"project={tmp_path}"])
    assert done.exit_code == 0, done.stderr
    assert f"ms per frame (bytetrack, over {FRAMES // 2} frames)" in done.stderr
    run = tmp_path / "track"
    numbers = list(range(1, FRAMES + 1, 2))
    expected = track_by_hand(ByteTrack(ByteTrackConfig(), FPS / 2), predicted[::2])
    assert (run / "labels" / "clip.txt").read_text() == mot_lines(expected, numbers)
    entries = json.loads((run / "predictions.json").read_text())
    assert [e["frame"] for e in entries] == numbers
    assert [[d["id"] for d in e["detections"]] for e in entries] == [
        rows[:, 4].astype(int).tolist() for rows in expected
    ]
    video = cv2.VideoCapture(str(run / "clip.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES // 2
    video.release()


def test_track_a_folder_of_frames_on_the_command_line(tiny_checkpoint, clip, predicted, tmp_path) -> None:
    """A folder of the clip's frames (lossless) is one sequence in name order: the clip's tracks, in
    labels/<folder name>.txt."""
    folder = tmp_path / "frames"
    folder.mkdir()
    capture = cv2.VideoCapture(str(clip))
    for n in range(FRAMES):
        cv2.imwrite(str(folder / f"frame_{n:03d}.png"), capture.read()[1])
    capture.release()
    tokens = [f"model={tiny_checkpoint}", f"source={folder}", f"imgsz={IMGSZ}", "save=False", "save_txt"]
    done = CliRunner().invoke(app, ["track", *tokens, f"project={tmp_path}", "name=run"])
    assert done.exit_code == 0, done.stderr
    expected = track_by_hand(ByteTrack(ByteTrackConfig(), FPS), predicted)
    assert (tmp_path / "run" / "labels" / "frames.txt").read_text() == mot_lines(expected, list(range(1, FRAMES + 1)))


def test_track_a_single_image_sliced_on_the_command_line(tiny: NAS, tmp_path: Path) -> None:
    """One image, sliced into 4 tiles: every merged detection scoring at least 0.25 is a new track in frame 1
    of labels/<stem>.txt, ids 1, 2, ... in detection order."""
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), astronaut(IMGSZ))
    sliced = {"imgsz": 96, "slice": 96, "slice_overlap": 0.25}
    detections = tiny.predict(str(photo), conf=0.1, verbose=False, **sliced)[0].boxes.numpy()
    expected = detections.data[detections.conf >= 0.25]
    tokens = [f"{k}={v}" for k, v in sliced.items()] + [f"model={tiny.path}", f"source={photo}", "save_txt"]
    done = CliRunner().invoke(app, ["track", *tokens, f"project={tmp_path}", "name=run"])
    assert done.exit_code == 0, done.stderr
    rows = np.loadtxt(tmp_path / "run" / "labels" / "photo.txt", delimiter=",", ndmin=2)
    assert 0 < len(expected) < len(detections) and len(rows) == len(expected)
    np.testing.assert_array_equal(rows[:, :2], np.stack([np.ones(len(rows)), np.arange(1, len(rows) + 1)], 1))
    left_top_width_height = np.concatenate([expected[:, :2], expected[:, 2:4] - expected[:, :2]], axis=1)
    np.testing.assert_allclose(rows[:, 2:6], left_top_width_height, atol=0.011)  # written with 2 decimals
    np.testing.assert_allclose(rows[:, 6], expected[:, 4], atol=6e-6)  # 5 decimals
    assert (rows[:, 7:] == -1).all()


def test_help_and_cfg_of_track() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["help", "track"]).stdout
    for text in ("tracker=bytetrack.yaml", "persist=False", "conf=0.1", "slice=None", "slice_merge=nmm"):
        assert text in shown
    cfg = runner.invoke(app, ["cfg", "track"]).stdout
    assert "tracker: bytetrack.yaml" in cfg and "conf: 0.1" in cfg and "slice_overlap: 0.2" in cfg
    assert "track " in runner.invoke(app, ["help"]).stdout
