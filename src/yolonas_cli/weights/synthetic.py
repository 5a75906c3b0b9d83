"""Deterministic synthetic weights for any YOLO-NAS state-dict key list: the formula the reference fixtures of
the original were made with (their README describes it; `tests/formula.py` cites it). Every value comes from a
splitmix64 stream seeded by crc32 of the key, so anyone can rebuild the same weights with numpy alone: the
tests compare our outputs with the original's on them, and the GPU checks and benchmarks run on them where the
real weights cannot be downloaded (they run at the real weights' speed).

    keys = read_key_file("tests/fixtures/keys/yolo_nas_s.keys")     # (key, shape) in state-dict order
    state = synthetic_state_dict(keys, np.load("tests/fixtures/yolo_nas_s_bnstats.npz"))
    net = synthetic_torch_state_dict_from_files(keys_file, bn_stats_file)   # the same as torch tensors
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)

KeyShapes = Iterable[tuple[str, tuple[int, ...]]]


def splitmix_uniform(key: str, count: int) -> np.ndarray:
    """`count` float64 values in [0, 1) from the stream seeded by crc32(key)."""
    base = np.uint64(zlib.crc32(key.encode()) << 32)
    with np.errstate(over="ignore"):
        z = base + np.arange(count, dtype=np.uint64) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MUL1
        z = (z ^ (z >> np.uint64(27))) * _MUL2
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def synthetic_value(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The formula's value for one state-dict entry (float32; int64 zeros for num_batches_tracked)."""
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    count = int(np.prod(shape)) if shape else 1
    s = 2.0 * splitmix_uniform(key, count) - 1.0
    leaf = key.rsplit(".", 2)
    is_bn = len(leaf) >= 3 and leaf[-2] in ("bn", "post_bn")
    if key.endswith("running_var"):
        value = 1.0 + 0.5 * s
    elif key.endswith("running_mean"):
        value = 0.2 * s
    elif is_bn and leaf[-1] == "weight":
        value = 1.0 + 0.5 * s
    elif is_bn and leaf[-1] == "bias":
        value = 0.2 * s
    elif key.endswith("alpha"):
        value = 1.0 + 0.5 * s
    elif len(shape) >= 2:
        value = s / np.sqrt(float(np.prod(shape[1:])))
        if key.endswith("cls_pred.weight"):
            value = value * 0.5
        elif key.endswith("reg_pred.weight"):
            value = value * 0.3
    elif key.endswith("cls_pred.bias"):
        value = -4.0 + 0.1 * s
    else:
        value = 0.1 * s
    return value.reshape(shape).astype(np.float32)


def read_key_file(path: str | Path) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) pairs in state-dict order from a key file (`key<TAB>[shape]<TAB>dtype` lines, # comments)."""
    entries = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")[:2]
        entries.append((key, tuple(int(d) for d in shape.strip("[]").split(",") if d.strip())))
    return entries


def synthetic_state_dict(keys: KeyShapes, bn_stats: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The formula's weights for `keys`; BatchNorm running statistics taken from `bn_stats` where given."""
    state = {key: synthetic_value(key, shape) for key, shape in keys}
    for key, value in (bn_stats or {}).items():
        state[key] = np.asarray(value, dtype=np.float32)
    return state


def synthetic_torch_state_dict(keys: KeyShapes, bn_stats: Mapping[str, np.ndarray] | None = None):  # -> OrderedDict
    """`synthetic_state_dict` as an ordered dict of torch tensors (a checkpoint's `net`)."""
    import collections

    import torch

    state = synthetic_state_dict(keys, bn_stats)
    return collections.OrderedDict((k, torch.from_numpy(v)) for k, v in state.items())


def synthetic_torch_state_dict_from_files(keys_file: str | Path, bn_stats_file: str | Path):  # -> OrderedDict
    """`synthetic_torch_state_dict` of a key file with the BatchNorm statistics of an .npz file."""
    with np.load(bn_stats_file) as bn_stats:
        stats = {key: bn_stats[key] for key in bn_stats.files}
    return synthetic_torch_state_dict(read_key_file(keys_file), stats)
