"""Optimizer groups, learning-rate schedule, EMA, head re-initialisation and the recipes, against the original.

Reference numbers: `fixtures/train/optimizer_schedule.json` (SG 3.7.1's own parameter groups and the LR / EMA decay of
every step of six runs of its real Trainer) and `fixtures/train/yolo_nas_tiny_train_trajectory.npz` (per-step
`net` and `ema_net` tensors of one of those runs); provenance in `fixtures/train/README.md`. Recipe values are
those of training-facts.md §8.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from formula import FIXTURES, formula_torch_state_dict, read_keys
from yolonas_cli.core.errors import UsageError
from yolonas_cli.model.yolo_nas import arch_from_state_dict, build_model
from yolonas_cli.modes.train.ema import EMADecay, ModelEMA, ema_decay, optimizer_step_number
from yolonas_cli.modes.train.head import model_for_classes, replace_class_head, transfer_weights
from yolonas_cli.modes.train.optim import LAYERS, build_optimizer, freeze_parameters, group_names, parameter_groups
from yolonas_cli.modes.train.recipe import (
    COCO_S,
    ROBOFLOW_M,
    ROBOFLOW_S,
    ULTRALYTICS_ARGS,
    Recipe,
    apply_ultralytics_args,
    recipe_for,
    recipe_only_fields,
    ultralytics_defaults,
)
from yolonas_cli.modes.train.schedule import LRSchedule, LRScheduler, lr_at

TRAIN = FIXTURES / "train"
SCHEDULE = json.loads((TRAIN / "optimizer_schedule.json").read_text())
RUNS = SCHEDULE["runs"]
WARMUP_MODES = {"LinearEpochLRWarmup": "epoch", "LinearBatchLRWarmup": "batch"}
CLS_PRED_KEYS = tuple(f"heads.head{i}.cls_pred.{leaf}" for i in (1, 2, 3) for leaf in ("weight", "bias"))

# The fixture's cosine values were computed by numpy 1.23's AVX-512 (SVML) float64 cos, which is off by up to a
# few ulp of the cosine; we use math.cos (libm, correctly rounded in practice). Measured: numpy 1.23.5 on an
# AVX-512 CPU reproduces all 68 cosine-written values of the fixture bit for bit, math.cos differs from 18 of them
# by at most 3 ulp of the learning rate. Every value not written by the cosine is compared for exact equality.
COSINE_ULPS = 3


def untrained(variant: str) -> nn.Module:
    return build_model(arch_from_state_dict(dict(read_keys(variant))))


def formula_model(variant: str) -> nn.Module:
    state = formula_torch_state_dict(variant)
    model = build_model(arch_from_state_dict(state))
    model.load_state_dict(state)
    return model


def schedule_of(run: dict) -> LRSchedule:
    params = run["training_params"]
    return LRSchedule(
        lr0=params["initial_lr"],
        epochs=params["max_epochs"],
        warmup=WARMUP_MODES[params["warmup_mode"]],
        warmup_epochs=params["lr_warmup_epochs"],
        warmup_steps=params["lr_warmup_steps"],
        warmup_initial_lr=params["warmup_initial_lr"],
        final_lr_ratio=params["cosine_final_lr_ratio"],
        cooldown_epochs=params["lr_cooldown_epochs"],
        decay={"CosineLRScheduler": "cosine"}[params["lr_mode"]],
    )


def first_step_after_a_decay_write(run: dict) -> int:
    """The first global step whose rate the cosine can have written (facts §6: it writes after steps g >= Ws when
    Ws > 0, else after the first step of epoch We)."""
    params, per_epoch = run["training_params"], run["steps_per_epoch"]
    first = params["lr_warmup_steps"] if params["lr_warmup_steps"] > 0 else per_epoch * params["lr_warmup_epochs"]
    return first + 1


# --------------------------------------------------------------------------------------------------------
# Parameter groups
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["tiny", "s"])
def test_parameter_groups_equal_the_original(variant):
    model = untrained(variant)
    optimizer = build_optimizer(model, lr=5e-4, weight_decay=1e-4)  # the Roboflow recipe's values
    reference = SCHEDULE["param_groups"][variant]
    assert type(optimizer).__name__ == reference["optimizer_class"] == "AdamW"
    assert len(optimizer.param_groups) == len(reference["groups"]) == 2
    for group, names, ref in zip(optimizer.param_groups, group_names(optimizer, model), reference["groups"]):
        assert len(group["params"]) == ref["num_tensors"]
        assert sum(p.numel() for p in group["params"]) == ref["num_elements"]
        settings = ("lr", "weight_decay", "eps", "amsgrad")
        assert [group[k] for k in settings] == [ref[k] for k in settings]
        assert list(group["betas"]) == ref["betas"]
        assert group["name"] == ref["name"] == "default"
        if ref["params"] is not None:  # tiny: every name, in order
            assert names == ref["params"]


def test_optimizer_state_layout_equals_the_original_checkpoint():
    """The optimizer's saved groups (every setting, in order) equal those SG wrote in ckpt_latest.pth (whose LR is
    lr0 again: the run ended on the flat part of the quirk schedule)."""
    model = untrained("tiny")
    saved = build_optimizer(model, lr=5e-4, weight_decay=1e-4).state_dict()
    reference = SCHEDULE["checkpoints"]["ckpt_latest.pth"]["optimizer_state_dict"]
    assert sorted(saved) == sorted(reference["keys"])
    assert len(saved["param_groups"]) == len(reference["param_groups"])
    for group, ref in zip(saved["param_groups"], reference["param_groups"]):
        ours = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
        ours["num_params"] = len(group["params"])
        assert list(ours.items()) == list(ref.items())


def test_without_zero_decay_there_is_one_group_with_every_parameter():
    model = untrained("tiny")
    groups = parameter_groups(model, weight_decay=1e-4, zero_decay_on_bias_and_norm=False)
    assert len(groups) == 1
    assert groups[0].names == tuple(name for name, _ in model.named_parameters())
    assert groups[0].weight_decay == 1e-4


def test_rbr_reparam_parameters_never_change_under_adamw():
    """They are in the groups but get no gradient in the unfused forward, so AdamW skips them (facts §5)."""
    model = formula_model("tiny").train()
    optimizer = build_optimizer(model, lr=5e-4, weight_decay=1e-4)
    before = {k: v.clone() for k, v in model.state_dict().items() if "rbr_reparam" in k}
    scores = model(torch.rand(1, 3, 64, 64))[1]
    scores.sum().backward()
    optimizer.step()
    after = model.state_dict()
    assert len(before) == 74  # the loss fixture's `no_grad_params`: every rbr_reparam weight and bias
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    initial = formula_torch_state_dict("tiny")
    assert not torch.equal(after["heads.head1.cls_pred.weight"], initial["heads.head1.cls_pred.weight"])


# --------------------------------------------------------------------------------------------------------
# Freezing
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 1, 6, 13])
def test_freeze_count_takes_the_first_layers_out_of_the_groups(count):
    model = untrained("tiny")
    optimizer = build_optimizer(model, lr=5e-4, weight_decay=1e-4, freeze=count)
    prefixes = LAYERS[:count]
    expected_frozen = [n for n, _ in model.named_parameters() if any(n.startswith(p + ".") for p in prefixes)]
    trained = [n for group in group_names(optimizer, model) for n in group]
    assert not set(trained) & set(expected_frozen)
    assert len(trained) + len(expected_frozen) == 534
    reference = [ref["params"] for ref in SCHEDULE["param_groups"]["tiny"]["groups"]]
    for names, ref in zip(group_names(optimizer, model), reference):
        assert names == [n for n in ref if n not in expected_frozen]  # order kept
    params = dict(model.named_parameters())
    assert all(not params[n].requires_grad for n in expected_frozen)
    assert all(params[n].requires_grad for n in trained)


def test_freeze_list_mixes_layer_indices_and_name_prefixes():
    model = untrained("tiny")
    frozen = freeze_parameters(model, [0, "heads.head2.cls_pred", "neck.neck4"])
    assert frozen == tuple(
        n
        for n, _ in model.named_parameters()
        if n.startswith(("backbone.stem.", "heads.head2.cls_pred.", "neck.neck4."))
    )
    assert "heads.head2.cls_pred.weight" in frozen and "heads.head1.cls_pred.weight" not in frozen
    freeze_parameters(model, None)  # unfreezes everything
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("bad", [14, -1, [13], ["backbone.stage9"], ["backbone.stag"], 1.5, True])
def test_bad_freeze_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="freeze"):
        freeze_parameters(untrained("tiny"), bad)


def test_unknown_optimizer_is_a_usage_error():
    with pytest.raises(UsageError, match="optimizer='Lion'"):
        build_optimizer(untrained("tiny"), lr=1e-3, weight_decay=0.0, optimizer="Lion")


# --------------------------------------------------------------------------------------------------------
# Learning-rate schedule
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RUNS))
def test_lr_of_every_step_equals_the_original(name):
    run = RUNS[name]
    schedule, per_epoch = schedule_of(run), run["steps_per_epoch"]
    exact_until = first_step_after_a_decay_write(run)
    assert len(run["steps"]) == 30
    for step in run["steps"]:
        ours = lr_at(step["epoch"], step["batch_idx"], per_epoch, schedule)
        reference = step["lr"]
        where = f"{name} step {step['global_step']}"
        if step["global_step"] < exact_until:
            assert ours == reference, where
        else:
            assert abs(ours - reference) <= COSINE_ULPS * math.ulp(reference), where


@pytest.mark.parametrize("name", sorted(RUNS))
def test_stateful_scheduler_at_the_three_callback_points_gives_the_same_rates(name):
    run = RUNS[name]
    schedule, per_epoch = schedule_of(run), run["steps_per_epoch"]
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=schedule.lr0)
    scheduler = LRScheduler(optimizer, schedule, per_epoch)
    used = []
    for epoch in range(schedule.epochs):
        scheduler.epoch_start(epoch)
        for batch in range(per_epoch):
            scheduler.batch_start(epoch, batch)
            used.append(scheduler.lr)  # what optimizer.step() would use
            scheduler.step_end(epoch, batch)
    assert used == [lr_at(e, b, per_epoch, schedule) for e in range(schedule.epochs) for b in range(per_epoch)]
    assert all(abs(a - s["lr"]) <= COSINE_ULPS * math.ulp(s["lr"]) for a, s in zip(used, run["steps"]))


def test_pure_function_equals_a_replay_of_the_three_writers_on_a_grid_of_schedules():
    """lr_at finds the last write in closed form; replaying the loop with LRScheduler must give the same rates for
    every combination of warmup kind, warmup epochs/steps, cooldown, decay and epoch length."""
    grid = itertools.product(("epoch", "batch", None), (0, 1, 3), (0, 3, 7, 25), (1, 4, 7), (1, 2, 5), (0, 1))
    checked = 0
    for warmup, warm_epochs, warm_steps, per_epoch, epochs, cooldown in grid:
        for decay in ("cosine", "linear", None):
            schedule = LRSchedule(
                lr0=1e-3, epochs=epochs, warmup=warmup, warmup_epochs=warm_epochs, warmup_steps=warm_steps,
                warmup_initial_lr=1e-6, final_lr_ratio=0.1, cooldown_epochs=cooldown, decay=decay,
            )  # fmt: skip
            optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=schedule.lr0)
            scheduler = LRScheduler(optimizer, schedule, per_epoch)
            for epoch in range(epochs):
                scheduler.epoch_start(epoch)
                for batch in range(per_epoch):
                    scheduler.batch_start(epoch, batch)
                    assert scheduler.lr == lr_at(epoch, batch, per_epoch, schedule), (schedule, epoch, batch)
                    scheduler.step_end(epoch, batch)
                    checked += 1
    assert checked > 20_000


def test_inherited_warmup_steps_keep_the_peak_rate_for_1000_steps():
    """facts §6: Roboflow recipe, batch 16 on <= 512 images -> 32 steps per epoch; the cosine is enabled at step
    1000 and its progress k stays 0 until step 1000 + 3*32, so every step from epoch 3 to step 1097 runs at lr0."""
    schedule = ROBOFLOW_S.lr_schedule()
    rates = [lr_at(*divmod(g, 32), 32, schedule) for g in range(96, 1099)]
    assert rates[:-1] == [5e-4] * (1097 - 96 + 1)
    assert rates[-1] < 5e-4
    # K = 32*97 - 1000 = 2104; the last step uses k = K - 2 (facts §6).
    k, total = 2102, 2104
    expected_last = 0.5 * 5e-4 * (1 + math.cos(math.pi * k / (total + 1))) * 0.9 + 5e-4 * 0.1
    assert lr_at(99, 31, 32, schedule) == pytest.approx(expected_last, rel=1e-12)
    no_quirk = dataclasses.replace(schedule, warmup_steps=0)
    assert lr_at(3, 1, 32, no_quirk) == 5e-4 and lr_at(3, 2, 32, no_quirk) < 5e-4


def test_batch_warmup_ramp_matches_numpy_linspace_bit_for_bit():
    schedule = LRSchedule(lr0=2e-4, epochs=2, warmup="batch", warmup_steps=37, warmup_initial_lr=1e-6, warmup_epochs=0)
    ramp = np.linspace(1e-6, 2e-4, 37)
    assert [lr_at(0, b, 50, schedule) for b in range(37)] == [float(v) for v in ramp]
    single = dataclasses.replace(schedule, warmup_steps=1)
    assert lr_at(0, 0, 50, single) == 1e-6


def test_schedule_never_divides_by_zero_when_the_warmup_steps_outlast_the_run():
    # K + 1 = 2*(3 - 1) - 5 + 1 = 0: the cosine is enabled after the last step with k = 0.
    schedule = LRSchedule(lr0=1e-3, epochs=3, warmup="epoch", warmup_epochs=1, warmup_steps=5, warmup_initial_lr=1e-5)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=schedule.lr0)
    scheduler = LRScheduler(optimizer, schedule, steps_per_epoch=2)
    scheduler.step_end(2, 1)
    assert scheduler.lr == pytest.approx(1e-3, rel=1e-15)


def test_linear_decay_extension_goes_from_lr0_towards_the_final_ratio():
    schedule = LRSchedule(lr0=1e-3, epochs=4, warmup=None, decay="linear", final_lr_ratio=0.2)
    rates = [lr_at(e, b, 10, schedule) for e in range(4) for b in range(10)]
    assert rates[0] == rates[1] == 1e-3
    steps = np.diff(rates[1:])
    assert np.allclose(steps, -0.8e-3 / 41, rtol=1e-9)  # K = 40 steps: equal steps of (1 - rho)·lr0/(K + 1)
    assert rates[-1] == pytest.approx(1e-3 * (0.2 + 0.8 * (1 - 38 / 41)), rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(warmup="batch", warmup_steps=10), "warmup_initial_lr"),
        (dict(warmup="cosine"), "warmup="),
        (dict(decay="step"), "decay="),
        (dict(final_lr_ratio=1.5), "final_lr_ratio"),
        (dict(epochs=0), "epochs"),
    ],
)
def test_bad_schedule_is_a_usage_error(kwargs, message):
    with pytest.raises(UsageError, match=message):
        LRSchedule(lr0=1e-3, **{"epochs": 5, **kwargs})


# --------------------------------------------------------------------------------------------------------
# EMA
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RUNS))
def test_ema_decay_of_every_step_equals_the_original(name):
    run = RUNS[name]
    params = run["training_params"]["ema_params"]
    rule = EMADecay(params["decay"], params["decay_type"], params["beta"])
    per_epoch, total = run["steps_per_epoch"], run["steps_per_epoch"] * run["training_params"]["max_epochs"]
    for step in run["steps"]:
        t = optimizer_step_number(step["epoch"], step["batch_idx"], per_epoch)
        assert t == step["global_step"] + 1
        assert ema_decay(t, total, rule) == step["ema_decay_used"], (name, t)


def test_ema_decay_rules_by_hand():
    assert ema_decay(1, 100, EMADecay(0.9)) == 2 / 11  # threshold: (1 + t)/(10 + t) = 0.181818...
    assert ema_decay(80, 100, EMADecay(0.9)) == 0.9  # 81/90 = 0.9 reached at t = 80 (facts §7)
    assert ema_decay(29_990, 10**6, EMADecay(0.9997)) == 0.9997 > ema_decay(29_989, 10**6, EMADecay(0.9997))
    assert ema_decay(7, 100, EMADecay(0.5, "constant")) == 0.5
    assert ema_decay(50, 100, EMADecay(0.9, "exp", beta=2.0)) == pytest.approx(0.9 * (1 - math.exp(-1.0)), rel=1e-15)


def _toy() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[0].bias.fill_(-4.0)
        model[1].running_mean.fill_(1.0)
    return model


def test_ema_update_equals_the_formula_on_hand_computed_numbers():
    model = _toy()
    ema = ModelEMA(model, EMADecay(0.9), total_steps=10)
    with torch.no_grad():
        model[0].weight.fill_(10.0)
        model[0].bias.fill_(4.0)
        model[1].running_mean.fill_(9.0)
        model[1].num_batches_tracked.fill_(7)
    decay = ema.update(model, step=2)  # threshold: min(0.9, 3/12) = 0.25
    assert decay == 0.25
    state = ema.model.state_dict()
    assert torch.equal(state["0.weight"], torch.full((2, 1, 1, 1), 8.0))  # 2·0.25 + 10·0.75
    assert torch.equal(state["0.bias"], torch.full((2,), 2.0))  # −4·0.25 + 4·0.75
    assert torch.equal(state["1.running_mean"], torch.full((2,), 7.0))  # 1·0.25 + 9·0.75 (BN stats averaged too)
    assert torch.equal(state["1.running_var"], torch.ones(2))  # 1 and 1 stay 1
    assert int(state["1.num_batches_tracked"]) == 0  # integer entries keep the copy's value
    assert ema.updates == 2


def test_ema_copy_is_separate_in_eval_mode_and_without_gradients():
    model = _toy().train()
    ema = ModelEMA(model, EMADecay(0.9), total_steps=10)
    assert not ema.model.training and all(not p.requires_grad for p in ema.model.parameters())
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert torch.equal(ema.model[0].weight, torch.full((2, 1, 1, 1), 2.0))


def test_ema_of_a_wrapped_model_has_the_plain_keys():
    model = _toy()
    wrapped = nn.DataParallel(model)  # the same `.module` wrapper as DistributedDataParallel
    ema = ModelEMA(wrapped, EMADecay(0.5, "constant"), total_steps=4)
    assert list(ema.model.state_dict()) == list(model.state_dict())
    with torch.no_grad():
        model[0].bias.fill_(0.0)
    ema.update(wrapped, step=1)
    assert torch.equal(ema.model[0].bias, torch.full((2,), -2.0))  # −4·0.5 + 0·0.5


def test_ema_state_dict_round_trip():
    model = _toy()
    ema = ModelEMA(model, EMADecay(0.9997, "threshold"), total_steps=50)
    with torch.no_grad():
        model[0].weight.fill_(3.0)
    ema.update(model, step=5)
    restored = ModelEMA(_toy(), EMADecay(0.5, "constant"), total_steps=1)
    restored.load_state_dict(ema.state_dict())
    assert (restored.rule, restored.total_steps, restored.updates) == (ema.rule, 50, 5)
    for key, value in ema.model.state_dict().items():
        assert torch.equal(restored.model.state_dict()[key], value)


def test_ema_of_the_trajectory_run_equals_the_original_bit_for_bit():
    """Feed the original's per-step `net` values into the model and update the EMA after each of the 30 steps:
    the EMA tensors equal the original's `ema_net` after every step, exactly."""
    with np.load(TRAIN / "yolo_nas_tiny_train_trajectory.npz") as data:
        ref = {k: data[k] for k in data.files if k.startswith(("per_step:", "ema_net:", "net:"))}
    keys = [k.split(":", 2)[2] for k in ref if k.startswith("per_step:net:")]
    assert len(keys) == 7
    model = formula_model("tiny")
    ema = ModelEMA(model, EMADecay(0.9, "threshold", 15), total_steps=30)
    live = model.state_dict()
    for t in range(1, 31):
        with torch.no_grad():
            for key in keys:
                live[key].copy_(torch.from_numpy(ref[f"per_step:net:{key}"][t - 1]))
        ema.update(model, t)
        averaged = ema.model.state_dict()
        for key in keys:
            assert np.array_equal(averaged[key].numpy(), ref[f"per_step:ema_net:{key}"][t - 1]), (key, t)
    bn_count = "heads.head1.stem.seq.bn.num_batches_tracked"
    live[bn_count].fill_(int(ref[f"net:{bn_count}"]))  # 30 in the trained model
    ema.update(model, 31)
    assert int(ema.model.state_dict()[bn_count]) == int(ref[f"ema_net:{bn_count}"]) == 0


# --------------------------------------------------------------------------------------------------------
# Head re-initialisation and transfer
# --------------------------------------------------------------------------------------------------------
def test_new_class_count_replaces_only_the_three_cls_pred_convs():
    state = formula_torch_state_dict("tiny")
    torch.manual_seed(0)
    model, report = model_for_classes(state, 5)
    new = model.state_dict()
    assert list(new) == list(state)  # same keys, same order
    assert report.reinitialised == CLS_PRED_KEYS
    assert report.kept == tuple(k for k in state if k not in CLS_PRED_KEYS)
    assert (report.old_num_classes, report.num_classes) == (80, 5)
    for key in report.kept:
        assert torch.equal(new[key], state[key]), key
    for key in CLS_PRED_KEYS:
        assert new[key].shape == (5, *state[key].shape[1:]), key
    assert model.arch.num_classes == model.heads.num_classes == 5
    _, scores = model(torch.rand(1, 3, 64, 64))
    assert scores.shape == (1, 64 + 16 + 4, 5)
    assert all(p.requires_grad for p in model.heads.head1.cls_pred.parameters())


def test_new_head_weights_follow_the_old_mean_and_std():
    """Many classes give large samples: the sample mean must lie within 5 standard errors (σ/√n) of the old mean
    and the sample std within 5 standard errors (≈ σ/√(2n) for a normal sample) of the old std."""
    state = formula_torch_state_dict("tiny")
    torch.manual_seed(1234)
    model, _ = model_for_classes(state, 2000)
    new = model.state_dict()
    for key in CLS_PRED_KEYS:
        old = state[key].double()
        drawn = new[key].double()
        n, sigma = drawn.numel(), old.std().item()
        assert abs(drawn.mean().item() - old.mean().item()) <= 5 * sigma / math.sqrt(n), key
        assert abs(drawn.std().item() - sigma) <= 5 * sigma / math.sqrt(2 * n), key
    # The bias is not reset to the prior (−4.595): it scatters around the old bias mean (formula: −4 ± 0.1).
    assert abs(new["heads.head1.cls_pred.bias"].mean().item() + 4.0) < 0.01


def test_head_draws_come_from_torch_global_generator_as_in_the_original():
    """Same seed, same head; another seed, another head; and the stream is the original's: per head, a fresh
    Conv2d (its default init consumes draws), then normal_ on the weight, then on the bias."""
    state = formula_torch_state_dict("tiny")
    heads = []
    for seed in (7, 7, 8):
        model = formula_model("tiny")  # building draws from the generator too: seed after it
        torch.manual_seed(seed)
        replace_class_head(model, 3)
        heads.append(model.state_dict())
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in CLS_PRED_KEYS)
    assert not torch.equal(heads[0]["heads.head1.cls_pred.weight"], heads[2]["heads.head1.cls_pred.weight"])
    torch.manual_seed(7)
    for i in (1, 2, 3):
        weight, bias = state[f"heads.head{i}.cls_pred.weight"], state[f"heads.head{i}.cls_pred.bias"]
        conv = nn.Conv2d(weight.shape[1], 3, 1)
        with torch.no_grad():
            conv.weight.normal_(weight.mean().item(), weight.std(dim=(0, 1, 2, 3)).item())
            conv.bias.normal_(bias.mean().item(), bias.std(dim=0).item())
        assert torch.equal(heads[0][f"heads.head{i}.cls_pred.weight"], conv.weight)
        assert torch.equal(heads[0][f"heads.head{i}.cls_pred.bias"], conv.bias)


def test_same_class_count_changes_nothing():
    model = formula_model("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = replace_class_head(model, 80)
    assert report.reinitialised == () and len(report.kept) == 921
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_bad_class_count_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="num_classes"):
        replace_class_head(formula_model("tiny"), bad)


def test_transfer_by_name_and_shape_reports_what_did_not_transfer():
    state = formula_torch_state_dict("tiny")
    target = formula_model("tiny")
    replace_class_head(target, 4)
    untouched = {k: target.state_dict()[k].clone() for k in CLS_PRED_KEYS}
    with torch.no_grad():
        for value in target.state_dict().values():
            value.zero_()  # so that a copied tensor is visible
    for key, value in untouched.items():
        target.state_dict()[key].copy_(value)
    partial = dict(state)
    del partial["neck.neck1.upsample.bias"]
    partial["extra.weight"] = torch.ones(3)
    report = transfer_weights(target, partial)
    assert report.mismatched == tuple((k, tuple(state[k].shape), tuple(untouched[k].shape)) for k in CLS_PRED_KEYS)
    assert report.missing == ("neck.neck1.upsample.bias",)
    assert report.unexpected == ("extra.weight",)
    assert len(report.transferred) == 921 - 6 - 1 and not report.complete
    own = target.state_dict()
    for key in report.transferred:
        assert torch.equal(own[key], state[key]), key
    for key in CLS_PRED_KEYS:
        assert torch.equal(own[key], untouched[key]), key
    assert torch.count_nonzero(own["neck.neck1.upsample.bias"]) == 0
    assert "transferred 914/921" in report.summary()


# --------------------------------------------------------------------------------------------------------
# Recipes and Ultralytics names
# --------------------------------------------------------------------------------------------------------
def _as_sg_training_params(recipe: Recipe) -> dict:
    """The recipe in the vocabulary of the fixture's `training_params`."""
    return {
        "max_epochs": recipe.epochs,
        "initial_lr": recipe.lr0,
        "warmup_mode": {"epoch": "LinearEpochLRWarmup", "batch": "LinearBatchLRWarmup"}[recipe.warmup],
        "warmup_initial_lr": recipe.warmup_initial_lr,
        "lr_warmup_epochs": recipe.warmup_epochs,
        "lr_warmup_steps": recipe.lr_warmup_steps,
        "lr_cooldown_epochs": recipe.cooldown_epochs,
        "lr_mode": {"cosine": "CosineLRScheduler"}[recipe.decay],
        "cosine_final_lr_ratio": recipe.final_lr_ratio,
        "optimizer": recipe.optimizer,
        "optimizer_params": {"weight_decay": recipe.weight_decay},
        "ema": recipe.ema,
        "ema_params": {"decay": recipe.ema_decay, "decay_type": recipe.ema_decay_type, "beta": recipe.ema_beta},
        "zero_weight_decay_on_bias_and_bn": recipe.zero_decay_on_bias_and_norm,
        "batch_accumulate": 1,
        "clip_grad_norm": None,
    }


@pytest.mark.parametrize(
    "recipe, run, overrides",
    [
        (ROBOFLOW_S, "roboflow_recipe", {"epochs": 6}),
        (ROBOFLOW_S, "trajectory_roboflow_atss", {"epochs": 6}),
        (COCO_S, "coco_recipe_batch_warmup", {"epochs": 3, "lr_warmup_steps": 8}),
    ],
)
def test_recipes_equal_the_training_params_sg_resolved(recipe, run, overrides):
    """The fixture runs used the recipes as SG resolved them, plus the listed overrides."""
    assert _as_sg_training_params(dataclasses.replace(recipe, **overrides)) == RUNS[run]["training_params"]
    assert RUNS[run]["criterion_params"]["use_static_assigner"] is (run == "trajectory_roboflow_atss")
    assert recipe.static_assigner is False


def _subset(record: object, expected: dict) -> dict:
    return {name: getattr(record, name) for name in expected}


def test_recipe_values_from_the_facts_table():
    """training-facts.md §8 (recipes) and §9.3 (pipelines)."""
    roboflow_s = dict(lr0=5e-4, weight_decay=1e-4, batch=16, epochs=100, metric="mAP50", warmup="epoch")
    roboflow_s |= dict(warmup_epochs=3, lr_warmup_steps=1000, warmup_initial_lr=1e-6, ema_decay=0.9)
    assert _subset(ROBOFLOW_S, roboflow_s) == roboflow_s
    roboflow_m = dict(lr0=4e-4, batch=12, weight_decay=1e-4)
    assert _subset(ROBOFLOW_M, roboflow_m) == roboflow_m
    coco = dict(lr0=2e-4, weight_decay=1e-5, ema_decay=0.9997, epochs=300, warmup="batch", metric="mAP50-95")
    assert _subset(COCO_S, coco) == coco
    roboflow_pipeline = dict(mosaic=1.0, translate=0.1, scale=(0.5, 1.5), affine_border=128, hsv_prob=1.0, hsv_h=5.0)
    roboflow_pipeline |= dict(mixup=0.0, bgr=0.0, filter_boxes=False, min_samples=512)
    assert _subset(ROBOFLOW_S.augment, roboflow_pipeline) == roboflow_pipeline
    coco_pipeline = dict(mosaic=0.0, translate=0.25, bgr=0.5, hsv_prob=0.5, hsv_h=18.0, mixup=0.5, filter_boxes=True)
    assert _subset(COCO_S.augment, coco_pipeline) == coco_pipeline
    loss = dict(static_assigner=False, cls_weight=1.0, iou_weight=2.5, dfl_weight=0.5)
    assert _subset(ROBOFLOW_S, loss) == loss
    assert recipe_for("roboflow", "yolo_nas_m") is ROBOFLOW_M
    assert recipe_for("roboflow", "yolo_nas_l").lr0 == 4e-4  # no L recipe in SG: M's values
    assert recipe_for("coco", None) is COCO_S
    with pytest.raises(UsageError, match="recipe='imagenet'"):
        recipe_for("imagenet", "yolo_nas_s")


def test_the_roboflow_recipe_schedule_reproduces_the_quirk_run():
    schedule = dataclasses.replace(ROBOFLOW_S, epochs=6).lr_schedule()
    run = RUNS["roboflow_recipe"]
    assert [lr_at(s["epoch"], s["batch_idx"], 5, schedule) for s in run["steps"]] == [s["lr"] for s in run["steps"]]


def test_ultralytics_names_round_trip_and_convert():
    defaults = ultralytics_defaults(ROBOFLOW_S)
    assert apply_ultralytics_args(ROBOFLOW_S, defaults) == ROBOFLOW_S
    assert defaults["scale"] == 0.5 and defaults["imgsz"] == 640 and defaults["cos_lr"] is True
    assert defaults["hsv_h"] == pytest.approx(5 / 180) and defaults["hsv_s"] == pytest.approx(30 / 255)
    changed = apply_ultralytics_args(
        ROBOFLOW_S, {"lr0": 1e-3, "lrf": 0.05, "scale": 0.25, "cos_lr": False, "imgsz": 320, "patience": 5}
    )
    assert (changed.lr0, changed.final_lr_ratio, changed.decay) == (1e-3, 0.05, "linear")
    assert changed.augment.scale == (0.75, 1.25)
    assert changed.augment.input_size == (320, 320)
    assert changed.lr_schedule().lr0 == 1e-3
    with pytest.raises(UsageError, match="whole number"):
        apply_ultralytics_args(ROBOFLOW_S, {"warmup_epochs": 2.5})
    with pytest.raises(UsageError, match="'lr00'"):
        apply_ultralytics_args(ROBOFLOW_S, {"lr00": 1e-3})
    with pytest.raises(UsageError, match="final_lr_ratio"):
        apply_ultralytics_args(ROBOFLOW_S, {"lrf": 2.0})


def test_every_mapped_field_exists_and_recipe_only_fields_are_listed():
    for arg in ULTRALYTICS_ARGS:
        if arg.field is None:
            assert arg.note, arg.name  # every missing equivalent says why
            continue
        holder = ROBOFLOW_S
        for part in arg.field.split("."):
            assert hasattr(holder, part), arg.field
            holder = getattr(holder, part)
    only = recipe_only_fields()
    expected = ("lr_warmup_steps", "warmup_initial_lr", "ema_decay", "ema_decay_type", "warmup", "augment.mixup_scale")
    assert set(expected) <= set(only)
    assert "lr0" not in only and "augment.mosaic" not in only
