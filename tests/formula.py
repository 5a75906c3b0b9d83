"""Deterministic test weights (the fixture formula, written from its description in the fixtures README).

Every value comes from a splitmix64 stream seeded by crc32 of the state-dict key, so the weights of any
YOLO-NAS key list can be rebuilt with numpy alone; BatchNorm running statistics come from the calibrated
`*_bnstats.npz` fixtures instead.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def splitmix_uniform(key: str, count: int) -> np.ndarray:
    """`count` float64 values in [0, 1) from the stream seeded by crc32(key)."""
    base = np.uint64(zlib.crc32(key.encode()) << 32)
    with np.errstate(over="ignore"):
        z = base + np.arange(count, dtype=np.uint64) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MUL1
        z = (z ^ (z >> np.uint64(27))) * _MUL2
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def formula_value(key: str, shape: tuple[int, ...]) -> np.ndarray:
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


def read_keys(variant: str) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) pairs in state-dict order from `fixtures/keys/yolo_nas_<variant>.keys`."""
    entries = []
    for line in (FIXTURES / "keys" / f"yolo_nas_{variant}.keys").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")[:2]
        entries.append((key, tuple(int(d) for d in shape.strip("[]").split(",") if d.strip())))
    return entries


def formula_state_dict(variant: str) -> dict[str, np.ndarray]:
    """The fixture weights of `variant` (tiny, s, m, l) with the calibrated BatchNorm statistics."""
    state = {key: formula_value(key, shape) for key, shape in read_keys(variant)}
    with np.load(FIXTURES / f"yolo_nas_{variant}_bnstats.npz") as bnstats:
        for key in bnstats.files:
            state[key] = np.asarray(bnstats[key], dtype=np.float32)
    return state


def formula_torch_state_dict(variant: str):
    """`formula_state_dict` as an ordered dict of torch tensors."""
    import collections

    import torch

    return collections.OrderedDict((k, torch.from_numpy(v)) for k, v in formula_state_dict(variant).items())
