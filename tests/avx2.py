"""Running tests on the CPU kernels the reference fixtures were made with: AVX2, 2 threads.

On x86 CPUs with AVX-512, PyTorch and oneDNN choose kernels whose float32 rounding differs from the AVX2 ones
the fixtures were computed with (tests/fixtures/README.md, "Which CPU kernels"), and parallel reductions split
their work (and so round) by thread count. The kernel choice is read from the environment when torch is
imported, so it needs a fresh process with `ATEN_CPU_CAPABILITY=avx2` (PyTorch's own kernels),
`ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN's convolutions) and 2 threads. On a CPU without AVX-512 the cap changes nothing.

Two ways to use it:
- `run_with_avx2_kernels(code)`: run a piece of Python in such a child and get back the JSON it prints;
- `run_pinned(test_file, select)`: re-run a selection of a test file's tests in such a child; inside that run
  `kernels_pinned()` is true, so those tests can demand bit-identical results (on other runs they use the
  measured float noise of other kernels).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "2"}
PINNED_THREADS = 2  # the fixtures' thread count
TESTS = Path(__file__).resolve().parent


def kernels_pinned() -> bool:
    """True inside a child started with `AVX2_ENV` (and torch really runs its AVX2 kernels)."""
    import torch

    requested = all(os.environ.get(k) == v for k, v in AVX2_ENV.items())
    return requested and torch.backends.cpu.get_cpu_capability() == "AVX2"


def can_pin() -> bool:
    """Whether this machine can run torch's AVX2 kernels (x86-64 with AVX2)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    import torch

    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def _child_env() -> dict[str, str]:
    # OpenMP threads that sleep instead of spinning while they wait (the results do not change: the work is split
    # the same way). Measured on the 2 shared cores at load 10, the pinned 30-step trajectory run: 82 s of CPU and
    # 190 s wall with spinning threads, 25 s and 62 s passive, bit for bit the same.
    env = {**os.environ, **AVX2_ENV, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_with_avx2_kernels(code: str, timeout: float = 300) -> Any:
    """Run `code` (Python source that prints one JSON value as its last line) with the AVX2 kernels and
    `tests/` importable; returns that value. The child reports which kernels it used under "capability"
    when `code` prints a dict with that key."""
    done = subprocess.run(
        [sys.executable, "-c", code], env=_child_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_pinned(test_file: str, select: str, timeout: float = 600) -> tuple[int, str]:
    """Run `pytest test_file -k <select>` in a fresh interpreter with the fixture kernels pinned, from the
    repository root.

    Returns (number of tests passed, the output). Raises AssertionError when anything failed, errored or was
    skipped, or nothing ran, with the tail of the output.
    """
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file, "-k", select]
    root = Path(test_file).resolve().parents[1]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_child_env(), cwd=root)
    output = done.stdout + done.stderr
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    passed = re.search(r"(\d+) passed", summary)
    bad = re.search(r"\d+ (failed|error|errors|skipped)", summary)
    assert done.returncode == 0 and passed and not bad, f"pinned run: {summary}\n{output[-4000:]}"
    return int(passed.group(1)), output
