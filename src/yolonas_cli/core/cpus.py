"""The CPUs this process may use, and the threading environment of the libraries that run the model.

Two facts decide how fast inference runs beside other work on the same CPU:

- how many threads: as many as the CPUs this process may use (`cpu_budget`): the CPUs in its affinity mask,
  fewer when a cgroup CPU quota (a container's `--cpus`) pays for fewer, or when `OMP_NUM_THREADS` asks for
  fewer (a user's choice, or a scheduler's: Ray sets it to an actor's `num_cpus`). libgomp (torch's OpenMP) and OpenCV
  already follow the affinity mask; a quota only through `OMP_NUM_THREADS`, which is set here when it is
  tighter. ONNX Runtime and OpenVINO are given `cpu_budget()` when their sessions are built.
- what idle threads do: OpenMP workers spin for a while (libgomp: about 3 ms, `GOMP_SPINCOUNT` 300000)
  after every parallel region before they sleep. On a CPU shared with another busy process a spinning worker
  takes the core from the thread that has work (measured on 2 cores beside one spinning process: S at 640,
  end to end, 0.4-3 s with spinning workers, 0.4-0.6 s with `OMP_WAIT_POLICY=PASSIVE`; the load of other
  users varied between the runs). OpenCV's pthreads pool spins too (`OPENCV_THREAD_POOL_ACTIVE_WAIT_*`).

Both are read from the environment once, when the library loads (libgomp when torch is imported), so
`thread_environment` must be applied before that: `yolonas_cli/__init__.py` applies it, which runs before
any other module of the package, the command line's argument parsing included. A variable that is already
set is left alone (set `OMP_WAIT_POLICY=ACTIVE` to get spinning back; `YOLONAS_LIBRARY_THREADING=1` sets
nothing at all). When torch was imported before
`yolonas_cli` (in a Python program), the OpenMP settings cannot take effect any more; the thread count is
still capped at `cpu_budget()` when a PyTorch backend is built (`engine.threads`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
_CGROUP_V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
_MAX_CGROUP_DEPTH = 64  # nested cgroups walked upwards, at most

#: Libraries' idle threads sleep instead of spinning (see the module docstring).
PASSIVE_WAIT: dict[str, str] = {
    "OMP_WAIT_POLICY": "PASSIVE",  # libgomp (torch, oneDNN, MKL in torch) and Intel's OpenMP
    "OPENCV_THREAD_POOL_ACTIVE_WAIT_PAUSE_LIMIT": "0",  # OpenCV's pthreads pool (parallel_impl.cpp)
    "OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER": "0",
    "OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN": "0",
}


def affinity_count() -> int:
    """The number of CPUs in this process's affinity mask (os.cpu_count() where the mask is not available)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_budget(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP, environ: Mapping[str, str] | None = None
) -> int:
    """How many CPUs this process may use: its affinity mask, capped by the tightest cgroup CPU quota (whole
    CPUs) and by a smaller `OMP_NUM_THREADS` in `environ` (os.environ by default); at least 1."""
    limits = [affinity_count(), cgroup_cpu_limit(cgroup_root, proc_cgroup), asked_threads(environ)]
    return max(1, min(limit for limit in limits if limit is not None))


def asked_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count `OMP_NUM_THREADS` asks for (its first level when it lists several), None when it is
    not set or not a positive integer."""
    value = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "")
    first = value.split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def cgroup_cpu_limit(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """Whole CPUs paid for by the tightest CPU quota on this process's cgroup or one of its ancestors
    (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded down, at least 1; None when
    no quota applies or none can be read."""
    limits = [limit for folder in _cgroup_folders(cgroup_root, proc_cgroup) if (limit := _quota(folder))]
    return min(limits) if limits else None


def _cgroup_folders(root: Path, proc_cgroup: Path) -> Iterator[Path]:
    """The cgroup folders whose quota applies: the process's own (from /proc/self/cgroup) and its ancestors,
    under the v2 root and the v1 cpu mounts; the mount roots themselves (inside a container they are the
    container's cgroup)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    paths = {line.split(":", 2)[2].strip() for line in lines if line.count(":") >= 2}
    for base in (root, *(root / name for name in _CGROUP_V1_CPU_MOUNTS)):
        if not base.is_dir():
            continue
        yield base
        for path in paths:
            folder = base / path.strip("/")
            for _ in range(_MAX_CGROUP_DEPTH):
                if folder == base or base not in folder.parents:
                    break
                yield folder
                folder = folder.parent


def _quota(folder: Path) -> int | None:
    """Whole CPUs of one cgroup folder's quota, or None without one."""
    v2 = _read(folder / "cpu.max")
    if v2:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            return _whole_cpus(parts[0], parts[1])
        return None
    return _whole_cpus(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us"))


def _whole_cpus(quota: str | None, period: str | None) -> int | None:
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return max(1, math.floor(q / p)) if q > 0 and p > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def thread_environment(budget: int, affinity: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to `environ` (none that it already sets): the passive waits, and
    `OMP_NUM_THREADS=budget` when a quota makes the budget smaller than the affinity mask (which OpenMP
    follows by itself)."""
    wanted = dict(PASSIVE_WAIT)
    if budget < affinity:
        wanted["OMP_NUM_THREADS"] = str(budget)
    return {key: value for key, value in wanted.items() if key not in environ}


#: What `apply_thread_environment` added to os.environ in this process.
_ADDED: dict[str, str] = {}


#: Set to 1 to keep the libraries' own threading defaults (nothing is set); the benchmark's original-style
#: rows run that way, as the original does.
KEEP_DEFAULTS = "YOLONAS_LIBRARY_THREADING"


def apply_thread_environment() -> dict[str, str]:
    """Set `thread_environment` in os.environ (before torch is imported, see the module docstring), unless
    `KEEP_DEFAULTS` is 1; returns what was set."""
    if os.environ.get(KEEP_DEFAULTS) == "1":
        return {}
    added = thread_environment(cpu_budget(), affinity_count(), os.environ)
    os.environ.update(added)
    _ADDED.update(added)
    return added


def environment_without_policy() -> dict[str, str]:
    """os.environ as it was before `apply_thread_environment` (the variables it added and that still hold its
    values taken out): for a child process that must run with the libraries' own threading defaults, as a
    program that never imported yolonas_cli does (the benchmark's baseline)."""
    return {key: value for key, value in os.environ.items() if _ADDED.get(key) != value}
