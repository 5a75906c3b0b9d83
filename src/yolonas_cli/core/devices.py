"""Choosing the compute device from `device=auto|cpu|cuda|cuda:N|mps|N`."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError


def select_device(spec: str | int | None = "auto") -> torch.device:
    """The torch.device for a `device=` value; a GPU that is asked for but missing is a UsageError."""
    text = "auto" if spec is None else str(spec).strip().lower()
    if text.isdigit():
        text = f"cuda:{text}"
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise UsageError("device=mps was asked for but Apple's MPS is not available here; use device=cpu")
        return torch.device("mps")
    if text == "cuda" or text.startswith("cuda:"):
        return _cuda_device(text)
    raise UsageError(f"device={spec} is not a device: use auto, cpu, cuda, cuda:N (or just N) or mps")


def _cuda_device(text: str) -> torch.device:
    if not torch.cuda.is_available():
        raise UsageError(f"device={text} was asked for but no CUDA GPU is available; use device=cpu")
    index_text = text.partition(":")[2] or "0"
    if not index_text.isdigit() or int(index_text) >= torch.cuda.device_count():
        raise UsageError(
            f"device={text}: there are {torch.cuda.device_count()} CUDA devices; "
            f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return torch.device(f"cuda:{int(index_text)}")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_half(half: bool, device: torch.device) -> bool:
    """FP16 only where it helps (CUDA, MPS); on a CPU it is refused with a warning and FP32 is used."""
    if half and device.type == "cpu":
        console.warn("half=True needs a GPU; running in FP32 on the CPU")
        return False
    return half


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """What runs on `device`, for the console: "cuda:0 (NVIDIA H200)", "cpu (AMD EPYC 7B13)", "mps"."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({cpu_name()})"
    return str(device)
