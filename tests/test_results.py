"""Boxes and Result with Ultralytics' API: tensors or arrays, devices, indexing, box forms, tracking ids,
console counts, summary/JSON/CSV/DataFrame, drawing, showing and the saved files (reopened).

Expected values are worked out by hand from the rows below (a 60x80 image)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.data.plotting import PALETTE, as_bgr_uint8, colour, default_line_width
from yolonas_cli.data.results import Boxes, Result

NAMES = {0: "person", 41: "cup", 44: "spoon", 7: "a/b"}
H, W = 60, 80
ROWS = [[10, 20, 30, 50, 0.9, 44], [0, 0, 80, 60, 0.5, 41], [40, 10, 60, 30, 0.75, 44]]
TRACKED = [[10, 20, 30, 50, 7, 0.9, 44], [0, 0, 80, 60, 3, 0.5, 41]]  # x1, y1, x2, y2, track id, conf, cls
SRC = Path(__file__).resolve().parents[1] / "src"


def make_result(rows: list[list[float]] | None = None, img: np.ndarray | None = None, tensor: bool = True) -> Result:
    data = np.array(rows if rows is not None else [], dtype=np.float32)
    if img is None:
        img = np.full((H, W, 3), 90, np.uint8)
    boxes = Boxes(torch.from_numpy(data) if tensor else data, img.shape[:2])
    return Result(boxes, NAMES, img, img.shape[:2], "/x/img.jpg", {"inference": 1.0}, (64, 96))


# ------------------------------------------------------------------------------------------------ Boxes


@pytest.mark.parametrize("kind", ["tensor", "numpy"])
def test_boxes_forms_keep_the_data_kind(kind: str) -> None:
    data = np.array(ROWS, np.float32)
    boxes = Boxes(torch.from_numpy(data) if kind == "tensor" else data, (H, W))
    expected_type = torch.Tensor if kind == "tensor" else np.ndarray
    for name in ("data", "xyxy", "xywh", "xyxyn", "xywhn", "conf", "cls"):
        assert isinstance(getattr(boxes, name), expected_type), name
    assert len(boxes) == 3 and boxes.shape == (3, 6)
    np.testing.assert_allclose(np.asarray(boxes.xyxy[0]), [10, 20, 30, 50])
    np.testing.assert_allclose(np.asarray(boxes.xywh[0]), [20, 35, 20, 30])
    np.testing.assert_allclose(np.asarray(boxes.xyxyn[1]), [0, 0, 1, 1])
    np.testing.assert_allclose(np.asarray(boxes.xywhn[0]), [20 / W, 35 / H, 20 / W, 30 / H], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(boxes.conf), [0.9, 0.5, 0.75], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(boxes.cls), [44, 41, 44])
    assert boxes.id is None and boxes.is_track is False


def test_boxes_devices_and_kinds() -> None:
    boxes = Boxes(torch.tensor(ROWS), (H, W))
    assert boxes.xyxy.device.type == "cpu"
    as_numpy = boxes.cpu().numpy()
    assert isinstance(as_numpy.data, np.ndarray) and as_numpy.orig_shape == (H, W)
    np.testing.assert_array_equal(as_numpy.xyxy, boxes.xyxy.numpy())
    double = boxes.to(torch.float64)
    assert double.data.dtype == torch.float64 and double.xywhn.dtype == torch.float64
    back = Boxes(np.array(ROWS, np.float32), (H, W)).to("cpu")
    assert isinstance(back.data, torch.Tensor) and torch.equal(back.data, boxes.data)
    assert boxes.numpy().numpy() is not None and Boxes(np.zeros((0, 6)), (H, W)).cpu().data.shape == (0, 6)


def test_boxes_indexing_masks_and_iteration() -> None:
    boxes = Boxes(torch.tensor(ROWS), (H, W))
    first = boxes[0]
    assert isinstance(first, Boxes) and first.shape == (1, 6) and first.xyxy[0].tolist() == [10, 20, 30, 50]
    assert int(first.cls) == 44 and float(first.conf) == pytest.approx(0.9)
    assert len(boxes[1:]) == 2
    confident = boxes[boxes.conf > 0.7]
    assert confident.cls.int().tolist() == [44, 44]
    assert len(boxes[boxes.conf > 2]) == 0
    assert [b.cls.item() for b in boxes] == [44, 41, 44]
    assert len(list(Boxes(torch.zeros(0, 6), (H, W)))) == 0


def test_boxes_with_a_track_column() -> None:
    """Ultralytics' tracked layout: [N, 7] = x1, y1, x2, y2, track id, conf, cls."""
    boxes = Boxes(torch.tensor(TRACKED), (H, W))
    assert boxes.is_track and boxes.id.tolist() == [7, 3]
    assert boxes.conf.tolist() == pytest.approx([0.9, 0.5]) and boxes.cls.tolist() == [44, 41]
    assert boxes.xyxy[1].tolist() == [0, 0, 80, 60]
    assert boxes[1].id.tolist() == [3]


def test_boxes_empty_and_bad_shape() -> None:
    empty = Boxes(np.zeros((0,), np.float32), (H, W))
    assert len(empty) == 0 and empty.xywhn.shape == (0, 4) and empty.conf.shape == (0,)
    with pytest.raises(ValueError, match=r"\[N, 6\]"):
        Boxes(np.zeros((2, 4)), (H, W))
    with pytest.raises(ValueError, match=r"\[N, 7\]"):
        Boxes(torch.zeros(2, 8), (H, W))


# ------------------------------------------------------------------------------------------------ Result


def test_result_container_and_conversions() -> None:
    result = make_result(ROWS)
    assert len(result) == 3
    one = result[1]
    assert isinstance(one, Result) and len(one) == 1 and one.boxes.cls.tolist() == [41]
    assert one.path == result.path and one.orig_img is result.orig_img and one.names == NAMES
    masked = result[result.boxes.cls == 44]
    assert len(masked) == 2
    assert isinstance(result.numpy().boxes.data, np.ndarray) and isinstance(result.cpu().boxes.data, torch.Tensor)
    assert result.to(torch.float64).boxes.data.dtype == torch.float64
    empty = result.new()
    assert len(empty) == 0 and empty.orig_shape == (H, W) and empty.path == result.path
    assert result.masks is None and result.probs is None and result.keypoints is None and result.obb is None
    assert len(result) == 3, "conversions must not change the original"


def test_update_sets_boxes_clipped_to_the_image() -> None:
    result = make_result(ROWS)
    result.update(boxes=torch.tensor([[-5.0, 10, 90, 70, 0.6, 0]]))
    assert result.boxes.xyxy.tolist() == [[0, 10, 80, 60]] and result.boxes.cls.tolist() == [0]
    result.update(boxes=np.array(TRACKED, np.float32))
    assert result.boxes.is_track and result.boxes.id.tolist() == [7, 3]


def test_verbose_counts_in_class_order() -> None:
    assert make_result(ROWS).verbose() == "1 cup, 2 spoons, "
    assert make_result().verbose() == "(no detections), "
    assert make_result([[0, 0, 1, 1, 0.5, 3]]).verbose() == "1 3, "  # unknown id → the id


def test_summary_json_and_track_ids() -> None:
    result = make_result(ROWS)
    first = result.summary()[0]
    assert first == {
        "name": "spoon",
        "class": 44,
        "confidence": 0.9,
        "box": {"x1": 10.0, "y1": 20.0, "x2": 30.0, "y2": 50.0},
    }
    norm = result.summary(normalize=True, decimals=3)[0]["box"]
    assert norm == {"x1": 0.125, "y1": 0.333, "x2": 0.375, "y2": 0.833}
    assert json.loads(result.to_json()) == result.summary()
    assert json.loads(make_result().to_json()) == []
    tracked = make_result(TRACKED)
    assert [row["track_id"] for row in tracked.summary()] == [7, 3]


def test_to_csv_spreads_the_box_over_columns() -> None:
    lines = make_result(ROWS).to_csv().splitlines()
    assert lines[0] == "name,class,confidence,x1,y1,x2,y2"
    assert lines[1] == "spoon,44,0.9,10.0,20.0,30.0,50.0"
    assert len(lines) == 4
    assert make_result(TRACKED).to_csv().splitlines()[2] == "cup,41,0.5,0.0,0.0,80.0,60.0,3"
    assert make_result().to_csv() == "name,class,confidence,x1,y1,x2,y2\n"


def test_to_df_is_the_summary_as_a_pandas_frame() -> None:
    pandas = pytest.importorskip("pandas")  # in the test extra; the missing case is tested below
    frame = make_result(ROWS).to_df()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == ["name", "class", "confidence", "box"]
    assert frame["name"].tolist() == ["spoon", "cup", "spoon"]
    assert frame["confidence"].tolist() == pytest.approx([0.9, 0.5, 0.75])
    assert frame["box"][1] == {"x1": 0.0, "y1": 0.0, "x2": 80.0, "y2": 60.0}
    assert list(make_result().to_df().columns) == ["name", "class", "confidence", "box"]
    assert make_result(TRACKED).to_df()["track_id"].tolist() == [7, 3]


def test_to_df_without_pandas_is_one_line_naming_it() -> None:
    """pandas blocked in a fresh interpreter (sys.modules["pandas"] = None makes `import pandas` fail)."""
    script = textwrap.dedent("""
        import sys
        sys.modules["pandas"] = None
        import numpy as np
        from yolonas_cli.core.errors import MissingExtraError
        from yolonas_cli.data.results import Boxes, Result
        r = Result(Boxes(np.zeros((0, 6), np.float32), (4, 4)), {}, None, (4, 4), "a.jpg")
        print(r.to_csv().strip())
        try:
            r.to_df()
        except MissingExtraError as exc:
            print(f"{exc.exit_code} {exc}")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(SRC)}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "name,class,confidence,x1,y1,x2,y2",
        "1 to_df() needs pandas, which is not installed: pip install pandas",
    ]


# ------------------------------------------------------------------------------------------------ pictures


def test_plot_copy_same_size_and_edges() -> None:
    img = np.full((H, W, 3), 90, np.uint8)
    edge_rows = [*ROWS, [70, 0, 80, 8, 0.3, 0], [-5, 55, 90, 70, 0.3, 0]]  # label at the top/right edges
    result = make_result(edge_rows, img)
    out = result.plot()
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (img == 90).all(), "plot must not draw on the original"
    assert (out != 90).any()
    assert (result.plot(labels=False, line_width=1) != 90).sum() < (out != 90).sum()
    assert (result.plot(conf=False) != 90).sum() < (out != 90).sum()  # "spoon" is shorter than "spoon 0.90"
    assert np.array_equal(result.plot(boxes=False), img)  # show_boxes=False: the plain image


def test_plot_on_another_image_and_save(tmp_path: Path) -> None:
    result = make_result(ROWS)
    other = np.zeros((H, W, 3), np.uint8)
    drawn = result.plot(img=other)
    assert (other == 0).all() and (drawn != 0).any()
    target = tmp_path / "plotted.png"
    saved = result.plot(save=True, filename=target)
    assert np.array_equal(cv2.imread(str(target)), saved)


def test_plot_grey_and_16bit_inputs() -> None:
    grey = np.full((H, W), 50, np.uint8)
    assert make_result(ROWS, grey).plot().shape == (H, W, 3)
    deep = np.full((H, W, 4), 50 * 257, np.uint16)
    assert make_result(ROWS, deep).plot().shape == (H, W, 3)
    assert as_bgr_uint8(deep)[0, 0, 0] == 50


def test_plot_without_image_raises() -> None:
    result = Result(Boxes(np.array(ROWS, np.float32), (H, W)), NAMES, None, (H, W), "a.jpg")
    with pytest.raises(YoloNasError, match="original image"):
        result.plot()


OPENCV_HAS_GUI = re.search(r"^\s*GUI:\s*NONE\s*$", cv2.getBuildInformation(), re.MULTILINE) is None


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and OPENCV_HAS_GUI),
    reason="the no-display line is Linux's (DISPLAY); a headless OpenCV gives another reason",
)
def test_show_on_a_headless_machine_is_one_warning_line(monkeypatch, capsys) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    make_result(ROWS).show()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "WARNING: show(): cannot open a window: there is no display (DISPLAY and WAYLAND_DISPLAY are not set); "
        "use save() or plot() instead"
    ]


def test_palette_and_line_width() -> None:
    assert colour(3) == colour(3 + len(PALETTE)) and colour(0) != colour(1)
    assert default_line_width((480, 640, 3)) == 2 and default_line_width((1080, 1920, 3)) == 4


# ------------------------------------------------------------------------------------------------ files


def test_save_reopens_with_source_size(tmp_path: Path) -> None:
    target = tmp_path / "out" / "img.jpg"
    assert make_result(ROWS).save(target) == str(target)
    assert cv2.imread(str(target)).shape == (H, W, 3)
    assert [p.name for p in target.parent.iterdir()] == ["img.jpg"]


def test_save_default_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert make_result(ROWS).save() == "results_img.jpg" and (tmp_path / "results_img.jpg").is_file()


def test_save_txt_matches_xywhn(tmp_path: Path) -> None:
    result = make_result(ROWS)
    path = tmp_path / "labels" / "img.txt"
    assert result.save_txt(path) == str(path)
    rows = np.array([[float(v) for v in line.split()] for line in path.read_text().splitlines()])
    assert rows.shape == (3, 5)
    np.testing.assert_array_equal(rows[:, 0], [44, 41, 44])
    np.testing.assert_allclose(rows[:, 1:], np.asarray(result.boxes.xywhn), rtol=1e-5)
    result.save_txt(path, save_conf=True)  # replaces, never appends
    rows = np.array([[float(v) for v in line.split()] for line in path.read_text().splitlines()])
    assert rows.shape == (3, 6)
    np.testing.assert_allclose(rows[:, 5], [0.9, 0.5, 0.75], rtol=1e-5)
    assert path.read_text().splitlines()[1] == "41 0.5 0.5 1 1 0.5"  # %g numbers
    make_result(TRACKED).save_txt(path, save_conf=True)
    assert path.read_text().splitlines()[1] == "41 0.5 0.5 1 1 0.5 3"  # + the track id


def test_save_txt_no_detections_writes_nothing(tmp_path: Path) -> None:
    assert make_result().save_txt(tmp_path / "none.txt") is None
    assert not (tmp_path / "none.txt").exists()


def test_save_crop_names_and_sizes(tmp_path: Path) -> None:
    """Ultralytics' layout: <save_dir>/<class name>/<file_name>.jpg (predict passes <run>/crops)."""
    img = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    rows = [*ROWS, [-10, -10, 5, 5, 0.4, 7]]  # partly outside the image; "a/b" is not a path
    written = make_result(rows, img).save_crop(tmp_path, "img.jpg")
    rel = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert rel == ["a_b/img.jpg", "cup/img.jpg", "spoon/img-2.jpg", "spoon/img.jpg"]
    assert cv2.imread(str(tmp_path / "spoon/img.jpg")).shape == (30, 20, 3)
    assert cv2.imread(str(tmp_path / "cup/img.jpg")).shape == (H, W, 3)
    assert cv2.imread(str(tmp_path / "a_b/img.jpg")).shape == (5, 5, 3)
    default = make_result(ROWS[:1], img).save_crop(tmp_path / "d")
    assert [p.relative_to(tmp_path / "d").as_posix() for p in default] == ["spoon/im.jpg"]
