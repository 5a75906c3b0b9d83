"""scripts/gpu_check.py, the TensorRT / CUDA export check, runs on a GPU machine only now and then: this smoke
run on the CPU (`--device cpu`) keeps it working between those runs (imports, setup, the check harness, the
TorchScript comparison), and shows that a check whose package is missing is skipped with the reason."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'yolo-nas[onnx]')")


def test_gpu_check_script_runs_on_the_cpu() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--imgsz", "128"],
                          capture_output=True, text=True, timeout=600)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[0].startswith("device cpu, torch ")
    results = [line for line in lines if line[:4] in ("PASS", "FAIL", "SKIP")]
    assert len(results) == 6 and not any(line.startswith("FAIL") for line in results)
    torchscript = next(line for line in results if "TorchScript" in line)
    assert torchscript.startswith("PASS") and "max |box diff| 0.00e+00 px" in torchscript  # same kernels: exact
    if importlib.util.find_spec("tensorrt") is None:
        trt = [line for line in results if "TensorRT" in line]
        assert len(trt) == 4 and all(line.startswith("SKIP") and "tensorrt not installed" in line for line in trt)
    assert lines[-1].startswith("6/6 checks passed or skipped")
