"""Running tests under the CPU kernels the fixtures were made with (AVX2, 2 threads).

The original's fixtures were generated with `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` and 2 threads.
Those variables only take effect before torch is imported, so a parity test file re-runs itself in a
subprocess with them set (`run_pinned`), and inside that run `kernels_pinned()` is true: its tests can then
demand bit-identical results. On other runs they use the measured float noise of other kernels.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

PINNED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "2"}
PINNED_THREADS = 2  # the fixtures' thread count: parallel reductions split work (and round) by thread count


def kernels_pinned() -> bool:
    """True inside a run started by `run_pinned` (and torch really runs its AVX2 kernels)."""
    import torch

    requested = all(os.environ.get(k) == v for k, v in PINNED_ENV.items())
    return requested and torch.backends.cpu.get_cpu_capability() == "AVX2"


def can_pin() -> bool:
    """Whether this machine can run torch's AVX2 kernels (x86-64 with AVX2)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    import torch

    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def run_pinned(test_file: str, select: str, timeout: float = 600) -> tuple[int, str]:
    """Run `pytest test_file -k <select>` in a fresh interpreter with the fixture kernels pinned, from the
    repository root.

    Returns (number of tests passed, the output). Raises AssertionError when anything failed, errored or was
    skipped, or nothing ran, with the tail of the output.
    """
    env = {**os.environ, **PINNED_ENV}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file, "-k", select]
    root = Path(test_file).resolve().parents[1]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=root)
    output = done.stdout + done.stderr
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    passed = re.search(r"(\d+) passed", summary)
    bad = re.search(r"\d+ (failed|error|errors|skipped)", summary)
    assert done.returncode == 0 and passed and not bad, f"pinned run: {summary}\n{output[-4000:]}"
    return int(passed.group(1)), output
