"""The GPU scripts run on a GPU machine only now and then: these smoke runs on the CPU keep them working between
those runs. scripts/gpu_check.py (`--device cpu`): imports, setup, the check harness, the TorchScript
comparison, and a check whose package is missing skipped with the reason. scripts/gpu_benchmark.sh
(`DEVICE=cpu`, the tiny model): weights made offline, the benchmark run, its files copied to $OUT."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'yolo-nas[onnx]')")


def test_gpu_check_script_runs_on_the_cpu() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--imgsz", "128"],
        capture_output=True,
        text=True,
        timeout=600,
    )
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


def test_gpu_benchmark_script_runs_on_the_cpu(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "VARIANT": "tiny",
        "IMGSZ": "64",
        "RUNS": "1",
        "WARMUP": "0",
        "FORMATS": "pytorch",
        "OUT": str(tmp_path / "out"),
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_benchmark.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "benchmark.csv",
        "benchmark.json",
        "benchmark.md",
        "benchmark_log.txt",
    }
    report = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    rows = {(r["title"], r["precision"]): r for r in report["rows"]}
    assert rows["PyTorch eager, unfused (baseline)", "fp32"]["status"] == "ok"
    assert rows["PyTorch", "fp32"]["status"] == "ok" and rows["PyTorch", "fp32"]["speedup"] > 0
    assert rows["PyTorch", "fp16"]["status"] == "not available: FP16 needs a GPU"  # half=True: a GPU row


def test_gpu_train_check_script_runs_on_the_cpu() -> None:
    """scripts/gpu_check_train.py (`--device cpu`, tiny at 64): both runs, the checks and their harness. On a CPU
    amp does not apply, so the two runs must log the same losses (the script demands a zero gap there)."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gpu_check_train.py"),
            *("--device", "cpu", "--variant", "tiny", "--imgsz", "64"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    results = [line for line in lines if line[:4] in ("PASS", "FAIL")]
    assert len(results) == 5 and all(line.startswith("PASS") for line in results)
    assert "relative gap 0.00e+00" in next(line for line in results if "first epoch" in line)
    assert lines[-1] == "5/5 checks passed"
