"""Sliced (tiled) inference through the engine, predict and val (`slice=`, `slice_overlap=`, `slice_full=`,
`slice_merge=`, `slice_metric=`, `slice_thresh=`).

The tiling and merging cores are checked in test_slicing.py (plans, merges against brute force and sahi). Here:
the wiring. With the fixture formula weights (which find things in the bundled astronaut photo, not COCO
objects) sliced predict must equal the tiles predicted one by one as plain images, moved back and merged; and a
canvas of small copies of the photo shows what slicing is for (counts). With a perfect detector of white
squares behind the engine's Backend interface (tests/square_detector.py) a 20000 x 20000 image is sliced in
bounded memory and every square, however the tile borders cut it, comes out as exactly one box.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolonas_cli import NAS
from yolonas_cli.core.errors import UsageError
from yolonas_cli.data.sources import default_source
from yolonas_cli.engine.backend import Backend
from yolonas_cli.engine.engine import Engine, EngineSettings
from yolonas_cli.engine.slicing import SliceConfig, merge_detections, plan_tiles

TESTS = Path(__file__).resolve().parent
TILE = 160  # tile size and imgsz of the formula-weight tests (the tiny model is fast there)


def astronaut(side: int) -> np.ndarray:
    """The bundled astronaut photo (512 x 512) resized to side x side (BGR uint8)."""
    photo = cv2.imread(str(default_source() / "astronaut.png"))
    return cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)


def pasted_canvas(rng: np.random.Generator, hw: tuple[int, int], count: int, sizes: tuple[int, int], cells: int = 0):
    """A grey canvas with `count` copies of the photo at random sizes in `sizes`; returns (canvas, boxes [K, 4]).

    `cells`: place each copy inside one cell of a grid of `cells`-pixel squares (never across a cell border),
    in distinct cells; 0: anywhere (copies may overlap each other and any tile border)."""
    canvas = np.full((*hw, 3), 114, np.uint8)
    boxes = []
    if cells:
        rows, cols = hw[0] // cells, hw[1] // cells
        spots = rng.choice(rows * cols, count, replace=False)
    for k in range(count):
        side = int(rng.integers(sizes[0], sizes[1] + 1))
        if cells:
            r, c = divmod(int(spots[k]), cols)
            y, x = (
                r * cells + int(rng.integers(0, cells - side + 1)),
                c * cells + int(rng.integers(0, cells - side + 1)),
            )
        else:
            y, x = int(rng.integers(0, hw[0] - side)), int(rng.integers(0, hw[1] - side))
        canvas[y : y + side, x : x + side] = astronaut(side)
        boxes.append((x, y, x + side, y + side))
    return canvas, np.array(boxes, dtype=np.float64)


def tiles_one_by_one(model: NAS, image: np.ndarray, config: SliceConfig, **predict) -> list[torch.Tensor]:
    """The reference: every tile of the plan predicted alone as a plain image (batch 1, every box NMS leaves), its
    boxes moved by the tile's offset: per tile [K, 6] in image pixels, in plan order (the whole image last)."""
    parts = []
    for tile in plan_tiles(image.shape[:2], config):
        crop = np.ascontiguousarray(image[tile.y0 : tile.y1, tile.x0 : tile.x1])
        data = model(crop, **predict, max_det=1024, verbose=False)[0].boxes.data.clone()
        data[:, [0, 2]] += tile.x0
        data[:, [1, 3]] += tile.y0
        parts.append(data)
    return parts


class RecordingBackend:
    """A backend that runs another one and records the batch size of every call."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.name, self.device = inner.name, inner.device
        self.fixed_input, self.graph_nms = inner.fixed_input, inner.graph_nms
        self.batches: list[int] = []

    def __call__(self, images: np.ndarray):
        self.batches.append(len(images))
        return self.inner(images)

    def synchronize(self) -> None:
        self.inner.synchronize()


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path) -> NAS:
    return NAS(tiny_checkpoint)


@pytest.fixture(scope="module")
def canvas() -> np.ndarray:
    """320 x 480 px with 6 copies of the photo (60-130 px), lying across tile borders and overlaps (12 tiles)."""
    return pasted_canvas(np.random.default_rng(3), (320, 480), 6, (60, 130))[0]


@pytest.fixture(scope="module")
def reference_tiles(tiny: NAS, canvas: np.ndarray) -> dict[bool, list[torch.Tensor]]:
    """`tiles_one_by_one` of the canvas at conf 0.2 (the whole image last), with class-aware (False) and
    class-agnostic (True) NMS."""
    config = SliceConfig(TILE, 0.25, full=True)
    return {
        agnostic: tiles_one_by_one(tiny, canvas, config, imgsz=TILE, conf=0.2, agnostic_nms=agnostic)
        for agnostic in (False, True)
    }


SETTINGS = [  # (predict arguments, the same as a SliceConfig, max_det: below the number of merged boxes)
    ({}, SliceConfig(TILE, 0.25), 25),  # the defaults: NMM, IoS above 0.5, class-aware
    (
        {"slice_merge": "nms", "slice_metric": "iou", "slice_thresh": 0.3, "agnostic_nms": True},
        SliceConfig(TILE, 0.25, merge="nms", metric="iou", match_thresh=0.3, agnostic=True),
        5,  # agnostic NMS in the tiles and across them leaves few boxes
    ),
    # with the whole image, IoU: the whole image's boxes are large, and IoS would merge every box inside them
    ({"slice_full": True, "slice_metric": "iou"}, SliceConfig(TILE, 0.25, full=True, metric="iou"), 25),
]


@pytest.mark.parametrize(("kwargs", "config", "max_det"), SETTINGS, ids=["nmm-ios", "nms-iou-agnostic", "full-iou"])
def test_sliced_predict_is_the_tiles_predicted_alone_then_merged(
    tiny, canvas, reference_tiles, kwargs, config, max_det
):
    """Each tile through the engine as it would run alone (bit for bit at batch 1), moved to image pixels, merged
    by the (separately tested) merge, then the best max_det kept (max_det limits the image, not each tile)."""
    sliced = tiny(
        canvas, imgsz=TILE, conf=0.2, slice=TILE, slice_overlap=0.25, max_det=max_det, verbose=False, **kwargs
    )
    parts = reference_tiles[config.agnostic]
    tiles = torch.cat(parts if config.full else parts[:-1])
    expected = merge_detections(tiles, config.merge, config.metric, config.match_thresh, config.agnostic)
    assert len(tiles) > len(expected) > max_det  # tiles overlap: the merge removes boxes; max_det bites
    assert torch.equal(sliced[0].boxes.data, expected[:max_det])
    assert sliced[0].input_shape == (TILE, TILE) and sliced[0].orig_shape == canvas.shape[:2]


def test_tiles_are_batched_with_the_same_results(tiny: NAS, canvas: np.ndarray) -> None:
    """batch=5 runs the 12 tiles in batches of 5, 5 and 2 (after the engine's one warm-up call) and finds what
    batch=1 finds."""
    single = tiny(canvas, imgsz=TILE, conf=0.2, slice=TILE, slice_overlap=0.25, verbose=False)[0]
    backend = RecordingBackend(tiny.backend("cpu"))
    settings = EngineSettings(imgsz=(TILE, TILE), conf=0.2, batch=5, slicing=SliceConfig(TILE, 0.25))
    batched, _, _ = Engine(backend, tiny.names, settings).run_sliced(canvas)
    assert backend.batches == [5, 5, 5, 2]  # the untimed warm-up on zeros of the first batch's shape, then 5, 5, 2
    assert len(batched) == len(single.boxes) > 0
    np.testing.assert_array_equal(batched[:, 5], single.boxes.cls.numpy())
    np.testing.assert_allclose(batched, single.boxes.data.numpy(), atol=1e-3)  # batch 5 vs 1: float rounding


def test_sliced_finds_the_small_copies_that_the_whole_image_misses(tiny: NAS) -> None:
    """Ten copies of the photo (80-150 px) on a 480 x 960 canvas, each inside one cell of the 160-px tile grid.
    A copy counts as found when a detection's centre lies on it. The reference: how many copies the model finds
    in a tile holding only that copy (the copy at its own resolution). Sliced inference finds exactly those;
    the whole canvas squeezed into the same 160-px input finds far fewer."""
    canvas, copies = pasted_canvas(np.random.default_rng(0), (480, 960), 10, (80, 150), cells=TILE)

    def found(result) -> int:
        centres = result.boxes.xywh.numpy()[:, :2]
        on = [(np.abs(centres - (c[:2] + c[2:]) / 2) <= (c[2:] - c[:2]) / 2).all(1).any() for c in copies]
        return int(sum(on))

    predict = {"imgsz": TILE, "conf": 0.25, "verbose": False}
    alone = 0
    for x1, y1, _, _ in copies.astype(int):
        y0, x0 = y1 // TILE * TILE, x1 // TILE * TILE
        alone += len(tiny(np.ascontiguousarray(canvas[y0 : y0 + TILE, x0 : x0 + TILE]), **predict)[0].boxes) > 0
    sliced = found(tiny(canvas, slice=TILE, slice_overlap=0.0, **predict)[0])
    whole = found(tiny(canvas, **predict)[0])
    assert alone >= 7  # the model sees most copies at their own resolution
    assert sliced == alone
    assert whole <= alone // 2


def test_tile_count_and_a_tile_larger_than_the_image(tiny: NAS, canvas: np.ndarray) -> None:
    engine = tiny.make_engine(EngineSettings(imgsz=(TILE, TILE), slicing=SliceConfig(TILE, 0.5)), "cpu")
    assert engine.tile_count(canvas.shape[:2]) == len(plan_tiles(canvas.shape[:2], SliceConfig(TILE, 0.5))) == 15
    with pytest.raises(UsageError, match=r"slice=900,900 is larger than the image \(320x480\)"):
        tiny(canvas, imgsz=TILE, slice=900, verbose=False)


# ------------------------------------------------------------------------------------ 20000 x 20000 squares

# Runs in a child process so that its peak memory is its own: the peak resident size is reset (Linux
# clear_refs) after the image exists, then sliced inference runs on it. Each tile (2000 px, 169 tiles) is
# letterboxed to 640, so a tile costs 12 MB as a crop and 4.9 MB as network input: all tiles at once would be
# 2 GB of crops or 830 MB of inputs. Streamed in batches of 4, measured: 30 MB above the image (1.2 GB).
SQUARES_CODE = """
import json
import numpy as np
from square_detector import draw_squares, square_engine
from yolonas_cli.engine.backend import Backend
from yolonas_cli.engine.engine import Engine, EngineSettings
from yolonas_cli.engine.slicing import SliceConfig

def status_kb(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":"))

image = np.full((20000, 20000, 3), 90, np.uint8)
squares = draw_squares(image, np.random.default_rng(0), 300, (60, 150))
engine = square_engine(EngineSettings(imgsz=(640, 640), batch=4, slicing=SliceConfig(2000, 0.2)))
engine.run_sliced(np.ascontiguousarray(image[:4000, :4000]))  # warm-up: allocators and OpenCV buffers
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # the peak resident size starts again from the current one
before = status_kb("VmRSS")
boxes, letterbox, _ = engine.run_sliced(image)
growth = status_kb("VmHWM") - before
print(json.dumps({"growth_mb": growth / 1024, "boxes": boxes.tolist(), "squares": squares.tolist(),
                  "scale": letterbox.scale, "largest_batch": engine.backend.largest_batch,
                  "tiles": engine.tile_count(image.shape[:2])}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak memory")
def test_a_20000_px_image_is_sliced_in_bounded_memory_with_one_box_per_square() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SQUARES_CODE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["tiles"] == 169 and out["largest_batch"] == 4  # 1 + ceil((20000 - 2000) / 1600) = 13 per axis
    assert out["growth_mb"] < 250  # bounded: a batch of tiles, not the 121 tiles (see the comment above)
    boxes, squares = np.array(out["boxes"]), np.array(out["squares"])
    assert len(squares) == 300 and len(boxes) == len(squares)  # one box per square
    # Each square is recovered within 1.5 input pixels per edge mapped back (4.7 px at scale 0.318): the resize
    # blurs an edge over one input pixel, which the threshold of 0.9 may drop; measured at most 1.9 px.
    tolerance = 1.5 / out["scale"]
    nearest = np.abs(boxes[:, None, :4] - squares[None]).max(axis=2).argmin(axis=0)
    assert sorted(nearest.tolist()) == list(range(len(boxes)))  # a different box for every square
    assert np.abs(boxes[nearest, :4] - squares).max() <= tolerance


def test_squares_cut_by_borders_merge_to_one_box_but_not_with_iou() -> None:
    """The same on a small image, in process: with IoU matching, a small part of a cut square does not match the
    whole view, so several boxes remain (the default IoS merges them)."""
    from square_detector import draw_squares, square_engine

    image = np.full((1500, 2200, 3), 90, np.uint8)
    squares = draw_squares(image, np.random.default_rng(1), 60, (40, 120))
    counts = {}
    for metric in ("ios", "iou"):
        for merge in ("nmm", "nms"):
            config = SliceConfig(400, 0.35, merge=merge, metric=metric)
            engine = square_engine(EngineSettings(imgsz=(416, 416), batch=3, slicing=config))
            counts[metric, merge] = len(engine.run_sliced(image)[0])
    assert counts["ios", "nmm"] == counts["ios", "nms"] == len(squares) == 60
    assert counts["iou", "nmm"] > 60 and counts["iou", "nms"] > 60


# ---------------------------------------------------------------------------------------------------- val


def test_val_scores_the_sliced_detections(tiny: NAS, tmp_path: Path) -> None:
    """val slice=... evaluates exactly what predict slice=... detects (predictions.json against the results),
    and that is not what it evaluates without slice."""
    rng = np.random.default_rng(5)
    images = tmp_path / "data" / "images" / "val"
    images.mkdir(parents=True)
    for i in range(2):
        canvas, boxes = pasted_canvas(rng, (240, 320) if i else (320, 240), 3, (80, 140))
        cv2.imwrite(str(images / f"im{i}.png"), canvas)
        labels = tmp_path / "data" / "labels" / "val" / f"im{i}.txt"
        labels.parent.mkdir(parents=True, exist_ok=True)
        wh = canvas.shape[1::-1]
        centre, size = (boxes[:, :2] + boxes[:, 2:]) / 2 / wh, (boxes[:, 2:] - boxes[:, :2]) / wh
        labels.write_text("".join(f"0 {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for (x, y), (w, h) in zip(centre, size)))
    names = "\n".join(f"  {i}: c{i}" for i in range(80))
    (tmp_path / "data.yaml").write_text(
        f"path: {tmp_path / 'data'}\ntrain: images/val\nval: images/val\nnames:\n{names}\n"
    )

    def val_detections(**kwargs) -> dict[str, np.ndarray]:
        metrics = tiny.val(
            data=str(tmp_path / "data.yaml"),
            imgsz=TILE,
            conf=0.2,
            plots=False,
            save_json=True,
            verbose=False,
            project=str(tmp_path / "runs"),
            batch=2,
            **kwargs,
        )
        rows = json.loads((Path(metrics.save_dir) / "predictions.json").read_text())
        return {
            stem: np.array([[*r["bbox"], r["score"]] for r in rows if r["image_id"] == stem]).reshape(-1, 5)
            for stem in ("im0", "im1")
        }

    sliced = val_detections(slice=TILE, slice_overlap=0.3)
    plain = val_detections()
    for stem in ("im0", "im1"):
        result = tiny(str(images / f"{stem}.png"), imgsz=TILE, conf=0.2, slice=TILE, slice_overlap=0.3, verbose=False)
        boxes = result[0].boxes.numpy()
        expected = np.concatenate([boxes.xyxy[:, :2], boxes.xyxy[:, 2:] - boxes.xyxy[:, :2], boxes.conf[:, None]], 1)
        assert len(expected) > 0
        np.testing.assert_allclose(sliced[stem], expected, atol=2e-3)  # predictions.json rounds boxes to 3 decimals
        assert sliced[stem].shape != plain[stem].shape or not np.allclose(sliced[stem], plain[stem], atol=1)
