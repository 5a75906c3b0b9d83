"""backend=auto (formats/auto.py): `.pt` weights on a CPU run in the fastest runtime installed, converted once
into the weights cache (keyed by the weights' sha256 and the runtime's version), with the same detections as
PyTorch within the export parity tolerances; concurrent processes neither convert twice nor leave half a model;
a failed conversion falls back to PyTorch with one warning; backend=torch is the PyTorch path as before."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from test_export_onnx import BOX_TOL, SCORE_TOL
from yolonas_cli.api import NAS
from yolonas_cli.cfg import PredictArgs, ValArgs, make_args
from yolonas_cli.core import console
from yolonas_cli.core.errors import UsageError
from yolonas_cli.core.locking import exclusive_lock
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.formats import auto
from yolonas_cli.formats.pytorch import TorchBackend
from yolonas_cli.formats.registry import get
from yolonas_cli.weights.resolve import cache_dir

ASSETS = Path(__file__).resolve().parents[1] / "src" / "yolonas_cli" / "assets"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
INSTALLED = [name for name in auto.AUTO_ORDER if get(auto.CONVERTIBLE[name]).runtime_installed()]
needs_a_runtime = pytest.mark.skipif(not INSTALLED, reason="neither OpenVINO nor ONNX Runtime is installed")
CONVERTING = "converting"  # the word of the one line a conversion prints
# the cache's tests convert the tiny model many times: ONNX Runtime's conversion is the ONNX export alone
CHEAPEST = "onnxruntime" if "onnxruntime" in INSTALLED else next(iter(INSTALLED), "")


def photos() -> list[np.ndarray]:
    return [cv2.imread(str(ASSETS / name)) for name in PHOTOS]


def weights_copy(checkpoint: Path, folder: Path, name: str = "model.pt") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(checkpoint, folder / name))


def assert_same_detections(got: list, want: list, least: int = 10) -> None:
    """Same count and classes per image; boxes within the export parity tolerance (original-image pixels,
    as test_export_onnx compares engines) and scores within its score tolerance; `least` detections in all."""
    assert sum(len(w) for w in want) >= least
    assert len(got) == len(want)
    for det, ref in zip(map(np.asarray, got), map(np.asarray, want)):  # arrays, or Result.boxes.data tensors
        assert det.shape == ref.shape
        np.testing.assert_array_equal(det[:, 5], ref[:, 5])
        assert np.abs(det[:, :4] - ref[:, :4]).max(initial=0) <= 2 * BOX_TOL
        assert np.abs(det[:, 4] - ref[:, 4]).max(initial=0) <= SCORE_TOL


# ---------------------------------------------------------------------------------------------- choice


def test_the_choice_of_runtime() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert auto.runtime_for("auto", cpu) == (INSTALLED[0] if INSTALLED else None)  # OpenVINO first
    assert auto.runtime_for("auto", gpu) is None  # a GPU runs PyTorch
    assert auto.runtime_for("torch", cpu) is None
    if "openvino" in INSTALLED:
        with pytest.raises(UsageError, match="backend=openvino runs on the CPU"):
            auto.runtime_for("openvino", gpu)


def test_backend_argument_defaults_and_spellings() -> None:
    assert PredictArgs().backend == "auto" and ValArgs().backend == "torch"  # val measures the model itself
    assert make_args("predict", backend="ONNX").backend == "onnxruntime"
    assert make_args("predict", backend="pytorch").backend == "torch"
    with pytest.raises(UsageError, match="backend=openvin is not valid: use one of auto, torch, openvino"):
        make_args("predict", backend="openvin")


# ---------------------------------------------------------------------------------------------- detections


@pytest.fixture(scope="module")
def s_torch(s_checkpoint: Path) -> tuple[NAS, list[np.ndarray], np.ndarray]:
    """S and its PyTorch detections on the sample photos at 320: (model, batch of 4, rocket.jpg with rect)."""
    model = NAS(s_checkpoint)
    batch = model.make_engine(EngineSettings(imgsz=(320, 320)), "cpu", runtime="torch").run_batch(photos())
    rect = model.make_engine(EngineSettings(imgsz=(320, 320), rect=True), "cpu", runtime="torch")
    return model, [det for det, _, _ in batch], rect.run_batch(photos()[3:])[0][0]


@needs_a_runtime
@pytest.mark.parametrize("runtime", ["auto", *INSTALLED[1:]])  # auto is INSTALLED[0]: each conversion once
def test_same_detections_as_pytorch(s_torch: tuple[NAS, list[np.ndarray], np.ndarray], runtime: str) -> None:
    """S at 320 on the sample photos, as a batch of 4, one at a time and with rect (one converted model serves
    every batch size and input size): the detections of PyTorch within the export parity tolerances."""
    model, want, want_rect = s_torch
    engine = model.make_engine(EngineSettings(imgsz=(320, 320)), "cpu", runtime=runtime)
    assert engine.backend.name == (INSTALLED[0] if runtime == "auto" else runtime)
    assert_same_detections([det for det, _, _ in engine.run_batch(photos())], want)
    one_by_one = [engine.run_batch([image])[0][0] for image in photos()]
    assert_same_detections(one_by_one, want)
    rect = model.make_engine(EngineSettings(imgsz=(320, 320), rect=True), "cpu", runtime=runtime)
    got = rect.run_batch(photos()[3:])
    assert got[0][1].padded_hw[0] < 320  # not the square input of the other calls
    assert_same_detections([got[0][0]], [want_rect], least=1)


@needs_a_runtime
def test_predict_uses_auto_by_default_and_torch_on_request(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model = NAS(tiny_checkpoint)  # the session's weights cache: its conversion is shared with other tests
    default = model.predict(ASSETS, imgsz=160, conf=0.05, verbose=False)
    pytorch = model.predict(ASSETS, imgsz=160, conf=0.05, backend="torch", verbose=False)
    assert (cache_dir() / "converted" / model.sha256).is_dir()
    assert_same_detections([r.boxes.data for r in default], [r.boxes.data for r in pytorch])


@needs_a_runtime
def test_serve_and_ray_workers_follow_backend(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """serve defaults to backend=auto as predict does; a Ray actor (`ImageWorker`, built here without Ray: the
    driver's own file is used) runs the runtime its spec names, converted into the weights cache."""
    from yolonas_cli.cfg import ServeArgs
    from yolonas_cli.distributed.batch import ImageWorker, WorkerSpec
    from yolonas_cli.distributed.shipping import ShippedModel

    assert ServeArgs().backend == "auto" and make_args("serve", backend="torch").backend == "torch"
    weights = weights_copy(tiny_checkpoint, tmp_path / "w")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    shipped = ShippedModel(weights.name, str(weights), digest, weights.stat().st_size, None)
    settings = EngineSettings(imgsz=(64, 64))
    verbose = console.is_verbose()
    try:  # an ImageWorker silences the console of its process (an actor's)
        converted = ImageWorker(WorkerSpec(shipped, settings, "cpu", runtime="auto"))  # the session's cache
        default = ImageWorker(WorkerSpec(shipped, settings, "cpu"))
    finally:
        console.set_verbose(verbose)
    assert converted.engine.backend.name == INSTALLED[0]
    assert (cache_dir() / "converted" / digest).is_dir()
    assert default.engine.backend.name == "torch"  # a spec's default


def test_backend_torch_keeps_the_pytorch_path(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model = NAS(weights_copy(tiny_checkpoint, tmp_path / "w"), weights_dir=tmp_path / "cache")
    assert isinstance(model.backend("cpu", runtime="torch"), TorchBackend)
    assert not (tmp_path / "cache" / "converted").exists()


# ---------------------------------------------------------------------------------------------- the cache


@needs_a_runtime
def test_one_conversion_per_content_and_runtime_version(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    first = weights_copy(tiny_checkpoint, tmp_path / "a")
    NAS(first, weights_dir=cache).backend("cpu", runtime=CHEAPEST)
    assert CONVERTING in capsys.readouterr().err
    fmt = get(auto.CONVERTIBLE[CHEAPEST])
    sha = hashlib.sha256(first.read_bytes()).hexdigest()
    entry = cache / "converted" / sha / f"{fmt.name}-{auto.runtime_version(fmt)}-yolonas{auto.__version__}"
    target = fmt.output_for(entry / "model.pt")
    assert target.exists() and auto.usable(target, auto.Conversion(None, first, sha, {}, None), fmt)  # type: ignore[arg-type]
    stamps = {p: p.stat().st_mtime_ns for p in target.rglob("*")} if target.is_dir() else {target: 0}
    renamed = weights_copy(tiny_checkpoint, tmp_path / "b", "another_name.pth")  # same content
    backend = NAS(renamed, weights_dir=cache).backend("cpu", runtime=CHEAPEST)
    assert CONVERTING not in capsys.readouterr().err and backend.name == CHEAPEST
    if target.is_dir():
        assert {p: p.stat().st_mtime_ns for p in target.rglob("*")} == stamps
    assert [p.name for p in (cache / "converted").iterdir()] == [sha]


@needs_a_runtime
def test_a_damaged_cached_model_is_converted_again(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    cache, weights = tmp_path / "cache", weights_copy(tiny_checkpoint, tmp_path / "w")
    NAS(weights, weights_dir=cache).backend("cpu", runtime=CHEAPEST)
    capsys.readouterr()
    biggest = max((p for p in (cache / "converted").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:1000])  # the weights file of the converted model, cut short
    engine = NAS(weights, weights_dir=cache).make_engine(EngineSettings(imgsz=(128, 128)), "cpu", runtime=CHEAPEST)
    assert CONVERTING in capsys.readouterr().err and engine.backend.name == CHEAPEST
    assert len(engine.run_batch(photos()[:1])) == 1


def test_a_failed_conversion_falls_back_to_pytorch_with_one_warning(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    """A file where the cache's `converted` folder should be makes every conversion fail: PyTorch runs the
    weights, one warning says so, and the same detector does not try (or warn) again."""
    if not INSTALLED:
        pytest.skip("no runtime to convert for")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "converted").write_text("not a folder")
    model = NAS(weights_copy(tiny_checkpoint, tmp_path / "w"), weights_dir=cache)
    assert isinstance(model.backend("cpu", runtime="auto"), TorchBackend)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "running model.pt in PyTorch" in line]
    assert len(warnings) == 1 and INSTALLED[0] in warnings[0]
    results = model.predict(ASSETS, imgsz=128, verbose=False)
    assert len(results) == 4 and "PyTorch" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- processes


CHILD = textwrap.dedent("""
    import sys
    import cv2
    from yolonas_cli.api import NAS
    from yolonas_cli.engine.engine import EngineSettings
    from yolonas_cli.formats import auto
    auto.LOCK_TIMEOUT_S = float(sys.argv[3])
    model = NAS(sys.argv[1], weights_dir=sys.argv[2])
    engine = model.make_engine(EngineSettings(imgsz=(128, 128)), "cpu", runtime=sys.argv[5])
    (det, _, _), = engine.run_batch([cv2.imread(sys.argv[4])])
    print(engine.backend.name, len(det))
""")


def _children(count: int, weights: Path, cache: Path, lock_timeout: float) -> list[tuple[str, str]]:
    """`count` processes opening the weights converted for `CHEAPEST` at the same time: (stdout, stderr) of each."""
    coffee = str(ASSETS / "coffee.png")
    command = [sys.executable, "-c", CHILD, str(weights), str(cache), str(lock_timeout), coffee, CHEAPEST]
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(count)
    ]
    outputs = [child.communicate(timeout=600) for child in children]
    assert all(child.returncode == 0 for child in children), [err[-1500:] for _, err in outputs]
    return outputs


def _whole(cache: Path) -> None:
    """The cache holds one complete converted model and no temporary leftovers."""
    names = [p.name for p in (cache / "converted").rglob("*")]
    assert not [n for n in names if n.startswith(".")], names
    assert sum(n.endswith((".xml", ".onnx")) for n in names) == 1, names


@needs_a_runtime
def test_concurrent_processes_convert_once(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Three processes at once on a fresh cache: the first converts, the other two wait for its lock and use
    its model; all three get the same detections."""
    cache, weights = tmp_path / "cache", weights_copy(tiny_checkpoint, tmp_path / "w")
    outputs = _children(3, weights, cache, auto.LOCK_TIMEOUT_S)
    assert sum(CONVERTING in err for _, err in outputs) == 1
    assert len({out for out, _ in outputs}) == 1 and outputs[0][0].split()[0] == CHEAPEST
    _whole(cache)


@needs_a_runtime
def test_without_the_lock_conversions_still_leave_a_whole_model(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """While this process holds the lock, two processes give up waiting for it at once and both convert:
    each writes under its own temporary name and renames, so the cache ends with one whole model, and a later
    process uses it without converting."""
    cache, weights = tmp_path / "cache", weights_copy(tiny_checkpoint, tmp_path / "w")
    fmt = get(auto.CONVERTIBLE[CHEAPEST])
    target = auto.model_path(cache, hashlib.sha256(weights.read_bytes()).hexdigest(), fmt)
    with exclusive_lock(target, timeout=5) as held:
        assert held
        outputs = _children(2, weights, cache, 0.2)
    assert all(CONVERTING in err for _, err in outputs)
    _whole(cache)
    ((out, err),) = _children(1, weights, cache, auto.LOCK_TIMEOUT_S)
    assert CONVERTING not in err and out == outputs[0][0]
