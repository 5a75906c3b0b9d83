"""format=openvino: the export (ONNX -> OpenVINO IR `<stem>_openvino_model/<stem>.xml` + `.bin`: FP32, FP16
weights, or INT8 through NNCF) and the backend that runs an IR folder (or its .xml) on the CPU.

The ONNX graph (with its NMS when `nms=True`) is converted by `openvino.convert_model`; the metadata pairs
go into the model's `rt_info` under `yolo_nas`. FP16 stores FP16 weights (`compress_to_fp16`); INT8 runs
NNCF post-training quantization on the calibration images with the backbone's stem, the decoding and the NMS
kept in float (`formats.int8.kept_in_float`: the ONNX INT8 export's rule, plus the stem).

Models are compiled with the f32 inference precision hint: OpenVINO's CPU plugin otherwise runs the float
layers in bfloat16 on CPUs that have it, which moves boxes by whole pixels (FP16 exports keep FP16-rounded
weights; INT8 ones run their quantized layers in INT8 either way).
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolonas_cli.core import console
from yolonas_cli.core.cpus import cpu_budget
from yolonas_cli.core.errors import MissingExtraError, WeightsError
from yolonas_cli.core.files import atomic_dir
from yolonas_cli.core.install import pip_extra
from yolonas_cli.engine.backend import check_input, outputs_to_raw, run_in_batches
from yolonas_cli.formats.calibration import DEFAULT_DATA, calibration_for
from yolonas_cli.formats.int8 import kept_in_float, measure_cost
from yolonas_cli.formats.job import ExportJob
from yolonas_cli.formats.metadata import ExportMetadata
from yolonas_cli.formats.onnx import OnnxRuntimeBackend
from yolonas_cli.formats.onnx_graph import build_onnx


def export(job: ExportJob) -> Path:
    """format=openvino: the folder with `<stem>.xml`, `<stem>.bin`; INT8 also prints its cost report."""
    import openvino as ov

    o = job.options
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = build_onnx(job, Path(scratch) / "model.onnx", half=False, simplify=False, precision="fp32")
        model = ov.convert_model(str(onnx_path))
        if o.int8:
            model = quantize_nncf(model, onnx_path, job)
        write_rt_info(model, job.meta)
        with atomic_dir(job.output) as folder:
            ov.save_model(model, str(folder / f"{job.weights.stem}.xml"), compress_to_fp16=o.half)
            if o.int8:
                report_cost(onnx_path, folder, job)
    return job.output


def report_cost(fp32_onnx: Path, folder: Path, job: ExportJob) -> None:
    """Print the INT8 cost report (see `formats.int8`) of the IR in `folder` against the FP32 graph."""
    data = job.options.data or DEFAULT_DATA
    cost = measure_cost(OnnxRuntimeBackend(fp32_onnx), OpenVinoBackend(folder), data, job.imgsz)
    for line in cost.lines(f"{data} (val)"):
        console.info(line)


def read_metadata(path: Path) -> ExportMetadata:
    """The metadata in the IR's rt_info (the model is read, not compiled)."""
    return read_rt_info(read_model(load_openvino().Core(), path), str(path))


def read_model(core: Any, path: Path) -> Any:
    """The IR of an exported folder (or .xml) read by OpenVINO, its `.bin` checked first; a missing, truncated
    or damaged file is one WeightsError naming it (OpenVINO's own message is a multi-line C++ trace)."""
    xml = find_xml(path)
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise WeightsError(f"'{path}' is missing its weights file {weights.name} (beside {xml.name}); export it again")
    try:
        return core.read_model(str(xml))
    except RuntimeError as exc:
        raise WeightsError(
            f"OpenVINO cannot read '{path}' ({_openvino_reason(exc)}): its {weights.name} or {xml.name} is "
            "truncated or damaged; export it again"
        ) from None


def _openvino_reason(exc: BaseException) -> str:
    """The last sentence of an OpenVINO exception (after its `file.cpp:line:` prefixes), one line."""
    text = " ".join(str(exc).split())
    reason = re.split(r"\.(?:cpp|hpp):\d+:\s*", text)[-1].strip()
    return reason[:200] or type(exc).__name__


def open_backend(path: Path, device: torch.device) -> OpenVinoBackend:
    """The compiled IR of an exported folder (or .xml), on the CPU."""
    return OpenVinoBackend(path, device)


RT_INFO_KEY = "yolo_nas"


def write_rt_info(model: Any, meta: ExportMetadata) -> None:
    """The metadata pairs as rt_info entries `yolo_nas/<key>`."""
    for key, value in meta.to_pairs().items():
        model.set_rt_info(value, [RT_INFO_KEY, key])


def read_rt_info(model: Any, where: str) -> ExportMetadata:
    """Inverse of `write_rt_info`."""
    from dataclasses import fields

    pairs = {
        f.name: str(model.get_rt_info([RT_INFO_KEY, f.name]).astype(str))
        for f in fields(ExportMetadata)
        if model.has_rt_info([RT_INFO_KEY, f.name])
    }
    return ExportMetadata.from_pairs(pairs, where)


def quantize_nncf(model: Any, onnx_path: Path, job: ExportJob) -> Any:
    """NNCF post-training INT8 quantization, the stem, decoding and NMS ignored (kept in float)."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    _, calib = calibration_for(job.options.data, job.options.fraction, job.imgsz, "NNCF")
    dataset = nncf.Dataset(list(calib.batches(job.options.batch)))
    ignored = nncf.IgnoredScope(names=openvino_names(model, kept_in_float(onnx.load(str(onnx_path)))))
    advanced = AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    with _quiet_nncf():
        return nncf.quantize(
            model,
            dataset,
            preset=nncf.QuantizationPreset.MIXED,
            ignored_scope=ignored,
            subset_size=len(calib.inputs),
            advanced_parameters=advanced,
        )


def openvino_names(model: Any, onnx_names: list[str]) -> list[str]:
    """The names of the OpenVINO operations that the ONNX nodes `onnx_names` became: the same name, or that
    name followed by `/...` (a Conv with a bias becomes `<name>/WithoutBiases` and the bias Add `<name>`).
    Nodes that the conversion folded into constants (shape arithmetic, the anchor grid) have none."""
    found: dict[str, list[str]] = {name: [] for name in onnx_names}
    for op in model.get_ops():
        friendly = op.get_friendly_name()
        for name in (friendly, *_parents(friendly)):
            if name in found:
                found[name].append(friendly)
                break
    return sorted({op for ops in found.values() for op in ops})


def _parents(name: str) -> Iterator[str]:
    """'/a/b/c' -> '/a/b', '/a' (the names that `name` may extend)."""
    while "/" in name.strip("/"):
        name = name.rsplit("/", 1)[0]
        yield name


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs every skipped node at INFO and draws progress bars."""
    import logging

    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def load_openvino() -> Any:
    """`import openvino`, or MissingExtraError with the pip hint."""
    try:
        import openvino
    except ImportError:
        raise MissingExtraError(
            f"openvino is not installed (needed to run OpenVINO models): {pip_extra('openvino')}"
        ) from None
    return openvino


def find_xml(path: Path) -> Path:
    """The .xml of an IR folder (or the path itself when it is the .xml)."""
    if path.is_file():
        return path
    found = sorted(path.glob("*.xml"))
    if len(found) != 1:
        raise WeightsError(f"'{path}' should hold exactly one OpenVINO .xml model, found {len(found)}")
    return found[0]


def compile_config() -> dict[str, Any]:
    """The CPU plugin's settings: float32 arithmetic (see the module docstring) on the CPUs this process may use
    (`core.cpus.cpu_budget`: a cgroup quota counts, which OpenVINO's own count does not see), threads not pinned
    to cores: a pinned thread cannot move off a core that another process keeps busy (S at 640, 2 cores, quiet
    and beside one spinning process, in alternate rounds of one run: pinned 605 / 1133 ms and 821 / 1338 ms,
    unpinned 577 / 793 ms and 745 / 1120 ms, while other users loaded the machine)."""
    return {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": cpu_budget(), "ENABLE_CPU_PINNING": False}


def _dims(partial_shape: Any) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in partial_shape]


class OpenVinoBackend:
    """A compiled OpenVINO model (see `engine.backend.Backend`)."""

    name = "openvino"

    def __init__(self, path: str | Path, device: torch.device = torch.device("cpu")):
        ov = load_openvino()
        self.path = Path(path)
        if device.type != "cpu":
            console.warn(f"OpenVINO runs on the CPU here; device={device} is not used")
        core = ov.Core()
        model = read_model(core, self.path)
        self.metadata = read_rt_info(model, str(self.path))
        inputs = [tuple(_dims(port.partial_shape)) for port in model.inputs]
        outputs = {next(iter(port.names), ""): tuple(_dims(port.partial_shape)) for port in model.outputs}
        problem = self.metadata.signature_problem(inputs, outputs)
        if problem is not None:
            raise WeightsError(f"'{self.path}' carries yolo-nas metadata but is not a YOLO-NAS export: {problem}")
        self.graph_nms = self.metadata.graph_nms
        self.device = torch.device("cpu")
        self.compiled = core.compile_model(model, "CPU", compile_config())
        dims = _dims(model.inputs[0].partial_shape)
        self.fixed_batch = dims[0]
        self.fixed_input = (dims[2], dims[3]) if dims[2] and dims[3] else None
        self.outputs = [self._output(name) for name in self.metadata.output_names]

    def _output(self, name: str) -> Any:
        for port in self.compiled.outputs:
            if name in port.names:
                return port
        raise WeightsError(f"'{self.path}' has no output named '{name}'")

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """One inference on exactly the model's batch: the outputs in metadata order."""
        results = self.compiled([images])
        return [results[port] for port in self.outputs]

    def __call__(self, images: np.ndarray) -> Any:
        """float32 [B,3,H,W] RGB 0-1 -> (boxes, scores) tensors, or per-image detections (graph NMS)."""
        check_input(images, self.fixed_input, self.path.name)
        images = np.ascontiguousarray(images, dtype=np.float32)
        outputs = run_in_batches(self.run, images, self.fixed_batch)
        return outputs_to_raw(outputs, self.graph_nms is not None, str(self.path), len(self.metadata.names))

    def synchronize(self) -> None:
        """Inference calls are synchronous."""
