"""The checks of argument values particular to the modes (the general ones are in `core.checks`): Ray
addresses, ports, format lists, tile sizes, devices for training, cache, resume and freeze values.
"""

from __future__ import annotations

from typing import Any

from yolonas_cli.core.checks import (
    Check,
    bad_value,
    choice,
    device,
    integer,
    text,
)
from yolonas_cli.engine.slice_config import tile_size
from yolonas_cli.formats import registry

EXPORT_FORMATS = registry.EXPORT_FORMATS
BENCHMARK_FORMATS = tuple(f.name for f in registry.FORMATS)  # the PyTorch weights and every export
FORMAT_ALIASES = registry.ALIASES


def ray_target(name: str, value: Any) -> str | None:
    """None (this process), auto (the running cluster), local (start one here) or a cluster address
    (ray://host:port for Ray Client, host:port for the cluster's GCS)."""
    allowed = "use auto, local, or a cluster address such as ray://host:10001 (None = no Ray)"
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_value(name, value, "is not valid", allowed)
    spelled = value.strip()
    if spelled.lower() in ("auto", "local"):
        return spelled.lower()
    host, _, number = spelled.removeprefix("ray://").rpartition(":")
    if not host or not number.isdigit() or not 0 < int(number) < 65536 or any(c.isspace() for c in spelled):
        raise bad_value(name, value, "is not valid", allowed)
    return spelled


def tcp_port(name: str, value: Any) -> int:
    """A TCP port 0-65535 (0 = any free port)."""
    checked = integer(0)(name, value)
    if checked is None or checked > 65535:
        raise bad_value(name, value, "is out of range", "use a port between 0 and 65535 (0 = any free port)")
    return checked


def formats(name: str, value: Any) -> list[str] | None:
    """None (every available backend) or backend names as a list or comma-separated text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip(" '\"") for part in value.strip("[]()").split(",")]
    if not isinstance(value, (list, tuple)) or not value:
        raise bad_value(name, value, "is not valid", f"use names among {', '.join(BENCHMARK_FORMATS)}")
    check = choice(BENCHMARK_FORMATS, FORMAT_ALIASES)
    picked = [check(name, item) for item in value]
    return list(dict.fromkeys(picked))


def tile(name: str, value: Any) -> tuple[int, int] | None:
    """None (no slicing) or a tile size N or (h, w) in whole pixels above `slice_config.MIN_TILE`, as (h, w)
    (the error names `slice=`)."""
    return None if value is None else tile_size(value)


def optional(check: Check) -> Check:
    """`check`, with None allowed (None: the value is chosen later, e.g. the training recipe's)."""

    def checked(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return checked


def devices(name: str, value: Any) -> str:
    """One device (see `core.checks.device`) or several CUDA devices for multi-GPU training: `0,1` (text),
    [0, 1] or (0, 1) -> "cuda:0,cuda:1"."""
    if isinstance(value, str) and "," in value:
        value = [part.strip() for part in value.strip("[]()").split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        return device(name, value)
    picked = [device(name, int(v) if isinstance(v, str) and v.isdigit() else v) for v in value]
    if len(picked) < 2 or not all(p.startswith("cuda:") for p in picked) or len(set(picked)) != len(picked):
        raise bad_value(name, value, "is not valid", "several devices must be distinct CUDA indices, e.g. device=0,1")
    return ",".join(picked)


def cache_choice(name: str, value: Any) -> bool | str:
    """False (read images from disk every epoch), True or "ram", or "disk"; returned as False, "ram" or "disk"."""
    if value is False or value is None:
        return False
    if value is True:
        return "ram"
    return choice(("ram", "disk"))(name, value)


def resume_value(name: str, value: Any) -> bool | str:
    """False, True (resume the run of `model=`, or the latest run) or the path of a last.pt."""
    if isinstance(value, bool):
        return value
    return text()(name, value)


def freeze_value(name: str, value: Any) -> int | list[int | str] | None:
    """None, a count of leading layers, or a list of layer indices and parameter-name prefixes."""
    allowed = "use a layer count (freeze=10) or a list of layer indices and name prefixes (freeze=[0,'neck'])"
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise bad_value(name, value, "is out of range", allowed)
        return value
    items = list(value) if isinstance(value, (list, tuple)) else None
    ok = items is not None and all(
        isinstance(i, str) or (isinstance(i, int) and not isinstance(i, bool)) for i in items
    )
    if not ok:
        raise bad_value(name, value, "is not valid", allowed)
    return items
