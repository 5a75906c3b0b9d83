"""The training loop's optimisation step replayed against the original's own 30-step run
(`fixtures/train/yolo_nas_tiny_train_trajectory.npz`, provenance in `fixtures/train/README.md`): tiny model with the
formula weights, the Roboflow recipe (AdamW, epoch warmup from 1e-6, the inherited 1000 warmup steps keeping the
cosine off, EMA threshold 0.9), the ATSS assigner, BatchNorm in train mode, 6 epochs of the same 5 batches.

Each step goes through `step.optimisation_step`, the function the loop runs, with the loop's scheduler calls
around it. Checked at every step: the learning rate the optimizer step used and the EMA step count (exactly), the
logged loss components and the stored per-step tensors of `net` and `ema_net`; after the run every stored tensor.

Tolerances: on the fixtures' kernels (AVX2, 2 threads; the file re-runs itself pinned) every value is the
original's bit for bit: measured 0.0 at all 30 steps. On other kernels the README describes the drift (AdamW turns
rounding-level gradient differences into lr-sized steps): first 6 steps <= 2e-7 (loss) / 5e-7 (tensors), then
growing to ~5e-3 relative loss and ~4e-3 absolute stem weights after 30 steps. The bounds double every step from
the README's first-step values and stop at the README's 30-step values; measured on this AVX-512 machine (largest
over the step ranges 0-5, 6-9, 10-19, 20-29): loss 1.2e-7, 4.0e-6, 2.6e-3, 3.5e-3 relative; tensors 1.3e-6 (step 5:
1.3e-6 < 1.6e-5 bound), 6.9e-5, 1.6e-3, 3.6e-3 absolute (2 threads); with 1 thread the closest step to its bound
is step 8 (loss 3.7e-5 against 5.1e-5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from avx2 import PINNED_THREADS, can_pin, kernels_pinned, run_pinned
from formula import FIXTURES, formula_torch_state_dict
from yolonas_cli.model.yolo_nas import arch_from_state_dict, build_model
from yolonas_cli.modes.train.ema import ModelEMA
from yolonas_cli.modes.train.loss import PPYoloELoss
from yolonas_cli.modes.train.optim import build_optimizer
from yolonas_cli.modes.train.recipe import ROBOFLOW_S
from yolonas_cli.modes.train.schedule import LRScheduler
from yolonas_cli.modes.train.step import StepParts, TrainingForward, optimisation_step

TRAJECTORY = FIXTURES / "train" / "yolo_nas_tiny_train_trajectory.npz"
EPOCHS, STEPS_PER_EPOCH = 6, 5
PINNED = kernels_pinned()
LOSS_FIRST, LOSS_LAST = (0.0, 0.0) if PINNED else (2e-7, 5e-3)  # README: first steps, after 30 steps
TENSOR_FIRST, TENSOR_LAST = (0.0, 0.0) if PINNED else (5e-7, 5e-3)
# After the run, every stored tensor (heads.* and a few backbone/neck tensors), off the fixture kernels: the drift
# is largest in the P5 head's BatchNorm statistics, measured 1.4e-2 (2 threads) and 1.9e-2 (1 thread) absolute
# on values of about 0.1 to 0.5; pinned: 0.0.
FINAL_ABS = 0.0 if PINNED else 3e-2
# The fixtures' 2 threads where exactness is demanded; elsewhere 1 (the bounds hold for both: measured with both;
# on 2 shared cores 2 threads ran this module ten times slower when the machine was busy).
THREADS = PINNED_THREADS if PINNED else 1


def bound(first: float, last: float, step: int) -> float:
    """The tolerance of step `step` (0-based): `first`, doubling each step, at most `last`."""
    return min(first * 2.0**step, last)


@pytest.fixture(autouse=True, scope="module")
def _fixture_thread_count() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(TRAJECTORY) as data:
        return {key: data[key] for key in data.files}


def batch(reference: dict[str, np.ndarray], index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `index`: images 2k, 2k+1 as the loader fed them (u8 / 255 in float32) and targets [N, 6]."""
    images, targets = [], []
    for slot, image in enumerate((2 * index, 2 * index + 1)):
        images.append(torch.from_numpy(reference[f"train_image_u8:{image}"]).float() / 255)
        rows = torch.from_numpy(reference[f"train_target:{image}"])
        targets.append(torch.cat([torch.full((len(rows), 1), float(slot)), rows], 1))
    return torch.stack(images), torch.cat(targets)


@dataclasses.dataclass
class Replay:
    """Our run of the fixture's 30 steps, with what each step recorded."""

    parts: StepParts
    lrs: list[float]
    components: list[np.ndarray]
    ema_updates: list[int]
    worst_tensor: list[float]


@pytest.fixture(scope="module")
def replay(reference: dict[str, np.ndarray]) -> Replay:
    state = formula_torch_state_dict("tiny")
    model = build_model(arch_from_state_dict(state))
    model.load_state_dict(state)
    recipe = dataclasses.replace(ROBOFLOW_S, epochs=EPOCHS)
    optimizer = build_optimizer(model, recipe.lr0, recipe.weight_decay)
    rule = recipe.ema_rule()
    assert rule is not None
    parts = StepParts(
        model=model,
        forward=TrainingForward(model),
        loss=PPYoloELoss(int(reference["num_classes"]), use_static_assigner=True),
        optimizer=optimizer,
        scheduler=LRScheduler(optimizer, recipe.lr_schedule(), STEPS_PER_EPOCH),
        ema=ModelEMA(model, rule, EPOCHS * STEPS_PER_EPOCH),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        autocast=False,
        steps_per_epoch=STEPS_PER_EPOCH,
    )
    lrs: list[float] = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
    run = Replay(parts, lrs, [], [], [])
    per_step = [key for key in reference if key.startswith("per_step:")]
    for epoch in range(EPOCHS):
        parts.scheduler.epoch_start(epoch)
        model.train()
        for index in range(STEPS_PER_EPOCH):
            images, targets = batch(reference, index)
            run.components.append(optimisation_step(parts, epoch, index, images, targets).numpy())
            run.ema_updates.append(parts.ema.updates)  # type: ignore[union-attr]
            step = len(run.components) - 1
            run.worst_tensor.append(max(per_step_difference(parts, reference, key, step) for key in per_step))
    return run


def per_step_difference(parts: StepParts, reference: dict[str, np.ndarray], key: str, step: int) -> float:
    _, which, name = key.split(":", 2)
    source = parts.model if which == "net" else parts.ema.model  # type: ignore[union-attr]
    return float(np.abs(source.state_dict()[name].numpy() - reference[key][step]).max())


def test_learning_rate_of_every_step_equals_the_original(replay: Replay, reference: dict[str, np.ndarray]) -> None:
    assert replay.lrs == reference["lr_per_step"].tolist()


def test_ema_is_updated_after_every_step_with_its_count(replay: Replay) -> None:
    assert replay.ema_updates == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))


def test_loss_of_every_step_follows_the_original(replay: Replay, reference: dict[str, np.ndarray]) -> None:
    expected = reference["loss_components_per_step"]
    for step, components in enumerate(replay.components):
        relative = float(np.abs(components - expected[step]).max() / np.abs(expected[step]).max())
        assert relative <= bound(LOSS_FIRST, LOSS_LAST, step), (step, relative)


def test_weights_and_ema_of_every_step_follow_the_original(replay: Replay) -> None:
    for step, worst in enumerate(replay.worst_tensor):
        assert worst <= bound(TENSOR_FIRST, TENSOR_LAST, step), (step, worst)


def test_every_stored_tensor_after_the_run(replay: Replay, reference: dict[str, np.ndarray]) -> None:
    finals = [key for key in reference if key.startswith(("net:", "ema_net:"))]
    assert len(finals) > 40
    for key in finals:
        which, name = key.split(":", 1)
        source = replay.parts.model if which == "net" else replay.parts.ema.model  # type: ignore[union-attr]
        ours = source.state_dict()[name].numpy()
        if not np.issubdtype(ours.dtype, np.floating):  # num_batches_tracked: 30 in net, 0 in the EMA
            assert np.array_equal(ours, reference[key]), key
            continue
        assert np.abs(ours - reference[key]).max() <= FINAL_ABS, key


def test_pinned_run_is_exact() -> None:
    """Inside the pinned run the bounds are zero; outside they are the measured noise."""
    assert (LOSS_LAST == 0.0) == PINNED


@pytest.mark.slow
@pytest.mark.skipif(PINNED, reason="this is the pinned run itself")
@pytest.mark.skipif(not can_pin(), reason="torch's AVX2 kernels need an x86-64 CPU with AVX2")
def test_bit_identical_under_the_fixture_kernels() -> None:
    passed, _ = run_pinned(__file__, "original or after_every or after_the_run or pinned_run")
    assert passed == 6
