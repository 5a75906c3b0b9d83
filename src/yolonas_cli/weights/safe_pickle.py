"""A restricted reader for PyTorch's zip checkpoint format that never runs code from the file.

`torch.save` writes a zip archive with one top-level folder holding `data.pkl` (a pickle whose tensors
are *persistent ids* pointing at raw byte records), `data/<key>` (one record per storage), `byteorder`
and `version`. A pickle can name any importable callable and call it, so this module reads `data.pkl`
with its own unpickler that

* resolves only an explicit allow-list of globals (`find_class`): `collections.OrderedDict`,
  `builtins.set`, the legacy typed storage names (`torch.FloatStorage`, ...), the tensor rebuild
  functions of `torch._utils` (mapped to our own validating reimplementations), and the torch.nn /
  SuperGradients (3.1 - 3.7) class paths that a pickled YOLO-NAS model names (mapped to the inert `Stub`);
* lets the object-building opcodes (REDUCE, NEWOBJ, BUILD, APPEND(S), SETITEM(S), ADDITEMS) act only
  on those allow-listed callables, on `Stub` instances and on plain containers, and refuses INST, OBJ,
  EXT* and out-of-band buffers outright;
* reads each storage record itself, after checking that the record exists and that its size is exactly
  the size the pickle declares, so nothing is allocated beyond what the archive really holds: every
  record's declared size is checked against the file's own size first (a record stored uncompressed, as
  torch writes them, cannot be larger than its bytes in the file; a compressed one, as a re-zipped file has,
  at most MAX_DEFLATE_RATIO times), and a tensor may be larger than its storage (an `expand`-like view with
  zero or overlapping strides) only up to MAX_OVERLAPPING_ELEMENTS elements.

The C `pickle.Unpickler` looks up `__setstate__`, `append`, `extend` and `__setitem__` on whatever
object is on its stack; to control those opcodes this reader subclasses the pure-Python reference
implementation of `pickle.Unpickler` (`pickle._Unpickler`, same protocol, same opcodes) and replaces
their handlers. Everything refused raises `yolonas_cli.errors.WeightsError` with a one-line message.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from yolonas_cli.core.errors import WeightsError

__all__ = [
    "MAX_PICKLE_BYTES",
    "MAX_TOTAL_BYTES",
    "Stub",
    "is_module_stub",
    "load",
    "stub_state_dict",
]

MAX_TOTAL_BYTES = 8 * 1024**3
"""Largest total uncompressed archive size accepted (YOLO-NAS L in fp32 is about 330 MiB)."""
MAX_PICKLE_BYTES = 256 * 1024**2
"""Largest `data.pkl` accepted (a pickled YOLO-NAS L model is well under 1 MiB)."""
MAX_MEMBERS = 100_000
MAX_DIMS = 16
MAX_MODULE_DEPTH = 100
MAX_DEFLATE_RATIO = 32
"""Float weights barely compress (about 0.9 with deflate); a re-zipped checkpoint is far below 32 times, a
2 GiB record deflated to 2 MB (1000 times) is a bomb."""
MAX_OVERLAPPING_ELEMENTS = 1 << 24
"""A view with more elements than its storage holds (zero or overlapping strides, as `expand` makes) costs
memory only when copied: 16 Mi elements (64 MiB of float32) allows small broadcast tensors, and stops a tiny
file from declaring a tensor of 2**40 elements that a later copy would allocate."""
_MAX_DIM_SIZE = 2**48
_CHUNK = 1 << 20
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_FIX = "only load weights from a source you trust"

# --------------------------------------------------------------------------------------------------
# The allow-list
# --------------------------------------------------------------------------------------------------

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}
"""Legacy typed-storage names that `torch.save` writes into the persistent id of each tensor storage."""

_TORCH_MODULES: dict[str, tuple[str, ...]] = {
    "torch.nn.modules.conv": ("Conv2d", "ConvTranspose2d"),
    "torch.nn.modules.batchnorm": ("BatchNorm2d",),
    "torch.nn.modules.activation": ("ReLU",),
    "torch.nn.modules.linear": ("Identity",),
    "torch.nn.modules.container": ("Sequential", "ModuleList"),
    "torch.nn.modules.pooling": ("MaxPool2d",),
    "torch.nn.modules.dropout": ("Dropout",),
}
"""torch.nn layers that a pickled YOLO-NAS model contains; they become inert `Stub`s, never real modules."""

_SG = "super_gradients"
_SG_DET = f"{_SG}.training.models.detection_models"
SG_MODEL_CLASSES: dict[str, tuple[str, ...]] = {
    f"{_SG_DET}.yolo_nas.yolo_nas_variants": ("YoloNAS_S", "YoloNAS_M", "YoloNAS_L"),
}
"""The SuperGradients top-level model classes (a whole pickled model is one of these)."""

SG_MODULE_CLASSES: dict[str, tuple[str, ...]] = {
    **SG_MODEL_CLASSES,
    f"{_SG}.modules.detection_modules": ("NStageBackbone",),
    f"{_SG_DET}.yolo_nas.yolo_stages": (
        "YoloNASStem",
        "YoloNASStage",
        "YoloNASCSPLayer",
        "YoloNASBottleneck",
        "SequentialWithIntermediates",
        "YoloNASUpStage",
        "YoloNASDownStage",
    ),
    f"{_SG}.modules.qarepvgg_block": ("QARepVGGBlock",),
    f"{_SG}.modules.skip_connections": ("Residual",),
    f"{_SG}.modules.conv_bn_act_block": ("Conv", "ConvBNAct"),
    f"{_SG}.modules.conv_bn_relu_block": ("ConvBNReLU",),
    f"{_SG_DET}.csp_darknet53": ("SPP",),
    f"{_SG_DET}.yolo_nas.panneck": ("YoloNASPANNeckWithC2",),
    f"{_SG_DET}.yolo_nas.dfl_heads": ("NDFLHeads", "YoloNASDFLHead"),
}
"""SuperGradients nn.Module classes of the YOLO-NAS S/M/L module tree (same paths in SG 3.1 to 3.7)."""

SG_PROCESSING_CLASSES: dict[str, tuple[str, ...]] = {
    f"{_SG}.training.processing.processing": (
        "ComposeProcessing",
        "DetectionLongestMaxSizeRescale",
        "DetectionRescale",
        "DetectionCenterPadding",
        "DetectionBottomRightPadding",
        "StandardizeImage",
        "NormalizeImage",
        "ImagePermute",
        "ReverseImageChannels",
    ),
}
"""SuperGradients image-processing classes stored in a pickled model's `_image_processor`."""


def _qualnames(table: dict[str, tuple[str, ...]]) -> frozenset[str]:
    """Flatten a {module: (class, ...)} table into dotted names."""
    return frozenset(f"{module}.{name}" for module, names in table.items() for name in names)


MODULE_QUALNAMES = _qualnames(_TORCH_MODULES) | _qualnames(SG_MODULE_CLASSES)
MODEL_QUALNAMES = _qualnames(SG_MODEL_CLASSES)
PROCESSING_QUALNAMES = _qualnames(SG_PROCESSING_CLASSES)

# --------------------------------------------------------------------------------------------------
# Internal errors (turned into WeightsError naming the file by `load`)
# --------------------------------------------------------------------------------------------------


class _Forbidden(Exception):
    """The pickle names a global outside the allow-list."""


class _Malformed(Exception):
    """The archive or pickle breaks a structural rule (sizes, opcodes, argument types)."""


def _kind(value: object) -> str:
    """Describe a value by its type only (never by repr: untrusted values may be huge or odd)."""
    if isinstance(value, Stub):
        return f"a {value.qualname} object"
    return f"a {type(value).__name__}"


# --------------------------------------------------------------------------------------------------
# Inert objects produced by the unpickler
# --------------------------------------------------------------------------------------------------


class Stub:
    """Inert stand-in for a pickled torch.nn / SuperGradients object.

    It only remembers the original dotted class name (`qualname`), whether it is a module or a
    processing object (`kind`) and the attribute dict that the pickle's BUILD handed it (`state`).
    It has no behaviour: no `__getattr__`, no callables, nothing that a later BUILD could replace.
    """

    __slots__ = ("kind", "qualname", "state")

    def __init__(self, qualname: str, kind: str) -> None:
        self.qualname = qualname
        self.kind = kind
        self.state: dict[str, Any] | None = None

    def __setstate__(self, state: object) -> None:
        """Store the attribute dict once; refuse anything but a str-keyed dict without dunder keys."""
        if self.state is not None:
            raise _Malformed(f"sets the state of a {self.qualname} object twice")
        self.state = _plain_attribute_dict(state, self.qualname)

    def get(self, name: str, default: Any = None) -> Any:
        """An attribute from the stored state, or `default`."""
        return default if self.state is None else self.state.get(name, default)

    @property
    def class_name(self) -> str:
        """The bare class name, e.g. `YoloNAS_S`."""
        return self.qualname.rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"Stub({self.qualname})"


def _plain_attribute_dict(state: object, owner: str) -> dict[str, Any]:
    """Validate a BUILD state: a dict with str keys, none of them a dunder name like `__class__`."""
    if not isinstance(state, dict):
        raise _Malformed(f"gives a {owner} object a state that is {_kind(state)}, not a dict")
    for key in state:
        if type(key) is not str:
            raise _Malformed(f"gives a {owner} object an attribute name that is {_kind(key)}")
        if key.startswith("__") and key.endswith("__"):
            raise _Malformed(f"tries to set the special attribute '{key[:40]}' on a {owner} object")
    return dict(state)


class _StubFactory:
    """What `find_class` returns for an allowed module/processing class: NEWOBJ turns it into a Stub."""

    __slots__ = ("kind", "qualname")

    def __init__(self, qualname: str, kind: str) -> None:
        self.qualname = qualname
        self.kind = kind


class _StorageType:
    """What `find_class` returns for `torch.<X>Storage`: only a dtype tag inside a persistent id."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name = name
        self.dtype = dtype


class _Storage:
    """One storage record of the archive, as a flat 1-D CPU tensor that tensors are views of."""

    __slots__ = ("dtype", "key", "tensor")

    def __init__(self, key: str, dtype: torch.dtype, tensor: torch.Tensor) -> None:
        self.key = key
        self.dtype = dtype
        self.tensor = tensor


class _SafeFunction:
    """An allow-listed callable: our own reimplementation, named after the global it replaces."""

    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn


# --------------------------------------------------------------------------------------------------
# Our reimplementations of the allowed callables (each validates its arguments)
# --------------------------------------------------------------------------------------------------


def _int(value: object, what: str, upper: int = _MAX_DIM_SIZE) -> int:
    """A non-negative Python int (not bool) below `upper`."""
    if type(value) is not int or not 0 <= value < upper:
        raise _Malformed(f"gives a tensor {what} that is not an integer in [0, {upper})")
    return value


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    """A tuple of at most MAX_DIMS non-negative ints."""
    if type(value) is not tuple or len(value) > MAX_DIMS:
        raise _Malformed(f"gives a tensor {what} that is not a tuple of at most {MAX_DIMS} integers")
    return tuple(_int(item, what) for item in value)


def _check_view(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
    """Refuse a view whose elements would fall outside its storage."""
    if len(size) != len(stride):
        raise _Malformed("gives a tensor whose size and stride have different lengths")
    numel = storage.tensor.numel()
    if 0 in size:
        if offset > numel:
            raise _Malformed(f"puts a tensor outside its storage (record '{storage.key}')")
        return
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= numel:
        raise _Malformed(f"puts a tensor outside its storage (record '{storage.key}')")
    elements = 1
    for n in size:
        elements *= n
    if elements > numel and elements > MAX_OVERLAPPING_ELEMENTS:
        raise _Malformed(
            f"declares a tensor of {elements} elements over a storage of {numel} (zero or overlapping strides; "
            f"at most {MAX_OVERLAPPING_ELEMENTS} are accepted)"
        )


def _check_flags(requires_grad: object, hooks: object) -> None:
    """`requires_grad` must be a bool; backward hooks must be a dict (its contents are ignored)."""
    if type(requires_grad) is not bool:
        raise _Malformed("gives a tensor a requires_grad flag that is not a bool")
    if type(hooks) not in (dict, OrderedDict):
        raise _Malformed("gives a tensor backward hooks that are not a dict")


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object,
    backward_hooks: object,
    metadata: object = None,
) -> torch.Tensor:
    """Safe `torch._utils._rebuild_tensor_v2`: a bounds-checked strided view of a storage record."""
    if not isinstance(storage, _Storage):
        raise _Malformed(f"rebuilds a tensor from {_kind(storage)} instead of a storage record")
    offset = _int(storage_offset, "storage offset")
    shape = _int_tuple(size, "size")
    strides = _int_tuple(stride, "stride")
    _check_view(storage, offset, shape, strides)
    _check_flags(requires_grad, backward_hooks)
    if metadata is not None and type(metadata) not in (dict, OrderedDict):
        raise _Malformed("gives a tensor metadata that is not a dict")
    return torch.as_strided(storage.tensor, shape, strides, offset)


def _rebuild_parameter(data: object, requires_grad: object, backward_hooks: object) -> torch.Tensor:
    """Safe `torch._utils._rebuild_parameter`: returns the tensor itself (a plain tensor, no grad)."""
    if type(data) is not torch.Tensor:
        raise _Malformed(f"rebuilds a parameter from {_kind(data)} instead of a tensor")
    _check_flags(requires_grad, backward_hooks)
    return data


def _rebuild_parameter_with_state(
    data: object, requires_grad: object, backward_hooks: object, state: object
) -> torch.Tensor:
    """Safe `torch._utils._rebuild_parameter_with_state`: like `_rebuild_parameter`; the state is ignored."""
    if type(state) not in (dict, OrderedDict):
        raise _Malformed("gives a parameter a state that is not a dict")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _new_ordered_dict(*args: object) -> OrderedDict:
    """`collections.OrderedDict()` with no arguments (items arrive through SETITEMS)."""
    if args:
        raise _Malformed("calls OrderedDict with arguments")
    return OrderedDict()


def _new_set(*args: object) -> set:
    """`builtins.set()` or `set([str, ...])`, as used for `_non_persistent_buffers_set`."""
    if not args:
        return set()
    items = args[0]
    if len(args) != 1 or not isinstance(items, (list, tuple)) or any(type(i) is not str for i in items):
        raise _Malformed("calls set with something other than a list of strings")
    return set(items)


_REBUILDERS: dict[str, Callable[..., torch.Tensor]] = {
    "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter_with_state,
}
_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): _SafeFunction("collections.OrderedDict", _new_ordered_dict),
    ("builtins", "set"): _SafeFunction("builtins.set", _new_set),
    ("__builtin__", "set"): _SafeFunction("builtins.set", _new_set),
    **{("torch", n): _StorageType(n, d) for n, d in _STORAGE_DTYPES.items()},
    **{("torch._utils", n): _SafeFunction(f"torch._utils.{n}", f) for n, f in _REBUILDERS.items()},
}


def _resolve_global(module: str, name: str) -> object:
    """Map an allowed (module, name) pair to its safe replacement; raise `_Forbidden` for anything else."""
    found = _GLOBALS.get((module, name))
    if found is not None:
        return found
    qualname = f"{module}.{name}"
    if qualname in MODULE_QUALNAMES:
        return _StubFactory(qualname, "module")
    if qualname in PROCESSING_QUALNAMES:
        return _StubFactory(qualname, "processing")
    raise _Forbidden(qualname)


# --------------------------------------------------------------------------------------------------
# The archive
# --------------------------------------------------------------------------------------------------


class _Archive:
    """An opened, validated torch zip archive: its single top-level folder and the byte order."""

    def __init__(self, zf: zipfile.ZipFile, prefix: str, byteorder: str) -> None:
        self.zf = zf
        self.prefix = prefix
        self.byteorder = byteorder
        self.members = {info.filename: info for info in zf.infolist()}

    def info(self, name: str) -> zipfile.ZipInfo | None:
        """The member `<prefix>/<name>`, if present."""
        return self.members.get(f"{self.prefix}/{name}")

    def read(self, info: zipfile.ZipInfo) -> bytearray:
        """Read one member into a fresh bytearray of exactly its declared size, in bounded chunks."""
        size = info.file_size
        buf = bytearray(size)
        view = memoryview(buf)
        with self.zf.open(info) as handle:
            pos = 0
            while pos < size:
                chunk = handle.read(min(_CHUNK, size - pos))
                if not chunk:
                    raise _Malformed(f"has a truncated record {_quote(info.filename)}")
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
        return buf


_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_member_name(name: str) -> str:
    """Return the top-level folder of a member name.

    Older torch versions name the folder after the saved file, so any printable name is allowed, but
    not an absolute path, a drive letter, a backslash, a control character or an empty/`.`/`..` part.
    """
    parts = name.split("/")
    unsafe = (
        len(name) > 1024
        or "\\" in name
        or _DRIVE.match(name) is not None
        or any(ord(char) < 32 or ord(char) == 127 for char in name)
        or any(part in ("", ".", "..") for part in parts)
    )
    if unsafe:
        raise _Malformed(f"contains an unsafe member name {_quote(name)}")
    if len(parts) < 2:
        raise _Malformed(f"has a member {_quote(name)} outside the archive folder")
    return parts[0]


def _quote(name: str) -> str:
    """A member name for a message: quoted, control characters escaped, at most 80 characters."""
    return ascii(name[:80])


def _validate_members(zf: zipfile.ZipFile, max_total_bytes: int, file_size: int) -> str:
    """Check names, the single top-level folder, duplicates and the sizes; return the folder."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _Malformed(f"has more than {MAX_MEMBERS} members")
    prefixes = {_check_member_name(info.filename) for info in infos}
    if len(prefixes) != 1:
        raise _Malformed("does not have exactly one top-level folder")
    if len({info.filename for info in infos}) != len(infos):
        raise _Malformed("contains duplicate member names")
    if sum(info.file_size for info in infos) > max_total_bytes:
        raise _Malformed(f"would unpack to more than {max_total_bytes} bytes")
    _check_sizes_against_file(infos, file_size)
    return prefixes.pop()


def _check_sizes_against_file(infos: list[zipfile.ZipInfo], file_size: int) -> None:
    """Declared sizes must be possible for a file of `file_size` bytes (checked before any record is read,
    since a record is read into a buffer of its declared size): a stored record holds exactly its bytes, and
    compressed records together unpack to at most MAX_DEFLATE_RATIO times their compressed bytes."""
    if sum(info.compress_size for info in infos) > file_size:
        raise _Malformed("declares records larger than the file itself (truncated or forged sizes)")
    for info in infos:
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise _Malformed(f"declares a stored record {_quote(info.filename)} larger than its bytes")
    packed = [info for info in infos if info.compress_type != zipfile.ZIP_STORED]
    unpacked = sum(info.file_size for info in packed)
    if unpacked > (1 << 20) and unpacked > MAX_DEFLATE_RATIO * sum(info.compress_size for info in packed):
        raise _Malformed(
            f"has compressed records that unpack to {unpacked} bytes, over {MAX_DEFLATE_RATIO} times their size "
            "in the file (torch.save stores records uncompressed; this looks like a decompression bomb)"
        )


def _read_byteorder(archive: _Archive) -> str:
    """The archive's `byteorder` record ('little' when absent, as older torch wrote none)."""
    info = archive.info("byteorder")
    if info is None:
        return "little"
    if info.file_size > 16:
        raise _Malformed("has an invalid byteorder record")
    value = bytes(archive.read(info)).decode("ascii", "replace").strip()
    if value not in ("little", "big"):
        raise _Malformed("has an invalid byteorder record")
    return value


def _check_version(archive: _Archive) -> None:
    """The optional `version` record must be a small decimal number (torch writes e.g. "3")."""
    info = archive.info("version")
    if info is None:
        return
    if info.file_size > 16 or not bytes(archive.read(info)).strip().isdigit():
        raise _Malformed("has an invalid version record")


def _sniff(path: Path) -> None:
    """Refuse missing, empty, legacy (pre-1.6) and non-zip files with a specific message."""
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist or is not a file")
    with path.open("rb") as handle:
        head = handle.read(len(_LEGACY_MAGIC))
    if not head:
        raise WeightsError(f"weights file '{path}' is empty; download or save it again")
    if head.startswith(_LEGACY_MAGIC) or head[:1] == b"\x80":
        raise WeightsError(
            f"'{path}' uses the legacy (pre-1.6) PyTorch format, which cannot be read safely; "
            "re-save it with torch>=1.6 (torch.save) in a trusted environment"
        )
    if not head.startswith(b"PK"):
        raise WeightsError(f"'{path}' is not a PyTorch checkpoint (not a zip archive made by torch.save)")


def _open_archive(zf: zipfile.ZipFile, max_total_bytes: int, file_size: int) -> _Archive:
    """Validate the zip layout and return the archive; raises `_Malformed` on any violation."""
    prefix = _validate_members(zf, max_total_bytes, file_size)
    archive = _Archive(zf, prefix, "little")
    if archive.info("constants.pkl") is not None:
        raise _Malformed("is a TorchScript archive (torch.jit.save); save the model's state_dict instead")
    pkl = archive.info("data.pkl")
    if pkl is None:
        raise _Malformed("has no data.pkl record")
    if pkl.file_size > MAX_PICKLE_BYTES:
        raise _Malformed(f"has a data.pkl larger than {MAX_PICKLE_BYTES} bytes")
    archive.byteorder = _read_byteorder(archive)
    _check_version(archive)
    return archive


# --------------------------------------------------------------------------------------------------
# The unpickler
# --------------------------------------------------------------------------------------------------


def _swap_bytes(raw: bytearray, dtype: torch.dtype) -> bytearray:
    """Convert a big-endian record to little-endian (complex numbers swap each component)."""
    unit = torch.empty(0, dtype=dtype).element_size()
    if dtype.is_complex:
        unit //= 2
    if unit == 1 or not raw:
        return raw
    grouped = torch.frombuffer(raw, dtype=torch.uint8).view(-1, unit).flip(1)
    return bytearray(grouped.contiguous().numpy().tobytes())


class _RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python `pickle.Unpickler` with an allow-list `find_class`, storage-record
    `persistent_load` and opcode handlers that only touch allow-listed callables, stubs and containers."""

    # Attributes of the reference implementation that its stub file does not declare.
    stack: list[Any]
    append: Callable[[Any], None]
    readline: Callable[[], bytes]
    pop_mark: Callable[[], list[Any]]

    def __init__(self, archive: _Archive, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._archive = archive
        self._storages: dict[str, _Storage] = {}

    # -- globals and storages ---------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> object:
        """Only the allow-list; everything else raises `_Forbidden` (nothing is imported)."""
        return _resolve_global(module, name)

    def persistent_load(self, pid: object) -> _Storage:
        """Resolve ('storage', <torch.XStorage>, key, location, numel) to a checked storage record."""
        if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
            raise _Malformed(f"has a persistent id that is {_kind(pid)}, not a storage reference")
        _, storage_type, key, location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise _Malformed(f"has a storage whose type is {_kind(storage_type)}")
        if type(key) is not str or not re.fullmatch(r"[A-Za-z0-9_]{1,64}", key) or type(location) is not str:
            raise _Malformed("has a storage reference with an invalid key or location")
        numel = _int(numel, "storage size", 2**62)
        cached = self._storages.get(key)
        if cached is not None:
            if cached.dtype != storage_type.dtype or cached.tensor.numel() != numel:
                raise _Malformed(f"declares storage record '{key}' twice with different types")
            return cached
        storage = self._read_storage(key, storage_type.dtype, numel)
        self._storages[key] = storage
        return storage

    def _read_storage(self, key: str, dtype: torch.dtype, numel: int) -> _Storage:
        """Read `data/<key>` after checking that its size is exactly numel * itemsize."""
        info = self._archive.info(f"data/{key}")
        if info is None:
            raise _Malformed(f"references a missing storage record 'data/{key}'")
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if info.file_size != numel * itemsize:
            raise _Malformed(
                f"declares storage 'data/{key}' as {numel * itemsize} bytes but the record holds {info.file_size}"
            )
        if numel == 0:
            return _Storage(key, dtype, torch.empty(0, dtype=dtype))
        raw = self._archive.read(info)
        if self._archive.byteorder == "big":
            raw = _swap_bytes(raw, dtype)
        if dtype == torch.bool:
            tensor = torch.frombuffer(raw, dtype=torch.uint8) != 0
        else:
            tensor = torch.frombuffer(raw, dtype=dtype)
        return _Storage(key, dtype, tensor)

    # -- object-building opcodes --------------------------------------------------------------------
    def load_reduce(self) -> None:
        """REDUCE: call only an allow-listed `_SafeFunction`, with a real tuple of arguments."""
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        if not isinstance(func, _SafeFunction):
            raise _Malformed(f"calls {_kind(func)}, which is not an allowed function")
        if type(args) is not tuple:
            raise _Malformed(f"calls {func.name} with arguments that are not a tuple")
        try:
            stack[-1] = func.fn(*args)
        except TypeError as exc:
            raise _Malformed(f"calls {func.name} with the wrong number of arguments") from exc

    def _new_stub(self, cls: object, args: object, kwargs: object = None) -> None:
        """NEWOBJ/NEWOBJ_EX: only an allowed class (a `_StubFactory`), with no arguments."""
        if not isinstance(cls, _StubFactory):
            raise _Malformed(f"instantiates {_kind(cls)}, which is not an allowed class")
        if type(args) is not tuple or args or (kwargs is not None and (type(kwargs) is not dict or kwargs)):
            raise _Malformed(f"instantiates {cls.qualname} with arguments")
        self.append(Stub(cls.qualname, cls.kind))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self._new_stub(cls, args)

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self._new_stub(cls, args, kwargs)

    def load_build(self) -> None:
        """BUILD: a Stub stores its dict once; an OrderedDict may get only torch's `_metadata` attribute."""
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is Stub:
            Stub.__setstate__(inst, state)
        elif type(inst) is OrderedDict:
            attrs = _plain_attribute_dict(state, "OrderedDict")
            if set(attrs) - {"_metadata"}:
                raise _Malformed("sets attributes other than _metadata on an OrderedDict")
            inst.__dict__.update(attrs)
        else:
            raise _Malformed(f"sets the state of {_kind(inst)}")

    def load_append(self) -> None:
        value = self.stack.pop()
        self._target(list, "append to").append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._target(list, "append to").extend(items)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._target((dict, OrderedDict), "set items on")[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._target((dict, OrderedDict), "set items on")
        if len(items) % 2:
            raise _Malformed("has an odd number of items for SETITEMS")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._target(set, "add items to").update(items)

    def _target(self, types: type | tuple[type, ...], action: str) -> Any:
        """The top of the stack, only if its exact type is one of `types`."""
        obj = self.stack[-1]
        allowed = types if isinstance(types, tuple) else (types,)
        if type(obj) not in allowed:
            raise _Malformed(f"tries to {action} {_kind(obj)}")
        return obj

    # -- opcodes torch.save never writes ---------------------------------------------------------
    def load_inst(self) -> None:
        """INST: resolve the name (so a forbidden global is reported as such), then refuse the opcode."""
        module = self.readline()[:-1].decode("utf-8")
        name = self.readline()[:-1].decode("utf-8")
        self.find_class(module, name)
        raise _Malformed(f"uses the INST opcode (on {module}.{name})")

    def load_obj(self) -> None:
        raise _Malformed("uses the OBJ opcode")

    def load_refused(self) -> None:
        raise _Malformed("uses a pickle opcode (extension registry or out-of-band buffer) that is refused")


def _dispatch_table() -> dict[int, Callable[..., None]]:
    """The reference unpickler's opcode table with the guarded handlers swapped in."""
    cls = _RestrictedUnpickler
    table: dict[int, Callable[..., None]] = dict(pickle._Unpickler.dispatch)
    overrides = {
        pickle.REDUCE: cls.load_reduce,
        pickle.NEWOBJ: cls.load_newobj,
        pickle.NEWOBJ_EX: cls.load_newobj_ex,
        pickle.BUILD: cls.load_build,
        pickle.APPEND: cls.load_append,
        pickle.APPENDS: cls.load_appends,
        pickle.SETITEM: cls.load_setitem,
        pickle.SETITEMS: cls.load_setitems,
        pickle.ADDITEMS: cls.load_additems,
        pickle.INST: cls.load_inst,
        pickle.OBJ: cls.load_obj,
    }
    for opcode, handler in overrides.items():
        table[opcode[0]] = handler
    for opcode in (
        pickle.EXT1,
        pickle.EXT2,
        pickle.EXT4,
        pickle.BYTEARRAY8,
        pickle.NEXT_BUFFER,
        pickle.READONLY_BUFFER,
    ):
        table[opcode[0]] = cls.load_refused
    return table


_RestrictedUnpickler.dispatch = _dispatch_table()

# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cap the length so an error message stays on one line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _translate(path: Path, exc: BaseException) -> WeightsError:
    """Turn an internal or library error into the one-line WeightsError for `path`."""
    if isinstance(exc, _Forbidden):
        return WeightsError(
            _one_line(
                f"refusing to load '{path}': it references '{exc}', which is not a tensor type or a "
                f"known YOLO-NAS class; {_FIX}"
            )
        )
    if isinstance(exc, _Malformed):
        return WeightsError(_one_line(f"refusing to load '{path}': it {exc}; {_FIX}"))
    if isinstance(exc, (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, struct.error)):
        return WeightsError(_one_line(f"'{path}' is truncated or corrupt ({exc}); download or save it again"))
    detail = f"{type(exc).__name__}: {exc}"
    return WeightsError(_one_line(f"'{path}' is corrupt or not a checkpoint readable safely ({detail})"))


def load(path: str | Path, *, max_total_bytes: int = MAX_TOTAL_BYTES) -> Any:
    """Read a `torch.save` zip file without executing anything it names.

    Returns plain Python containers, CPU tensors (views sharing their storage records, as in the file)
    and `Stub` objects for allow-listed torch.nn / SuperGradients classes. Raises WeightsError for a
    missing, empty, legacy, truncated, oversized or corrupt file and for any global outside the allow-list.
    """
    path = Path(path)
    _sniff(path)
    try:
        with zipfile.ZipFile(path) as zf:
            archive = _open_archive(zf, max_total_bytes, path.stat().st_size)
            data = bytes(archive.read(archive.info("data.pkl")))  # type: ignore[arg-type]
            return _RestrictedUnpickler(archive, data).load()
    except WeightsError:
        raise
    except Exception as exc:  # any failure of a hostile/corrupt file becomes one clear error
        raise _translate(path, exc) from exc


def is_module_stub(obj: object) -> bool:
    """True for a Stub that stands for an nn.Module (torch.nn or SuperGradients class)."""
    return type(obj) is Stub and obj.kind == "module"


def _named_entries(module: Stub, attr: str, source: str) -> dict[str, Any]:
    """A module's `_parameters` / `_buffers` / `_modules` dict (empty when absent), keys checked."""
    value = module.get(attr, {})
    if type(value) not in (dict, OrderedDict) or any(type(k) is not str for k in value):
        raise WeightsError(f"{source}: {module.qualname}.{attr} is not a dict of names")
    return value


def _collect(module: Stub, prefix: str, out: OrderedDict, seen: dict[int, str], depth: int, source: str) -> None:
    """Append `module`'s own parameters, persistent buffers, then its children (nn.Module order).

    Each module is visited once (`seen`: id -> where it was first met): a pickle can make a module a child of
    many parents through its memo, and a walk of that DAG as a tree costs 2**depth (a 7 KB file, 60 levels
    deep, would never finish); a YOLO-NAS model shares no module, so a second meeting is refused."""
    if id(module) in seen or depth > MAX_MODULE_DEPTH:
        first = seen.get(id(module))
        where = f"the submodule at '{prefix[:-1]}' is also at '{first}'" if first is not None else "it is too deep"
        raise WeightsError(
            f"{source}: the module tree is cyclic, shares modules or is deeper than {MAX_MODULE_DEPTH} ({where}); "
            "a YOLO-NAS model is a tree"
        )
    seen[id(module)] = prefix[:-1]
    skip = module.get("_non_persistent_buffers_set", set())
    if type(skip) is not set:
        raise WeightsError(f"{source}: {module.qualname}._non_persistent_buffers_set is not a set")
    buffers = _named_entries(module, "_buffers", source)
    own = [*_named_entries(module, "_parameters", source).items()]
    own += [(name, t) for name, t in buffers.items() if name not in skip]
    for name, tensor in own:
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise WeightsError(f"{source}: '{prefix}{name}' is {_kind(tensor)}, not a tensor")
        out[prefix + name] = tensor
    for name, child in _named_entries(module, "_modules", source).items():
        if child is None:
            continue
        if not is_module_stub(child):
            raise WeightsError(f"{source}: submodule '{prefix}{name}' is {_kind(child)}, not a module")
        _collect(child, f"{prefix}{name}.", out, seen, depth + 1, source)


def stub_state_dict(root: Stub, *, source: str = "the pickled model") -> OrderedDict[str, torch.Tensor]:
    """The state dict of a pickled module tree, in exactly `nn.Module.state_dict()` order.

    Per module: own `_parameters` (None skipped), then `_buffers` not listed in
    `_non_persistent_buffers_set` (None skipped), then each child of `_modules` in order, keys joined
    with '.'. `source` names the file in error messages.
    """
    if not is_module_stub(root):
        raise WeightsError(f"{source}: {_kind(root)} is not a pickled module")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    _collect(root, "", out, {}, 0, source)
    return out
