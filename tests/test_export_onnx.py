"""`yolo-nas export format=onnx` and the ONNX Runtime backend: format table, metadata, parity with torch.

Tolerances. FP32 scores agree to 1e-4 (measured <= 1e-5). Boxes are in input pixels, where 1e-4 px is about
two float32 ulps at 320 px: below what any two FP32 evaluations that sum in different orders can hold. On the
fixture weights torch's own FP32 forward is 0.7e-3 to 1.5e-3 px from a float64 forward, and torch even disagrees
with itself by up to 1.9e-3 px between its NCHW and channels-last kernels (S at 320); ONNX Runtime and OpenVINO
land at the same distance. So boxes are checked (a) to BOX_TOL = 5e-3 px against torch (1.6e-5 of the input
size, inside a 1e-4 relative tolerance) and (b) to be no further from the float64 forward, the exact answer,
than torch itself is (x2, plus 1e-4 px; measured ratio 0.6-1.3). The NMS logic in the graph is checked exactly,
on its own, against `postprocess`.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolonas_cli.api import NAS
from yolonas_cli.cfg import ExportArgs
from yolonas_cli.core.errors import MissingExtraError, UsageError, WeightsError
from yolonas_cli.core.install import pip_extra
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.engine.postprocess import detections_from_end2end, postprocess
from yolonas_cli.formats.exported import open_exported
from yolonas_cli.formats.job import OPTIONAL_ARGS
from yolonas_cli.formats.metadata import PREPROCESSING, ExportMetadata
from yolonas_cli.formats.registry import EXPORT_FORMATS, FORMATS, format_of, get, is_exported
from yolonas_cli.formats.wrappers import End2EndHead
from yolonas_cli.modes.export import check_args, export_model
from yolonas_cli.weights.download import sha256_file

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'yolo-nas[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'yolo-nas[onnx]')")

ASSETS = Path(__file__).resolve().parents[1] / "src" / "yolonas_cli" / "assets"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
SIZES = ((256, 256), (192, 256))  # two H x W on one dynamic graph (exported at 320)
BOX_TOL = 5e-3  # px, see the module docstring (measured max vs torch: 1.5e-3 S, 1.9e-3 tiny)
SCORE_TOL = 1e-4


pytestmark = [pytest.mark.onnx, pytest.mark.usefixtures("quiet_console")]


def maxabs(a, b) -> float:
    """Largest absolute difference (0 for empty arrays)."""
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return float(diff.max()) if diff.size else 0.0


def photos_batch(size: tuple[int, int], count: int) -> np.ndarray:
    """The first `count` sample photos, letterboxed to `size` exactly as the engine does."""
    images = [cv2.imread(str(ASSETS / name)) for name in PHOTOS[:count]]
    return np.stack([Letterbox.for_image(img.shape[:2], size).apply(img) for img in images])


def _copy_weights(src: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, folder / name))


@pytest.fixture(scope="module")
def tiny_weights(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_weights(tiny_checkpoint, tmp_path_factory.mktemp("tiny"), "tiny.pt")


@pytest.fixture(scope="module")
def s_weights(s_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_weights(s_checkpoint, tmp_path_factory.mktemp("s"), "yolo_nas_s.pt")


def export_to(weights: Path, folder: Path, **kwargs) -> Path:
    """Export a copy of `weights` placed in `folder` (so several exports of one model can coexist)."""
    copy_path = _copy_weights(weights, folder, weights.name)
    return export_model(NAS(copy_path), ExportArgs(model=str(copy_path), **kwargs))


@pytest.fixture(scope="module")
def exports(tiny_weights: Path, s_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Dynamic decoded and end-to-end exports of tiny and S (exported once for the module)."""
    out = {}
    for variant, weights in (("tiny", tiny_weights), ("s", s_weights)):
        for nms in (False, True):
            folder = tmp_path_factory.mktemp(f"{variant}_{'nms' if nms else 'plain'}")
            out[variant, nms] = export_to(weights, folder, imgsz=320, dynamic=True, nms=nms)
    return out


@functools.lru_cache(maxsize=4)
def fused_model(weights: Path, double: bool = False) -> torch.nn.Module:
    model = NAS(weights).fuse().model
    return copy.deepcopy(model).double() if double else model


def torch_forward(weights: Path, images: np.ndarray, double: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    model = fused_model(weights, double)
    with torch.no_grad():
        x = torch.from_numpy(images)
        return model(x.double() if double else x)


# ---------------------------------------------------------------- the format table and validation


def test_format_table_is_consistent() -> None:
    assert set(EXPORT_FORMATS) == {"onnx", "torchscript", "openvino", "engine"}
    assert [f.name for f in FORMATS if not f.exportable] == ["pytorch"]
    for fmt in FORMATS:
        assert fmt.takes <= set(OPTIONAL_ARGS), fmt.name
        if "nms" in fmt.takes:
            assert {"conf", "iou", "max_det"} <= fmt.takes
        if "int8" in fmt.takes:
            assert {"data", "fraction"} <= fmt.takes
            assert fmt.int8_needs, fmt.name  # what int8 needs besides the export is named
        assert fmt.implementation().__name__ == f"yolonas_cli.formats.{fmt.module}"
    assert get("trt") is get("tensorrt") is get("engine") and get("pt") is get("pytorch")


def test_output_paths_sit_beside_the_weights() -> None:
    weights = Path("/w/yolo_nas_s.pt")
    assert get("onnx").output_for(weights) == Path("/w/yolo_nas_s.onnx")
    assert get("torchscript").output_for(weights) == Path("/w/yolo_nas_s.torchscript")
    assert get("openvino").output_for(weights) == Path("/w/yolo_nas_s_openvino_model")
    assert get("engine").output_for(weights) == Path("/w/yolo_nas_s.engine")
    for name in EXPORT_FORMATS:
        found = format_of(get(name).output_for(weights))
        assert found is not None and found.name == name
    assert format_of(Path("/w/yolo_nas_s_openvino_model/yolo_nas_s.xml")).name == "openvino"
    assert not is_exported(weights)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "torchscript", "nms": True}, "nms=True is not supported for format=torchscript"),
        ({"format": "torchscript", "int8": True}, "int8=True is not supported for format=torchscript"),
        ({"format": "torchscript", "opset": 13}, "opset=13 is not supported for format=torchscript"),
        ({"format": "openvino", "simplify": True}, "simplify=True is not supported for format=openvino"),
        ({"format": "onnx", "conf": 0.5}, "add nms=True"),
        ({"format": "onnx", "data": "coco8.yaml"}, "add int8=True"),
        ({"format": "onnx", "half": True, "int8": True}, "choose one"),
    ],
)
def test_unsupported_combinations_are_usage_errors(kwargs: dict, message: str) -> None:
    args = ExportArgs(**kwargs)
    with pytest.raises(UsageError, match=message):
        check_args(args, get(args.format))


def test_cli_rejects_a_combination_with_exit_2_before_loading(tmp_path: Path) -> None:
    from yolonas_cli.cli.app import run_cli

    missing = tmp_path / "nothing_here.pt"  # never read: validation comes first
    assert run_cli(["export", f"model={missing}", "format=torchscript", "nms=True"]) == 2


def test_a_missing_extra_is_a_one_line_error_with_the_pip_hint(monkeypatch, tiny_weights: Path) -> None:
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(MissingExtraError, match=re.escape(pip_extra("onnx"))):  # see test_install.py
        export_model(NAS(tiny_weights), ExportArgs(model=str(tiny_weights)))


def test_opset_out_of_range(tiny_weights: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="opset=7 is out of range"):
        export_to(tiny_weights, tmp_path, opset=7)


# ---------------------------------------------------------------- the file


def test_checker_passes_and_metadata_is_in_the_file(exports: dict, s_weights: Path) -> None:
    path = exports["s", False]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    meta = ExportMetadata.from_pairs(props, str(path))
    assert meta.names == NAS(s_weights).names and meta.names[0] == "person"
    assert meta.imgsz == (320, 320) and meta.stride == 32 and meta.dynamic and not meta.nms
    assert meta.model == "yolo_nas_s" and meta.version and meta.precision == "fp32"
    assert meta.source == "yolo_nas_s.pt" and meta.source_sha256 == sha256_file(s_weights)
    assert meta.preprocessing == PREPROCESSING
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]


def test_metadata_round_trip_and_foreign_files(tmp_path: Path) -> None:
    meta = ExportMetadata(
        names={0: "a", 1: "b c"},
        imgsz=(320, 256),
        batch=2,
        dynamic=False,
        precision="fp16",
        nms=True,
        model="m",
        source="m.pt",
        source_sha256="0" * 64,
        format="onnx",
        conf=0.3,
        iou=0.6,
        max_det=10,
        pre_nms_top_k=1024,
        version="0.1.0",
    )
    assert ExportMetadata.from_pairs(meta.to_pairs(), "x") == meta
    foreign = tmp_path / "foreign.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(WeightsError, match="not exported by yolo-nas"):
        open_exported(foreign, "cpu")


def test_a_failed_export_leaves_no_file(monkeypatch, tiny_weights: Path, tmp_path: Path) -> None:
    from yolonas_cli.core.errors import YoloNasError
    from yolonas_cli.formats import onnx_graph as onnx_export

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnx_export, "finish_onnx", broken)
    with pytest.raises(YoloNasError, match=r"ONNX export failed.*disk full"):
        export_to(tiny_weights, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt"]


# ---------------------------------------------------------------- parity with torch


@pytest.mark.parametrize("variant", ["tiny", "s"])
def test_dynamic_graph_matches_torch(variant: str, exports: dict, tiny_weights: Path, s_weights: Path) -> None:
    weights = tiny_weights if variant == "tiny" else s_weights
    backend = open_exported(exports[variant, False], "cpu")
    assert backend.fixed_input is None and backend.fixed_batch is None
    for size in SIZES:
        for count in (1, 3):
            images = photos_batch(size, count)
            boxes, scores = backend(images)
            ref_boxes, ref_scores = torch_forward(weights, images)
            assert boxes.shape == ref_boxes.shape and scores.shape == ref_scores.shape
            assert (scores - ref_scores).abs().max() <= SCORE_TOL
            assert (boxes - ref_boxes).abs().max() <= BOX_TOL


@pytest.mark.parametrize("variant", ["tiny", "s"])
def test_onnx_is_as_close_to_float64_as_torch_is(
    variant: str, exports: dict, tiny_weights: Path, s_weights: Path
) -> None:
    """The exact answer (a float64 forward) is the referee: ONNX Runtime's boxes are no further from it than
    torch's own FP32 boxes are (measured ratio 0.6-1.3; bound 2x)."""
    weights = tiny_weights if variant == "tiny" else s_weights
    backend = open_exported(exports[variant, False], "cpu")
    for size in SIZES:
        images = photos_batch(size, 3)
        boxes, _ = backend(images)
        torch_boxes, _ = torch_forward(weights, images)
        exact, _ = torch_forward(weights, images, double=True)
        torch_err = (torch_boxes.double() - exact).abs().max().item()
        onnx_err = (boxes.double() - exact).abs().max().item()
        assert torch_err > 0 and onnx_err <= 2 * torch_err + 1e-4, (size, onnx_err, torch_err)


def _synthetic(batch: int, anchors: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crowded boxes (many overlaps) and scores with a few very confident classes."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, anchors, 2, generator=gen) * 150
    wh = torch.rand(batch, anchors, 2, generator=gen) * 50 + 2
    scores = torch.rand(batch, anchors, classes, generator=gen) ** 3
    return torch.cat([xy, xy + wh], -1), scores


def test_in_graph_nms_equals_postprocess_exactly(tmp_path: Path) -> None:
    """The NMS head alone, exported once with dynamic batch and anchors: every case equals `postprocess`.

    Cases: more survivors than max_det (and more than max_det in one class: the per-class cap of ONNX NMS),
    more candidates than the pre-NMS top-k, fewer (anchor, class) pairs than the top-k, an empty image."""
    conf, iou, max_det, classes = 0.2, 0.5, 40, 3
    head = End2EndHead(conf, iou, max_det)
    path = tmp_path / "head.onnx"
    boxes, scores = _synthetic(2, 500, classes, 0)
    names = ["num_dets", "det_boxes", "det_scores", "det_classes"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head,
            (boxes, scores),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["b", "s"],
            output_names=names,
            autograd_inlining=False,
            dynamic_axes={"b": {0: "B", 1: "N"}, "s": {0: "B", 1: "N"}, **{n: {0: "B"} for n in names}},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cases = [_synthetic(2, 500, classes, 1), _synthetic(3, 3000, classes, 2), _synthetic(1, 7, classes, 3)]
    empty = _synthetic(1, 50, classes, 4)
    cases.append((empty[0], empty[1] * 0.1))
    for boxes, scores in cases:
        outputs = session.run(None, {"b": boxes.numpy(), "s": scores.numpy()})
        got = detections_from_end2end(*map(torch.from_numpy, outputs))
        want = postprocess(boxes, scores, conf=conf, iou=iou, max_det=max_det)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            assert torch.equal(g, w)
    crowded = postprocess(*cases[1], conf=conf, iou=iou, max_det=10_000)
    assert max(len(d) for d in crowded) > max_det  # the cap was exercised ...
    assert max(int((d[:, 5] == 0).sum()) for d in crowded) > max_det  # ... also within one class


@pytest.mark.parametrize("variant", ["tiny", "s"])
def test_end2end_graph_matches_the_torch_pipeline(
    variant: str, exports: dict, tiny_weights: Path, s_weights: Path
) -> None:
    weights = tiny_weights if variant == "tiny" else s_weights
    e2e = open_exported(exports[variant, True], "cpu")
    decoded = open_exported(exports[variant, False], "cpu")
    assert e2e.graph_nms is not None and decoded.graph_nms is None
    assert e2e.metadata.conf == 0.25 and e2e.metadata.max_det == 300
    total = 0
    for size in SIZES:
        images = photos_batch(size, 3)
        got = e2e(images)
        same_inputs = postprocess(*decoded(images), conf=0.25, iou=0.7, max_det=300)
        pipeline = postprocess(*torch_forward(weights, images), conf=0.25, iou=0.7, max_det=300)
        for g, s, p in zip(got, same_inputs, pipeline):
            assert torch.allclose(g, s, atol=1e-6, rtol=0)  # the NMS in the graph is the pipeline's NMS
            assert g.shape == p.shape  # same count as the torch pipeline
            assert torch.equal(g[:, 5], p[:, 5])
            assert maxabs(g[:, :4], p[:, :4]) <= BOX_TOL
            assert maxabs(g[:, 4], p[:, 4]) <= SCORE_TOL
            total += len(g)
    assert total > 20


# ---------------------------------------------------------------- static, batch, half, simplify


def test_static_export_fixes_size_and_batch(tiny_weights: Path, tmp_path: Path) -> None:
    path = export_to(tiny_weights, tmp_path, imgsz=(256, 192), batch=2)
    backend = open_exported(path, "cpu")
    assert backend.fixed_input == (256, 192) and backend.fixed_batch == 2
    images = photos_batch((256, 192), 3)  # 3 images on a batch-2 graph: split and padded
    boxes, scores = backend(images)
    ref_boxes, ref_scores = torch_forward(tiny_weights, images)
    assert (scores - ref_scores).abs().max() <= SCORE_TOL and (boxes - ref_boxes).abs().max() <= BOX_TOL
    with pytest.raises(UsageError, match="exported for 256x192"):
        backend(photos_batch((320, 320), 1))


def test_half_export_is_an_fp16_graph_with_float32_io(tiny_weights: Path, tmp_path: Path) -> None:
    path = export_to(tiny_weights, tmp_path, imgsz=192, half=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    types = {t.data_type for t in model.graph.initializer if len(t.dims) == 4}
    assert onnx.TensorProto.FLOAT16 in types  # the body's convolutions
    exported = open_exported(path, "cpu")
    assert exported.metadata.precision == "fp16"
    boxes, _ = exported(photos_batch((192, 192), 1))
    assert boxes.dtype == torch.float32
    assert_fp16_close_to_fp32(exported, fused_model(tiny_weights), (192, 192))


# FP16 backbone and neck, FP32 heads, against the fused FP32 model on the four photos (measured for tiny and S,
# ONNX Runtime and OpenVINO, 192 and 256): boxes up to 2.1-2.4 px apart over all anchors (0.03-0.05 px on
# average) and scores up to 0.014-0.019, from FP16 rounding of the features; every FP32 detection at predict
# settings found again at IoU >= 0.993 (tiny). The bounds are about 1.3x to 2x the measured values.
FP16_BOX_TOL, FP16_MEAN_BOX_TOL, FP16_SCORE_TOL, FP16_MIN_IOU = 3.0, 0.07, 0.03, 0.95


def assert_fp16_close_to_fp32(backend, model: torch.nn.Module, size: tuple[int, int]) -> None:
    """An FP16 export's outputs are the FP32 model's within FP16 rounding, and so are its detections."""
    from yolonas_cli.metrics.matching import match_pairs

    images = photos_batch(size, 4)
    boxes, scores = backend(images)
    with torch.no_grad():
        ref_boxes, ref_scores = model(torch.from_numpy(images))
    assert boxes.dtype == scores.dtype == torch.float32 and boxes.shape == ref_boxes.shape
    assert maxabs(boxes, ref_boxes) <= FP16_BOX_TOL and (boxes - ref_boxes).abs().mean() <= FP16_MEAN_BOX_TOL
    assert maxabs(scores, ref_scores) <= FP16_SCORE_TOL
    assert maxabs(boxes, ref_boxes) > 0  # FP16 really ran: an FP32 graph would match to ~1e-3 px
    got = postprocess(boxes, scores, conf=0.25, iou=0.7)
    want = postprocess(ref_boxes, ref_scores, conf=0.25, iou=0.7)
    assert sum(len(w) for w in want) > 20
    for g, w in zip(got, want):
        pairs = match_pairs(w.numpy(), g.numpy(), 0.5)
        assert len(pairs) == len(w) and all(iou >= FP16_MIN_IOU for _, _, iou in pairs)


@pytest.mark.skipif(importlib.util.find_spec("onnxslim") is None, reason="onnxslim is not installed")
def test_simplify_keeps_the_outputs(tiny_weights: Path, exports: dict, tmp_path: Path) -> None:
    path = export_to(tiny_weights, tmp_path, imgsz=320, dynamic=True, simplify=True)
    images = photos_batch((256, 192), 2)
    slim_boxes, slim_scores = open_exported(path, "cpu")(images)
    boxes, scores = open_exported(exports["tiny", False], "cpu")(images)
    assert (slim_scores - scores).abs().max() <= 1e-5 and (slim_boxes - boxes).abs().max() <= 1e-3


# ---------------------------------------------------------------- engine parity and hygiene


def test_engine_on_onnx_gives_the_results_of_the_pt_file(exports: dict, tiny_weights: Path) -> None:
    settings = EngineSettings(imgsz=(320, 320), conf=0.25, iou=0.7)
    images = [cv2.imread(str(ASSETS / name)) for name in PHOTOS]
    torch_engine = NAS(tiny_weights).make_engine(settings, device="cpu")
    for path in (exports["tiny", False], exports["tiny", True]):
        engine = NAS(path).make_engine(settings, device="cpu")
        for (det, _, _), (ref, _, _) in zip(engine.run_batch(images), torch_engine.run_batch(images)):
            assert det.shape == ref.shape
            assert np.array_equal(det[:, 5], ref[:, 5])
            assert maxabs(det[:, :4], ref[:, :4]) <= 2 * BOX_TOL  # original-image pixels


def test_predict_and_val_on_onnx_equal_the_pt_file(exports: dict, tiny_weights: Path, tmp_path: Path) -> None:
    """Predict and val run an exported model as they run the weights: same results."""
    from test_int8 import make_dataset
    from yolonas_cli.cfg import PredictArgs, ValArgs
    from yolonas_cli.modes.predict import predict_stream
    from yolonas_cli.modes.val import validate

    exported = NAS(exports["tiny", False])
    args = PredictArgs(
        model=str(exports["tiny", False]), source=str(ASSETS), imgsz=320, save=False, verbose=False, device="cpu"
    )
    got, want = list(predict_stream(exported, args)), list(predict_stream(NAS(tiny_weights), args))
    assert [r.path for r in got] == [r.path for r in want] and sum(len(r.boxes) for r in got) > 20
    for g, w in zip(got, want):
        assert len(g.boxes) == len(w.boxes) and maxabs(g.boxes.data[:, :4], w.boxes.data[:, :4]) <= 2 * BOX_TOL
    data = make_dataset(tmp_path / "data", tiny_weights, labels=True)
    val = ValArgs(
        data=str(data),
        imgsz=320,
        batch=2,
        plots=False,
        verbose=False,
        device="cpu",
        project=str(tmp_path / "runs"),
        workers=0,
    )
    onnx_map, pt_map = validate(exported, val).box.map, validate(NAS(tiny_weights), val).box.map
    assert onnx_map == pytest.approx(pt_map, abs=1e-3) and pt_map > 0.5


def test_nas_opens_an_onnx_file(exports: dict, s_weights: Path) -> None:
    """`NAS("x.onnx")`: same results as the .pt file."""
    exported_nas = NAS(exports["s", False])
    images = [cv2.imread(str(ASSETS / name)) for name in PHOTOS]
    settings = EngineSettings(imgsz=(320, 320))
    got = exported_nas.make_engine(settings, device="cpu").run_batch(images)
    want = NAS(s_weights).make_engine(settings, device="cpu").run_batch(images)
    for (det, _, _), (ref, _, _) in zip(got, want):
        assert det.shape == ref.shape and maxabs(det[:, :4], ref[:, :4]) <= 2 * BOX_TOL


def test_importing_the_exporter_and_every_format_module_loads_no_runtime() -> None:
    code = (
        "import sys, yolonas_cli, yolonas_cli.modes.export, yolonas_cli.api; "
        "from yolonas_cli.formats.registry import FORMATS; [f.implementation() for f in FORMATS]; "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'openvino', 'tensorrt', 'onnxslim', 'nncf') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_execution_providers_for_each_device() -> None:
    """CPU: the CPU provider; CUDA: the CUDA provider on the asked GPU with TF32 off (FP32 means FP32, as in the
    torch backend) and the CPU as fallback; CUDA asked of a CPU-only onnxruntime: the onnxruntime-gpu hint."""
    from types import SimpleNamespace

    from yolonas_cli.formats.onnx import providers_for

    def runtime(version: str, providers: list[str]) -> SimpleNamespace:
        return SimpleNamespace(__version__=version, get_available_providers=lambda: providers)

    gpu = runtime("1.20.1", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers_for(ort, torch.device("cpu")) == ["CPUExecutionProvider"]
    assert providers_for(gpu, torch.device("cuda", 1)) == [
        ("CUDAExecutionProvider", {"device_id": 1, "use_tf32": 0}),
        "CPUExecutionProvider",
    ]
    older = runtime("1.17.3", ["CUDAExecutionProvider", "CPUExecutionProvider"])  # before the use_tf32 option
    assert providers_for(older, torch.device("cuda", 0))[0] == ("CUDAExecutionProvider", {"device_id": 0})
    with pytest.raises(MissingExtraError, match="pip install onnxruntime-gpu"):
        providers_for(runtime(ort.__version__, ["CPUExecutionProvider"]), torch.device("cuda", 0))
