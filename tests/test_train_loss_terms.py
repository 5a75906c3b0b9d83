"""The loss's parts on cases computed by hand: target padding, box decoding, GIoU, DFL, varifocal, DFL target
clipping, a batch without boxes, an image without boxes, and the DDP sums (two gloo processes on this
machine against one process with the whole batch)."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from yolonas_cli.model.yolo_nas import TrainOutputs
from yolonas_cli.modes.train.loss import (
    PPYoloELoss,
    box_to_distances,
    decode_boxes,
    dfl_loss,
    giou_loss,
    pad_targets,
    varifocal_sum,
)

SYNTHETIC = Path(__file__).parent / "fixtures" / "train" / "synthetic_loss_2x160x160_c5.npz"


def synthetic() -> tuple[TrainOutputs, torch.Tensor]:
    """The synthetic fixture's raw outputs (5 classes, 2 images of 160x160, 525 anchors) and targets."""
    with np.load(SYNTHETIC) as data:
        ref = {k: data[k] for k in data.files}
    outputs = TrainOutputs(
        cls_logits=torch.from_numpy(ref["cls_logits"]).requires_grad_(),
        reg_distri=torch.from_numpy(ref["reg_distri"]).requires_grad_(),
        anchors=torch.from_numpy(ref["anchors"]),
        anchor_points=torch.from_numpy(ref["anchor_points"]),
        num_anchors_list=ref["num_anchors_list"].tolist(),
        stride_tensor=torch.from_numpy(ref["stride_tensor"]),
    )
    return outputs, torch.from_numpy(ref["targets"])


def test_targets_are_padded_per_image_in_row_order() -> None:
    targets = torch.tensor(
        [
            [1, 4, 50.0, 40.0, 20.0, 10.0],
            [0, 2, 10.0, 10.0, 4.0, 6.0],
            [1, 3, 30.0, 30.0, 10.0, 10.0],
            [3, 1, 8.0, 8.0, 2.0, 2.0],  # image 3 does not exist in a batch of 3: ignored
        ]
    )
    gt = pad_targets(targets, batch_size=3)
    assert gt.labels.shape == (3, 2, 1) and gt.boxes.shape == (3, 2, 4) and gt.mask is not None
    assert gt.labels[:, :, 0].tolist() == [[2, 0], [4, 3], [0, 0]]
    assert gt.boxes[0].tolist() == [[8.0, 7.0, 12.0, 13.0], [0.0, 0.0, 0.0, 0.0]]
    assert gt.boxes[1].tolist() == [[40.0, 35.0, 60.0, 45.0], [25.0, 25.0, 35.0, 35.0]]
    assert gt.mask[:, :, 0].tolist() == [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    assert pad_targets(torch.zeros(0, 6), batch_size=2).boxes.shape == (2, 0, 4)


def test_decoding_takes_the_expected_bin_of_each_side() -> None:
    """Logits peaked (+30) at bin k give a distance of k grid units on that side."""
    logits = torch.full((1, 2, 4, 17), -30.0)
    for anchor, bins in enumerate([(0, 1, 2, 3), (16, 5, 0, 7)]):
        for side, k in enumerate(bins):
            logits[0, anchor, side, k] = 30.0
    points = torch.tensor([[0.5, 0.5], [10.5, 3.5]])
    boxes = decode_boxes(points, logits.reshape(1, 2, 68))
    expected = torch.tensor([[[0.5, -0.5, 2.5, 3.5], [-5.5, -1.5, 10.5, 10.5]]])
    assert torch.allclose(boxes, expected, atol=1e-5)


def test_giou_loss_by_hand() -> None:
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    target = torch.tensor([[0.0, 0.0, 2.0, 2.0], [2.0, 0.0, 3.0, 1.0], [1.0, 1.0, 3.0, 3.0]])
    # identical: 0; disjoint, union 2 in an enclosing 3x1: 1 - (0 - 1/3); overlap 1, union 7, enclosing 9:
    # 1 - (1/7 - 2/9)
    expected = [0.0, 4 / 3, 1 - (1 / 7 - 2 / 9)]
    assert giou_loss(pred, target)[:, 0].tolist() == pytest.approx(expected, abs=1e-6)


def test_dfl_loss_by_hand() -> None:
    uniform = torch.zeros(1, 4, 17)
    target = torch.tensor([[2.25, 0.0, 7.5, 15.99]])
    assert dfl_loss(uniform, target).item() == pytest.approx(math.log(17), rel=1e-6)
    logits = torch.arange(17.0).repeat(1, 4, 1) / 4  # log-softmax of bin k: k/4 - logsumexp
    log_norm = math.log(sum(math.exp(k / 4) for k in range(17)))

    def ce(k: int) -> float:
        return log_norm - k / 4

    sides = [0.75 * ce(2) + 0.25 * ce(3), ce(0), 0.5 * ce(7) + 0.5 * ce(8), 0.01 * ce(15) + 0.99 * ce(16)]
    assert dfl_loss(logits, target).item() == pytest.approx(sum(sides) / 4, rel=1e-5)


def test_dfl_targets_are_clipped_to_the_last_bin() -> None:
    points = torch.tensor([[2.5, 2.5]])
    boxes = torch.tensor([[[-30.0, 1.0, 4.0, 40.0]]])  # grid units
    assert box_to_distances(points, boxes, reg_max=16)[0, 0].tolist() == pytest.approx([15.99, 1.5, 1.5, 15.99])
    inverted = torch.tensor([[[3.0, 3.0, 2.0, 2.0]]])  # point outside: negative distances clip to 0
    assert box_to_distances(points, inverted, reg_max=16).tolist() == [[[0.0, 0.0, 0.0, 0.0]]]


def test_varifocal_weights_by_hand() -> None:
    """x = 0 everywhere: BCE(0, q) = log 2; a positive weighs q, a negative 0.75 * sigmoid(0)^2 = 0.1875."""
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    soft = torch.tensor([[[0.0, 0.6, 0.0], [0.0, 0.0, 0.0]]])
    one_hot = torch.tensor([[[0, 1, 0], [0, 0, 0]]])
    total = varifocal_sum(logits, soft, one_hot)
    assert total.item() == pytest.approx((0.6 + 5 * 0.1875) * math.log(2), rel=1e-6)
    total.backward()
    assert logits.grad is not None
    # Negative: d/dx [0.75 s^2 log(1 + e^x)] at 0 = 0.75 (2 s s' log 2 + s^2 s) with s = 1/2, s' = 1/4: the
    # weight's own derivative counts (it is not detached).
    negative = 0.75 * (2 * 0.5 * 0.25 * math.log(2) + 0.25 * 0.5)
    assert logits.grad[0, 1, 0].item() == pytest.approx(negative, rel=1e-6)
    assert logits.grad[0, 0, 1].item() == pytest.approx(0.6 * (0.5 - 0.6), rel=1e-6)  # q (sigmoid - q)


@pytest.mark.parametrize("static", [False, True])
def test_a_batch_without_boxes_learns_background_only(static: bool) -> None:
    outputs, _ = synthetic()
    loss, components = PPYoloELoss(5, use_static_assigner=static)(outputs, torch.zeros(0, 6))
    x = outputs.cls_logits.detach().double()
    expected_cls = (0.75 * torch.sigmoid(x) ** 2 * torch.nn.functional.softplus(x)).sum().item()  # S = 1
    assert components.tolist() == pytest.approx([expected_cls, 0.0, 0.0, expected_cls], rel=1e-5)
    loss.backward()
    assert outputs.reg_distri.grad is not None and not outputs.reg_distri.grad.any()  # graph kept, zero


@pytest.mark.parametrize("static", [False, True])
def test_an_image_without_boxes_only_adds_background(static: bool) -> None:
    """Adding a third image with no boxes changes the classification sum only (by its background term) and
    leaves the other two images' assignment as it was."""
    outputs, targets = synthetic()
    three = outputs._replace(
        cls_logits=torch.cat([outputs.cls_logits.detach(), torch.full((1, 525, 5), -3.0)]),
        reg_distri=torch.cat([outputs.reg_distri.detach(), torch.zeros(1, 525, 68)]),
    )
    loss_fn = PPYoloELoss(5, use_static_assigner=static)
    two_assigned, three_assigned = loss_fn.assign(outputs, targets), loss_fn.assign(three, targets)
    assert torch.equal(three_assigned.labels[:2], two_assigned.labels)
    assert torch.equal(three_assigned.labels[2], torch.full((525,), 5))
    assert not three_assigned.scores[2].any() and not three_assigned.boxes[2].any()
    _, two = loss_fn(outputs, targets)
    _, with_empty = loss_fn(three, targets)
    normaliser = max(float(two_assigned.scores.sum()), 1.0)
    extra = 525 * 5 * 0.75 * torch.sigmoid(torch.tensor(-3.0)).item() ** 2 * math.log1p(math.exp(-3.0))
    assert with_empty[0].item() == pytest.approx(two[0].item() + extra / normaliser, rel=1e-5)
    assert with_empty[1:3].tolist() == pytest.approx(two[1:3].tolist(), rel=1e-6)


# --------------------------------------------------------------------------------------------------------
# DDP: two gloo processes, one image each, against one process with both images
# --------------------------------------------------------------------------------------------------------
def _ddp_worker(rank: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        outputs, targets = synthetic()
        mine = outputs._replace(
            cls_logits=outputs.cls_logits.detach()[rank : rank + 1].clone().requires_grad_(),
            reg_distri=outputs.reg_distri.detach()[rank : rank + 1].clone().requires_grad_(),
        )
        rows = targets[targets[:, 0] == rank].clone()
        rows[:, 0] = 0
        loss, components = PPYoloELoss(5, use_static_assigner=False)(mine, rows)
        loss.backward()
        torch.save(
            {"components": components, "cls": mine.cls_logits.grad, "reg": mine.reg_distri.grad},
            Path(folder) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_ddp_sums_equal_one_process_with_the_whole_batch(tmp_path: Path) -> None:
    """World size 2: every sum is the global one and S their mean, so each process logs twice the
    one-process loss and its gradients are twice its images' share; DDP's averaging then gives the one-process
    gradient (training-facts §3.10)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.start_processes(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    outputs, targets = synthetic()
    loss, single = PPYoloELoss(5, use_static_assigner=False)(outputs, targets)
    loss.backward()
    assert outputs.cls_logits.grad is not None and outputs.reg_distri.grad is not None
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(result["components"], 2 * single, rtol=1e-6, atol=0)
        # Summation order differs (per process, then across): measured <= 1e-6 of each tensor's max.
        for name, full in (("cls", outputs.cls_logits.grad), ("reg", outputs.reg_distri.grad)):
            share = result[name][0] / 2
            assert (share - full[rank]).abs().max() <= 1e-5 * full[rank].abs().max(), name
