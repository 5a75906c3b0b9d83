"""read_checkpoint / save_checkpoint on every supported weights format.

The real SuperGradients files are the 3.7.1 fixtures. Other SG-shaped files are written here with
importable stand-in modules registered under SG's module paths for the duration of a test (SG itself is
not installed), so `torch.save` writes exactly the class paths a real SG object would have.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from formula import formula_torch_state_dict
from yolonas_cli.core.errors import WeightsError
from yolonas_cli.weights import checkpoint as checkpoint_module
from yolonas_cli.weights.checkpoint import Checkpoint, read_checkpoint, save_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
MODEL_PT = FIXTURES / "yolo_nas_tiny_sg371_model.pt"
CHECKPOINT_PTH = FIXTURES / "yolo_nas_tiny_sg_checkpoint.pth"
PROCESSING = "super_gradients.training.processing.processing"
VARIANTS = "super_gradients.training.models.detection_models.yolo_nas.yolo_nas_variants"
COCO_PROCESSING = {
    "resize_longest": 636,
    "pad_to": [640, 640],
    "pad_value": 114,
    "pad_mode": "center",
    "scale": 255.0,
    "nms_iou": 0.7,
    "nms_conf": 0.25,
    "nms_top_k": 1024,
    "max_predictions": 300,
    "multi_label_per_box": True,
    "class_agnostic_nms": False,
}


def read_key_file(variant: str) -> list[tuple[str, list[int], str]]:
    """(key, shape, dtype) rows of fixtures/keys/yolo_nas_<variant>.keys."""
    rows = []
    for line in (FIXTURES / "keys" / f"yolo_nas_{variant}.keys").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        rows.append((key, [int(d) for d in shape.strip("[]").split(",") if d], dtype))
    return rows


@pytest.fixture(scope="module")
def sg_pickle() -> Checkpoint:
    return read_checkpoint(MODEL_PT)


def small_state(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return OrderedDict(
        [
            ("backbone.conv.weight", torch.randn(4, 3, 3, 3, generator=generator)),
            ("backbone.bn.running_mean", torch.randn(4, generator=generator)),
            ("backbone.bn.num_batches_tracked", torch.tensor(3)),
            ("heads.pred.bias", torch.randn(2, generator=generator)),
        ]
    )


def assert_same_tensors(got: OrderedDict[str, torch.Tensor], expected: OrderedDict[str, torch.Tensor]) -> None:
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


# --------------------------------------------------------------------------------------------------
# The SuperGradients fixtures
# --------------------------------------------------------------------------------------------------


def test_sg_model_pickle_matches_key_file(sg_pickle: Checkpoint) -> None:
    assert importlib.util.find_spec("super_gradients") is None  # read without SuperGradients
    rows = read_key_file("tiny")
    assert sg_pickle.format == "sg-model-pickle"
    assert list(sg_pickle.state_dict) == [key for key, _, _ in rows]
    for key, shape, dtype in rows:
        tensor = sg_pickle.state_dict[key]
        assert list(tensor.shape) == shape and str(tensor.dtype) == f"torch.{dtype}", key
    assert not any(k.endswith(("id_tensor", "proj_conv")) for k in sg_pickle.state_dict)  # non-persistent


def test_sg_model_pickle_metadata(sg_pickle: Checkpoint) -> None:
    assert sg_pickle.class_names is not None and len(sg_pickle.class_names) == 80
    assert sg_pickle.class_names[0] == "person" and sg_pickle.class_names[-1] == "toothbrush"
    assert sg_pickle.processing == COCO_PROCESSING
    assert sg_pickle.model_name == "yolo_nas_s"  # the tiny fixture is an SG YoloNAS_S object
    assert sg_pickle.meta["sg_class"] == f"{VARIANTS}.YoloNAS_S"
    assert sg_pickle.meta["bn_eps"] == pytest.approx(1e-3)
    assert sg_pickle.meta["heads_params"]["NDFLHeads"]["num_classes"] == 80


def test_sg_model_pickle_weights_are_the_formula(sg_pickle: Checkpoint) -> None:
    formula = formula_torch_state_dict("tiny")
    for key, value in formula.items():
        if key.endswith("num_batches_tracked"):
            assert int(sg_pickle.state_dict[key]) == 1  # the original's files count one batch
        else:
            assert torch.equal(sg_pickle.state_dict[key], value), key


def test_sg_checkpoint_fixture_equals_the_pickle(sg_pickle: Checkpoint) -> None:
    ckpt = read_checkpoint(CHECKPOINT_PTH)
    assert ckpt.format == "sg-checkpoint" and ckpt.meta["weights_from"] == "net"
    assert ckpt.class_names is None and ckpt.processing is None and ckpt.model_name is None
    assert_same_tensors(ckpt.state_dict, sg_pickle.state_dict)


# --------------------------------------------------------------------------------------------------
# SG checkpoint dicts and bare state dicts written here
# --------------------------------------------------------------------------------------------------


def test_ema_net_is_preferred_over_net(tmp_path: Path) -> None:
    net, ema = small_state(1), small_state(2)
    torch.save({"net": net, "ema_net": ema, "epoch": 7, "acc": 0.5}, tmp_path / "ckpt.pth")
    ckpt = read_checkpoint(tmp_path / "ckpt.pth")
    assert ckpt.format == "sg-checkpoint" and ckpt.meta["weights_from"] == "ema_net"
    assert ckpt.meta["epoch"] == 7 and ckpt.meta["acc"] == 0.5
    assert_same_tensors(ckpt.state_dict, ema)


def test_net_is_used_when_ema_net_is_none(tmp_path: Path) -> None:
    net = small_state(3)
    torch.save({"net": net, "ema_net": None}, tmp_path / "ckpt.pth")
    assert_same_tensors(read_checkpoint(tmp_path / "ckpt.pth").state_dict, net)


def test_module_prefix_is_stripped_only_when_every_key_has_it(tmp_path: Path) -> None:
    state = small_state()
    prefixed = OrderedDict((f"module.{k}", v) for k, v in state.items())
    torch.save({"net": prefixed}, tmp_path / "ddp.pth")
    assert_same_tensors(read_checkpoint(tmp_path / "ddp.pth").state_dict, state)
    torch.save(prefixed, tmp_path / "ddp_bare.pt")
    assert list(read_checkpoint(tmp_path / "ddp_bare.pt").state_dict) == list(state)
    mixed = OrderedDict([*list(prefixed.items())[:2], *list(state.items())[2:]])
    torch.save(mixed, tmp_path / "mixed.pt")
    assert list(read_checkpoint(tmp_path / "mixed.pt").state_dict) == list(mixed)


def test_bare_formula_state_dict(tmp_path: Path) -> None:
    formula = formula_torch_state_dict("tiny")
    torch.save(formula, tmp_path / "formula.pt")
    ckpt = read_checkpoint(tmp_path / "formula.pt")
    assert ckpt.format == "state-dict" and ckpt.class_names is None and ckpt.processing is None
    assert_same_tensors(ckpt.state_dict, formula)


def test_half_precision_state_dict_stays_half(tmp_path: Path) -> None:
    half = OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in small_state().items())
    torch.save({"net": half}, tmp_path / "half.pth")
    ckpt = read_checkpoint(tmp_path / "half.pth")
    assert ckpt.state_dict["backbone.conv.weight"].dtype == torch.float16
    assert ckpt.state_dict["backbone.bn.num_batches_tracked"].dtype == torch.int64
    assert_same_tensors(ckpt.state_dict, half)


def test_sg_checkpoint_processing_params_config_form(tmp_path: Path) -> None:
    params = {
        "class_names": ["a", "b"],
        "iou": 0.65,
        "conf": 0.1,
        "image_processor": {
            "ComposeProcessing": {
                "processings": [
                    {"DetectionLongestMaxSizeRescale": {"output_shape": [512, 512]}},
                    {"DetectionCenterPadding": {"output_shape": [512, 512], "pad_value": 114}},
                    {"StandardizeImage": {"max_value": 255.0}},
                    "SomethingNew",
                    {"ImagePermute": {"permutation": [2, 0, 1]}},
                ]
            }
        },
    }
    torch.save({"net": small_state(), "processing_params": params}, tmp_path / "pp.pth")
    ckpt = read_checkpoint(tmp_path / "pp.pth")
    assert ckpt.class_names == ("a", "b")
    assert ckpt.processing == {
        "resize_longest": 512,
        "pad_to": [512, 512],
        "pad_value": 114,
        "pad_mode": "center",
        "scale": 255.0,
        "nms_iou": 0.65,
        "nms_conf": 0.1,
    }
    assert ckpt.meta["unrecognised_processing"] == ["SomethingNew"]


# --------------------------------------------------------------------------------------------------
# SG-shaped objects written with stand-in modules
# --------------------------------------------------------------------------------------------------

MakeObject = Callable[..., Any]


@pytest.fixture
def sg_object(monkeypatch: pytest.MonkeyPatch) -> MakeObject:
    """sg_object("super_gradients.x.Cls", **attrs): an instance of a stand-in class at that path."""

    def make(qualified: str, **attrs: Any) -> Any:
        module_name, class_name = qualified.rsplit(".", 1)
        parts = module_name.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        module = sys.modules[module_name]
        cls: Any = getattr(module, class_name, None) or type(class_name, (), {"__module__": module_name})
        setattr(module, class_name, cls)
        obj = cls.__new__(cls)
        obj.__dict__.update(attrs)
        return obj

    return make


def module_attrs(**children: Any) -> dict[str, Any]:
    return {
        "training": False,
        "_parameters": OrderedDict(),
        "_buffers": OrderedDict(),
        "_non_persistent_buffers_set": set(),
        "_modules": OrderedDict(children),
    }


def test_synthetic_sg_model_with_other_processing(tmp_path: Path, sg_object: MakeObject) -> None:
    processor = sg_object(
        f"{PROCESSING}.ComposeProcessing",
        processings=[
            sg_object(f"{PROCESSING}.ReverseImageChannels"),
            sg_object(f"{PROCESSING}.DetectionRescale", output_shape=(320, 416)),
            sg_object(f"{PROCESSING}.DetectionBottomRightPadding", output_shape=(320, 416), pad_value=0),
            sg_object(f"{PROCESSING}.NormalizeImage", mean=[0.5] * 3, std=[0.25] * 3),
            sg_object(f"{PROCESSING}.ImagePermute", permutation=(2, 0, 1)),
        ],
    )
    conv = nn.Conv2d(3, 2, 1)
    model = sg_object(
        f"{VARIANTS}.YoloNAS_M",
        **module_attrs(stem=conv),
        _class_names=["cat", "dog"],
        _image_processor=processor,
        _default_nms_iou=0.6,
        _default_nms_conf=0.3,
    )
    torch.save(model, tmp_path / "m.pt")
    ckpt = read_checkpoint(tmp_path / "m.pt")
    assert ckpt.format == "sg-model-pickle" and ckpt.model_name == "yolo_nas_m"
    assert ckpt.class_names == ("cat", "dog")
    assert_same_tensors(ckpt.state_dict, OrderedDict((f"stem.{k}", v) for k, v in conv.state_dict().items()))
    assert ckpt.processing == {
        "reverse_channels": True,
        "resize_to": [320, 416],
        "pad_to": [320, 416],
        "pad_value": 0,
        "pad_mode": "bottom_right",
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "nms_iou": 0.6,
        "nms_conf": 0.3,
    }


def test_sg_checkpoint_with_pickled_processor_objects(tmp_path: Path, sg_object: MakeObject) -> None:
    processor = sg_object(
        f"{PROCESSING}.ComposeProcessing",
        processings=[sg_object(f"{PROCESSING}.DetectionLongestMaxSizeRescale", output_shape=(636, 636))],
    )
    params = {"class_names": ["x"], "image_processor": processor, "iou": 0.7, "conf": 0.25}
    torch.save({"net": small_state(), "processing_params": params}, tmp_path / "pp.pth")
    ckpt = read_checkpoint(tmp_path / "pp.pth")
    assert ckpt.processing == {"resize_longest": 636, "nms_iou": 0.7, "nms_conf": 0.25}
    assert ckpt.class_names == ("x",)


# --------------------------------------------------------------------------------------------------
# Our own format
# --------------------------------------------------------------------------------------------------


def test_own_format_round_trip(tmp_path: Path, sg_pickle: Checkpoint) -> None:
    target = tmp_path / "out" / "yolo_nas_tiny.pt"
    meta = {"source": "fixture", "notes": ("a", 1)}
    written = save_checkpoint(
        target,
        sg_pickle.state_dict,
        class_names=sg_pickle.class_names,
        model_name="yolo_nas_s",
        processing=sg_pickle.processing,
        meta=meta,
    )
    assert written == target and sorted(p.name for p in target.parent.iterdir()) == [target.name]
    ckpt = read_checkpoint(target)
    assert ckpt.format == "yolonas" and ckpt.model_name == "yolo_nas_s"
    assert ckpt.class_names == sg_pickle.class_names and ckpt.processing == COCO_PROCESSING
    assert ckpt.meta == {"source": "fixture", "notes": ["a", 1]}
    assert_same_tensors(ckpt.state_dict, sg_pickle.state_dict)


def test_own_format_overwrites_and_compacts_views(tmp_path: Path) -> None:
    target = tmp_path / "w.pt"
    save_checkpoint(target, small_state(1), class_names=["a"], model_name="m")
    base = torch.randn(1000, 1000)
    save_checkpoint(target, {"w": base[:2, :3]}, class_names=None, model_name=None)
    assert target.stat().st_size < 100_000  # only the 6 viewed values are written, not the base
    ckpt = read_checkpoint(target)
    assert torch.equal(ckpt.state_dict["w"], base[:2, :3])
    assert ckpt.class_names is None and ckpt.model_name is None and ckpt.processing is None


def test_own_format_newer_version_is_refused(tmp_path: Path) -> None:
    torch.save({"format": "yolonas-cli", "version": 2, "state_dict": small_state()}, tmp_path / "v2.pt")
    with pytest.raises(WeightsError, match="upgrade"):
        read_checkpoint(tmp_path / "v2.pt")


@pytest.mark.parametrize(
    ("state", "kwargs"),
    [
        ({"a": 1}, {}),
        ({}, {}),
        (None, {"meta": {"bad": object()}}),
        (None, {"processing": {"bad": {1, 2}}}),
        (None, {"class_names": ["a", 2]}),
        (None, {"model_name": 5}),
    ],
)
def test_save_checkpoint_rejects_bad_inputs(tmp_path: Path, state: Any, kwargs: dict[str, Any]) -> None:
    args = {"class_names": ["a"], "model_name": "m", **kwargs}
    with pytest.raises(WeightsError):
        save_checkpoint(tmp_path / "x.pt", small_state() if state is None else state, **args)
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.pt"
    save_checkpoint(target, small_state(1), class_names=["a"], model_name="m")
    before = target.read_bytes()

    def broken_save(obj: object, handle: Any) -> None:
        handle.write(b"partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_checkpoint(target, small_state(2), class_names=["a"], model_name="m")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]


# --------------------------------------------------------------------------------------------------
# Structures that are not weights
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ([torch.ones(1)], "a list"),
        ({"epoch": 3, "name": "x"}, "a dict with keys 'epoch', 'name'"),
        ({}, "a dict"),
        (torch.ones(3), "a single tensor"),
        (nn.Conv2d(3, 4, 1), "a pickled torch.nn.modules.conv.Conv2d object"),
        ({"net": [1, 2]}, "'net' entry is a list"),
        ({"net": {"a": 1}}, "not a named tensor"),
        ({"net": {}}, "empty state dict"),
        ({"format": "yolonas-cli", "version": 1, "state_dict": None}, "'state_dict' entry"),
    ],
)
def test_unsupported_structures_are_refused(tmp_path: Path, obj: object, expected: str) -> None:
    path = tmp_path / "thing.pt"
    torch.save(obj, path)
    with pytest.raises(WeightsError) as info:
        read_checkpoint(path)
    assert expected in str(info.value) and "thing.pt" in str(info.value)


def test_sg_module_that_is_not_a_model_is_refused_at_top_level(tmp_path: Path, sg_object: MakeObject) -> None:
    backbone = sg_object("super_gradients.modules.detection_modules.NStageBackbone", **module_attrs())
    torch.save(backbone, tmp_path / "backbone.pt")
    with pytest.raises(WeightsError, match="NStageBackbone object, not YOLO-NAS weights"):
        read_checkpoint(tmp_path / "backbone.pt")


def test_unknown_sg_class_is_refused_even_when_importable(tmp_path: Path, sg_object: MakeObject) -> None:
    evil = sg_object("super_gradients.training.utils.callbacks.SomeCallback", x=1)
    torch.save({"net": small_state(), "callback": evil}, tmp_path / "cb.pth")
    with pytest.raises(WeightsError, match=re.escape("super_gradients.training.utils.callbacks.SomeCallback")):
        read_checkpoint(tmp_path / "cb.pth")
