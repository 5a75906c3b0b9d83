"""Box ops: NMS against a brute-force reference (float32 arithmetic, as torchvision); format round trips."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from yolonas_cli.engine import ops

F32 = np.float32


# ------------------------------------------------------------------------------------- brute-force reference


def ref_iou(a: list[F32], b: list[F32]) -> float:
    """torchvision's kernel, one float32 operation at a time; returns the IoU as a Python float."""
    w = max(F32(0), min(a[2], b[2]) - max(a[0], b[0]))
    h = max(F32(0), min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(inter / (area_a + area_b - inter))


def ref_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float, labels: torch.Tensor | None = None) -> list[int]:
    """Greedy NMS, one box at a time with float32 scalars.

    Visit by score (stable, descending); keep a box unless a kept box of its class has IoU > iou.
    """
    b = [[F32(v) for v in row] for row in boxes.tolist()]
    s = scores.tolist()
    lab = labels.tolist() if labels is not None else [0] * len(s)
    keep: list[int] = []
    for i in sorted(range(len(s)), key=lambda i: -s[i]):
        if all(lab[k] != lab[i] or not ref_iou(b[k], b[i]) > iou for k in keep):
            keep.append(i)
    return keep


def random_case(rng: random.Random, n: int, grid: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes with duplicates, zero-area boxes and tied scores (``grid``: small integer coordinates)."""
    rows = []
    for _ in range(n):
        if rows and rng.random() < 0.15:
            rows.append(list(rng.choice(rows)))  # exact duplicate
            continue
        if grid:
            x1, y1 = rng.randint(0, 6), rng.randint(0, 6)
            w, h = rng.randint(0, 4), rng.randint(0, 4)  # zero width or height happens
        else:
            x1, y1 = rng.uniform(0, 100), rng.uniform(0, 100)
            w, h = rng.uniform(0, 40), rng.uniform(0, 40)
        rows.append([x1, y1, x1 + w, y1 + h])
    scores = [rng.choice([0.1, 0.5, 0.9]) if grid else rng.random() for _ in range(n)]
    labels = [rng.randint(0, 2) for _ in range(n)]
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores), torch.tensor(labels)


# ---------------------------------------------------------------------------------------------------- NMS


@pytest.mark.parametrize("grid", [True, False])
@pytest.mark.parametrize("seed", range(60))
def test_nms_matches_reference(seed: int, grid: bool) -> None:
    rng = random.Random(seed)
    boxes, scores, labels = random_case(rng, rng.randint(0, 40), grid)
    for iou in (0.0, 1 / 3, 0.5, 0.7, 0.9):
        got = ops.nms(boxes, scores, iou)
        assert got.dtype == torch.long
        assert got.tolist() == ref_nms(boxes, scores, iou)
        assert ops.batched_nms(boxes, scores, labels, iou).tolist() == ref_nms(boxes, scores, iou, labels)


def test_batched_nms_equals_per_class_nms_merged() -> None:
    rng = random.Random(123)
    for _ in range(30):
        boxes, scores, labels = random_case(rng, 50, grid=rng.random() < 0.5)
        kept: list[int] = []
        for c in labels.unique().tolist():
            idx = (labels == c).nonzero(as_tuple=True)[0]
            kept += idx[ops.nms(boxes[idx], scores[idx], 0.5)].tolist()
        merged = sorted(sorted(kept), key=lambda i: -scores[i].item())
        assert ops.batched_nms(boxes, scores, labels, 0.5).tolist() == merged


def test_iou_exactly_at_threshold_is_kept() -> None:
    boxes = torch.tensor([[0.0, 0, 2, 1], [0, 0, 1, 1]])  # IoU = 1 / 2 exactly
    scores = torch.tensor([0.9, 0.8])
    assert ops.nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert ops.nms(boxes, scores, 0.4999).tolist() == [0]


@pytest.mark.parametrize(("width", "iou", "suppressed"), [(1, 0.1, True), (7, 0.7, False)])
def test_float32_iou_compared_with_float64_threshold(width: int, iou: float, suppressed: bool) -> None:
    # IoU = width / 10 in float32: float32(0.1) > 0.1 suppresses, float32(0.7) < 0.7 does not (as torchvision)
    boxes = torch.tensor([[0.0, 0, 10, 1], [0, 0, width, 1]])
    keep = ops.nms(boxes, torch.tensor([0.9, 0.8]), iou).tolist()
    assert keep == ([0] if suppressed else [0, 1])


def test_ties_keep_index_order() -> None:
    boxes = torch.tensor([[0.0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 1, 1], [5, 5, 6, 6]])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.7])
    assert ops.nms(boxes, scores, 0.5).tolist() == [3, 0]


def test_zero_area_boxes_never_suppress_each_other() -> None:
    boxes = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1], [2, 2, 2, 5]])
    assert ops.nms(boxes, torch.tensor([0.3, 0.2, 0.1]), 0.0).tolist() == [0, 1, 2]
    assert ops.box_iou(boxes[:1], boxes[:1]).isnan().all()


def test_empty_inputs() -> None:
    empty = torch.zeros(0, 4)
    assert ops.nms(empty, torch.zeros(0), 0.5).shape == (0,)
    assert ops.batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).dtype == torch.long


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="boxes"):
        ops.nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        ops.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


@pytest.mark.parametrize("block", [1, 7, 64])
def test_blocked_nms_equals_unblocked(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(block)
    boxes, scores, labels = random_case(rng, 300, grid=False)
    boxes = boxes * 4  # denser overlaps
    expected = ops.nms(boxes, scores, 0.3).tolist(), ops.batched_nms(boxes, scores, labels, 0.3).tolist()
    monkeypatch.setattr(ops, "_NMS_BLOCK", block)
    assert (
        ops.nms(boxes, scores, 0.3).tolist(),
        ops.batched_nms(boxes, scores, labels, 0.3).tolist(),
    ) == expected


def test_box_iou_values() -> None:
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    torch.testing.assert_close(ops.box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))
    assert ops.box_iou(a.long(), b.long()).dtype == torch.float32


def test_box_ios_values() -> None:
    """Intersection over the smaller area: a box inside another has IoS 1 whatever their IoU."""
    a = torch.tensor([[0.0, 0, 4, 4]])
    b = torch.tensor([[1.0, 1, 2, 2], [2, 0, 6, 2], [4, 4, 5, 5], [0, 0, 4, 4]])
    torch.testing.assert_close(ops.box_ios(a, b), torch.tensor([[1.0, 4 / 8, 0.0, 1.0]]))
    assert ops.box_ios(b, a).shape == (4, 1)
    assert torch.isnan(ops.box_ios(torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([[3.0, 3, 3, 3]])))[0, 0]


coord = st.integers(0, 20)
box = st.tuples(coord, coord, st.integers(0, 10), st.integers(0, 10)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(box, st.sampled_from([0.2, 0.4, 0.6, 0.8]), st.integers(0, 2)), max_size=25),
    st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0]),
)
def test_nms_properties(items: list, iou: float) -> None:
    boxes = torch.tensor([b for b, _, _ in items], dtype=torch.float32).reshape(-1, 4)
    scores = torch.tensor([s for _, s, _ in items], dtype=torch.float32)
    labels = torch.tensor([c for _, _, c in items], dtype=torch.long)
    keep = ops.nms(boxes, scores, iou)
    assert keep.tolist() == ref_nms(boxes, scores, iou)
    assert ops.batched_nms(boxes, scores, labels, iou).tolist() == ref_nms(boxes, scores, iou, labels)
    kept_scores = scores[keep]
    assert torch.all(kept_scores[:-1] >= kept_scores[1:])
    ious = ops.box_iou(boxes[keep], boxes[keep]).nan_to_num(0).fill_diagonal_(0)
    assert not (ious > iou).any()  # no two kept boxes overlap above the threshold
    dropped = sorted(set(range(len(items))) - set(keep.tolist()))
    for d in dropped:  # every dropped box is covered by a kept box of at least its score
        cover = ops.box_iou(boxes[d : d + 1], boxes[keep])[0].nan_to_num(0) > iou
        assert (cover & (kept_scores >= scores[d])).any()


# ------------------------------------------------------------------------------------------------ formats

finite = st.floats(-1000, 1000, allow_nan=False, width=32)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite, finite), min_size=1, max_size=10))
def test_conversions_round_trip(rows: list) -> None:
    xyxy = torch.tensor(rows, dtype=torch.float64)
    for fmt in ops.BOX_FORMATS:
        back = ops.box_convert(ops.box_convert(xyxy, "xyxy", fmt), fmt, "xyxy")
        torch.testing.assert_close(back, xyxy, atol=1e-9, rtol=0)
        back_np = ops.box_convert(ops.box_convert(xyxy.numpy(), "xyxy", fmt), fmt, "xyxy")
        np.testing.assert_allclose(back_np, xyxy.numpy(), atol=1e-9)


def test_conversion_values() -> None:
    xyxy = torch.tensor([[10.0, 20, 50, 100]])
    assert ops.xyxy_to_xywh(xyxy).tolist() == [[30, 60, 40, 80]]
    assert ops.xyxy_to_ltwh(xyxy).tolist() == [[10, 20, 40, 80]]
    assert ops.xywh_to_xyxy(torch.tensor([[30.0, 60, 40, 80]])).tolist() == xyxy.tolist()
    torch.testing.assert_close(ops.xyxy_to_xywhn(xyxy, (200, 100)), torch.tensor([[0.3, 0.3, 0.4, 0.4]]))
    assert isinstance(ops.xyxy_to_xywh(xyxy.numpy()), np.ndarray)
    assert ops.xyxy_to_xywh(torch.zeros(2, 3, 4)).shape == (2, 3, 4)


def test_unknown_format_raises() -> None:
    with pytest.raises(ValueError, match="unknown box format 'cxcywh'"):
        ops.box_convert(torch.zeros(1, 4), "xyxy", "cxcywh")
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        ops.xyxy_to_xywh(torch.zeros(1, 5))


def test_clip_boxes() -> None:
    boxes = torch.tensor([[-5.0, -1, 120, 90], [10, 10, 20, 20]])
    expected = [[0, 0, 100, 50], [10, 10, 20, 20]]
    assert ops.clip_boxes(boxes, (50, 100)).tolist() == expected
    assert ops.clip_boxes(boxes.numpy(), (50, 100)).tolist() == expected
    assert boxes[0, 0] == -5  # not modified in place
