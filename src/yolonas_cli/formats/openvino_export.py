"""ONNX -> OpenVINO IR (`<stem>_openvino_model/<stem>.xml` + `.bin`), FP32, FP16 weights, or INT8 (NNCF).

The ONNX graph (with its NMS when `nms=True`) is converted by `openvino.convert_model`; the metadata pairs
go into the model's `rt_info` under `yolo_nas`. FP16 stores FP16 weights (`compress_to_fp16`); INT8 runs
NNCF post-training quantization on the calibration images with the decoding and NMS kept in float (the
same rule as the ONNX INT8 export, see `export.int8.float_tail`).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolonas_cli.core import console
from yolonas_cli.core.files import atomic_dir
from yolonas_cli.formats.metadata import ExportMetadata

if TYPE_CHECKING:
    from yolonas_cli.modes.export import ExportJob

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
    """NNCF post-training INT8 quantization, decoding and NMS ignored (kept in float)."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from yolonas_cli.formats.calibration import calibration_for
    from yolonas_cli.formats.int8 import float_tail

    _, calib = calibration_for(job.args.data, job.args.fraction, job.imgsz, "NNCF")
    dataset = nncf.Dataset(list(calib.batches(job.args.batch)))
    ignored = nncf.IgnoredScope(names=float_tail(onnx.load(str(onnx_path))), validate=False)
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


def export(job: ExportJob) -> Path:
    """format=openvino: the folder with `<stem>.xml`, `<stem>.bin`; INT8 also prints its cost report."""
    import openvino as ov

    from yolonas_cli.formats.onnx_graph import build_onnx

    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = build_onnx(job, Path(scratch) / "model.onnx", half=False, simplify=False, precision="fp32")
        model = ov.convert_model(str(onnx_path))
        if job.args.int8:
            model = quantize_nncf(model, onnx_path, job)
        write_rt_info(model, job.meta)
        with atomic_dir(job.output) as folder:
            ov.save_model(model, str(folder / f"{job.nas.path.stem}.xml"), compress_to_fp16=job.args.half)
            if job.args.int8:
                report_cost(onnx_path, folder, job)
    return job.output


def report_cost(fp32_onnx: Path, folder: Path, job: ExportJob) -> None:
    """Print the INT8 cost report (see `export.int8`) of the IR in `folder` against the FP32 graph."""
    from yolonas_cli.formats.calibration import DEFAULT_DATA
    from yolonas_cli.formats.int8 import measure_cost

    data = job.args.data or DEFAULT_DATA
    for line in measure_cost(fp32_onnx, folder, data, job.imgsz).lines(f"{data} (val)"):
        console.info(line)
