"""Sliced inference cores: tile plans, streaming, shifting, and merging (against ops.nms, brute force and sahi)."""

from __future__ import annotations

import random
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from test_ops import random_case
from yolonas_cli.core.errors import UsageError
from yolonas_cli.engine import ops, slicing
from yolonas_cli.engine.slicing import (
    SliceConfig,
    Tile,
    TileMerger,
    axis_starts,
    iter_tiles,
    merge_detections,
    overlap_pixels,
    plan_tiles,
    shift_detections,
)

# ------------------------------------------------------------------------------------------------ plan


@settings(max_examples=400, deadline=None)
@given(length=st.integers(33, 6000), size=st.integers(33, 2000), overlap=st.floats(0, 0.95))
def test_axis_tiles_cover_exactly_with_the_overlap(length: int, size: int, overlap: float) -> None:
    size = min(size, length)
    need = overlap_pixels(size, overlap)
    assert need >= overlap * size - 1e-6 and need < size
    starts = axis_starts(length, size, need)
    assert starts[0] == 0 and starts[-1] + size == length  # inside the image, first and last on the borders
    assert all(b > a for a, b in zip(starts, starts[1:]))
    assert all(a + size - b >= need for a, b in zip(starts, starts[1:]))  # no gap, at least the overlap
    assert all(s == k * (size - need) for k, s in enumerate(starts[:-1]))  # regular stride from 0
    if len(starts) > 1:  # the fewest tiles: one tile fewer cannot reach the far border with that overlap
        assert (len(starts) - 2) * (size - need) + size < length


@pytest.mark.parametrize(
    ("image_hw", "size", "overlap", "ys", "xs"),
    [
        ((1080, 1920), 640, 0.2, (0, 440), (0, 512, 1024, 1280)),  # 0.2 * 640 = 128 exactly, not 129
        ((640, 640), 640, 0.2, (0,), (0,)),
        ((500, 2000), 640, 0.25, (0,), (0, 480, 960, 1360)),  # 640 > 500: one row of tiles 500 high
        ((1000, 1000), (400, 300), 0.0, (0, 400, 600), (0, 300, 600, 700)),
    ],
)
def test_plan_examples(image_hw: tuple, size: int | tuple, overlap: float, ys: tuple, xs: tuple) -> None:
    plan = plan_tiles(image_hw, SliceConfig(size, overlap))
    assert (plan.ys, plan.xs) == (ys, xs)
    tiles = list(plan)
    assert len(tiles) == len(plan) == len(ys) * len(xs)
    th, tw = min(SliceConfig(size).size[0], image_hw[0]), min(SliceConfig(size).size[1], image_hw[1])
    assert all(t.hw == (th, tw) for t in tiles)


@pytest.mark.parametrize("seed", range(20))
def test_plan_covers_every_pixel_and_full_adds_the_image(seed: int) -> None:
    rng = random.Random(seed)
    h, w = rng.randint(40, 700), rng.randint(40, 700)
    size = (rng.randint(33, 400), rng.randint(33, 400))
    if size[0] > h and size[1] > w:
        size = (min(size[0], h), size[1])
    plan = plan_tiles((h, w), SliceConfig(size, rng.choice([0.0, 0.1, 0.5, 0.9]), full=True))
    covered = np.zeros((h, w), dtype=np.int32)
    tiles = list(plan)
    for tile in tiles[:-1]:
        assert 0 <= tile.x0 < tile.x1 <= w and 0 <= tile.y0 < tile.y1 <= h and not tile.full
        covered[tile.y0 : tile.y1, tile.x0 : tile.x1] += 1
    assert covered.min() >= 1
    assert tiles[-1] == Tile(0, 0, w, h, full=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 32}, "too small: tiles must be larger than 32 px"),
        ({"size": (640, 16)}, "too small"),
        ({"size": 640.5}, "must be a tile size in pixels"),
        ({"size": 640, "overlap": 1.0}, r"slice_overlap=1.0 must be a number in \[0, 1\)"),
        ({"size": 640, "overlap": -0.1}, "slice_overlap=-0.1"),
        ({"size": 640, "merge": "wbf"}, "slice_merge='wbf' is not one of nms, nmm"),
        ({"size": 640, "metric": "giou"}, "not one of iou, ios"),
        ({"size": 640, "match_thresh": 1.5}, r"slice_thresh=1.5 must be a number in \[0, 1\]"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        SliceConfig(**kwargs)
    assert info.value.exit_code == 2


def test_slice_larger_than_the_image() -> None:
    with pytest.raises(UsageError, match=r"slice=640,640 is larger than the image \(480x600\)"):
        plan_tiles((480, 600), SliceConfig(640))
    assert plan_tiles((480, 700), SliceConfig(640)).tile_hw == (480, 640)  # one axis: cut to the image


def test_tiles_stream_as_views_of_a_huge_image() -> None:
    """A 20000 x 20000 x 3 image (a zero-stride view: 3 bytes of real memory) is walked tile by tile."""
    image = np.broadcast_to(np.zeros((1, 1, 3), dtype=np.uint8), (20000, 20000, 3))
    config = SliceConfig(640, 0.2, full=True)
    plan = plan_tiles(image.shape[:2], config)
    assert len(plan) == 39 * 39 + 1  # 1 + ceil((20000 - 640) / 512) = 39 per axis
    tracemalloc.start()
    count = 0
    for tile, pixels in iter_tiles(image, config):
        assert np.shares_memory(pixels, image) and pixels.shape[:2] == tile.hw
        count += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == len(plan)
    assert peak < 1_000_000  # no list of 1522 tiles, no copies (measured: a few kB)


def test_shift_detections() -> None:
    dets = torch.tensor([[1.0, 2, 11, 12, 0.9, 3]])
    torch.testing.assert_close(
        shift_detections(dets, Tile(100, 50, 740, 690)), torch.tensor([[101.0, 52, 111, 62, 0.9, 3]])
    )
    assert dets[0, 0] == 1  # input untouched


# ------------------------------------------------------------------------------------------------ merge


def as_dets(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes, scores[:, None], labels[:, None].to(boxes.dtype)], dim=1)


@pytest.mark.parametrize("grid", [True, False])
@pytest.mark.parametrize("seed", range(40))
def test_nms_merge_equals_the_project_nms(seed: int, grid: bool) -> None:
    """slice_merge=nms with IoU is exactly ops.nms / ops.batched_nms (duplicates, zero areas and ties included)."""
    rng = random.Random(seed)
    boxes, scores, labels = random_case(rng, rng.randint(0, 60), grid)
    dets = as_dets(boxes, scores, labels)
    for thresh in (0.0, 1 / 3, 0.5, 0.7, 0.9):
        assert torch.equal(
            merge_detections(dets, "nms", "iou", thresh, agnostic=True), dets[ops.nms(boxes, scores, thresh)]
        )
        expected = dets[ops.batched_nms(boxes, scores, labels, thresh)]
        assert torch.equal(merge_detections(dets, "nms", "iou", thresh, agnostic=False), expected)


def test_merge_is_the_same_with_tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strips and blocks only bound memory: 3-box blocks of 5 columns give the same result as the defaults."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 400, (300, 2))
    boxes = torch.tensor(np.concatenate([xy, xy + rng.uniform(5, 60, (300, 2))], 1), dtype=torch.float32)
    dets = as_dets(boxes, torch.rand(300, generator=torch.Generator().manual_seed(0)), torch.randint(0, 3, (300,)))
    expected = [merge_detections(dets, m, k, 0.4, a) for m in ("nms", "nmm") for k in ("iou", "ios") for a in (0, 1)]
    monkeypatch.setattr(slicing, "_ROWS", 3)
    monkeypatch.setattr(slicing, "_COLS", 5)
    got = [merge_detections(dets, m, k, 0.4, a) for m in ("nms", "nmm") for k in ("iou", "ios") for a in (0, 1)]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


def brute_greedy(dets: np.ndarray, metric: str, thresh: float, agnostic: bool) -> list[tuple[int, list[int]]]:
    """Greedy visit by descending score (stable), one pair at a time in float64: [(keeper, [taken, ...])]."""
    order = sorted(range(len(dets)), key=lambda i: -dets[i, 4])
    taken: set[int] = set()
    groups = []
    for i in order:
        if i in taken:
            continue
        mine = []
        for j in order:
            if j == i or j in taken or (not agnostic and dets[i, 5] != dets[j, 5]):
                continue
            if order.index(j) < order.index(i):
                continue
            w = min(dets[i, 2], dets[j, 2]) - max(dets[i, 0], dets[j, 0])
            h = min(dets[i, 3], dets[j, 3]) - max(dets[i, 1], dets[j, 1])
            inter = max(w, 0) * max(h, 0)
            area_i = (dets[i, 2] - dets[i, 0]) * (dets[i, 3] - dets[i, 1])
            area_j = (dets[j, 2] - dets[j, 0]) * (dets[j, 3] - dets[j, 1])
            denominator = min(area_i, area_j) if metric == "ios" else area_i + area_j - inter
            if denominator > 0 and inter / denominator > thresh:
                mine.append(j)
        taken.update(mine)
        groups.append((i, mine))
    return groups


@pytest.mark.parametrize("seed", range(25))
def test_merge_against_brute_force(seed: int) -> None:
    """NMS and NMM with IoU and IoS, class-aware or not, equal a one-pair-at-a-time greedy loop."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 50))
    xy = rng.uniform(0, 200, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 80, (n, 2))], 1)
    dets64 = np.concatenate([boxes, rng.random((n, 1)), rng.integers(0, 3, (n, 1))], 1)
    dets = torch.from_numpy(dets64)
    for metric in ("iou", "ios"):
        for agnostic in (False, True):
            thresh = float(rng.choice([0.2, 0.5, 0.8]))
            groups = brute_greedy(dets64, metric, thresh, agnostic)
            keepers = [k for k, _ in groups]
            assert torch.equal(merge_detections(dets, "nms", metric, thresh, agnostic), dets[keepers])
            merged = merge_detections(dets, "nmm", metric, thresh, agnostic)
            for row, (k, taken) in zip(merged, groups):
                members = dets64[[k, *taken]]
                expected = [*members[:, :2].min(0), *members[:, 2:4].max(0), dets64[k, 4], dets64[k, 5]]
                np.testing.assert_array_equal(row.numpy(), expected)


# ------------------------------------------------------------------------------ objects cut by tile borders


def tile_detections(objects: np.ndarray, plan, rng: np.random.Generator) -> list[tuple[Tile, torch.Tensor]]:
    """What a perfect detector sees per tile: each object's part inside the tile (in tile pixels), when at least
    a tenth of it is inside; whole views score 0.8-0.95, cut ones 0.3-0.7."""
    out = []
    for tile in plan:
        rows = []
        for x1, y1, x2, y2, cls in objects:
            cx1, cy1, cx2, cy2 = max(x1, tile.x0), max(y1, tile.y0), min(x2, tile.x1), min(y2, tile.y1)
            if cx2 <= cx1 or cy2 <= cy1 or (cx2 - cx1) * (cy2 - cy1) < 0.1 * (x2 - x1) * (y2 - y1):
                continue
            whole = (cx1, cy1, cx2, cy2) == (x1, y1, x2, y2)
            score = rng.uniform(0.8, 0.95) if whole else rng.uniform(0.3, 0.7)
            rows.append([cx1 - tile.x0, cy1 - tile.y0, cx2 - tile.x0, cy2 - tile.y0, score, cls])
        out.append((tile, torch.tensor(rows, dtype=torch.float64).reshape(-1, 6)))
    return out


def scattered_objects(rng: np.random.Generator, hw: tuple[int, int], count: int, largest: int) -> np.ndarray:
    """``[count, 5]`` (x1, y1, x2, y2, class) boxes no larger than ``largest``, at least 4 px apart."""
    h, w = hw
    found: list[list[float]] = []
    for _ in range(100 * count):  # bounded rejection sampling
        if len(found) == count:
            break
        bw, bh = rng.integers(8, largest + 1, 2)
        x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
        if all(x > b[2] + 4 or x + bw < b[0] - 4 or y > b[3] + 4 or y + bh < b[1] - 4 for b in found):
            found.append([x, y, x + bw, y + bh, float(rng.integers(0, 3))])
    return np.array(found, dtype=np.float64)


@pytest.mark.parametrize("seed", range(6))
def test_one_box_per_object_across_tile_borders(seed: int) -> None:
    """Objects no larger than the overlap lie whole in some tile; every cut part lies inside that whole view
    (IoS 1), so merging leaves exactly one box per object: with NMM the object's box itself (the union of its
    parts), with NMS its whole view (the best score). IoU cannot do this (a small part has a small IoU)."""
    rng = np.random.default_rng(seed)
    hw = (900, 1300)
    config = SliceConfig(320, 0.25)  # overlap 80 px
    objects = scattered_objects(rng, hw, 40, largest=80)
    merger_nmm, merger_nms, merger_iou = (
        TileMerger(config),
        TileMerger(SliceConfig(320, 0.25, merge="nms")),
        TileMerger(SliceConfig(320, 0.25, metric="iou")),
    )
    parts = 0
    for tile, dets in tile_detections(objects, plan_tiles(hw, config), rng):
        parts += len(dets)
        for merger in (merger_nmm, merger_nms, merger_iou):
            merger.add(tile, dets)
    assert parts > len(objects) + 20  # many objects are seen by several tiles
    for merger in (merger_nmm, merger_nms):
        result = merger.result()
        assert len(result) == len(objects)
        found = sorted(map(tuple, result[:, [0, 1, 2, 3, 5]].tolist()))
        assert found == sorted(map(tuple, objects.tolist()))
    assert len(merger_iou.result()) > len(objects)


def test_class_aware_and_agnostic_merge() -> None:
    dets = torch.tensor([[0.0, 0, 10, 10, 0.9, 0], [1, 1, 9, 9, 0.8, 1], [2, 2, 8, 8, 0.7, 1]])
    aware = merge_detections(dets, "nmm", "ios", 0.5, agnostic=False)
    torch.testing.assert_close(aware, torch.tensor([[0.0, 0, 10, 10, 0.9, 0], [1, 1, 9, 9, 0.8, 1]]))
    agnostic = merge_detections(dets, "nms", "ios", 0.5, agnostic=True)
    torch.testing.assert_close(agnostic, dets[:1])
    assert merge_detections(torch.zeros((0, 6)), "nmm").shape == (0, 6)
    assert TileMerger(SliceConfig(64)).result().shape == (0, 6)


# ---------------------------------------------------------------------------------------------- sahi


# sahi (MIT) greedy NMM: visit by descending score (its ties: by coordinates; ours: by index, so the cases use
# distinct random scores), a kept box takes the later untaken boxes whose IoU / IoS with it is >= the threshold
# (ours: strictly >; equality has probability zero with random coordinates). Its grouping (`greedy_nmm`) is
# therefore the same method as ours and is compared exactly. Its postprocess then merges each taken box into the
# kept one only if it still matches the growing merged box, and drops it otherwise; ours merges every taken box.
# Both agree whenever a kept box took at most one box (the check is then against the unchanged kept box), which
# the tile cases below ensure; boxes are compared to 1e-9 px (the same float64 min / max).
def sahi_groups(dets: np.ndarray, metric: str, thresh: float, agnostic: bool) -> dict[int, list[int]]:
    from sahi.postprocess.backends import set_postprocess_backend
    from sahi.postprocess.combine import batched_greedy_nmm, greedy_nmm

    set_postprocess_backend("numpy")
    return (greedy_nmm if agnostic else batched_greedy_nmm)(dets, match_metric=metric.upper(), match_threshold=thresh)


@pytest.mark.parametrize("seed", range(30))
def test_nmm_groups_equal_sahi_greedy_nmm(seed: int) -> None:
    pytest.importorskip("sahi")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    xy = rng.uniform(0, 300, (n, 2))
    dets = np.concatenate([xy, xy + rng.uniform(4, 90, (n, 2)), rng.random((n, 1)), rng.integers(0, 3, (n, 1))], 1)
    for metric in ("iou", "ios"):
        for agnostic in (False, True):
            thresh = float(rng.choice([0.1, 0.3, 0.5, 0.7]))
            owner = slicing.greedy_owners(
                torch.from_numpy(dets[:, :4]),
                torch.from_numpy(dets[:, 4]),
                None if agnostic else torch.from_numpy(dets[:, 5]),
                metric,
                thresh,
            ).tolist()
            ours = {k: sorted(i for i in range(n) if owner[i] == k and i != k) for k in set(owner)}
            theirs = {k: sorted(v) for k, v in sahi_groups(dets, metric, thresh, agnostic).items()}
            assert ours == theirs


@pytest.mark.parametrize("seed", range(6))
def test_tile_merge_equals_sahi_postprocess(seed: int) -> None:
    """Objects seen by at most two tiles (others are left out), so each kept box takes at most one box."""
    pytest.importorskip("sahi")
    from sahi.postprocess.backends import set_postprocess_backend
    from sahi.postprocess.combine import GreedyNMMPostprocess
    from sahi.prediction import ObjectPrediction

    rng = np.random.default_rng(seed)
    hw = (800, 1200)
    config = SliceConfig(400, 0.2, metric="ios", match_thresh=0.3)
    plan = plan_tiles(hw, config)
    objects = scattered_objects(rng, hw, 60, largest=120)
    views = np.zeros(len(objects), dtype=int)  # tiles that see at least a tenth of the object
    for tile in plan:
        inside_x = (np.minimum(objects[:, 2], tile.x1) - np.maximum(objects[:, 0], tile.x0)).clip(0)
        inside_y = (np.minimum(objects[:, 3], tile.y1) - np.maximum(objects[:, 1], tile.y0)).clip(0)
        area = (objects[:, 2] - objects[:, 0]) * (objects[:, 3] - objects[:, 1])
        views += inside_x * inside_y >= 0.1 * area
    objects = objects[views <= 2]
    assert (views == 2).sum() > 5  # enough objects cut by a border or lying in an overlap
    merger = TileMerger(config)
    predictions = []
    for tile, dets in tile_detections(objects, plan, rng):
        merger.add(tile, dets)
        for row in shift_detections(dets, tile).tolist():
            predictions.append(ObjectPrediction(bbox=row[:4], category_id=int(row[5]), category_name="c", score=row[4]))
    set_postprocess_backend("numpy")
    theirs = GreedyNMMPostprocess(match_threshold=0.3, match_metric="IOS", class_agnostic=False)(predictions)
    theirs_rows = sorted((*map(float, p.bbox.to_xyxy()), p.score.value, float(p.category.id)) for p in theirs)
    ours = merger.result()
    assert len(ours) == len(theirs_rows) == len(objects)
    np.testing.assert_allclose(sorted(map(tuple, ours.tolist())), theirs_rows, atol=1e-9)
