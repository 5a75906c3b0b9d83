"""TorchScript, OpenVINO and TensorRT exports and their backends (TensorRT: what a CPU machine can check).

Measured: TorchScript equals torch exactly (0.0 difference: the same kernels run). OpenVINO FP32 (f32
precision hint) vs torch on the sample photos, batch 1 and 3, 256x256 / 192x256 / 320x320 on one dynamic IR:
tiny boxes <= 7e-4 px, scores <= 6e-6; S boxes <= 1.9e-3 px, scores <= 1.1e-5 (the same FP32 noise floor as
ONNX Runtime, see test_export_onnx.py).
"""

from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolonas_cli.api import NAS
from yolonas_cli.cfg import ExportArgs
from yolonas_cli.core import console
from yolonas_cli.core.errors import MissingExtraError, UsageError, WeightsError
from yolonas_cli.core.install import pip_extra
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.engine.postprocess import postprocess
from yolonas_cli.formats.exported import open_exported
from yolonas_cli.formats.metadata import ExportMetadata
from yolonas_cli.formats.pytorch import TorchBackend
from yolonas_cli.formats.registry import get
from yolonas_cli.modes.export import export_model

ASSETS = Path(__file__).resolve().parents[1] / "src" / "yolonas_cli" / "assets"
PHOTOS = sorted(p for p in ASSETS.iterdir() if p.suffix in (".png", ".jpg"))
SIZES = ((256, 256), (192, 256))
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("onnx") is not None
_skip_without_openvino = pytest.mark.skipif(
    not HAS_OPENVINO, reason="the openvino extra is not installed (pip install 'yolo-nas[openvino]')"
)


def needs_openvino(test):
    """Marks an OpenVINO test (`-m openvino`, `-m "not openvino"`) and skips it without the openvino extra."""
    return pytest.mark.openvino(_skip_without_openvino(test))


pytestmark = pytest.mark.usefixtures("quiet_console")


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copy(tiny_checkpoint, tmp_path_factory.mktemp("other") / "tiny.pt"))


@pytest.fixture(scope="module")
def tiny_model(tiny: Path) -> torch.nn.Module:
    return NAS(tiny).fuse().model


def export_copy(weights: Path, folder: Path, **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    copy = Path(shutil.copy(weights, folder / weights.name))
    return export_model(NAS(copy), ExportArgs(model=str(copy), **kwargs))


def photos_batch(size: tuple[int, int], count: int) -> np.ndarray:
    images = [cv2.imread(str(p)) for p in PHOTOS[:count]]
    return np.stack([Letterbox.for_image(img.shape[:2], size).apply(img) for img in images])


def torch_outputs(model: torch.nn.Module, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model(torch.from_numpy(images))


def assert_close_to_torch(backend, model: torch.nn.Module, box_tol: float, score_tol: float) -> None:
    for size in SIZES:
        for count in (1, 3):
            images = photos_batch(size, count)
            boxes, scores = backend(images)
            ref_boxes, ref_scores = torch_outputs(model, images)
            assert boxes.shape == ref_boxes.shape
            assert (boxes - ref_boxes).abs().max() <= box_tol
            assert (scores - ref_scores).abs().max() <= score_tol


# ---------------------------------------------------------------- TorchScript


def test_torchscript_is_exact_on_one_dynamic_file(tiny: Path, tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = export_copy(tiny, tmp_path, format="torchscript", imgsz=320, dynamic=True)
    assert path.name == "tiny.torchscript"
    exported = open_exported(path, "cpu")
    assert exported.metadata.format == "torchscript" and exported.metadata.names[0] == "person"
    assert exported.fixed_input is None
    reference = TorchBackend(copy.deepcopy(tiny_model), torch.device("cpu"))  # the torch engine's backend
    for size in SIZES:
        for count in (1, 3):
            images = photos_batch(size, count)
            (boxes, scores), (ref_boxes, ref_scores) = exported(images), reference(images)
            assert (boxes - ref_boxes).abs().max() <= 1e-5 and (scores - ref_scores).abs().max() <= 1e-5


def test_torchscript_static_and_the_engine(tiny: Path, tmp_path: Path) -> None:
    path = export_copy(tiny, tmp_path, format="torchscript", imgsz=(256, 192))
    exported = open_exported(path, "cpu")
    assert exported.fixed_input == (256, 192) and exported.metadata.imgsz == (256, 192)
    settings = EngineSettings(imgsz=(256, 192))
    images = [cv2.imread(str(p)) for p in PHOTOS]
    got = NAS(path).make_engine(settings, device="cpu").run_batch(images)
    want = NAS(tiny).make_engine(settings, device="cpu").run_batch(images)
    for (det, _, _), (ref, _, _) in zip(got, want):
        assert np.array_equal(det, ref)


def test_cli_export_torchscript(tiny: Path, tmp_path: Path) -> None:
    from yolonas_cli.cli.app import run_cli

    weights = Path(shutil.copy(tiny, tmp_path / "tiny.pt"))
    assert run_cli(["export", f"model={weights}", "format=torchscript", "imgsz=128"]) == 0
    assert (tmp_path / "tiny.torchscript").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt", "tiny.torchscript"]  # no temp files


# ---------------------------------------------------------------- OpenVINO


@needs_openvino
def test_openvino_fp32_on_one_dynamic_ir(tiny: Path, tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = export_copy(tiny, tmp_path, format="openvino", imgsz=320, dynamic=True)
    assert path.name == "tiny_openvino_model" and (path / "tiny.xml").is_file() and (path / "tiny.bin").is_file()
    exported = open_exported(path, "cpu")
    assert exported.metadata.format == "openvino" and exported.metadata.precision == "fp32"
    assert exported.fixed_input is None
    assert_close_to_torch(exported, tiny_model, 1e-3, 1e-3)
    assert open_exported(path / "tiny.xml", "cpu").metadata.names == exported.metadata.names  # the .xml too


@needs_openvino
def test_openvino_fp32_s(s_checkpoint: Path, tmp_path: Path) -> None:
    """S: scores within 1e-4 (measured 1.1e-5); boxes within 5e-3 px of torch (measured 1.9e-3 px) and no
    further from a float64 forward than torch FP32 is (x2; measured ratio 1.0-1.6; torch is 0.9e-3 to 1.5e-3 px
    from float64 here)."""
    weights = Path(shutil.copy(s_checkpoint, tmp_path / "yolo_nas_s.pt"))
    path = export_copy(weights, tmp_path / "out", format="openvino", imgsz=256, dynamic=True)
    model = NAS(weights).fuse().model
    backend = open_exported(path, "cpu")
    assert_close_to_torch(backend, model, 5e-3, 1e-4)
    exact_model = copy.deepcopy(model).double()
    for size in SIZES:  # the float64 forward is the referee: OpenVINO is no further from it than torch FP32
        images = photos_batch(size, 3)
        with torch.no_grad():
            exact, _ = exact_model(torch.from_numpy(images).double())
        torch_err = (torch_outputs(model, images)[0].double() - exact).abs().max().item()
        openvino_err = (backend(images)[0].double() - exact).abs().max().item()
        assert torch_err > 0 and openvino_err <= 2 * torch_err + 1e-4, (size, openvino_err, torch_err)


@needs_openvino
def test_openvino_with_nms_static_batch(tiny: Path, tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = export_copy(tiny, tmp_path, format="openvino", imgsz=(256, 192), batch=2, nms=True)
    backend = open_exported(path, "cpu")
    assert backend.graph_nms is not None and backend.fixed_input == (256, 192) and backend.fixed_batch == 2
    images = photos_batch((256, 192), 3)
    got = backend(images)
    want = postprocess(*torch_outputs(tiny_model, images), conf=0.25, iou=0.7, max_det=300)
    assert sum(len(w) for w in want) > 10
    for g, w in zip(got, want):
        assert g.shape == w.shape and torch.equal(g[:, 5], w[:, 5])
        assert torch.allclose(g[:, :4], w[:, :4], atol=1e-3, rtol=0)  # shapes are equal: empty == empty


@needs_openvino
def test_openvino_fp16_stores_fp16_weights(tiny: Path, tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = export_copy(tiny, tmp_path, format="openvino", imgsz=192, half=True)
    fp32_bytes = 4 * sum(p.numel() for p in tiny_model.parameters())
    assert (path / "tiny.bin").stat().st_size < 0.6 * fp32_bytes
    exported = open_exported(path, "cpu")
    assert exported.metadata.precision == "fp16"
    from test_export_onnx import assert_fp16_close_to_fp32

    assert_fp16_close_to_fp32(exported, tiny_model, (192, 192))


@needs_openvino
@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="nncf is not installed (pip install nncf)")
def test_openvino_int8_through_nncf(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An INT8 IR (NNCF, 2 calibration images at 160) holds quantized layers, keeps most FP32 detections, and
    prints the agreement it really has; the stem stays float. Measured: 134 FakeQuantize layers; recall 0.931
    of 101 FP32 detections, mean IoU 0.961, mean score change 0.064 (with the stem in INT8: 135, 0.921,
    0.969, 0.073; the drift bound is 0.1 here, not the 0.08 of the 8-image ONNX test at 320)."""
    from test_int8 import MIN_IOU, MIN_RECALL, brute_force_agreement, make_dataset, printed_agreement

    data = make_dataset(tmp_path / "data", tiny, labels=False)
    console.set_verbose(True)
    path = export_copy(tiny, tmp_path / "w", format="openvino", imgsz=160, int8=True, data=str(data), fraction=0.25)
    err = capsys.readouterr().err
    assert "calibrating on 2 images" in err and "with NNCF" in err
    assert open_exported(path, "cpu").metadata.precision == "int8"
    assert (path / "tiny.xml").read_text().count('type="FakeQuantize"') > 50
    assert activation_source(path, "/backbone/stem/") != "FakeQuantize"  # kept in float (formats.int8)
    assert activation_source(path, "/backbone/stage1/downsample/") == "FakeQuantize"
    assert activation_source(path, "/heads/Conv") != "FakeQuantize"  # the DFL projection of the float tail
    settings = EngineSettings(imgsz=(160, 160))
    reference, quantized = (NAS(p).make_engine(settings, device="cpu") for p in (tiny, path))
    images = [cv2.imread(str(p)) for p in PHOTOS]
    agreement = brute_force_agreement(
        [reference.run_batch([i])[0][0] for i in images], [quantized.run_batch([i])[0][0] for i in images]
    )
    recall, mean_iou, drift = agreement
    assert recall >= MIN_RECALL and mean_iou >= MIN_IOU and drift <= 0.1, agreement
    assert printed_agreement(err) == pytest.approx(agreement, abs=6e-4)  # the report's numbers are these


def activation_source(folder: Path, name_part: str) -> str:
    """The operation type feeding the first Convolution whose name contains `name_part` in an IR folder."""
    import openvino as ov

    model = ov.Core().read_model(str(next(folder.glob("*.xml"))))
    convs = [op for op in model.get_ops() if op.get_type_name() == "Convolution"]
    conv = next(op for op in convs if name_part in op.get_friendly_name())
    return conv.input_value(0).get_node().get_type_name()


@needs_openvino
def test_openvino_names_follow_onnx_nodes_into_the_converted_model(tmp_path: Path) -> None:
    """A biased ONNX Conv becomes two OpenVINO operations (`<name>/WithoutBiases` and the bias Add `<name>`):
    both are named for it, the Relu after it is not; a name the model does not have names nothing."""
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    from yolonas_cli.formats.openvino import openvino_names

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype=np.float32), "w")
    bias = numpy_helper.from_array(np.ones(4, dtype=np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], name="/a/Conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"], name="/a/Relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight, bias],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = ov.convert_model(str(path))
    conv_ops = openvino_names(model, ["/a/Conv"])
    assert "/a/Conv/WithoutBiases" in conv_ops and all(name.startswith("/a/Conv") for name in conv_ops)
    types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ops()}
    assert types["/a/Conv/WithoutBiases"] == "Convolution"
    assert not any("Relu" in name for name in conv_ops) and openvino_names(model, ["/gone"]) == []


def test_missing_openvino_is_one_line_with_the_hint(monkeypatch, tiny: Path) -> None:
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(MissingExtraError, match=re.escape(pip_extra("openvino"))):  # see test_install.py
        get("openvino").check_installed()


# ---------------------------------------------------------------- TensorRT (CPU-side checks)


def test_engine_needs_tensorrt_and_cuda(tiny: Path) -> None:
    from yolonas_cli.cli.app import run_cli

    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(MissingExtraError, match=r"needs tensorrt.*" + re.escape(pip_extra("tensorrt"))):
            export_model(NAS(tiny), ExportArgs(model=str(tiny), format="engine"))
    elif not torch.cuda.is_available():
        with pytest.raises(MissingExtraError, match="needs CUDA"):
            export_model(NAS(tiny), ExportArgs(model=str(tiny), format="engine"))
    with (
        pytest.raises(UsageError, match="needs an NVIDIA GPU")
        if importlib.util.find_spec("tensorrt")
        else pytest.raises(MissingExtraError)
    ):
        export_model(NAS(tiny), ExportArgs(model=str(tiny), format="engine", device="cpu"))
    # Without TensorRT or CUDA the missing piece is found first (exit 1); with both, opset=5 is a usage error.
    ready = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
    assert run_cli(["export", f"model={tiny}", "format=engine", "opset=5", "simplify"]) == (2 if ready else 1)


def test_tensorrt_older_than_10_is_refused_with_the_upgrade_hint(monkeypatch, tiny: Path) -> None:
    """TensorRT 8 (weakly typed networks, no INT64) is refused before any work, for export and for running."""
    import sys
    import types

    from yolonas_cli.formats.tensorrt import check_tensorrt_version, load_tensorrt

    for version in ("10.0.1", "10.13.3.9", "11.0.0"):
        check_tensorrt_version(version)
    for version in ("8.6.1", "9.3.0.post12.dev1", "unknown"):
        with pytest.raises(MissingExtraError, match=rf"TensorRT {version} is installed; .* TensorRT 10 or newer"):
            check_tensorrt_version(version)
    old = types.ModuleType("tensorrt")
    old.__version__ = "8.6.1"  # what `import tensorrt` gives on JetPack 5
    old.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt", old)
    with pytest.raises(MissingExtraError, match=re.escape(pip_extra("tensorrt").replace("install", "install -U"))):
        load_tensorrt()
    with pytest.raises(MissingExtraError, match=r"TensorRT 8\.6\.1 is installed"):
        get("engine").check_installed()


def test_engine_file_header_round_trip(tmp_path: Path) -> None:
    from yolonas_cli.formats.tensorrt import read_engine_file, write_engine_file

    meta = ExportMetadata(
        names={0: "a"},
        imgsz=(640, 640),
        batch=4,
        dynamic=True,
        precision="fp16",
        nms=True,
        model="yolo_nas_s",
        source="s.pt",
        source_sha256="1" * 64,
        format="engine",
        conf=0.25,
        iou=0.7,
        max_det=300,
        pre_nms_top_k=1024,
        version="0.1.0",
    )
    path = tmp_path / "x.engine"
    write_engine_file(path, meta, b"\x00engine-bytes")
    assert read_engine_file(path) == (meta, b"\x00engine-bytes")
    (tmp_path / "raw.engine").write_bytes(b"plain trtexec engine")
    with pytest.raises(WeightsError, match="no yolo-nas header"):
        read_engine_file(tmp_path / "raw.engine")


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
def test_int8_graph_for_tensorrt_is_symmetric(tiny: Path, tmp_path: Path) -> None:
    """TensorRT takes only symmetric INT8 Q/DQ: every activation zero point is an int8 0."""
    import onnx
    from onnx import numpy_helper

    from test_int8 import make_dataset
    from yolonas_cli.formats.tensorrt import onnx_for_engine
    from yolonas_cli.modes.export import export_job

    data = make_dataset(tmp_path / "data", tiny, labels=False)
    args = ExportArgs(model=str(tiny), format="engine", imgsz=192, int8=True, data=str(data), fraction=0.25)
    job = export_job(NAS(tiny), args, torch.device("cpu"), tmp_path / "x.engine")
    model = onnx.load(str(onnx_for_engine(job, tmp_path)))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(zero_points) > 50
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)


def test_metadata_is_read_without_a_runtime(tiny: Path, tmp_path: Path) -> None:
    """`read_exported_metadata` (what NAS("x.onnx") needs before a device is chosen) for every format."""
    from yolonas_cli.formats.exported import read_exported_metadata
    from yolonas_cli.formats.tensorrt import write_engine_file

    script = export_copy(tiny, tmp_path / "ts", format="torchscript", imgsz=128)
    meta = read_exported_metadata(script)
    assert meta.format == "torchscript" and meta.imgsz == (128, 128) and meta.names[79] == "toothbrush"
    engine = tmp_path / "x.engine"
    write_engine_file(engine, meta, b"engine")
    assert read_exported_metadata(engine) == meta
    with pytest.raises(WeightsError):
        read_exported_metadata(tmp_path / "missing.onnx")
    if HAS_OPENVINO:
        ir = export_copy(tiny, tmp_path / "ov", format="openvino", imgsz=128)
        assert read_exported_metadata(ir).format == "openvino"
        onnx_file = export_copy(tiny, tmp_path / "onnx", imgsz=128)
        assert read_exported_metadata(onnx_file).format == "onnx"
