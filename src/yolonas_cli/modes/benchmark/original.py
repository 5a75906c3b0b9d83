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
the environment the benchmark itself started with (`core.cpus.environment_without_policy`), which imports
torch and OpenCV before yolonas_cli. On a quiet 2-core machine the policy matters to the baseline: S at 640,
unfused eager, three pairs of processes in turn, median of 8 calls each: 381-399 ms with the passive policy,
321-382 ms with the libraries' defaults; timing it under our policy would flatter every speed-up. The
benchmark keeps an in-process copy of the baseline engine for agreement and mAP: threading changes no result.

The child answers one JSON line per request on its stdout: `pass` -> the stage times (ms per batch) of one
end-to-end pass on the benchmark photo, as `measure.timed_run` gives them; end of input -> it exits. Every
wait for an answer is bounded (`STARTUP_TIMEOUT_S`, `PASS_TIMEOUT_S`).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import torch

from yolonas_cli.core.cpus import environment_without_policy
from yolonas_cli.engine.backend import GraphNMS
from yolonas_cli.engine.engine import Engine, EngineSettings, Pipeline
from yolonas_cli.engine.letterbox import PAD_VALUE, Letterbox, to_bgr_uint8

STARTUP_TIMEOUT_S = 300.0  # loading the weights and building the model
PASS_TIMEOUT_S = 600.0  # one pass (a large batch on a loaded CPU takes seconds, not minutes)

#: The child's entry: the policy variable as it found it, then torch and OpenCV loaded before yolonas_cli.
CHILD_CODE = (
    "import os, sys\n"
    "found = os.environ.get('OMP_WAIT_POLICY')\n"
    "import torch, cv2\n"
    "from yolonas_cli.modes.benchmark.original import serve\n"
    "serve(sys.argv[1], found)\n"
)


class EagerBackend:
    """A model as the original runs it: NCHW, eager, under `torch.no_grad` (no inference mode).

    Deliberately not a `TorchBackend`, so that speed-ups added there never reach the original-style rows."""

    name = "torch-eager"
    fixed_input: tuple[int, int] | None = None
    graph_nms: GraphNMS | None = None

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.device = device
        self.model = model.eval().to(device=device, dtype=torch.float32)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, scores = self.model(torch.from_numpy(images).to(self.device))
        return boxes, scores

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
    model: torch.nn.Module, names: dict[int, str], device: torch.device, settings: EngineSettings
) -> Engine:
    """An original-style row's engine: `EagerBackend` on `model` (unfused or partially fused), the
    original-style pipeline."""
    return Engine(EagerBackend(model, device), names, settings, ORIGINAL_STYLE)


# ---------------------------------------------------------------------------------------------- the child


class BaselineProcess:
    """The child process that times an original-style row's passes (see the module docstring).

    A context manager: started on entry (it loads `weights` and answers when ready), ended on exit."""

    def __init__(self, weights: Path, device: torch.device, imgsz: tuple[int, int], batch: int, partial: bool = False):
        self.spec = {"weights": str(weights), "device": str(device), "imgsz": list(imgsz), "batch": batch}
        self.spec["partial"] = partial  # the model partially fused (`model.blocks.partially_reparameterize_model`)
        self.process: subprocess.Popen[str] | None = None
        self.started_with: dict[str, Any] = {}
        self._log: IO[str] | None = None

    def __enter__(self) -> BaselineProcess:
        self._log = tempfile.TemporaryFile("w+")  # the child's stderr, read back only to explain a failure
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, json.dumps(self.spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=child_environment(),
        )
        self.started_with = self._answer(STARTUP_TIMEOUT_S)
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
        self.process.stdin.write("pass\n")
        self.process.stdin.flush()
        return {stage: float(ms) for stage, ms in self._answer(PASS_TIMEOUT_S).items()}

    def _answer(self, timeout: float) -> dict[str, Any]:
        """The child's next JSON line, within `timeout` seconds; RuntimeError naming why there is none."""
        assert self.process is not None and self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            reason = f"no answer in {timeout:.0f} s" if not ready else "it ended"
            raise RuntimeError(f"the original-style row's process failed ({reason}): {self._last_error()}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the original-style row's process failed: {answer['error']}")
        return dict(answer)

    def _last_error(self) -> str:
        if self._log is None:
            return "no output"
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read()[-4000:].splitlines() if line.strip()]
        return lines[-1] if lines else "no output"


def child_environment() -> dict[str, str]:
    """The child's environment: the benchmark's own as it started (`environment_without_policy`), with this
    yolonas_cli importable first."""
    env = environment_without_policy()
    package_root = str(Path(__file__).resolve().parents[3])  # .../<root>/yolonas_cli/modes/benchmark/original.py
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
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
        engine = baseline_engine(model, detector.names, torch.device(spec["device"]), settings)
        images = benchmark_images(spec["batch"])
    except Exception as exc:  # reported to the parent as its one-line reason
        _say({"error": f"{type(exc).__name__}: {exc}"})
        return
    partial = sum(getattr(m, "partially_fused", False) for m in model.modules())
    _say({"omp_wait_policy": found_policy, "torch_threads": torch.get_num_threads(), "partially_fused_blocks": partial})
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
