"""Boxes and Result: box forms, console counts, summary/JSON, drawing and the saved files (reopened)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.data.plotting import PALETTE, as_bgr_uint8, colour, default_line_width
from yolonas_cli.data.results import Boxes, Result

NAMES = {0: "person", 41: "cup", 44: "spoon", 7: "a/b"}
H, W = 60, 80


def make_result(rows: list[list[float]] | None = None, img: np.ndarray | None = None) -> Result:
    data = np.array(rows if rows is not None else [], dtype=np.float32)
    if img is None:
        img = np.full((H, W, 3), 90, np.uint8)
    boxes = Boxes(data, img.shape[:2])
    return Result(boxes, NAMES, img, img.shape[:2], "/x/img.jpg", {"inference": 1.0}, (64, 96))


ROWS = [[10, 20, 30, 50, 0.9, 44], [0, 0, 80, 60, 0.5, 41], [40, 10, 60, 30, 0.75, 44]]


def test_boxes_forms() -> None:
    boxes = Boxes(np.array(ROWS, np.float32), (H, W))
    assert len(boxes) == 3 and boxes.data.dtype == np.float32
    np.testing.assert_allclose(boxes.xyxy[0], [10, 20, 30, 50])
    np.testing.assert_allclose(boxes.xywh[0], [20, 35, 20, 30])
    np.testing.assert_allclose(boxes.xyxyn[1], [0, 0, 1, 1])
    np.testing.assert_allclose(boxes.xywhn[0], [20 / W, 35 / H, 20 / W, 30 / H], rtol=1e-6)
    np.testing.assert_allclose(boxes.conf, [0.9, 0.5, 0.75], rtol=1e-6)
    np.testing.assert_array_equal(boxes.cls, [44, 41, 44])
    assert len(boxes[1:]) == 2 and boxes[0].xyxy.shape == (1, 4)


def test_boxes_empty_and_bad_shape() -> None:
    empty = Boxes(np.zeros((0,), np.float32), (H, W))
    assert len(empty) == 0 and empty.xywhn.shape == (0, 4) and empty.conf.shape == (0,)
    with pytest.raises(ValueError, match=r"\[N, 6\]"):
        Boxes(np.zeros((2, 4)), (H, W))


def test_verbose_counts_in_class_order() -> None:
    assert make_result(ROWS).verbose() == "1 cup, 2 spoons, "
    assert make_result().verbose() == "(no detections), "
    assert make_result([[0, 0, 1, 1, 0.5, 3]]).verbose() == "1 3, "  # unknown id → the id


def test_summary_and_json() -> None:
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


def test_plot_copy_same_size_and_edges() -> None:
    img = np.full((H, W, 3), 90, np.uint8)
    edge_rows = [*ROWS, [70, 0, 80, 8, 0.3, 0], [-5, 55, 90, 70, 0.3, 0]]  # label at the top/right edges
    result = make_result(edge_rows, img)
    out = result.plot()
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (img == 90).all(), "plot must not draw on the original"
    assert (out != 90).any()
    assert (result.plot(labels=False, line_width=1) != 90).sum() < (out != 90).sum()


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


def test_palette_and_line_width() -> None:
    assert colour(3) == colour(3 + len(PALETTE)) and colour(0) != colour(1)
    assert default_line_width((480, 640, 3)) == 2 and default_line_width((1080, 1920, 3)) == 4


def test_save_reopens_with_source_size(tmp_path) -> None:
    target = tmp_path / "out" / "img.jpg"
    assert make_result(ROWS).save(target) == str(target)
    assert cv2.imread(str(target)).shape == (H, W, 3)
    assert [p.name for p in target.parent.iterdir()] == ["img.jpg"]


def test_save_txt_matches_xywhn(tmp_path) -> None:
    result = make_result(ROWS)
    path = tmp_path / "labels" / "img.txt"
    assert result.save_txt(path) == str(path)
    rows = np.array([[float(v) for v in line.split()] for line in path.read_text().splitlines()])
    assert rows.shape == (3, 5)
    np.testing.assert_array_equal(rows[:, 0], result.boxes.cls)
    np.testing.assert_allclose(rows[:, 1:], result.boxes.xywhn, rtol=1e-5)
    result.save_txt(path, save_conf=True)  # replaces, never appends
    rows = np.array([[float(v) for v in line.split()] for line in path.read_text().splitlines()])
    assert rows.shape == (3, 6)
    np.testing.assert_allclose(rows[:, 5], result.boxes.conf, rtol=1e-5)
    assert path.read_text().splitlines()[1] == "41 0.5 0.5 1 1 0.5"  # %g numbers


def test_save_txt_no_detections_writes_nothing(tmp_path) -> None:
    assert make_result().save_txt(tmp_path / "none.txt") is None
    assert not (tmp_path / "none.txt").exists()


def test_save_crop_names_and_sizes(tmp_path) -> None:
    img = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    rows = [*ROWS, [-10, -10, 5, 5, 0.4, 7]]  # partly outside the image; "a/b" is not a path
    written = make_result(rows, img).save_crop(tmp_path, "img")
    rel = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert rel == ["crops/a_b/img.jpg", "crops/cup/img.jpg", "crops/spoon/img-2.jpg", "crops/spoon/img.jpg"]
    assert cv2.imread(str(tmp_path / "crops/spoon/img.jpg")).shape == (30, 20, 3)
    assert cv2.imread(str(tmp_path / "crops/cup/img.jpg")).shape == (H, W, 3)
    assert cv2.imread(str(tmp_path / "crops/a_b/img.jpg")).shape == (5, 5, 3)
