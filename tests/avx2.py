"""Run code in a child Python whose torch uses the AVX2 kernels the reference fixtures were made with.

On x86 CPUs with AVX-512, PyTorch and oneDNN choose kernels whose float32 rounding differs from the AVX2 ones
the fixtures were computed with (tests/fixtures/README.md, "Which CPU kernels"). The kernel choice is read
from the environment when torch is imported, so it needs a fresh process: `ATEN_CPU_CAPABILITY=avx2`
(PyTorch's own kernels) and `ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN's convolutions). On a CPU without AVX-512 the
cap changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
TESTS = Path(__file__).resolve().parent


def run_with_avx2_kernels(code: str, timeout: float = 300) -> Any:
    """Run `code` (Python source that prints one JSON value as its last line) with the AVX2 kernels and
    `tests/` importable; returns that value. The child reports which kernels it used under "capability"
    when `code` prints a dict with that key."""
    env = {**os.environ, **AVX2_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
