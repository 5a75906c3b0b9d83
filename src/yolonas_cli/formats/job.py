"""What a format's export is given: the fused model, the export choices and the metadata to write."""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path
from typing import cast

import torch
from torch import nn

from yolonas_cli.engine.postprocess import PRE_NMS_TOP_K
from yolonas_cli.formats.metadata import ExportMetadata
from yolonas_cli.model.yolo_nas import YoloNAS


@dataclass(frozen=True)
class ExportOptions:
    """The export choices a format may or may not take (see `Format.takes`)."""

    batch: int  # batch size of the exported model (the largest one of a dynamic TensorRT engine)
    dynamic: bool  # batch, height and width are free
    half: bool  # FP16 backbone and neck
    int8: bool  # INT8 quantisation, calibrated on `data`
    nms: bool  # the graph ends with NMS (conf, iou, max_det)
    simplify: bool  # onnxslim the ONNX graph
    opset: int | None  # ONNX opset (None: the default)
    data: str | None  # the calibration dataset YAML (None: coco8.yaml)
    fraction: float  # of the calibration images used
    conf: float  # in-graph NMS settings
    iou: float
    max_det: int


OPTIONAL_ARGS: tuple[str, ...] = tuple(f.name for f in fields(ExportOptions))


@dataclass
class ExportJob:
    """Everything a format's `export(job)` needs."""

    model: YoloNAS  # the fused model (copied, never changed, by `module`)
    weights: Path  # the weights file it was loaded from
    options: ExportOptions
    meta: ExportMetadata  # written into the exported file
    output: Path  # where the export goes
    device: torch.device  # where the model is traced
    imgsz: tuple[int, int]  # (h, w) the model is exported at

    def sample(self) -> torch.Tensor:
        """The tracing input: [batch, 3, H, W] float32 grey (0.5) on the export device."""
        return torch.full((self.options.batch, 3, *self.imgsz), 0.5, device=self.device)

    def module(self, half: bool | None = None, nms: bool | None = None) -> nn.Module:
        """A fresh copy of the fused model wrapped for export (FP16 body when `half`, NMS head when `nms`)."""
        from yolonas_cli.formats.wrappers import DecodedModel, End2EndHead, End2EndModel

        o = self.options
        half = o.half if half is None else half
        nms = o.nms if nms is None else nms
        body = cast("YoloNAS", copy.deepcopy(self.model).eval().float().to(self.device))
        decoded = DecodedModel(body, half=half)
        if not nms:
            return decoded.eval()
        return End2EndModel(decoded, End2EndHead(o.conf, o.iou, o.max_det, PRE_NMS_TOP_K)).eval()
