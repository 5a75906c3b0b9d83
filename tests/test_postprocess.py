"""postprocess: thresholds, top-k, multi-label, class-aware vs agnostic, classes filter, max_det, empties."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from test_ops import ref_iou
from yolonas_cli.engine.ops import batched_nms, nms
from yolonas_cli.engine.postprocess import postprocess, postprocess_batch

BOX_A = [0.0, 0.0, 10.0, 10.0]
BOX_B = [1.0, 0.0, 11.0, 10.0]  # IoU with A = 90 / 110 = 0.82
FAR = [100.0, 100.0, 120.0, 120.0]
F32 = np.float32


def batch(rows: list[list[float]], scores: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One-image batch: boxes [1, N, 4], scores [1, N, C]."""
    return torch.tensor([rows]), torch.tensor([scores])


def run(rows: list[list[float]], scores: list[list[float]], **kw) -> torch.Tensor:
    kw = {"conf": 0.25, "iou": 0.7, **kw}
    (out,) = postprocess(*batch(rows, scores), **kw)
    assert out.dtype == torch.float32 and out.shape[1] == 6
    return out


def test_strict_threshold_in_multi_label_and_inclusive_in_single_label() -> None:
    scores = [[0.5, 0.0], [0.0, 0.25]]
    assert run([BOX_A, FAR], scores)[:, 5].tolist() == [0]
    assert run([BOX_A, FAR], scores, multi_label=False)[:, 5].tolist() == [0, 1]


def test_same_box_twice_with_two_labels() -> None:
    out = run([BOX_A], [[0.9, 0.6, 0.1]])
    assert out.tolist() == [[*BOX_A, pytest.approx(0.9), 0.0], [*BOX_A, pytest.approx(0.6), 1.0]]
    assert run([BOX_A], [[0.9, 0.6, 0.1]], agnostic=True)[:, 5].tolist() == [0]
    assert run([BOX_A], [[0.9, 0.6, 0.1]], multi_label=False)[:, 5].tolist() == [0]


def test_class_aware_vs_agnostic() -> None:
    scores = [[0.9, 0.0], [0.0, 0.8]]
    assert run([BOX_A, BOX_B], scores)[:, 5].tolist() == [0, 1]
    assert run([BOX_A, BOX_B], scores, agnostic=True)[:, 5].tolist() == [0]
    same_class = [[0.9, 0.0], [0.8, 0.0]]
    assert run([BOX_A, BOX_B], same_class)[:, 4].tolist() == [pytest.approx(0.9)]
    assert len(run([BOX_A, BOX_B], same_class, iou=0.85)) == 2  # IoU 0.82 is not above 0.85


def test_pre_nms_top_k() -> None:
    rows = [[i * 20.0, 0, i * 20.0 + 10, 10] for i in range(10)]
    scores = [[0.3 + 0.05 * i] for i in range(10)]
    out = run(rows, scores, pre_nms_top_k=4)
    assert out[:, 0].tolist() == [180, 160, 140, 120]
    assert len(run(rows, scores)) == 10


def test_classes_filter_before_top_k() -> None:
    rows = [[i * 20.0, 0, i * 20.0 + 10, 10] for i in range(6)]
    scores = [[0.9, 0.0, 0.0]] * 3 + [[0.0, 0.5, 0.4]] * 3
    out = run(rows, scores, classes=[1, 2], pre_nms_top_k=3)
    assert out[:, 5].tolist() == [1, 1, 1]
    assert sorted(run(rows, scores, classes=[2])[:, 0].tolist()) == [60, 80, 100]
    assert len(run(rows, scores, classes=[])) == 0
    # single-label: an anchor's best class decides, then the filter applies
    assert len(run(rows, scores, classes=[2], multi_label=False)) == 0


def test_max_det_and_order() -> None:
    rng = random.Random(0)
    rows = [[i * 20.0, 0, i * 20.0 + 10, 10] for i in range(50)]
    scores = [[rng.random() for _ in range(3)] for _ in range(50)]
    out = run(rows, scores, max_det=7)
    assert len(out) == 7
    conf = out[:, 4]
    assert torch.all(conf[:-1] >= conf[1:])
    assert conf[0] == max(max(s) for s in scores)


def test_empty_outputs() -> None:
    boxes, scores = batch([BOX_A, FAR], [[0.1, 0.2], [0.9, 0.0]])
    boxes, scores = torch.cat([boxes, boxes]), torch.cat([scores, torch.zeros_like(scores)])
    first, second = postprocess(boxes, scores, conf=0.25, iou=0.7)
    assert first.shape == (1, 6) and second.shape == (0, 6) and second.dtype == torch.float32
    for out in postprocess(torch.zeros(2, 0, 4), torch.zeros(2, 0, 80), conf=0.25, iou=0.7, multi_label=False):
        assert out.shape == (0, 6)


def test_half_inputs_give_float32() -> None:
    boxes, scores = batch([BOX_A], [[0.9]])
    (out,) = postprocess(boxes.half(), scores.half(), conf=0.25, iou=0.7)
    assert out.dtype == torch.float32 and out[0, 4] == torch.tensor(0.9).half().float()


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="boxes"):
        postprocess(torch.zeros(10, 4), torch.zeros(1, 10, 80), conf=0.25, iou=0.7)
    with pytest.raises(ValueError, match="scores"):
        postprocess(torch.zeros(1, 10, 4), torch.zeros(1, 9, 80), conf=0.25, iou=0.7)


def reference(boxes: torch.Tensor, scores: torch.Tensor, conf: float, iou: float, k: int, agnostic: bool):
    """The original's algorithm written with loops and float32 scalars: (anchor, class) pairs > conf in
    row-major order, the k best (ties: the first in row-major order), greedy NMS visiting them by decreasing
    score (ties: row-major order), at most 300."""
    s, b = scores.tolist(), boxes.tolist()
    pairs = [(a, c) for a in range(len(s)) for c in range(len(s[0])) if s[a][c] > conf]
    ranked = sorted(pairs, key=lambda p: -s[p[0]][p[1]])[:k]  # sorted() is stable: ties keep row-major order
    kept: list[tuple[int, int]] = []
    for a, c in ranked:
        box = [F32(v) for v in b[a]]
        if all((not agnostic and c2 != c) or not ref_iou([F32(v) for v in b[a2]], box) > iou for a2, c2 in kept):
            kept.append((a, c))
    rows = [[*b[a], s[a][c], float(c)] for a, c in kept[:300]]
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def topk_reference(boxes: torch.Tensor, scores: torch.Tensor, conf: float, iou: float, k: int, agnostic: bool):
    """The original's own calls (torch.topk over the row-major candidates, then NMS): equal to `reference`
    whenever no two scores tie."""
    pairs = [(a, c) for a in range(scores.shape[0]) for c in range(scores.shape[1]) if scores[a, c] > conf]
    a = torch.tensor([p[0] for p in pairs], dtype=torch.long)
    c = torch.tensor([p[1] for p in pairs], dtype=torch.long)
    s = scores[a, c]
    if len(pairs) > k:
        top = torch.topk(s, k).indices
        a, c, s = a[top], c[top], s[top]
    keep = nms(boxes[a], s, iou) if agnostic else batched_nms(boxes[a], s, c, iou)
    keep = keep[:300]
    return torch.cat([boxes[a][keep], s[keep, None], c[keep, None].float()], 1)


def random_batch(seed: int, ties: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, classes = 300, 6
    xy = torch.rand(2, n, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(2, n, 2, generator=g) * 40 + 1], -1)
    scores = torch.rand(2, n, classes, generator=g) ** 3
    return boxes, (scores * 20).round() / 20 if ties else scores  # ties: many equal scores


@pytest.mark.parametrize("seed", range(8))
def test_matches_loop_reference(seed: int) -> None:
    boxes, scores = random_batch(seed, ties=True)
    agnostic = seed % 2 == 1
    outs = postprocess(boxes, scores, conf=0.25, iou=0.5, pre_nms_top_k=150, agnostic=agnostic)
    for b in range(2):
        want = reference(boxes[b], scores[b], 0.25, 0.5, 150, agnostic)
        assert len(want) > 20 and torch.equal(outs[b], want)


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_originals_topk_without_ties(seed: int) -> None:
    boxes, scores = random_batch(seed, ties=False)
    agnostic = seed % 2 == 1
    outs = postprocess(boxes, scores, conf=0.25, iou=0.5, pre_nms_top_k=150, agnostic=agnostic)
    for b in range(2):
        assert torch.equal(outs[b], topk_reference(boxes[b], scores[b], 0.25, 0.5, 150, agnostic))


def single_label_reference(boxes: torch.Tensor, scores: torch.Tensor, conf: float, iou: float, k: int):
    """Single-label with loops: each anchor's best class (the first of equal best scores), kept when its score
    is >= conf, the k best (ties: lower anchor first), class-aware greedy NMS, at most 300."""
    s, b = scores.tolist(), boxes.tolist()
    best = [(a, max(range(len(row)), key=lambda c: (row[c], -c))) for a, row in enumerate(s)]
    ranked = sorted([(a, c) for a, c in best if s[a][c] >= conf], key=lambda p: -s[p[0]][p[1]])[:k]
    kept: list[tuple[int, int]] = []
    for a, c in ranked:
        box = [F32(v) for v in b[a]]
        if all(c2 != c or not ref_iou([F32(v) for v in b[a2]], box) > iou for a2, c2 in kept):
            kept.append((a, c))
    return torch.tensor([[*b[a], s[a][c], float(c)] for a, c in kept[:300]], dtype=torch.float32).reshape(-1, 6)


@pytest.mark.parametrize("seed", range(4))
def test_single_label_matches_loop_reference(seed: int) -> None:
    boxes, scores = random_batch(seed, ties=True)
    outs = postprocess(boxes, scores, conf=0.25, iou=0.5, pre_nms_top_k=100, multi_label=False)
    for b in range(2):
        want = single_label_reference(boxes[b], scores[b], 0.25, 0.5, 100)
        assert len(want) > 10 and torch.equal(outs[b], want)


def test_a_batch_gives_what_each_image_gives_alone_and_pads_with_zeros() -> None:
    """Images with very different candidate counts (none, few, more than top-k) in one batch: each image's
    detections are those it gets alone; the padded form holds them first and zeros after its count."""
    boxes, scores = random_batch(3, ties=False)
    boxes, scores = torch.cat([boxes, boxes[:1]]), torch.cat([scores, scores[:1]])
    scores[1] = scores[1] * 0.26  # few candidates above 0.25
    scores[2] = 0.0  # none
    kw = {"conf": 0.25, "iou": 0.5, "pre_nms_top_k": 150, "max_det": 40}
    together = postprocess(boxes, scores, **kw)
    alone = [postprocess(boxes[i : i + 1], scores[i : i + 1], **kw)[0] for i in range(3)]
    assert [len(t) for t in together] == [len(a) for a in alone] == [40, len(alone[1]), 0] and 0 < len(alone[1]) < 40
    assert all(torch.equal(t, a) for t, a in zip(together, alone))
    padded, counts = postprocess_batch(boxes, scores, **kw)
    assert padded.shape == (3, 40, 6) and counts.tolist() == [len(a) for a in alone]
    for row, n, want in zip(padded, counts.tolist(), alone):
        assert torch.equal(row[:n], want) and not row[n:].any()


def _dispatched_ops(fn) -> list[str]:
    """The aten operators `fn` dispatches, in order (torch's dispatch mode sees every tensor operation)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    with Record() as record:
        fn()
    return record.ops


def test_the_work_does_not_grow_with_the_batch() -> None:
    """Vectorised over the batch: 1 or 8 images (each with 150 candidates entering NMS) dispatch the same
    operators, with no loop over the images."""
    boxes, scores = random_batch(5, ties=False)
    boxes, scores = boxes[:1].contiguous(), scores[:1].contiguous()
    many_boxes, many_scores = boxes.expand(8, -1, -1).contiguous(), scores.expand(8, -1, -1).contiguous()
    kw = {"conf": 0.001, "iou": 0.5, "pre_nms_top_k": 150}
    one = _dispatched_ops(lambda: postprocess_batch(boxes, scores, **kw))
    eight = _dispatched_ops(lambda: postprocess_batch(many_boxes, many_scores, **kw))
    assert one == eight and len(one) > 20


def test_nothing_is_read_back_from_the_device_but_the_nms_convergence_checks() -> None:
    """On a device other than the CPU (here `meta`, which holds no data: any read of values, `.item()`,
    `.tolist()`, `.cpu()`, fails there), the whole batch is processed on the device and the detections stay
    there; the only values read are the NMS fixed point's "nothing changed" checks, one every 4 steps (answered
    here: converged)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Converged(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.checks = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func is torch.ops.aten.equal.default:
                self.checks += 1
                return True
            return func(*args, **(kwargs or {}))

    boxes, scores = torch.empty(8, 2100, 4, device="meta"), torch.empty(8, 2100, 80, device="meta")
    with Converged() as mode:
        detections, counts = postprocess_batch(boxes, scores, conf=0.001, iou=0.7, max_det=300)
    assert detections.device.type == "meta" and detections.shape == (8, 300, 6) and counts.shape == (8,)
    assert mode.checks == 4  # 1024 candidates in blocks of 256: one check per block
