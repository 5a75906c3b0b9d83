"""The restricted checkpoint reader: legitimate torch.save files load exactly; hostile or broken files
raise WeightsError without any side effect.

Hostile pickles are written by hand, opcode by opcode (protocol 2 unless a case needs 4/5), and wrapped
in a torch-style zip (`archive/data.pkl`, `archive/data/<key>`, `archive/byteorder`, `archive/version`).
Each payload that would touch the file system targets a marker file under tmp_path, and every test
checks that the marker was not created.
"""

from __future__ import annotations

import io
import pickle
import random
import struct
import sys
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from yolonas_cli.core.errors import WeightsError
from yolonas_cli.weights.safe_pickle import Stub, load, stub_state_dict

SG_CONV = "super_gradients.modules.conv_bn_act_block"
FIXTURES = Path(__file__).parent / "fixtures"

# --------------------------------------------------------------------------------------------------
# Opcode helpers
# --------------------------------------------------------------------------------------------------

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
MARK, TUPLE, TUPLE1, EMPTY_TUPLE = b"(", b"t", b"\x85", b")"
REDUCE, BUILD, NEWOBJ, NEWOBJ_EX, STACK_GLOBAL = b"R", b"b", b"\x81", b"\x92", b"\x93"
EMPTY_DICT, EMPTY_LIST, SETITEM, APPEND, APPENDS, ADDITEMS = b"}", b"]", b"s", b"a", b"e", b"\x90"
NONE, NEWTRUE, NEWFALSE, BINPERSID, POP, MEMOIZE = b"N", b"\x88", b"\x89", b"Q", b"0", b"\x94"
STOP = b"."


def G(module: str, name: str) -> bytes:
    """GLOBAL module name."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def SG(module: str, name: str) -> bytes:
    """STACK_GLOBAL from two pushed strings."""
    return S(module) + S(name) + STACK_GLOBAL


def S(text: str) -> bytes:
    """BINUNICODE."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def I(value: int) -> bytes:  # noqa: E743
    """BININT (or LONG1 for values outside int32)."""
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def F(value: float) -> bytes:
    """BINFLOAT."""
    return b"G" + struct.pack(">d", value)


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def lst(*items: bytes) -> bytes:
    return EMPTY_LIST + MARK + b"".join(items) + APPENDS


def call(func: bytes, *args: bytes) -> bytes:
    """func(*args) through REDUCE."""
    return func + tup(*args) + REDUCE


def put(index: int) -> bytes:
    return b"q" + bytes([index])


def get(index: int) -> bytes:
    return b"h" + bytes([index])


def ordered_dict() -> bytes:
    return call(G("collections", "OrderedDict"))


def storage(key: str = "0", numel: int = 4, kind: bytes = G("torch", "FloatStorage")) -> bytes:
    """A persistent id ('storage', type, key, 'cpu', numel)."""
    return tup(S("storage"), kind, S(key), S("cpu"), I(numel)) + BINPERSID


def rebuild(*args: bytes) -> bytes:
    return call(G("torch._utils", "_rebuild_tensor_v2"), *args)


def tensor_2x2() -> bytes:
    """A valid [[1, 2], [3, 4]] view of the 4-float record '0'."""
    return rebuild(storage(), I(0), tup(I(2), I(2)), tup(I(2), I(1)), NEWFALSE, ordered_dict())


def stub(qualified: str = f"{SG_CONV}.Conv") -> bytes:
    module, name = qualified.rsplit(".", 1)
    return G(module, name) + EMPTY_TUPLE + NEWOBJ


FOUR_FLOATS = {"0": struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)}


def torch_zip(
    path: Path,
    pkl: bytes,
    records: dict[str, bytes] | None = None,
    *,
    prefix: str = "archive",
    byteorder: bytes = b"little",
    version: bytes = b"3\n",
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Write `pkl` and its storage records as a torch zip archive."""
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        warnings.simplefilter("ignore")  # duplicate-name cases
        zf.writestr(f"{prefix}/data.pkl", pkl)
        zf.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in (records or {}).items():
            zf.writestr(f"{prefix}/data/{key}", raw)
        for name, raw in (extra or {}).items():
            zf.writestr(name, raw)
        zf.writestr(f"{prefix}/version", version)
    return path


def assert_refused(path: Path, *expected: str, marker: Path | None = None, **kwargs: object) -> str:
    """load(path) raises a one-line WeightsError naming the file (and `expected`); no marker file."""
    with pytest.raises(WeightsError) as info:
        load(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message
    for text in expected:
        assert text in message
    if marker is not None:
        assert not marker.exists()
    return message


# --------------------------------------------------------------------------------------------------
# Legitimate files
# --------------------------------------------------------------------------------------------------


def test_hand_written_control_pickle_loads(tmp_path: Path) -> None:
    """The opcode helpers build a valid file, so each refusal below is caused by its hostile part."""
    pkl = PROTO2 + EMPTY_DICT + S("t") + tensor_2x2() + SETITEM + STOP
    obj = load(torch_zip(tmp_path / "ok.pt", pkl, FOUR_FLOATS))
    assert torch.equal(obj["t"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_torch_save_tensor_zoo_round_trips(tmp_path: Path) -> None:
    base = torch.randn(6, 5)
    zoo: dict[str, Any] = {
        "a": torch.randn(3),
        "strided": base[:, ::2],
        "offset": base[2:],
        "transposed": base.t(),
        "row": base[1],
        "column": base[:, 3],
        "expanded": torch.randn(1, 4).expand(3, 4),
        "half": torch.randn(2, 3).half(),
        "bf16": torch.randn(4).bfloat16(),
        "double": torch.randn(2, dtype=torch.float64),
        "int64": torch.arange(7),
        "int8": torch.tensor([-3, 0, 5], dtype=torch.int8),
        "uint8": torch.tensor([0, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "complex": torch.randn(3, dtype=torch.complex64),
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 3),
        "param": nn.Parameter(torch.randn(2, 2)),
        "nested": {"list": [torch.ones(2), 3, "x", None, 1.5, True], "tuple": (1, 2)},
    }
    path = tmp_path / "zoo.pt"
    torch.save(zoo, path)
    loaded = load(path)
    assert list(loaded) == list(zoo)
    for key, expected in zoo.items():
        if key == "nested":
            continue
        got = loaded[key]
        assert type(got) is torch.Tensor and got.dtype == expected.dtype and got.shape == expected.shape
        assert got.stride() == expected.stride() and not got.requires_grad
        assert torch.equal(got, expected.detach()), key
    assert torch.equal(loaded["nested"]["list"][0], torch.ones(2))
    assert loaded["nested"]["list"][1:] == [3, "x", None, 1.5, True]
    assert loaded["nested"]["tuple"] == (1, 2)
    shared = {loaded[k].untyped_storage().data_ptr() for k in ("strided", "offset", "transposed", "row")}
    assert len(shared) == 1  # views of one storage stay views of one storage
    assert loaded["offset"].storage_offset() == 10


def test_state_dict_metadata_and_parameters(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded = load(tmp_path / "sd.pt")
    assert type(loaded) is OrderedDict and list(loaded) == list(model.state_dict())
    assert vars(loaded)["_metadata"] == vars(model.state_dict())["_metadata"]
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def _module_tree() -> nn.Module:
    conv = nn.Conv2d(3, 4, 3, bias=False)  # a None parameter that state_dict skips
    bn = nn.BatchNorm2d(4)
    bn.register_buffer("scratch", torch.ones(4), persistent=False)
    inner = nn.ModuleList([nn.ConvTranspose2d(4, 4, 2, 2), nn.Identity(), nn.Dropout(0.1)])
    return nn.Sequential(conv, bn, nn.ReLU(), nn.MaxPool2d(2), inner)


def test_pickled_module_tree_state_dict_matches_nn_module(tmp_path: Path) -> None:
    model = _module_tree()
    torch.save(model, tmp_path / "model.pt")
    root = load(tmp_path / "model.pt")
    assert isinstance(root, Stub) and root.qualname == "torch.nn.modules.container.Sequential"
    assert root.get("_modules")["1"].get("_non_persistent_buffers_set") == {"scratch"}
    state = stub_state_dict(root)
    expected = model.state_dict()
    assert list(state) == list(expected) and "1.scratch" not in state and "0.bias" not in state
    assert all(torch.equal(state[k], v) for k, v in expected.items())


def test_stub_state_dict_refuses_cycles_and_non_modules(tmp_path: Path) -> None:
    model = nn.Sequential(nn.ReLU())
    model._modules["loop"] = model
    torch.save(model, tmp_path / "cyclic.pt")
    with pytest.raises(WeightsError, match="cyclic"):
        stub_state_dict(load(tmp_path / "cyclic.pt"))
    with pytest.raises(WeightsError, match="not a pickled module"):
        stub_state_dict({"a": torch.ones(1)})  # type: ignore[arg-type]


def test_big_endian_archive_is_converted(tmp_path: Path) -> None:
    pkl = PROTO2 + tensor_2x2() + STOP
    path = torch_zip(tmp_path / "be.pt", pkl, {"0": struct.pack(">4f", 1.0, 2.0, 3.0, 4.0)}, byteorder=b"big")
    assert torch.equal(load(path), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_whole_sg_model_pickle_loads_without_super_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_torch_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", no_torch_load)
    monkeypatch.setattr(torch.serialization, "load", no_torch_load)
    root = load(FIXTURES / "yolo_nas_tiny_sg371_model.pt")
    assert not any(name.split(".")[0] == "super_gradients" for name in sys.modules)
    assert root.class_name == "YoloNAS_S" and root.kind == "module"
    processor = root.get("_image_processor")
    assert processor.kind == "processing" and len(processor.get("processings")) == 4
    assert len(stub_state_dict(root)) == 921


# --------------------------------------------------------------------------------------------------
# Hostile pickles
# --------------------------------------------------------------------------------------------------

Payload = Callable[[Path], bytes]


def _touch(marker: Path) -> bytes:
    return S(f"touch {marker}")


def _py_create(marker: Path) -> bytes:
    return S(f"open({str(marker)!r}, 'w').close()")


FORBIDDEN: dict[str, tuple[Payload, str]] = {
    "os.system": (lambda m: call(G("os", "system"), _touch(m)), "os.system"),
    "posix.system": (lambda m: call(G("posix", "system"), _touch(m)), "posix.system"),
    "subprocess.Popen": (
        lambda m: call(G("subprocess", "Popen"), lst(S("touch"), S(str(m)))),
        "subprocess.Popen",
    ),
    "subprocess.check_output": (
        lambda m: call(G("subprocess", "check_output"), lst(S("touch"), S(str(m)))),
        "subprocess.check_output",
    ),
    "builtins.eval": (lambda m: call(G("builtins", "eval"), _py_create(m)), "builtins.eval"),
    "builtins.exec": (lambda m: call(G("builtins", "exec"), _py_create(m)), "builtins.exec"),
    "__builtin__.eval": (lambda m: call(G("__builtin__", "eval"), _py_create(m)), "__builtin__.eval"),
    "builtins.open": (lambda m: call(G("builtins", "open"), S(str(m)), S("w")), "builtins.open"),
    "io.open": (lambda m: call(G("io", "open"), S(str(m)), S("w")), "io.open"),
    "os.mkdir": (lambda m: call(G("os", "mkdir"), S(str(m))), "os.mkdir"),
    "torch.save": (lambda m: call(G("torch", "save"), EMPTY_DICT, S(str(m))), "torch.save"),
    "torch.load": (lambda m: call(G("torch", "load"), S(str(m))), "torch.load"),
    "import-chain": (
        lambda m: call(
            call(G("builtins", "getattr"), call(G("builtins", "__import__"), S("os")), S("system")), _touch(m)
        ),
        "builtins.getattr",
    ),
    "__import__": (lambda m: call(G("builtins", "__import__"), S("os")), "builtins.__import__"),
    "getattr-on-allowed": (
        lambda m: call(call(G("builtins", "getattr"), G("collections", "OrderedDict"), S("fromkeys")), lst()),
        "builtins.getattr",
    ),
    "collections.os": (lambda m: call(G("collections", "os")), "collections.os"),
    "torch._utils.os": (lambda m: G("torch._utils", "os"), "torch._utils.os"),
    "rebuild_from_type": (
        lambda m: call(G("torch._tensor", "_rebuild_from_type_v2"), G("os", "system"), NONE, tup(), EMPTY_DICT),
        "torch._tensor._rebuild_from_type_v2",
    ),
    "torch-nn-base-module": (
        lambda m: stub("torch.nn.modules.module.Module"),
        "torch.nn.modules.module.Module",
    ),
    "sg-utils-os-system": (
        lambda m: call(G("super_gradients.training.utils.os", "system"), _touch(m)),
        "super_gradients.training.utils.os.system",
    ),
    "sg-unknown-function": (
        lambda m: call(G("super_gradients.common.something", "SomeFn"), _touch(m)),
        "super_gradients.common.something.SomeFn",
    ),
    "sg-module-os": (
        lambda m: G("super_gradients.training.models.detection_models.yolo_nas.yolo_nas_variants", "os"),
        "yolo_nas_variants.os",
    ),
    "sg-known-class-wrong-module": (
        lambda m: stub("super_gradients.training.models.YoloNAS_S"),
        "super_gradients.training.models.YoloNAS_S",
    ),
    "sg-dotted-attribute": (
        lambda m: G("super_gradients.modules.qarepvgg_block", "QARepVGGBlock.__init__"),
        "QARepVGGBlock.__init__",
    ),
    "stack-global-os-system": (lambda m: PROTO4 + call(SG("os", "system"), _touch(m)), "os.system"),
    "stack-global-eval": (lambda m: PROTO4 + call(SG("builtins", "eval"), _py_create(m)), "builtins.eval"),
    "stack-global-dotted-globals": (
        lambda m: PROTO4 + SG("torch._utils", "_rebuild_tensor_v2.__globals__"),
        "_rebuild_tensor_v2.__globals__",
    ),
    "stack-global-dotted-init": (
        lambda m: PROTO4 + SG("collections", "OrderedDict.__init__.__globals__"),
        "OrderedDict.__init__",
    ),
    "inst-os-system": (lambda m: MARK + _touch(m) + b"ios\nsystem\n", "os.system"),
    "obj-os-system": (lambda m: MARK + G("os", "system") + _touch(m) + b"o", "os.system"),
    "newobj-popen": (
        lambda m: G("subprocess", "Popen") + tup(lst(S("touch"), S(str(m)))) + NEWOBJ,
        "subprocess.Popen",
    ),
    "newobj-ex-popen": (
        lambda m: PROTO4 + G("subprocess", "Popen") + tup(lst(S("touch"), S(str(m)))) + EMPTY_DICT + NEWOBJ_EX,
        "subprocess.Popen",
    ),
    "storage-type-os-system": (
        lambda m: tup(S("storage"), G("os", "system"), S("0"), S("cpu"), I(4)) + BINPERSID,
        "os.system",
    ),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN))
def test_forbidden_globals_are_refused_without_side_effects(tmp_path: Path, case: str) -> None:
    marker = tmp_path / "pwned"
    build, refused_name = FORBIDDEN[case]
    body = build(marker)
    pkl = body if body.startswith(b"\x80") else PROTO2 + body
    path = torch_zip(tmp_path / "evil.pt", pkl + STOP, FOUR_FLOATS)
    message = assert_refused(path, refused_name, marker=marker)
    assert "trust" in message


@pytest.mark.parametrize("case", ["posix.system", "builtins.open", "builtins.eval"])
def test_payloads_do_fire_under_plain_pickle(tmp_path: Path, case: str) -> None:
    """Control: the same bytes run their payload under the stock unpickler, so the refusals are real."""
    marker = tmp_path / "pwned"
    result = pickle.loads(PROTO2 + FORBIDDEN[case][0](marker) + STOP)
    if hasattr(result, "close"):
        result.close()
    assert marker.exists()


_BAD_OD = G("collections", "OrderedDict")
_REBUILD = G("torch._utils", "_rebuild_tensor_v2")

MALFORMED: dict[str, tuple[bytes, str]] = {
    # allowed callables with bad arguments
    "ordered-dict-with-args": (call(_BAD_OD, lst(tup(S("a"), I(1)))), "OrderedDict with arguments"),
    "set-of-ints": (call(G("builtins", "set"), lst(I(1), I(2))), "set with"),
    "set-two-args": (call(G("builtins", "set"), lst(), lst()), "set with"),
    "reduce-args-not-tuple": (_BAD_OD + EMPTY_LIST + REDUCE, "not a tuple"),
    "rebuild-from-string": (
        rebuild(S("0"), I(0), tup(I(2)), tup(I(1)), NEWFALSE, ordered_dict()),
        "instead of a storage",
    ),
    "rebuild-negative-offset": (
        rebuild(storage(), I(-1), tup(I(2)), tup(I(1)), NEWFALSE, ordered_dict()),
        "storage offset",
    ),
    "rebuild-out-of-bounds": (
        rebuild(storage(), I(1), tup(I(2), I(2)), tup(I(2), I(1)), NEWFALSE, ordered_dict()),
        "outside its storage",
    ),
    "rebuild-huge-stride": (
        rebuild(storage(), I(0), tup(I(2)), tup(I(2**40)), NEWFALSE, ordered_dict()),
        "outside its storage",
    ),
    "rebuild-offset-beyond-empty": (
        rebuild(storage(), I(9), tup(I(0)), tup(I(1)), NEWFALSE, ordered_dict()),
        "outside its storage",
    ),
    "rebuild-size-list": (
        rebuild(storage(), I(0), lst(I(2)), tup(I(1)), NEWFALSE, ordered_dict()),
        "not a tuple",
    ),
    "rebuild-bool-dims": (
        rebuild(storage(), I(0), tup(NEWTRUE), tup(I(1)), NEWFALSE, ordered_dict()),
        "size",
    ),
    "rebuild-rank-mismatch": (
        rebuild(storage(), I(0), tup(I(2), I(2)), tup(I(1)), NEWFALSE, ordered_dict()),
        "different lengths",
    ),
    "rebuild-too-many-dims": (
        rebuild(storage(), I(0), tup(*[I(1)] * 17), tup(*[I(1)] * 17), NEWFALSE, ordered_dict()),
        "at most 16",
    ),
    "rebuild-requires-grad-int": (
        rebuild(storage(), I(0), tup(I(2)), tup(I(1)), I(1), ordered_dict()),
        "requires_grad",
    ),
    "rebuild-hooks-list": (rebuild(storage(), I(0), tup(I(2)), tup(I(1)), NEWFALSE, lst()), "hooks"),
    "rebuild-too-few-args": (rebuild(storage(), I(0)), "wrong number of arguments"),
    "parameter-of-string": (
        call(G("torch._utils", "_rebuild_parameter"), S("x"), NEWFALSE, ordered_dict()),
        "instead of a tensor",
    ),
    # calling things that are not allowed functions
    "reduce-on-stub-class": (G(SG_CONV, "Conv") + EMPTY_TUPLE + REDUCE, "not an allowed function"),
    "reduce-on-storage-type": (G("torch", "FloatStorage") + EMPTY_TUPLE + REDUCE, "not an allowed function"),
    "reduce-on-instance": (ordered_dict() + EMPTY_TUPLE + REDUCE, "not an allowed function"),
    # memo tricks
    "memo-reuse-rebuild": (
        _REBUILD
        + put(1)
        + POP
        + EMPTY_LIST
        + POP
        + get(1)
        + tup(S("x"), I(0), tup(), tup(), NEWFALSE, EMPTY_DICT)
        + REDUCE,
        "instead of a storage",
    ),
    "memoize-reuse-rebuild": (
        PROTO4
        + _REBUILD
        + MEMOIZE
        + POP
        + get(0)
        + tup(storage(), I(0), tup(I(99)), tup(I(1)), NEWFALSE, EMPTY_DICT)
        + REDUCE,
        "outside its storage",
    ),
    "memo-reuse-built-stub": (
        stub() + put(1) + EMPTY_DICT + BUILD + POP + get(1) + EMPTY_DICT + BUILD,
        "twice",
    ),
    # BUILD
    "build-sets-class": (stub() + EMPTY_DICT + S("__class__") + _BAD_OD + SETITEM + BUILD, "__class__"),
    "build-sets-reduce": (stub() + EMPTY_DICT + S("__reduce__") + _BAD_OD + SETITEM + BUILD, "__reduce__"),
    "build-sets-setstate": (
        stub() + EMPTY_DICT + S("__setstate__") + _REBUILD + SETITEM + BUILD,
        "__setstate__",
    ),
    "build-state-not-dict": (stub() + tup(NONE, EMPTY_DICT) + BUILD, "not a dict"),
    "build-ordered-dict-items": (
        ordered_dict() + EMPTY_DICT + S("items") + _BAD_OD + SETITEM + BUILD,
        "_metadata",
    ),
    "build-on-tensor": (tensor_2x2() + tup(storage(), I(0), tup(I(9)), tup(I(1))) + BUILD, "a Tensor"),
    "build-on-list": (EMPTY_LIST + EMPTY_DICT + BUILD, "a list"),
    "build-on-string": (S("x") + EMPTY_DICT + BUILD, "a str"),
    # opcodes torch.save never writes
    "inst-allowed-class": (MARK + b"icollections\nOrderedDict\n", "INST"),
    "obj-allowed-class": (MARK + _BAD_OD + b"o", "OBJ"),
    "ext1": (b"\x82\x01", "refused"),
    "bytearray8-huge": (b"\x80\x05\x96" + struct.pack("<Q", 2**40), "refused"),
    "newobj-on-ordered-dict": (_BAD_OD + EMPTY_TUPLE + NEWOBJ, "not an allowed class"),
    "newobj-stub-with-args": (G(SG_CONV, "Conv") + tup(S("x")) + NEWOBJ, "with arguments"),
    "newobj-ex-stub-kwargs": (
        PROTO4 + G(SG_CONV, "Conv") + EMPTY_TUPLE + EMPTY_DICT + S("k") + I(1) + SETITEM + NEWOBJ_EX,
        "with arguments",
    ),
    # container opcodes aimed at other objects
    "append-to-stub": (stub() + I(1) + APPEND, "append to"),
    "appends-to-ordered-dict": (ordered_dict() + MARK + I(1) + APPENDS, "append to"),
    "setitem-on-tensor": (tensor_2x2() + I(0) + F(9.0) + SETITEM, "set items on"),
    "setitem-on-list": (EMPTY_LIST + I(0) + I(1) + SETITEM, "set items on"),
    "additems-on-list": (EMPTY_LIST + MARK + I(1) + ADDITEMS, "add items to"),
    "stack-global-non-str": (PROTO4 + I(1) + I(2) + STACK_GLOBAL, "STACK_GLOBAL"),
    # persistent ids
    "persid-string": (S("storage") + BINPERSID, "not a storage reference"),
    "persid-text": (b"Pabc\n", "not a storage reference"),
    "persid-short-tuple": (
        tup(S("storage"), G("torch", "FloatStorage"), S("0")) + BINPERSID,
        "not a storage",
    ),
    "persid-not-storage": (tup(S("module"), NONE, S("0"), S("cpu"), I(4)) + BINPERSID, "not a storage"),
    "persid-type-string": (storage(kind=S("FloatStorage")), "whose type"),
    "persid-key-traversal": (storage(key="../evil"), "invalid key"),
    "persid-missing-record": (storage(key="7"), "missing storage record"),
    "persid-oversized": (storage(numel=10**12), "declares storage"),
    "persid-undersized": (storage(numel=2), "declares storage"),
    "persid-negative": (storage(numel=-4), "storage size"),
    "persid-bool-numel": (storage(numel=0).replace(I(0), NEWTRUE), "storage size"),
    "persid-retyped": (
        tup(storage(), storage(kind=G("torch", "IntStorage"))),
        "twice with different types",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_pickles_are_refused(tmp_path: Path, case: str) -> None:
    body, expected = MALFORMED[case]
    pkl = body if body.startswith(b"\x80") else PROTO2 + body
    path = torch_zip(tmp_path / "bad.pt", pkl + STOP, FOUR_FLOATS)
    assert_refused(path, expected, marker=tmp_path / "pwned")


# --------------------------------------------------------------------------------------------------
# Hostile or broken archives
# --------------------------------------------------------------------------------------------------

_OK_PKL = PROTO2 + tensor_2x2() + STOP


@pytest.mark.parametrize(
    "name",
    [
        "../evil",
        "/abs/evil",
        "archive/../../evil",
        "archive\\..\\evil",
        "C:/evil",
        "archive/./x",
        "archive//x",
        "archive/x\x01",
    ],
)
def test_unsafe_member_names_are_refused(tmp_path: Path, name: str) -> None:
    path = torch_zip(tmp_path / "slip.pt", _OK_PKL, FOUR_FLOATS, extra={name: b"x"})
    assert_refused(path, "member")
    assert not (tmp_path / "evil").exists() and not Path("/abs/evil").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"other/data.pkl": b"x"}, "one top-level folder"),
        ({"loose": b"x"}, "outside the archive folder"),
        ({"archive/data.pkl": b"x"}, "duplicate"),
        ({"archive/constants.pkl": b"x"}, "TorchScript"),
    ],
)
def test_archive_layout_rules(tmp_path: Path, extra: dict[str, bytes], expected: str) -> None:
    assert_refused(torch_zip(tmp_path / "layout.pt", _OK_PKL, FOUR_FLOATS, extra=extra), expected)


def test_missing_data_pkl_and_bad_byteorder(tmp_path: Path) -> None:
    path = tmp_path / "nopkl.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/version", b"3\n")
    assert_refused(path, "no data.pkl")
    assert_refused(torch_zip(tmp_path / "bo.pt", _OK_PKL, FOUR_FLOATS, byteorder=b"middle"), "byteorder")
    assert_refused(torch_zip(tmp_path / "v.pt", _OK_PKL, FOUR_FLOATS, version=b"three"), "version record")


def test_total_size_bound(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "big.pt", _OK_PKL, FOUR_FLOATS)
    assert_refused(path, "more than 64 bytes", max_total_bytes=64)


def test_truncated_files(tmp_path: Path) -> None:
    good = (FIXTURES / "yolo_nas_tiny_sg_checkpoint.pth").read_bytes()
    for cut in (100, len(good) // 2, len(good) - 10):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(good[:cut])
        assert_refused(path)


def test_corrupt_record_crc(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "crc.pt", _OK_PKL, FOUR_FLOATS)
    raw = bytearray(path.read_bytes())
    at = raw.index(FOUR_FLOATS["0"])
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert_refused(path, "corrupt")


def test_random_empty_legacy_and_missing_files(tmp_path: Path) -> None:
    rng = random.Random(0)
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    assert_refused(noise)
    fake_zip = tmp_path / "fakezip.pt"
    fake_zip.write_bytes(b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(4096)))
    assert_refused(fake_zip, "corrupt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert_refused(empty, "empty")
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert_refused(legacy, "legacy", "torch>=1.6")
    assert_refused(tmp_path / "missing.pt", "does not exist")
    assert_refused(tmp_path, "not a file")


def test_mutated_pickles_never_escape_as_other_errors(tmp_path: Path) -> None:
    """Random byte flips and truncations of a real data.pkl: either a clean load or a WeightsError."""
    path = tmp_path / "seed.pt"
    torch.save({"w": torch.randn(3, 4)[:, 1:], "m": nn.ReLU(), "n": [1, "x", (2.0, None)]}, path)
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    pkl_name = next(name for name in members if name.endswith("/data.pkl"))
    rng = random.Random(1234)
    for trial in range(250):
        pkl = bytearray(members[pkl_name])
        for _ in range(rng.randint(1, 3)):
            pkl[rng.randrange(len(pkl))] = rng.randrange(256)
        if trial % 5 == 0:
            pkl = pkl[: rng.randrange(len(pkl))]
        mutated = tmp_path / f"m{trial}.pt"
        with zipfile.ZipFile(mutated, "w") as zf:
            for name, raw in members.items():
                zf.writestr(name, bytes(pkl) if name == pkl_name else raw)
        try:
            load(mutated)
        except WeightsError as exc:
            assert "\n" not in str(exc)
        mutated.unlink()


def test_error_for_refused_global_is_actionable(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "x.pt", PROTO2 + call(G("posix", "system"), S("true")) + STOP)
    message = assert_refused(path, "'posix.system'", "not a tensor", "trust")
    assert message.startswith("refusing to load")


def test_archive_folder_named_after_the_saved_file(tmp_path: Path) -> None:
    """Older torch names the folder after the file, so spaces and other printable characters are fine."""
    path = torch_zip(tmp_path / "odd.pt", _OK_PKL, FOUR_FLOATS, prefix="my weights (1)+é")
    assert torch.equal(load(path), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_file_object_saves_use_their_own_folder_name(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"a": torch.arange(3)}, buffer)
    path = tmp_path / "buffer.pt"
    path.write_bytes(buffer.getvalue())
    assert torch.equal(load(path)["a"], torch.arange(3))


# --------------------------------------------------------------------------------------------------
# Small files with a huge cost (issue 12): each is refused quickly, in bounded memory
# --------------------------------------------------------------------------------------------------

SG_MODEL = "super_gradients.training.models.detection_models.yolo_nas.yolo_nas_variants.YoloNAS_S"
SEQUENTIAL = "torch.nn.modules.container.Sequential"


def module_state(children: dict[str, bytes]) -> bytes:
    """A module's BUILD state: {"_modules": {name: child, ...}} (children given as pickle expressions)."""
    items = b"".join(S(name) + child + SETITEM for name, child in children.items())
    return EMPTY_DICT + S("_modules") + EMPTY_DICT + items + SETITEM


def shared_module_dag(levels: int) -> bytes:
    """A YoloNAS_S whose module tree is a DAG `levels` deep: each level's two children are the same module
    (the pickle memo makes the file linear in `levels`; walked as a tree it costs 2**levels)."""
    body = stub() + module_state({}) + BUILD + put(0)
    for level in range(1, levels + 1):
        body += stub(SEQUENTIAL) + module_state({"a": get(level - 1), "b": get(level - 1)}) + BUILD + put(level)
    return PROTO2 + body + POP + stub(SG_MODEL) + module_state({"m": get(levels)}) + BUILD + STOP


def test_a_module_dag_is_refused_in_linear_time(tmp_path: Path) -> None:
    import time

    from yolonas_cli.weights.checkpoint import read_checkpoint

    path = torch_zip(tmp_path / "dag.pt", shared_module_dag(18))
    assert path.stat().st_size < 8192
    started = time.monotonic()
    with pytest.raises(WeightsError, match="shares modules") as info:
        read_checkpoint(path)
    assert time.monotonic() - started < 5  # a tree walk visits 2**18 modules: seconds; 60 levels: never ends
    assert "'m.a.a" in str(info.value) and path.name in str(info.value)


def billion_laughs(levels: int, width: int = 10) -> bytes:
    """One list nested `levels` deep whose every level holds `width` references to the level below:
    width**levels strings described in a few hundred bytes (an expression that pushes exactly that list)."""
    body = S("lol") + put(0) + POP
    for level in range(1, levels + 1):
        body += lst(*[get(level - 1)] * width) + put(level) + POP
    return body + get(levels)


def own_format(meta: bytes) -> bytes:
    """Our format's dict with a real 2x2 tensor and `meta` (a pickle expression) as its metadata."""
    fields = {
        "format": S("yolonas-cli"),
        "version": I(1),
        "state_dict": EMPTY_DICT + S("t") + tensor_2x2() + SETITEM,
        "meta": meta,
    }
    return EMPTY_DICT + b"".join(S(k) + v + SETITEM for k, v in fields.items())


def sg_checkpoint(processing_params: bytes) -> bytes:
    """An SG checkpoint dict {"net": {"t": tensor}, "processing_params": ...}."""
    net = EMPTY_DICT + S("t") + tensor_2x2() + SETITEM
    return EMPTY_DICT + S("net") + net + SETITEM + S("processing_params") + processing_params + SETITEM


def one_key(key: str, value: bytes) -> bytes:
    return EMPTY_DICT + S(key) + value + SETITEM


@pytest.mark.parametrize(
    ("where", "build"),
    [
        ("our meta", lambda laughs: own_format(laughs)),
        ("SG image_processor", lambda laughs: sg_checkpoint(one_key("image_processor", laughs))),
        (
            "SG normalisation mean",
            lambda laughs: sg_checkpoint(
                one_key("image_processor", lst(one_key("NormalizeImage", one_key("mean", laughs))))
            ),
        ),
        ("SG class_names", lambda laughs: sg_checkpoint(one_key("class_names", laughs))),
    ],
)
def test_billion_laughs_in_metadata_stops_at_the_copy_budget(tmp_path: Path, where: str, build: Callable) -> None:
    """10**7 leaves (10**10 in the CLI matrix) from a file of a few hundred bytes: the copy stops at 100,000."""
    import time

    from yolonas_cli.weights.checkpoint import read_checkpoint

    path = torch_zip(tmp_path / "laughs.pt", PROTO2 + build(billion_laughs(7)) + STOP, FOUR_FLOATS)
    started = time.monotonic()
    with pytest.raises(WeightsError, match=r"metadata holds more than 100,000 values"):
        read_checkpoint(path)
    assert time.monotonic() - started < 5, where


def test_an_expanded_tensor_of_absurd_size_is_refused(tmp_path: Path) -> None:
    """A one-float storage viewed with stride 0 as 2**40 elements: harmless as a view, tens of GB once copied."""
    huge = rebuild(storage(numel=1), I(0), tup(I(2**40)), tup(I(0)), NEWFALSE, ordered_dict())
    path = torch_zip(tmp_path / "expand.pt", PROTO2 + huge + STOP, {"0": struct.pack("<f", 1.0)})
    assert_refused(path, "1099511627776 elements over a storage of 1", "overlapping strides")


def test_small_expanded_tensors_still_load(tmp_path: Path) -> None:
    """Broadcast views up to 16 Mi elements are legitimate (torch.save keeps their zero strides)."""
    torch.save({"mask": torch.ones(1, 1).expand(4096, 4096)}, tmp_path / "ok.pt")
    loaded = load(tmp_path / "ok.pt")["mask"]
    assert loaded.shape == (4096, 4096) and loaded.stride() == (0, 0) and bool(loaded.all())


def deflated_zip(path: Path, pkl: bytes, records: dict[str, bytes]) -> Path:
    """A torch-style archive whose records are deflate-compressed (torch itself stores them uncompressed)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("archive/data.pkl", pkl)
        for key, raw in records.items():
            zf.writestr(f"archive/data/{key}", raw)
    return path


def test_a_deflate_bomb_record_is_refused_before_it_is_read(tmp_path: Path) -> None:
    numel = 64 << 20  # 256 MiB of float32 zeros, about 260 KB deflated
    pkl = PROTO2 + rebuild(storage(numel=numel), I(0), tup(I(numel)), tup(I(1)), NEWFALSE, ordered_dict()) + STOP
    path = deflated_zip(tmp_path / "bomb.pt", pkl, {"0": bytes(numel * 4)})
    assert path.stat().st_size < 1 << 20
    assert_refused(path, "decompression bomb")


def test_a_recompressed_checkpoint_of_real_weights_still_loads(tmp_path: Path) -> None:
    weights = torch.randn(300_000)
    pkl = PROTO2 + rebuild(storage(numel=300_000), I(0), tup(I(300_000)), tup(I(1)), NEWFALSE, ordered_dict())
    path = deflated_zip(tmp_path / "zipped.pt", pkl + STOP, {"0": weights.numpy().tobytes()})
    assert torch.equal(load(path), weights)


def forge_sizes(path: Path, member: str, size: int) -> None:
    """Rewrite `member`'s compressed and uncompressed sizes in the zip's central directory."""
    raw = bytearray(path.read_bytes())
    name = member.encode()
    at = raw.index(b"PK\x01\x02" + raw[raw.index(b"PK\x01\x02") + 4 : raw.index(b"PK\x01\x02") + 4])
    while True:
        name_length = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46 : at + 46 + name_length] == name:
            struct.pack_into("<II", raw, at + 20, size, size)
            path.write_bytes(bytes(raw))
            return
        at = raw.index(b"PK\x01\x02", at + 4)


def test_a_record_declaring_more_bytes_than_the_file_has_is_refused_unread(tmp_path: Path) -> None:
    pkl = PROTO2 + rebuild(storage(numel=2**30), I(0), tup(I(4)), tup(I(1)), NEWFALSE, ordered_dict()) + STOP
    path = torch_zip(tmp_path / "forged.pt", pkl, FOUR_FLOATS)
    forge_sizes(path, "archive/data/0", 2**32 - 4)  # 4 GiB declared, 16 bytes present
    assert_refused(path, "larger than the file itself")


def test_an_implausible_class_count_is_refused_before_the_model_is_built(tmp_path: Path) -> None:
    """200,000 classes (the limit is 100,000): every class head is a view of one shared 25 MB storage."""
    from formula import formula_torch_state_dict
    from yolonas_cli.weights.loader import load_weights

    state = formula_torch_state_dict("tiny")
    shared = torch.zeros(200_000 * 32)
    for head, width in (("head1", 8), ("head2", 16), ("head3", 32)):
        state[f"heads.{head}.cls_pred.weight"] = shared[: 200_000 * width].view(200_000, width, 1, 1)
        state[f"heads.{head}.cls_pred.bias"] = shared[:200_000]
    torch.save({"net": state}, tmp_path / "many_classes.pth")
    with pytest.raises(WeightsError, match=r"num classes = 200000, outside 1\.\.100000"):
        load_weights(tmp_path / "many_classes.pth")


def test_a_plausible_but_enormous_architecture_is_refused_on_the_meta_device() -> None:
    """Each number within its range, but 2.5 billion parameters: counted without allocating them."""
    from dataclasses import replace

    from yolonas_cli.model.yolo_nas import VARIANTS
    from yolonas_cli.weights.loader import check_fits, check_plausible

    arch = replace(VARIANTS["yolo_nas_l"].arch, num_classes=100_000, head_channels=(8192, 8192, 8192))
    check_plausible(arch, Path("big.pt"))  # every number is inside ARCH_LIMITS
    with pytest.raises(WeightsError, match=r"more than the 500,000,000 accepted"):
        check_fits(arch, {}, Path("big.pt"))
