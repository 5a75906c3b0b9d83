"""Predict sources of every kind, written as small files in tmp_path (images with cv2, videos with
cv2.VideoWriter), plus the errors and warnings."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError, YoloNasError
from yolonas_cli.data.frames import Frame, SourceItem
from yolonas_cli.data.sources import Source, default_source, open_source


def write_image(path: Path, value: int = 100, shape: tuple[int, ...] = (24, 32, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full(shape, value, np.uint8))
    return path


def write_video(path: Path, frames: int = 10, size: tuple[int, int] = (32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 10, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), i * 20, np.uint8))
    writer.release()
    return path


@pytest.fixture
def warnings(monkeypatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(console, "warn", seen.append)
    return seen


def names(src: Source) -> list[str]:
    return [Path(f.path).name for f in src]


def test_image_file(tmp_path) -> None:
    path = write_image(tmp_path / "a.jpg")
    (frame,) = list(open_source(str(path)))
    assert frame.image_bgr.shape == (24, 32, 3) and frame.image_bgr.dtype == np.uint8
    assert (frame.path, frame.index, frame.total, frame.kind) == (str(path), 0, 1, "image")
    assert frame.frame is None and frame.prefix == f"image 1/1 {path}: "


def test_images_pass_through_as_decoded(tmp_path) -> None:
    grey = write_image(tmp_path / "g.png", shape=(5, 6))
    bgra = write_image(tmp_path / "a.png", shape=(5, 6, 4))
    cv2.imwrite(str(tmp_path / "d.tif"), np.full((5, 6, 3), 4000, np.uint16))
    shapes = {Path(f.path).name: (f.image_bgr.shape, f.image_bgr.dtype) for f in open_source(tmp_path)}
    assert shapes == {"g.png": ((5, 6), np.uint8), "a.png": ((5, 6, 4), np.uint8), "d.tif": ((5, 6, 3), np.uint16)}
    assert shapes == {
        Path(f.path).name: (f.image_bgr.shape, f.image_bgr.dtype) for f in open_source([grey, bgra, tmp_path / "d.tif"])
    }


def test_jpeg_exif_orientation_applied(tmp_path) -> None:
    pil = pytest.importorskip("PIL.Image")
    exif = pil.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    pil.new("RGB", (40, 20)).save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert next(iter(open_source(tmp_path / "r.jpg"))).image_bgr.shape == (40, 20, 3)


def test_directory_sorted_filtered_with_videos(tmp_path) -> None:
    for name in ("b.png", "a.jpg", "c.BMP"):
        write_image(tmp_path / name)
    write_video(tmp_path / "v.avi", frames=3)
    (tmp_path / "notes.md").write_text("x")
    write_image(tmp_path / "sub" / "deep.jpg")  # not recursive
    src = open_source(str(tmp_path))
    assert len(src) == 4 and src.has_video and not src.has_stream
    frames = list(src)
    assert [Path(f.path).name for f in frames] == ["a.jpg", "b.png", "c.BMP", "v.avi", "v.avi", "v.avi"]
    assert [f.index for f in frames] == [0, 1, 2, 3, 3, 3] and {f.total for f in frames} == {4}
    assert frames[-1].prefix == f"video 4/4 (frame 3/3) {tmp_path / 'v.avi'}: "


def test_glob_and_recursive_glob(tmp_path) -> None:
    write_image(tmp_path / "x1.jpg")
    write_image(tmp_path / "x2.png")
    write_image(tmp_path / "d" / "e" / "x3.jpg")
    assert names(open_source(str(tmp_path / "*.jpg"))) == ["x1.jpg"]
    assert names(open_source(str(tmp_path / "**" / "*.jpg"))) == ["x3.jpg", "x1.jpg"]  # sorted paths


def test_list_file(tmp_path) -> None:
    write_image(tmp_path / "imgs" / "a.jpg")
    b = write_image(tmp_path / "elsewhere" / "b.png")
    write_video(tmp_path / "imgs" / "v.avi", frames=2)
    listing = tmp_path / "imgs" / "list.txt"
    listing.write_text(f"# my images\na.jpg\n\n  {b}  \nv.avi\n")
    assert names(open_source(listing)) == ["a.jpg", "b.png", "v.avi", "v.avi"]
    listing.write_text("a.jpg\nmissing.jpg\n")
    with pytest.raises(UsageError, match=r"missing\.jpg' does not exist \(line 2 of "):
        open_source(listing)
    listing.write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="no images or videos found"):
        open_source(listing)


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_and_stride(tmp_path, suffix) -> None:
    path = write_video(tmp_path / f"v{suffix}", frames=10)
    frames = list(open_source(path))
    assert len(frames) == 10 and {f.kind for f in frames} == {"video"}
    assert frames[0].fps == pytest.approx(10) and frames[0].frame_count == 10
    strided = list(open_source(path, vid_stride=3))
    assert [f.frame for f in strided] == [1, 2, 3, 4] and strided[0].frame_count == 4
    means = [float(f.image_bgr.mean()) for f in strided]  # frames 0, 3, 6, 9 have values 0, 60, 120, 180
    np.testing.assert_allclose(means, [0, 60, 120, 180], atol=8)


def test_in_memory_numpy_pil_and_list(tmp_path) -> None:
    image = pytest.importorskip("PIL.Image")
    arr = np.zeros((4, 5, 3), np.uint8)
    pil = image.new("RGB", (6, 3), (255, 0, 0))  # red
    file = write_image(tmp_path / "f.jpg")
    frames = list(open_source([arr, pil, str(file)]))
    assert [f.path for f in frames] == ["image0.jpg", "image1.jpg", str(file)]
    assert frames[0].image_bgr is arr and frames[0].prefix == "0: " and frames[1].prefix == "1: "
    assert frames[1].image_bgr.shape == (3, 6, 3) and tuple(frames[1].image_bgr[0, 0]) == (0, 0, 255)
    assert frames[2].prefix.startswith("image 3/3 ")
    (single,) = list(open_source(arr))
    assert single.path == "image0.jpg" and single.total == 1
    with pytest.raises(UsageError, match="HxWx3"):
        open_source(np.zeros((2, 3, 4, 5)))


def test_url_uses_injected_downloader(tmp_path) -> None:
    calls = []

    def fake_download(url: str, dest: Path) -> Path:
        calls.append(url)
        return write_image(dest, 7)

    url = "https://example.com/pics/dog%20one.jpg?size=big"
    frames = list(open_source(url, downloader=fake_download, download_dir=tmp_path / "dl"))
    assert calls == [url] and Path(frames[0].path).name == "dog one.jpg"
    assert Path(frames[0].path).is_relative_to(tmp_path / "dl") and frames[0].image_bgr[0, 0, 0] == 7
    open_source(url, downloader=fake_download, download_dir=tmp_path / "dl")
    assert calls == [url], "an earlier download is reused"


def test_streams_are_recognised_without_opening() -> None:
    for value, target in [
        (0, 0),
        ("1", 1),
        ("rtsp://cam/live", "rtsp://cam/live"),
        ("https://host/live", "https://host/live"),
    ]:
        src = open_source(value, downloader=lambda u, d: pytest.fail("no download for streams"))
        assert src.has_stream and src.items[0].kind == "stream" and src.items[0].target == target


@pytest.mark.parametrize("buffered", [True, False])
def test_stream_reader_on_a_video(tmp_path, buffered) -> None:
    video = str(write_video(tmp_path / "v.avi", frames=10))
    src = Source([SourceItem("stream", video, video)], "test", vid_stride=2, stream_buffer=buffered)
    frames = list(src)
    assert {(f.kind, f.total, f.fps) for f in frames} == {("stream", None, 10.0)}
    assert [f.frame for f in frames] == list(range(1, len(frames) + 1))
    assert len(frames) == 5 if buffered else 1 <= len(frames) <= 5
    it = iter(src)  # stopping early stops the reader
    next(it)
    it.close()


def test_unopenable_stream_raises(tmp_path) -> None:
    src = Source([SourceItem("stream", "nope", str(tmp_path / "nope.avi"))], "test")
    with pytest.raises(YoloNasError, match="cannot open stream"):
        list(src)


def test_corrupt_files_are_skipped_with_a_warning(tmp_path, warnings) -> None:
    write_image(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "c.png").write_bytes(b"")
    (tmp_path / "d.avi").write_bytes(b"not a video")
    write_video(tmp_path / "e.avi", frames=0)
    assert names(open_source(tmp_path)) == ["a.jpg"]
    assert len(warnings) == 4
    assert "b.jpg" in warnings[0] and "cannot be decoded" in warnings[0]
    assert "d.avi" in warnings[2] and "e.avi" in warnings[3] and "no frames" in warnings[3]


def test_nothing_decodable_raises_at_the_end(tmp_path, warnings) -> None:
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(YoloNasError, match="none of the 1 file"):
        list(open_source(tmp_path / "b.jpg"))
    assert warnings


def test_usage_errors(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"source 'x\.jpg' does not exist"):
        open_source("x.jpg")
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(UsageError, match=r"unsupported source suffix '\.gif'.*\.jpg.*\.mp4"):
        open_source(tmp_path / "a.gif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images or videos found in"):
        open_source(tmp_path / "empty")
    with pytest.raises(UsageError, match="no images or videos found in"):
        open_source(str(tmp_path / "*.png"))
    with pytest.raises(UsageError, match="empty list"):
        open_source([])
    with pytest.raises(UsageError, match="vid_stride"):
        open_source(tmp_path, vid_stride=0)
    with pytest.raises(UsageError, match="unsupported source type"):
        open_source(3.5)


def test_default_source_holds_the_sample_photos() -> None:
    folder = default_source()
    assert folder.is_dir()
    assert {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"} <= set(os.listdir(folder))
    frames = list(open_source(folder))
    assert len(frames) == 4 and all(isinstance(f, Frame) and f.image_bgr.ndim == 3 for f in frames)


def test_light_modules_do_not_import_torch() -> None:
    code = (
        "import sys, yolonas_cli.data.sources, yolonas_cli.data.frames, yolonas_cli.data.results, "
        "yolonas_cli.data.sinks, yolonas_cli.data.plotting; sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# ------------------------------------------------------------------- hostile names and special files


@pytest.mark.parametrize(
    "name",
    ["..%2F..%2F..%2Fescaped.jpg", "..%252F..%252F..%252Fescaped.jpg", "..%5C..%5C..%5Cescaped.jpg"],
)
def test_an_encoded_path_in_a_url_cannot_leave_the_download_folder(tmp_path, name) -> None:
    written: list[Path] = []

    def fake_download(url: str, dest: Path) -> Path:
        written.append(dest)
        return write_image(dest, 7)

    folder = tmp_path / "a" / "b" / "dl"
    frames = list(open_source(f"https://example.com/x/{name}", downloader=fake_download, download_dir=folder))
    assert len(written) == 1 and written[0].name == "escaped.jpg"
    assert written[0].resolve().is_relative_to(folder.resolve()) and written[0].parent.parent == folder
    assert [p for p in tmp_path.rglob("escaped.jpg") if not p.is_relative_to(folder)] == []
    assert frames[0].image_bgr[0, 0, 0] == 7


def run_bounded(fn, seconds: float = 10.0):
    """fn() in a thread; fails the test when it is still blocked after `seconds` (a reader stuck on a pipe)."""
    import threading

    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s (a named pipe was opened for reading)"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def fifo(tmp_path):
    """A factory of named pipes; at teardown a writer end is opened and closed once, so a reader that a
    broken implementation left blocked on one gets EOF and its thread ends."""
    made: list[Path] = []

    def make(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    for path in made:
        with contextlib.suppress(OSError):  # OSError: no reader is blocked on it, nothing to release
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_named_pipes_are_skipped_with_a_warning_never_opened(tmp_path, fifo, warnings) -> None:
    write_image(tmp_path / "d" / "a.jpg")
    fifo(tmp_path / "d" / "b.jpg")
    assert run_bounded(lambda: names(open_source(tmp_path / "d"))) == ["a.jpg"]
    assert run_bounded(lambda: names(open_source(str(tmp_path / "d" / "*.jpg")))) == ["a.jpg"]
    (tmp_path / "list.txt").write_text("d/a.jpg\nd/b.jpg\n")
    assert run_bounded(lambda: names(open_source(tmp_path / "list.txt"))) == ["a.jpg"]
    assert len(warnings) == 3 and all("b.jpg" in w and "named pipe" in w for w in warnings)
    with pytest.raises(UsageError, match="is a named pipe, not a regular file"):
        run_bounded(lambda: open_source(tmp_path / "d" / "b.jpg"))
