"""The original-style rows: YOLO-NAS run the way the original runs it, timed in a process of its own.

The model: in eval mode, eager, NCHW, under `torch.no_grad`; unfused for the baseline (as SG <= 3.1.1's predict
and Ultralytics' NAS run it), partially fused for the SG >= 3.5 row (each QARepVGG block one 3x3 convolution
followed by its post-BN, every other BatchNorm kept: what SG >= 3.5's predict runs, facts §6). The pipeline:
the original's kind of preprocessing (OpenCV resize and centre pad, RGB, `float64 / 255` cast to float32,
CHW) and the same postprocessing as every other row. Measured in one process with the libraries' default
threading (S at 640, quiet, 12 alternating calls, two runs): unfused 346 / 316 ms, partially fused 274 / 250 ms.

The process: the original runs in a program that never applied yolo-nas's thread policy (`core.cpus`), so its
OpenMP and OpenCV workers spin-wait after each parallel region, as those libraries do by default. The policy is
fixed for a process when torch and OpenCV load, so these rows' passes run in a child process started with
the environment the benchmark itself started with (`core.cpus.environment_without_policy`) and
`YOLONAS_LIBRARY_THREADING=1`, so that importing yolonas_cli there sets nothing (`core.cpus.KEEP_DEFAULTS`).
On a quiet 2-core machine the policy matters to the baseline: S at 640, unfused eager, three pairs of
processes in turn, median of 8 calls each: 393 / 381 / 399 ms with the passive policy, 352 / 321 / 382 ms with
the libraries' defaults (4-19% faster); timing it under our policy would flatter every speed-up. On a GPU the
SG >= 3.5 row runs under CUDA autocast (FP16), as that predict does. The benchmark keeps in-process copies of
these rows' engines for agreement and mAP: threading changes no result.

The child answers one JSON line per request on its stdout: `pass` -> the stage times (ms per batch) of one
end-to-end pass on the benchmark photo, as `measure.timed_run` gives them; end of input -> it exits. Every
wait for an answer is bounded (`STARTUP_TIMEOUT_S`, `PASS_TIMEOUT_S`).
"""

from __future__ import annotations

import gc
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import torch

from yolonas_cli.core.cpus import KEEP_DEFAULTS, environment_without_policy
from yolonas_cli.engine.backend import GraphNMS
from yolonas_cli.engine.engine import Engine, EngineSettings, Pipeline
from yolonas_cli.engine.letterbox import PAD_VALUE, Letterbox, to_bgr_uint8

STARTUP_TIMEOUT_S = 300.0  # loading the weights and building the model
PASS_TIMEOUT_S = 600.0  # one pass (a large batch on a loaded CPU takes seconds, not minutes)
SPIN_SETTLE_S = 0.005  # libgomp's idle workers spin ~3 ms after a parallel region (`core.cpus`) by default

#: The child's entry: the policy variable as it found it; yolonas_cli importable (appended to sys.path, after
#: the standard library and site-packages, so an installed yolonas_cli is the one used).
CHILD_CODE = (
    "import os, sys\n"
    "found = os.environ.get('OMP_WAIT_POLICY')\n"
    "sys.path.append(sys.argv[2])\n"
    "from yolonas_cli.modes.benchmark.original import serve\n"
    "serve(sys.argv[1], found)\n"
)


class EagerBackend:
    """A model as the original runs it: NCHW, eager, under `torch.no_grad` (no inference mode).

    Deliberately not a `TorchBackend`, so that speed-ups added there never reach the original-style rows."""

    name = "torch-eager"
    fixed_input: tuple[int, int] | None = None
    graph_nms: GraphNMS | None = None

    def __init__(self, model: torch.nn.Module, device: torch.device, autocast: bool = False):
        self.device = device
        self.model = model.eval().to(device=device, dtype=torch.float32)
        self.autocast = autocast and device.type == "cuda"  # SG >= 3.5 predicts under CUDA autocast (facts §6)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.autocast):
            boxes, scores = self.model(torch.from_numpy(images).to(self.device))
        return boxes.float(), scores.float()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def original_preprocess(lb: Letterbox, image: np.ndarray) -> np.ndarray:
    """Resize, centre pad with 114, BGR->RGB, `float64 / 255` -> float32, HWC->CHW (a copy at each step)."""
    img = to_bgr_uint8(image)
    if lb.resized_hw != lb.orig_hw:
        img = cv2.resize(img, lb.resized_hw[::-1], interpolation=cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(
        img, lb.pad_top, lb.pad_bottom, lb.pad_left, lb.pad_right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    rgb = img[:, :, ::-1]
    return np.ascontiguousarray((rgb.astype(np.float64) / 255.0).astype(np.float32).transpose(2, 0, 1))


#: The baseline's pipeline: the original's kind of preprocessing, float64 arithmetic included.
ORIGINAL_STYLE = Pipeline(to_input=original_preprocess)


def baseline_engine(
    model: torch.nn.Module, names: dict[int, str], device: torch.device, settings: EngineSettings, partial: bool
) -> Engine:
    """An original-style row's engine: `EagerBackend` on `model`, the original-style pipeline; `partial` is the
    SG >= 3.5 row (`model` partially fused; CUDA autocast on a GPU)."""
    return Engine(EagerBackend(model, device, autocast=partial), names, settings, ORIGINAL_STYLE)


# ---------------------------------------------------------------------------------------------- the child


class BaselineProcess:
    """The child process that times an original-style row's passes (see the module docstring).

    A context manager: started on entry (it loads `weights` and answers when ready; a child that does not
    answer is ended before the error is raised), ended on exit. Its answers are read by a thread into a queue,
    so that every wait has a timeout on every platform."""

    def __init__(self, weights: Path, device: torch.device, imgsz: tuple[int, int], batch: int, partial: bool = False):
        self.spec = {"weights": str(weights), "device": str(device), "imgsz": list(imgsz), "batch": batch}
        self.spec["partial"] = partial  # the model partially fused (`model.blocks.partially_reparameterize_model`)
        self.process: subprocess.Popen[str] | None = None
        self.pid: int | None = None
        self.started_with: dict[str, Any] = {}
        self._answers: queue.Queue[str] = queue.Queue()
        self._log: IO[str] | None = None

    def __enter__(self) -> BaselineProcess:
        self._log = tempfile.TemporaryFile("w+")  # the child's stderr, read back only to explain a failure
        package_root = str(Path(__file__).resolve().parents[3])  # <root>/yolonas_cli/modes/benchmark/original.py
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, json.dumps(self.spec), package_root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=child_environment(),
        )
        self.pid = self.process.pid
        threading.Thread(target=_read_lines, args=(self.process.stdout, self._answers), daemon=True).start()
        try:
            self.started_with = self._answer(STARTUP_TIMEOUT_S)
            if bool(self.started_with.get("partially_fused_blocks")) != self.spec["partial"]:
                raise RuntimeError(f"the original-style row's process built the wrong model: {self.started_with}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def timed_pass(self) -> dict[str, float]:
        """One end-to-end pass in the child: ms per batch of each stage."""
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write("pass\n")
            self.process.stdin.flush()
        except OSError:  # the child ended: say why
            raise RuntimeError(f"the original-style row's process ended: {self._last_error()}") from None
        stages = {stage: float(ms) for stage, ms in self._answer(PASS_TIMEOUT_S).items()}
        time.sleep(SPIN_SETTLE_S)  # untimed: the child's idle workers stop spinning before the next row runs
        return stages

    def _answer(self, timeout: float) -> dict[str, Any]:
        """The child's next JSON line, within `timeout` seconds; RuntimeError naming why there is none."""
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(
                f"the original-style row's process gave no answer in {timeout:g} s: {self._last_error()}"
            ) from None
        if not line:
            raise RuntimeError(f"the original-style row's process ended: {self._last_error()}")
        try:
            answer = json.loads(line)
        except ValueError:
            raise RuntimeError(f"the original-style row's process wrote {line.strip()[:80]!r}") from None
        if "error" in answer:
            raise RuntimeError(f"the original-style row's process failed: {answer['error']}")
        return dict(answer)

    def _last_error(self) -> str:
        """The last line the child wrote to stderr."""
        if self._log is None:
            return "no output"
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read()[-4000:].splitlines() if line.strip()]
        return lines[-1] if lines else "no output"


def _read_lines(stream: IO[str], answers: queue.Queue[str]) -> None:
    """Every line of `stream` into `answers`, then "" at its end."""
    for line in stream:
        answers.put(line)
    answers.put("")


def child_environment() -> dict[str, str]:
    """The child's environment: the benchmark's own as it started (`environment_without_policy`), and the
    policy switched off for the child itself (`core.cpus.KEEP_DEFAULTS`)."""
    env = environment_without_policy()
    env[KEEP_DEFAULTS] = "1"
    return env


def serve(spec_json: str, found_policy: str | None) -> None:
    """The child's loop (see the module docstring): ready line, then one answer per `pass` until end of input."""
    from yolonas_cli.detector import Detector
    from yolonas_cli.model.blocks import partially_reparameterize_model
    from yolonas_cli.modes.benchmark.measure import benchmark_images, timed_run

    try:
        spec = json.loads(spec_json)
        detector = Detector(spec["weights"])
        model = partially_reparameterize_model(detector.model.eval()) if spec["partial"] else detector.model
        settings = EngineSettings(imgsz=tuple(spec["imgsz"]), batch=spec["batch"])
        engine = baseline_engine(model, detector.names, torch.device(spec["device"]), settings, spec["partial"])
        images = benchmark_images(spec["batch"])
    except Exception as exc:  # reported to the parent as its one-line reason
        _say({"error": f"{type(exc).__name__}: {exc}"})
        return
    _say(
        {
            "omp_wait_policy": found_policy,
            "omp_wait_policy_now": os.environ.get("OMP_WAIT_POLICY"),  # after importing yolonas_cli: unchanged
            "torch_threads": torch.get_num_threads(),
            "partially_fused_blocks": sum(getattr(m, "partially_fused", False) for m in model.modules()),
        }
    )
    gc.collect()
    gc.disable()  # as the benchmark's own rows are timed (`measure.time_rows`)
    for request in sys.stdin:
        if request.strip() != "pass":
            _say({"error": f"unknown request {request.strip()[:40]!r}"})
            return
        try:
            _say(timed_run(engine, images))
        except Exception as exc:
            _say({"error": f"{type(exc).__name__}: {exc}"})
            return


def _say(answer: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
