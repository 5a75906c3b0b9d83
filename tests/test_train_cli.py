"""`yolo-nas train` on the command line: its arguments (help, cfg, checks, defaults from the recipe table) and every
bad input of the issue through the installed command (one line, its exit code, no traceback, nothing
half-written)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from formula import formula_torch_state_dict
from train_runs import NO_AUGMENTATION, error_lines, leftovers, start, write_shapes, yolo_nas
from yolonas_cli.cfg import TrainArgs, arg_fields, defaults, make_args
from yolonas_cli.cli import app
from yolonas_cli.cli.parse import parse_args
from yolonas_cli.core.errors import UsageError
from yolonas_cli.detector import Detector
from yolonas_cli.modes.train import argument_tokens
from yolonas_cli.modes.train.distributed import launch_command
from yolonas_cli.modes.train.prepare import training_recipe
from yolonas_cli.modes.train.recipe import COCO_S, RECIPES, ROBOFLOW_S, ULTRALYTICS_ARGS, ultralytics_defaults
from yolonas_cli.weights.checkpoint import read_checkpoint, save_checkpoint

ISSUE_ARGUMENTS = [
    "epochs",
    "batch",
    "imgsz",
    "device",
    "workers",
    "optimizer",
    "lr0",
    "lrf",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "cos_lr",
    "patience",
    "save_period",
    "seed",
    "deterministic",
    "amp",
    "close_mosaic",
    "fraction",
    "freeze",
    "resume",
    "project",
    "name",
    "exist_ok",
    "val",
    "plots",
    "mosaic",
    "mixup",
    "degrees",
    "translate",
    "scale",
    "shear",
    "flipud",
    "fliplr",
    "hsv_h",
    "hsv_s",
    "hsv_v",
    "cache",
]


# ---------------------------------------------------------------------------------------- the arguments


def test_every_argument_of_the_issue_is_a_train_argument() -> None:
    assert set(ISSUE_ARGUMENTS) <= set(arg_fields("train"))
    assert {"model", "data", "recipe", "pretrained"} <= set(arg_fields("train"))


def test_defaults_are_the_recipe_values_or_none_where_the_recipes_differ() -> None:
    """A literal default must be every recipe's value (S, M, L; roboflow and coco); an argument whose value
    differs between them defaults to None (= the chosen recipe's), and its help names each recipe's value."""
    values = [ultralytics_defaults(recipe) for recipe in RECIPES.values()]
    for arg in ULTRALYTICS_ARGS:
        if arg.field is None or arg.name not in arg_fields("train") or arg.name in ("imgsz", "optimizer"):
            continue
        default = defaults("train")[arg.name]
        seen = {repr(v[arg.name]) for v in values}
        if default is None:
            assert len(seen) > 1, f"{arg.name}: every recipe has {seen}, it should be the default"
            help_text = arg_fields("train")[arg.name].metadata["help"]
            numbers = numbers_in(help_text.partition("None = ")[2])
            for recipe in (ROBOFLOW_S, COCO_S):
                value = ultralytics_defaults(recipe)[arg.name]
                assert any(math.isclose(value, n, rel_tol=2e-3) for n in numbers), (arg.name, value, help_text)
        else:
            assert seen == {repr(default)}, (arg.name, default, seen)
    assert defaults("train")["imgsz"] == ultralytics_defaults(ROBOFLOW_S)["imgsz"] == 640
    assert defaults("train")["optimizer"] == "auto" and ROBOFLOW_S.optimizer == COCO_S.optimizer == "AdamW"


def test_recipe_argument_chooses_the_original_recipe_and_given_arguments_change_it() -> None:
    """The run's recipe (prepare.training_recipe): the values of training-facts.md §8's table for recipe= and the
    model size, with only the arguments given changing it."""
    coco = training_recipe(TrainArgs(recipe="coco"), "yolo_nas_s")
    assert coco == COCO_S
    assert (coco.epochs, coco.lr0, coco.weight_decay, coco.warmup, coco.warmup_epochs) == (300, 2e-4, 1e-5, "batch", 0)
    assert (coco.ema_decay, coco.metric, coco.batch) == (0.9997, "mAP50-95", 32)
    medium = training_recipe(TrainArgs(), "yolo_nas_m")
    assert (medium.name, medium.epochs, medium.lr0, medium.weight_decay) == ("roboflow", 100, 4e-4, 1e-4)
    assert medium.batch == 12
    assert (medium.warmup, medium.warmup_epochs, medium.ema_decay, medium.metric) == ("epoch", 3, 0.9, "mAP50")
    given = training_recipe(TrainArgs(lr0=1e-3, epochs=7, mosaic=0.25, min_samples=0), "yolo_nas_s")
    assert (given.lr0, given.epochs, given.augment.mosaic, given.augment.min_samples) == (1e-3, 7, 0.25, 0)
    assert dataclasses.replace(given, lr0=5e-4, epochs=100, augment=ROBOFLOW_S.augment) == ROBOFLOW_S


def numbers_in(text: str) -> list[float]:
    """Every number written in `text` (5e-4, 0.0278, 100, 1.0, ...)."""
    return [float(token) for token in re.findall(r"(?<![\w/])\d+(?:\.\d+)?(?:e-?\d+)?(?![\w/])", text)]


def test_help_train_lists_every_argument_with_its_default() -> None:
    done = yolo_nas("help", "train", cwd=Path.cwd())
    assert done.returncode == 0, done.stderr
    for name, value in defaults("train").items():
        shown = "None" if value is None else str(value)
        assert f"{name}=" in done.stdout and (f"{name}={shown}" in done.stdout or name == "hsv_s" or name == "hsv_v")
    assert "recipe's: roboflow 5e-4 (S), 4e-4 (M, L); coco 2e-4" in done.stdout


def test_cfg_train_is_yaml_that_loads_back(tmp_path: Path) -> None:
    done = yolo_nas("cfg", "train", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = yaml.safe_load(done.stdout)
    assert loaded == defaults("train")
    (tmp_path / "args.yaml").write_text(done.stdout)
    assert make_args("train", **loaded) == TrainArgs()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": 0}, "epochs=0 is out of range"),
        ({"batch": 0}, "batch=0 is out of range"),
        ({"lr0": 0}, "lr0=0 is out of range"),
        ({"recipe": "voc"}, "recipe=voc is not valid"),
        ({"cache": "ssd"}, "cache=ssd is not valid"),
        ({"device": "0,0"}, "several devices must be distinct CUDA indices"),
        ({"freeze": 1.5}, "freeze=1.5 is not valid"),
        ({"hsv_h": 2}, "hsv_h=2 is out of range"),
        ({"warmup_epochs": 2.5}, "warmup_epochs=2.5 is not a whole number"),
    ],
)
def test_bad_values_are_usage_errors(values: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_args("train", **values)


def test_several_gpus_normalise_and_a_list_is_accepted() -> None:
    assert make_args("train", device="0,1").device == "cuda:0,cuda:1"
    assert make_args("train", device=[2, 3]).device == "cuda:2,cuda:3"
    assert make_args("train", cache=True).cache == "ram"


def test_the_multi_gpu_launcher_passes_every_argument_through_the_command_line() -> None:
    """`device=0,1` runs `yolo-nas train <tokens>` under torchrun: the tokens must read back as the same arguments."""
    args = make_args(
        "train",
        data="my.yaml",
        device="0,1",
        imgsz=(320, 256),
        freeze=[0, "neck.neck1"],
        name="run 1",
        cache="disk",
        lr0=2.5e-4,
        hsv_h=None,
        resume=False,
    )
    assert parse_args("train", argument_tokens(args)) == args
    command = launch_command(2, ["epochs=3"], 29500)
    assert command[1:] == [
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        "--master_port=29500",
        "-m",
        "yolonas_cli",
        "train",
        "epochs=3",
    ]


# ---------------------------------------------------------------------------------------- bad input


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case runs in its own empty folder, so that default run folders would appear there."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def weights(tiny_checkpoint: Path) -> Path:
    """The tiny fixture model (80 classes): every run below changes its head to the dataset's classes."""
    return tiny_checkpoint


def run_cli(*tokens: str) -> subprocess.CompletedProcess[str]:
    """The command line's own entry (`cli.app.run_cli`: parsing, the mode, the one-line errors and exit codes) in
    this process, with its stderr; faster than a new interpreter for the cases that fail before training."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = app.run_cli(list(tokens))
    return subprocess.CompletedProcess(list(tokens), code, "", err.getvalue())


def one_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The run failed with `code` and one error line holding `words`, and no traceback."""
    assert done.returncode == code, (done.returncode, done.stderr[-2000:])
    errors = error_lines(done.stderr)
    assert len(errors) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def train(tmp: Path, weights: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    base = [f"model={weights}", f"data={data}", "imgsz=64", "epochs=1", "batch=2", "workers=0", "min_samples=0"]
    return run_cli("train", *base, f"project={tmp / 'runs'}", *extra)


def test_missing_train_split(tmp_path: Path, weights: Path) -> None:
    data = write_shapes(tmp_path / "d")
    spec = yaml.safe_load(data.read_text())
    del spec["train"]
    data.write_text(yaml.safe_dump(spec))
    one_error(train(tmp_path, weights, data), 2, "no 'train' split")
    assert not (tmp_path / "runs").exists()


def test_empty_train_split(tmp_path: Path, weights: Path) -> None:
    data = write_shapes(tmp_path / "d")
    for image in (tmp_path / "d" / "images" / "train").iterdir():
        image.unlink()
    one_error(train(tmp_path, weights, data), 1, "no images found for split 'train'")
    assert not (tmp_path / "runs").exists()


def test_no_labels_at_all(tmp_path: Path, weights: Path) -> None:
    data = write_shapes(tmp_path / "d")
    for label in (tmp_path / "d" / "labels" / "train").iterdir():
        label.write_text("")
    one_error(train(tmp_path, weights, data), 1, "has no usable labels")
    assert not (tmp_path / "runs").exists()


def test_class_id_beyond_the_names(tmp_path: Path, weights: Path) -> None:
    data = write_shapes(tmp_path / "d")
    label = sorted((tmp_path / "d" / "labels" / "train").iterdir())[0]
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    one_error(train(tmp_path, weights, data), 2, label.name, "class 7 is not an id in 0..2")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra, word", [("epochs=0", "epochs=0"), ("batch=0", "batch=0")])
def test_zero_epochs_or_batch(tmp_path: Path, weights: Path, extra: str, word: str) -> None:
    one_error(train(tmp_path, weights, write_shapes(tmp_path / "d"), extra), 2, word)
    assert not (tmp_path / "runs").exists()


def read_only_folder(path: Path) -> None:
    """Make `path` read-only for this process (chmod; as root also the immutable attribute), or skip."""
    path.mkdir()
    path.chmod(0o555)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    try:
        (path / "probe").mkdir()
    except OSError:
        return
    (path / "probe").rmdir()
    pytest.skip("cannot make a folder read-only here (root without chattr)")


def test_read_only_project_folder(tmp_path: Path, weights: Path) -> None:
    project = tmp_path / "locked"
    read_only_folder(project)
    try:
        done = train(tmp_path, weights, write_shapes(tmp_path / "d"), f"project={project}")
        one_error(done, 1, f"cannot use '{project}", "write elsewhere (project=...)")
        assert list(project.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(project)], capture_output=True)
        project.chmod(0o755)


def test_images_vanishing_mid_run_stop_it_with_last_pt_intact(tmp_path: Path, weights: Path) -> None:
    """After the first epoch the images are deleted: the run stops with one line (the error raised in a DataLoader
    worker, unwrapped), and the last.pt of the finished epoch still loads."""
    data = write_shapes(tmp_path / "d", train=16)
    tokens = [f"model={weights}", f"data={data}", "imgsz=64", "epochs=3", "batch=2", "workers=1", "min_samples=0"]
    process = start("train", *tokens, *NO_AUGMENTATION, f"project={tmp_path / 'runs'}", cwd=tmp_path)
    last = tmp_path / "runs" / "train" / "weights" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for image in (tmp_path / "d" / "images").rglob("*.png"):
        image.unlink()
    _, stderr = process.communicate(timeout=300)
    done = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    one_error(done, 1, "training images in a row cannot be read", "check that the dataset is still in place")
    assert "Caught" not in error_lines(stderr)[0]  # not torch's wrapper text
    assert Detector(last).names == {0: "circle", 1: "square", 2: "triangle"}
    assert leftovers(tmp_path / "runs") == []


def test_resume_from_a_file_that_is_not_a_training_checkpoint(tmp_path: Path, weights: Path) -> None:
    one_error(run_cli("train", f"resume={weights}"), 2, "is not a training checkpoint")
    one_error(run_cli("train", "resume=True", f"model={weights}"), 2, "is not a training checkpoint")
    one_error(run_cli("train", f"resume={tmp_path / 'missing.pt'}"), 2, "missing.pt does not exist")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_of_another_class_count_without_data(tmp_path: Path) -> None:
    state = formula_torch_state_dict("tiny")
    for key in [k for k in state if "cls_pred" in k]:
        state[key] = state[key][:5].clone()
    five = save_checkpoint(tmp_path / "five.pt", state, class_names=list("abcde"), model_name=None)
    one_error(run_cli("train", f"model={five}", "epochs=1"), 2, "train needs data=", "the model has 5")
    assert not (tmp_path / "runs").exists()


def test_several_gpus_without_gpus(tmp_path: Path, weights: Path) -> None:
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has the GPUs")
    done = train(tmp_path, weights, write_shapes(tmp_path / "d"), "device=0,1")
    one_error(done, 2, "needs 2 CUDA GPUs", "torchrun --nproc_per_node")
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_saves_last_pt_and_prints_the_resume_command(tmp_path: Path, weights: Path) -> None:
    data = write_shapes(tmp_path / "d", train=16)
    tokens = [f"model={weights}", f"data={data}", "imgsz=64", "epochs=50", "batch=2", "workers=1", "min_samples=0"]
    process = start("train", *tokens, f"project={tmp_path / 'runs'}", cwd=tmp_path)
    results = tmp_path / "runs" / "train" / "results.csv"
    deadline = time.monotonic() + 300
    while not results.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    last = tmp_path / "runs" / "train" / "weights" / "last.pt"
    error = one_error(subprocess.CompletedProcess(process.args, process.returncode, "", stderr), 130)
    assert f"resume with 'yolo-nas train resume=True model={last}'" in error
    assert "SIGINT received" in stderr
    saved = read_checkpoint(last)
    assert saved.training is not None and saved.meta["train"]["epochs"] == 50
    assert leftovers(tmp_path / "runs") == []
