"""Deterministic test weights: the fixture formula (`yolonas_cli.weights.synthetic`, written from its
description in tests/fixtures/README.md) applied to the original's key files, with the calibrated BatchNorm
statistics of the `*_bnstats.npz` fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yolonas_cli.weights.synthetic import read_key_file, synthetic_state_dict, synthetic_torch_state_dict

FIXTURES = Path(__file__).parent / "fixtures"


def read_keys(variant: str) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) pairs in state-dict order from `fixtures/keys/yolo_nas_<variant>.keys`."""
    return read_key_file(FIXTURES / "keys" / f"yolo_nas_{variant}.keys")


def _bnstats(variant: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"yolo_nas_{variant}_bnstats.npz") as bnstats:
        return {key: bnstats[key] for key in bnstats.files}


def formula_state_dict(variant: str) -> dict[str, np.ndarray]:
    """The fixture weights of `variant` (tiny, s, m, l) with the calibrated BatchNorm statistics."""
    return synthetic_state_dict(read_keys(variant), _bnstats(variant))


def formula_torch_state_dict(variant: str):
    """`formula_state_dict` as an ordered dict of torch tensors."""
    return synthetic_torch_state_dict(read_keys(variant), _bnstats(variant))
