"""The two assigners on hand-made scenes whose answers are derived by hand (below, next to each case), and on
random scenes against a brute-force reference written independently here in plain Python (one GT, one
anchor at a time, float64; training-facts §3.4, §3.5)."""

from __future__ import annotations

import math
import random
import statistics

import pytest
import torch

from yolonas_cli.modes.train.assigners import ATSSAssigner, GroundTruth, TaskAlignedAssigner

# A 32x32 image at stride 8: 16 anchor points (4 + 8*col, 4 + 8*row), row-major; index = 4*row + col.
GRID_POINTS = torch.tensor([[4.0 + 8 * c, 4.0 + 8 * r] for r in range(4) for c in range(4)])
NUM_CLASSES = 3


def index(x: float, y: float) -> int:
    return int((y - 4) // 8 * 4 + (x - 4) // 8)


def boxes_around_points(points: torch.Tensor, half: float = 8.0) -> torch.Tensor:
    """Predicted boxes: a 16x16 square centred on every anchor point. [L,4]."""
    return torch.cat([points - half, points + half], -1)


def ground_truth(
    per_image: list[list[tuple[int, list[float]]]], masked: bool = True, dtype: torch.dtype = torch.float32
) -> GroundTruth:
    """GroundTruth from [(class, xyxy), ...] per image, padded like the loss pads (class 0, zero box)."""
    slots = max(len(boxes) for boxes in per_image)
    labels = torch.zeros(len(per_image), slots, 1, dtype=torch.long)
    boxes = torch.zeros(len(per_image), slots, 4, dtype=dtype)
    for b, image in enumerate(per_image):
        for j, (label, box) in enumerate(image):
            labels[b, j, 0], boxes[b, j] = label, torch.tensor(box, dtype=dtype)
    mask = (boxes.sum(-1, keepdim=True) > 0).float() if masked else None
    return GroundTruth(labels, boxes, mask)


# --------------------------------------------------------------------------------------------------------
# TAL by hand
# --------------------------------------------------------------------------------------------------------
A_BOX, B_BOX, C_BOX = [0.0, 0.0, 20.0, 20.0], [10.0, 10.0, 30.0, 30.0], [25.0, 1.0, 27.0, 3.0]


def tal_scene() -> tuple[torch.Tensor, torch.Tensor, GroundTruth]:
    """Image 0: A (class 1) and B (class 2) overlap at the anchor (12,12); image 1: C (class 0), a box with no
    anchor point inside; image 2: no box. Every score 0.5; anchor (12,12) of image 0 predicts [11,11,29,29]."""
    scores = torch.full((3, 16, NUM_CLASSES), 0.5)
    pred = boxes_around_points(GRID_POINTS).repeat(3, 1, 1)
    pred[0, index(12, 12)] = torch.tensor([11.0, 11.0, 29.0, 29.0])
    gt = ground_truth([[(1, A_BOX), (2, B_BOX)], [(0, C_BOX)], []])
    return scores, pred, gt


def test_tal_two_boxes_claiming_one_anchor_and_boxes_without_anchors() -> None:
    scores, pred, gt = tal_scene()
    result = TaskAlignedAssigner()(scores, pred, GRID_POINTS, gt)
    # A contains the points with x, y in {4, 12}; B those with x, y in {12, 20, 28}. Both contain (12,12),
    # whose predicted box [11,11,29,29] has IoU 81/643 with A and 324/400 with B: it goes to B.
    a_anchors = [index(4, 4), index(12, 4), index(4, 12)]
    b_anchors = [index(x, y) for y in (12, 20, 28) for x in (12, 20, 28)]
    expected = torch.full((3, 16), NUM_CLASSES)
    expected[0, a_anchors], expected[0, b_anchors] = 1, 2
    assert torch.equal(result.labels, expected)  # image 1: C has no anchor inside; image 2: nothing
    assert torch.equal(result.boxes[0, a_anchors], torch.tensor([A_BOX] * 3))
    assert torch.equal(result.boxes[0, b_anchors], torch.tensor([B_BOX] * 9))
    assert torch.equal(result.boxes[0, index(28, 4)], torch.tensor(A_BOX))  # negatives carry slot 0's box
    assert torch.equal(result.boxes[1], torch.tensor([C_BOX] * 16))
    assert torch.equal(result.boxes[2], torch.zeros(16, 4))
    assert not result.scores[1:].any()


def test_tal_soft_targets_rescale_alignment_to_the_best_iou() -> None:
    scores, pred, gt = tal_scene()
    result = TaskAlignedAssigner()(scores, pred, GRID_POINTS, gt)
    # A's positives predict 16x16 boxes: (4,4) overlaps A on 12x12 (IoU 144/512), (12,4) and (4,12) on 16x12
    # (IoU 192/464, the best). Score = (IoU / best)^6 * best with alpha 1, beta 6 and equal class scores.
    best_a = 192 / 464
    expected_a = {index(12, 4): best_a, index(4, 12): best_a, index(4, 4): (144 / 512 / best_a) ** 6 * best_a}
    for anchor, value in expected_a.items():
        assert result.scores[0, anchor, 1].item() == pytest.approx(value, rel=1e-6)
    assert result.scores[0, index(12, 12), 2].item() == pytest.approx(0.81, rel=1e-6)  # B's best: 324/400
    # (20,20) predicts [12,12,28,28], inside B: IoU 256/400.
    assert result.scores[0, index(20, 20), 2].item() == pytest.approx((0.64 / 0.81) ** 6 * 0.81, rel=1e-6)
    nonzero = result.scores[0].nonzero()
    assert set(nonzero[:, 0].tolist()) == set(expected_a) | {index(x, y) for y in (12, 20, 28) for x in (12, 20, 28)}
    assert all(result.scores[0, a, c] > 0 for a, c in nonzero.tolist() if c == result.labels[0, a])


def test_tal_per_image_path_drops_boxes_without_a_meaningful_alignment() -> None:
    """Scores of 1e-12 make every alignment <= 1e-9: the batched path (padding mask as the top-k mask) still
    assigns the box's inside anchors, the per-image path (no mask) assigns none (§3.10)."""
    scores = torch.full((1, 16, NUM_CLASSES), 1e-12)
    pred = boxes_around_points(GRID_POINTS).unsqueeze(0)
    batched = TaskAlignedAssigner()(scores, pred, GRID_POINTS, ground_truth([[(0, A_BOX)]]))
    per_image = TaskAlignedAssigner()(scores, pred, GRID_POINTS, ground_truth([[(0, A_BOX)]], masked=False))
    inside = sorted(index(x, y) for x in (4, 12) for y in (4, 12))
    assert (batched.labels[0] == 0).nonzero().flatten().tolist() == inside
    assert torch.equal(per_image.labels, torch.full((1, 16), NUM_CLASSES))
    normal = torch.full((1, 16, NUM_CLASSES), 0.5)
    assert torch.equal(
        TaskAlignedAssigner()(normal, pred, GRID_POINTS, ground_truth([[(0, A_BOX)]], masked=False)).labels,
        TaskAlignedAssigner()(normal, pred, GRID_POINTS, ground_truth([[(0, A_BOX)]])).labels,
    )


def test_tal_keeps_only_the_top_k_anchors_of_a_large_box() -> None:
    """A box over the whole image holds all 16 points; the 13 with the best alignment win, i.e. the 3 whose
    predicted boxes overlap it least are left out."""
    scores = torch.full((1, 16, NUM_CLASSES), 0.5)
    pred = boxes_around_points(GRID_POINTS).unsqueeze(0).clone()
    worst = [index(4, 4), index(28, 28), index(28, 4)]
    pred[0, worst] = pred[0, worst] + 30  # pushed mostly outside the box
    result = TaskAlignedAssigner()(scores, pred, GRID_POINTS, ground_truth([[(2, [0.0, 0.0, 32.0, 32.0])]]))
    assert (result.labels[0] == NUM_CLASSES).nonzero().flatten().tolist() == sorted(worst)


def test_assigners_answer_all_background_for_a_batch_without_boxes() -> None:
    empty = GroundTruth(torch.zeros(2, 0, 1, dtype=torch.long), torch.zeros(2, 0, 4), torch.zeros(2, 0, 1))
    pred = boxes_around_points(GRID_POINTS).repeat(2, 1, 1)
    tal = TaskAlignedAssigner()(torch.rand(2, 16, NUM_CLASSES), pred, GRID_POINTS, empty)
    anchors, counts = atss_anchors(96)
    atss = ATSSAssigner()(anchors, counts, empty, torch.rand(2, len(anchors), 4), NUM_CLASSES)
    for result, size in ((tal, 16), (atss, len(anchors))):
        assert torch.equal(result.labels, torch.full((2, size), NUM_CLASSES))
        assert not result.boxes.any() and not result.scores.any() and result.scores.shape == (2, size, NUM_CLASSES)


# --------------------------------------------------------------------------------------------------------
# ATSS by hand
# --------------------------------------------------------------------------------------------------------
def atss_anchors(size: int) -> tuple[torch.Tensor, list[int]]:
    """The anchor boxes of a size x size input: squares of side 5*stride around every cell centre, levels
    8, 16, 32, row-major. [L,4] px and the per-level counts."""
    boxes, counts = [], []
    for stride in (8, 16, 32):
        cells = size // stride
        for row in range(cells):
            for col in range(cells):
                x, y, half = (col + 0.5) * stride, (row + 0.5) * stride, 2.5 * stride
                boxes.append([x - half, y - half, x + half, y + half])
        counts.append(cells * cells)
    return torch.tensor(boxes), counts


def test_atss_two_boxes_claiming_one_anchor_go_by_anchor_box_iou_not_prediction() -> None:
    """Two boxes both contain the point (44,44) of level 8 and pass their thresholds; the anchor goes to the
    box with the larger IoU with its 40x40 anchor box (the large one: 1600/1936 against 400/1600), although its
    prediction matches the small one exactly. The level-8 anchor at (44,44) is index 5*12+5 = 65. Centres
    off the grid's symmetry lines, so that no two anchors tie for the 9th place."""
    anchors, counts = atss_anchors(96)
    small, large = [40.3, 39.1, 60.3, 59.1], [22.4, 21.7, 66.4, 65.7]
    anchor = 65
    assert anchors[anchor].tolist() == [24.0, 24.0, 64.0, 64.0]
    pred = boxes_around_points(box_centers_of(anchors), 4.0).unsqueeze(0).clone()
    pred[0, anchor] = torch.tensor(small)
    result = ATSSAssigner()(anchors, counts, ground_truth([[(0, small), (1, large)]]), pred, NUM_CLASSES)
    assert result.labels[0, anchor].item() == 1
    # The soft target is the IoU of the anchor's prediction with the box it got: small in large = 400/1936.
    assert result.scores[0, anchor, 1].item() == pytest.approx(400 / 1936, rel=1e-6)
    assert reference_atss(anchors, counts, [[(0, small), (1, large)]], pred)[0][0] == result.labels[0].tolist()


def test_atss_box_without_an_anchor_point_inside_gets_nothing() -> None:
    anchors, counts = atss_anchors(96)
    pred = boxes_around_points(box_centers_of(anchors), 4.0).unsqueeze(0)
    result = ATSSAssigner()(anchors, counts, ground_truth([[(2, [1.0, 1.0, 3.0, 3.0])]]), pred, NUM_CLASSES)
    assert torch.equal(result.labels, torch.full((1, len(anchors)), NUM_CLASSES))


def test_atss_refuses_levels_with_fewer_than_nine_anchors() -> None:
    anchors, counts = atss_anchors(64)  # 2x2 anchors on the stride-32 level
    with pytest.raises(ValueError, match="at least 9 anchors per level"):
        ATSSAssigner()(anchors, counts, ground_truth([[(0, A_BOX)]]), torch.rand(1, len(anchors), 4), NUM_CLASSES)


def box_centers_of(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


# --------------------------------------------------------------------------------------------------------
# Brute force: plain-Python references, one GT and one anchor at a time
# --------------------------------------------------------------------------------------------------------
def iou(a: list[float], b: list[float], eps: float) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    return w * h / (area_a + area_b - w * h + eps)


def inside(point: list[float], box: list[float]) -> bool:
    return min(point[0] - box[0], point[1] - box[1], box[2] - point[0], box[3] - point[1]) > 1e-9


def resolve(positive: list[list[bool]], overlaps: list[list[float]]) -> list[int | None]:
    """Per anchor: its GT (several positives: the largest overlap, first on ties), or None."""
    owners: list[int | None] = []
    for i in range(len(positive[0]) if positive else 0):
        claimed = [j for j in range(len(positive)) if positive[j][i]]
        if len(claimed) > 1:
            column = [overlaps[j][i] for j in range(len(positive))]
            claimed = [column.index(max(column))]
        owners.append(claimed[0] if claimed else None)
    return owners


def reference_tal(scores, pred, points, image_gts, masked):  # type: ignore[no-untyped-def]
    """Labels [B][L] and scores [B][L] (of the assigned class) of TAL, in float64 Python."""
    all_labels, all_scores = [], []
    for b, gts in enumerate(image_gts):
        num_anchors = len(points)
        ious = [[iou(box, pred[b][i], 1e-9) for i in range(num_anchors)] for _, box in gts]
        align = [[scores[b][i][c] * ious[j][i] ** 6 for i in range(num_anchors)] for j, (c, _) in enumerate(gts)]
        positive = []
        for j, (_, box) in enumerate(gts):
            inside_j = [inside(points[i], box) for i in range(num_anchors)]
            ranked = sorted(range(num_anchors), key=lambda i: -align[j][i] * inside_j[i])[:13]
            keep = masked or max(align[j][i] * inside_j[i] for i in ranked) > 1e-9
            positive.append([keep and inside_j[i] and i in ranked for i in range(num_anchors)])
        owners = resolve(positive, ious) if gts else [None] * num_anchors
        labels, soft = [], []
        for i, owner in enumerate(owners):
            labels.append(NUM_CLASSES if owner is None else gts[owner][0])
            value = 0.0
            for j in range(len(gts)):
                mine = [k for k, o in enumerate(owners) if o == j]
                if i in mine:
                    best_align = max(align[j][k] for k in mine)
                    value = max(value, align[j][i] / (best_align + 1e-9) * max(ious[j][k] for k in mine))
            soft.append(value)
        all_labels.append(labels)
        all_scores.append(soft)
    return all_labels, all_scores


def reference_atss(anchors, counts, image_gts, pred):  # type: ignore[no-untyped-def]
    """Labels [B][L] and scores [B][L] of ATSS (topk 9), in float64 Python."""
    anchors = anchors.tolist()
    centers = [[(a[0] + a[2]) / 2, (a[1] + a[3]) / 2] for a in anchors]
    starts = [sum(counts[:k]) for k in range(len(counts))]
    all_labels, all_scores = [], []
    for b, gts in enumerate(image_gts):
        overlaps = [[iou(box, a, 1e-10) for a in anchors] for _, box in gts]
        positive = []
        for j, (_, box) in enumerate(gts):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            candidates = []
            for start, count in zip(starts, counts):
                level = range(start, start + count)
                candidates += sorted(level, key=lambda i: math.hypot(cx - centers[i][0], cy - centers[i][1]))[:9]
            values = [overlaps[j][i] for i in candidates]
            threshold = statistics.mean(values) + statistics.stdev(values)
            chosen = {i for i in candidates if overlaps[j][i] > threshold and inside(centers[i], box)}
            positive.append([i in chosen for i in range(len(anchors))])
        owners = resolve(positive, overlaps) if gts else [None] * len(anchors)
        all_labels.append([NUM_CLASSES if o is None else gts[o][0] for o in owners])
        pred_b = pred[b].tolist()
        all_scores.append([0.0 if o is None else iou(gts[o][1], pred_b[i], 1e-9) for i, o in enumerate(owners)])
    return all_labels, all_scores


def random_scene(rng: random.Random, size: int, num_anchors: int, images: int):  # type: ignore[no-untyped-def]
    """Per image 0-6 boxes (some images empty), class scores, and predicted boxes around the anchor points."""
    image_gts = []
    for _ in range(images):
        boxes = []
        for _ in range(rng.choice([0, 1, 3, 6])):
            x1, y1 = rng.uniform(0, size * 0.7), rng.uniform(0, size * 0.7)
            boxes.append(
                (rng.randrange(NUM_CLASSES), [x1, y1, x1 + rng.uniform(6, size * 0.5), y1 + rng.uniform(6, size * 0.5)])
            )
        image_gts.append(boxes)
    scores = [
        [[rng.uniform(0.05, 0.95) for _ in range(NUM_CLASSES)] for _ in range(num_anchors)] for _ in range(images)
    ]
    return image_gts, scores


def predictions_around(points: torch.Tensor, rng: random.Random, images: int) -> torch.Tensor:
    """Boxes that contain their anchor point (so an anchor inside a GT always overlaps it). [B,L,4] float64."""

    def box(x: float, y: float) -> list[float]:
        return [x - rng.uniform(1, 20), y - rng.uniform(1, 20), x + rng.uniform(1, 20), y + rng.uniform(1, 20)]

    return torch.tensor([[box(x, y) for x, y in points.tolist()] for _ in range(images)], dtype=torch.float64)


def padded(image_gts: list, masked: bool) -> GroundTruth:  # type: ignore[type-arg]
    slots = max(1, max(len(g) for g in image_gts))
    gts = [g + [(0, [0.0, 0.0, 0.0, 0.0])] * (slots - len(g)) for g in image_gts]
    return ground_truth(gts, masked, torch.float64)


@pytest.mark.parametrize("seed", range(6))
def test_tal_equals_a_brute_force_reference_on_random_scenes(seed: int) -> None:
    rng = random.Random(seed)
    points = torch.tensor([[4.0 + 8 * c, 4.0 + 8 * r] for r in range(8) for c in range(8)], dtype=torch.float64)
    image_gts, scores = random_scene(rng, 64, len(points), images=3)
    pred = predictions_around(points, rng, 3)
    result = TaskAlignedAssigner()(torch.tensor(scores, dtype=torch.float64), pred, points, padded(image_gts, True))
    labels, soft = reference_tal(scores, pred.tolist(), points.tolist(), image_gts, masked=True)
    assert result.labels.tolist() == labels
    assigned = result.scores.sum(-1)
    assert torch.allclose(assigned, torch.tensor(soft, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    if any(image_gts):
        assert any(label != NUM_CLASSES for row in labels for label in row)


@pytest.mark.parametrize("seed", range(6))
def test_atss_equals_a_brute_force_reference_on_random_scenes(seed: int) -> None:
    rng = random.Random(100 + seed)
    anchors, counts = atss_anchors(96)
    image_gts, _ = random_scene(rng, 96, len(anchors), images=2)
    pred = predictions_around(box_centers_of(anchors), rng, 2)
    result = ATSSAssigner()(anchors.double(), counts, padded(image_gts, True), pred, NUM_CLASSES)
    labels, soft = reference_atss(anchors.double(), counts, image_gts, pred)
    assert result.labels.tolist() == labels
    assert torch.allclose(result.scores.sum(-1), torch.tensor(soft, dtype=torch.float64), rtol=1e-9, atol=1e-12)
