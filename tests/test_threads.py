"""The thread policy (core/cpus.py, engine/threads.py): thread counts follow the CPUs the process may use
(affinity mask, cgroup quota), OpenMP's idle workers sleep instead of spinning from the moment torch loads,
and inference never changes a process-wide thread count, so engines can run in several threads at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolonas_cli.core import cpus
from yolonas_cli.engine.engine import EngineSettings

ASSETS = Path(__file__).resolve().parents[1] / "src" / "yolonas_cli" / "assets"
THREAD_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "KMP_BLOCKTIME", *cpus.PASSIVE_WAIT)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---------------------------------------------------------------------------------------------- the budget


def test_the_tightest_cgroup_v2_quota_on_the_path_counts(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc_cgroup"
    write(proc, "0::/a/b\n")
    write(root / "cpu.max", "max 100000\n")
    write(root / "a" / "cpu.max", "250000 100000\n")  # 2.5 CPUs: 2 whole ones
    write(root / "a" / "b" / "cpu.max", "max 100000\n")
    assert cpus.cgroup_cpu_limit(root, proc) == 2
    write(root / "a" / "b" / "cpu.max", "50000 100000\n")  # half a CPU: still one thread
    assert cpus.cgroup_cpu_limit(root, proc) == 1
    assert cpus.cpu_budget(root, proc, {}) == 1


def test_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc_cgroup"
    write(proc, "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert cpus.cgroup_cpu_limit(root, proc) is None  # -1: no quota
    assert cpus.cpu_budget(root, proc, {}) == cpus.affinity_count()
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "300000\n")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert cpus.cgroup_cpu_limit(root, proc) == 3
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "not a number\n")
    assert cpus.cgroup_cpu_limit(root, proc) is None
    assert cpus.cgroup_cpu_limit(tmp_path / "missing", tmp_path / "missing_proc") is None


def test_the_budget_never_exceeds_the_affinity_mask(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc_cgroup"
    write(proc, "0::/\n")
    write(root / "cpu.max", f"{(cpus.affinity_count() + 3) * 100000} 100000\n")
    assert cpus.cgroup_cpu_limit(root, proc) == cpus.affinity_count() + 3
    assert cpus.cpu_budget(root, proc, {}) == cpus.affinity_count()


def test_a_smaller_omp_num_threads_caps_the_budget(tmp_path: Path) -> None:
    """OMP_NUM_THREADS (a user's, or Ray's for an actor of num_cpus=1) is the budget of every runtime when it is
    smaller; a larger or malformed value changes nothing."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc_cgroup"
    write(proc, "0::/\n")
    write(root / "cpu.max", "300000 100000\n")
    everything = min(cpus.affinity_count(), 3)
    assert cpus.cpu_budget(root, proc, {"OMP_NUM_THREADS": "1"}) == 1
    assert cpus.cpu_budget(root, proc, {"OMP_NUM_THREADS": "1,1"}) == 1  # nested levels: the outer one counts
    assert cpus.cpu_budget(root, proc, {"OMP_NUM_THREADS": "64"}) == everything
    for malformed in ("0", "-2", "two", ""):
        assert cpus.cpu_budget(root, proc, {"OMP_NUM_THREADS": malformed}) == everything


def test_thread_environment_adds_only_what_is_not_set() -> None:
    quota = cpus.thread_environment(budget=1, affinity=4, environ={})
    assert quota == {**cpus.PASSIVE_WAIT, "OMP_NUM_THREADS": "1"}
    assert cpus.PASSIVE_WAIT["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_NUM_THREADS" not in cpus.thread_environment(budget=4, affinity=4, environ={})  # OpenMP sees it
    kept = cpus.thread_environment(budget=1, affinity=4, environ={"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"})
    assert "OMP_WAIT_POLICY" not in kept and "OMP_NUM_THREADS" not in kept


# ---------------------------------------------------------------------------------------------- OpenMP


def _openmp_report(code: list[str], extra: dict[str, str] | None = None) -> str:
    """libgomp's own report of its settings (OMP_DISPLAY_ENV=VERBOSE, printed when torch loads it) in a fresh
    interpreter running `code`, with no thread variable inherited from this process."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update({"OMP_DISPLAY_ENV": "VERBOSE", **(extra or {})})
    done = subprocess.run([sys.executable, *code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


@pytest.fixture(scope="module")
def libgomp() -> None:
    """The OpenMP tests read libgomp's report; torch builds with another OpenMP (macOS: libomp) skip them."""
    report = _openmp_report(["-c", "import torch"])
    if "GOMP_SPINCOUNT" not in report:
        pytest.skip("torch's OpenMP is not libgomp (no GOMP_SPINCOUNT in its OMP_DISPLAY_ENV report)")
    assert "GOMP_SPINCOUNT = '300000'" in report  # torch alone: workers spin ~3 ms after each parallel region


def test_the_cli_sets_passive_waits_before_torch_loads_openmp(libgomp: None) -> None:
    """`yolo-nas checks` imports torch; libgomp, initialised then, reports no spinning at all. The variable is
    set by the package's __init__, which runs before anything can import torch."""
    report = _openmp_report(["-m", "yolonas_cli", "checks"])
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in report and "GOMP_SPINCOUNT = '0'" in report


def test_the_python_api_sets_passive_waits_too_and_a_users_choice_wins(libgomp: None) -> None:
    code = "import yolonas_cli, torch; torch.ones(1)"
    assert "GOMP_SPINCOUNT = '0'" in _openmp_report(["-c", code])
    active = _openmp_report(["-c", code], {"OMP_WAIT_POLICY": "ACTIVE"})
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in active and "GOMP_SPINCOUNT = '0'" not in active


# ---------------------------------------------------------------------------------------------- affinity


@pytest.fixture(scope="module")
def tiny_exports(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model exported to ONNX and OpenVINO at 64 (whichever is installed)."""
    import importlib.util
    import shutil

    from yolonas_cli.api import NAS

    folder = tmp_path_factory.mktemp("thread_exports")
    weights = Path(shutil.copy(tiny_checkpoint, folder / "tiny.pt"))
    found = {}
    for fmt, module in (("onnx", "onnxruntime"), ("openvino", "openvino")):
        if importlib.util.find_spec(module) is not None:
            found[fmt] = NAS(weights).export(format=fmt, imgsz=64, verbose=False)
    return found


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or cpus.affinity_count() < 2, reason="needs 2+ CPUs")
def test_every_runtime_follows_the_affinity_mask(tiny_checkpoint: Path, tiny_exports: dict[str, Path]) -> None:
    """A process allowed one CPU runs torch, ONNX Runtime and OpenVINO on one thread each (OpenMP alone would
    follow the mask, ONNX Runtime counts physical cores, OpenVINO its own CPU map: all get `cpu_budget()`)."""
    code = f"""
import json, os, sys
os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})
import yolonas_cli, torch
from yolonas_cli.api import NAS
from yolonas_cli.core.cpus import cpu_budget
found = {{"budget": cpu_budget(), "torch": torch.get_num_threads()}}
NAS({str(tiny_checkpoint)!r}).backend("cpu", runtime="torch")
onnx, openvino = {str(tiny_exports.get("onnx", ""))!r}, {str(tiny_exports.get("openvino", ""))!r}
if onnx:
    found["onnxruntime"] = NAS(onnx).backend("cpu").session.get_session_options().intra_op_num_threads
if openvino:
    found["openvino"] = NAS(openvino).backend("cpu").compiled.get_property("INFERENCE_NUM_THREADS")
print(json.dumps(found))
"""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(found) >= {"budget", "torch", *(("onnxruntime",) if "onnx" in tiny_exports else ())}
    assert all(count == 1 for count in found.values()), found


def test_exported_runtimes_get_the_whole_budget_here(tiny_exports: dict[str, Path]) -> None:
    from yolonas_cli.api import NAS

    if "onnx" in tiny_exports:
        backend = NAS(tiny_exports["onnx"]).backend("cpu")
        assert backend.session.get_session_options().intra_op_num_threads == cpus.cpu_budget()
    if "openvino" in tiny_exports:
        backend = NAS(tiny_exports["openvino"]).backend("cpu")
        assert backend.compiled.get_property("INFERENCE_NUM_THREADS") == cpus.cpu_budget()
        assert backend.compiled.get_property("ENABLE_CPU_PINNING") is False  # threads may leave a busy core


# ---------------------------------------------------------------------------------------------- no toggling


def test_inference_never_changes_a_process_wide_thread_count(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Predicting (engine set-up excluded) calls neither torch.set_num_threads nor cv2.setNumThreads."""
    from yolonas_cli.api import NAS

    engine = NAS(tiny_checkpoint).make_engine(EngineSettings(imgsz=(128, 128)), "cpu")
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(("torch", n)))
    monkeypatch.setattr(cv2, "setNumThreads", lambda n: calls.append(("cv2", n)))
    images = [cv2.imread(str(ASSETS / name)) for name in ("astronaut.png", "rocket.jpg")]
    for _ in range(3):
        engine.run_batch(images)
    assert calls == []


def test_engines_in_several_threads_give_their_own_results(tiny_checkpoint: Path) -> None:
    """Four threads predicting at once (two engines, two image sets) give exactly what each gives alone, and
    leave torch's and OpenCV's thread counts as they were."""
    from yolonas_cli.api import NAS

    before = (torch.get_num_threads(), cv2.getNumThreads())
    model = NAS(tiny_checkpoint)
    engines = [model.make_engine(EngineSettings(imgsz=(160, 160), conf=0.05), "cpu") for _ in range(2)]
    sets = [
        [cv2.imread(str(ASSETS / name)) for name in names]
        for names in (("astronaut.png", "coffee.png"), ("chelsea.png", "rocket.jpg"))
    ]
    alone = [[det for det, _, _ in engines[0].run_batch(images)] for images in sets]
    results: dict[int, list[list[np.ndarray]]] = {}

    def work(index: int) -> None:
        engine, images = engines[index % 2], sets[index // 2]
        results[index] = [[det for det, _, _ in engine.run_batch(images)] for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(results) == [0, 1, 2, 3]
    for index, runs in results.items():
        for run in runs:
            want = alone[index // 2]
            assert [len(d) for d in run] == [len(d) for d in want] and sum(map(len, want)) > 0
            for got, ref in zip(run, want):
                np.testing.assert_array_equal(got, ref)
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before
