"""The torch modules that are traced for export. Export choices live here, never as flags on the model.

- `DecodedModel`: images -> (boxes [B,N,4] xyxy input pixels, scores [B,N,C]), float32 in and out. With
  `half=True` the backbone and neck run in FP16 while the heads (the last convolutions, the DFL softmax and
  expectation, the anchor decoding) stay FP32: FP16 has a resolution of 0.25-0.5 px between 256 and 1024,
  too coarse for box coordinates.
- `End2EndHead`: (boxes, scores) -> the final detections, the same as `postprocess.postprocess` with its
  defaults (multi-label, strict `score > conf`, pre-NMS top-k, class-aware NMS, `max_det`), built from ops
  that ONNX, OpenVINO and TensorRT all have (TopK, GatherElements, NonMaxSuppression, ScatterND).
- `End2EndModel`: the two in sequence.

ONNX `NonMaxSuppression` caps the boxes kept *per class* (and per image), not per image. The head asks it
for up to `max_det` per class (which never removes a detection the per-image limit would keep: a class's
boxes below its own top `max_det` rank below at least `max_det` others), marks the survivors, and takes
the `max_det` best of each image with one TopK. Outputs are padded to `max_det` rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from yolonas_cli.engine.ops import nms
from yolonas_cli.engine.postprocess import PRE_NMS_TOP_K
from yolonas_cli.model.yolo_nas import YoloNAS

Detections = tuple[Tensor, Tensor, Tensor, Tensor]  # num_dets, det_boxes, det_scores, det_classes


class DecodedModel(nn.Module):
    """A YOLO-NAS model as exported: float32 [B,3,H,W] RGB 0-1 -> (boxes [B,N,4], scores [B,N,C]) float32."""

    def __init__(self, model: YoloNAS, half: bool = False):
        super().__init__()
        self.backbone: nn.Module = model.backbone
        self.neck: nn.Module = model.neck
        self.heads: nn.Module = model.heads
        self.half_body = half
        if half:
            self.backbone.half()
            self.neck.half()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = images.half() if self.half_body else images
        features = self.neck(self.backbone(x))
        if self.half_body:
            features = tuple(f.float() for f in features)
        return self.heads(features)


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX NonMaxSuppression (center_point_box=0): boxes [B,K,4], scores [B,C,K] -> selected [S,3] int64
    rows (batch, class, box), at most `max_per_class` per (batch, class), kept when score > `conf` and not
    suppressed (IoU > `iou`) by a higher-scoring kept box of the same class. Eager forward for tracing/tests."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: int, iou: float, conf: float) -> Tensor:
        rows = []
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                candidates = (scores[b, c] > conf).nonzero().flatten()
                kept = candidates[nms(boxes[b, candidates], scores[b, c, candidates], iou)][:max_per_class]
                column = torch.full_like(kept, 0)
                rows.append(torch.stack([column + b, column + c, kept], 1))
        return torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou: float, conf: float):
        def const(value: Tensor):
            return g.op("Constant", value_t=value)

        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            const(torch.tensor([max_per_class], dtype=torch.long)),
            const(torch.tensor([iou], dtype=torch.float32)),
            const(torch.tensor([conf], dtype=torch.float32)),
            center_point_box_i=0,
        )


class End2EndHead(nn.Module):
    """(boxes [B,N,4], scores [B,N,C]) -> (num_dets int32 [B,1], det_boxes [B,M,4], det_scores [B,M],
    det_classes int32 [B,M]) with M = max_det; rows at and after num_dets are zeros."""

    def __init__(self, conf: float, iou: float, max_det: int, pre_nms_top_k: int = PRE_NMS_TOP_K):
        super().__init__()
        self.conf, self.iou, self.max_det, self.top_k = float(conf), float(iou), int(max_det), int(pre_nms_top_k)

    def forward(self, boxes: Tensor, scores: Tensor) -> Detections:
        cand_boxes, cand_scores, cand_labels = self._candidates(boxes, scores)
        keep = self._suppress(cand_boxes, cand_scores, cand_labels, scores.shape[2])
        return self._best(cand_boxes, cand_scores, cand_labels, keep)

    def _candidates(self, boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The top-k (anchor, class) pairs of each image: boxes [B,K,4], scores [B,K] (-1 = filler), labels [B,K].

        Padding with K fillers (score -1, a zero box) keeps TopK valid for any N*C (small or custom models)."""
        num_classes = scores.shape[2]
        flat = F.pad(scores.flatten(1), (0, self.top_k), value=-1.0)
        top_scores, top_index = flat.topk(self.top_k, dim=1)
        anchor = torch.div(top_index, num_classes, rounding_mode="trunc")
        labels = top_index - anchor * num_classes
        padded = F.pad(boxes, (0, 0, 0, self.top_k))
        cand_boxes = torch.gather(padded, 1, anchor.unsqueeze(-1).expand(-1, -1, 4))
        return cand_boxes, top_scores, labels

    def _suppress(self, boxes: Tensor, scores: Tensor, labels: Tensor, num_classes: int) -> Tensor:
        """Float [B,K]: 1 where a candidate survives class-aware NMS (score > conf), else 0."""
        classes = torch.arange(num_classes, device=labels.device).view(1, -1, 1)
        per_class = torch.where(labels.unsqueeze(1) == classes, scores.unsqueeze(1), -1.0)  # [B,C,K]
        selected = _NonMaxSuppression.apply(boxes, per_class, self.max_det, self.iou, self.conf)
        keep = torch.zeros_like(scores)
        keep[selected[:, 0], selected[:, 2]] = 1.0
        return keep

    def _best(self, boxes: Tensor, scores: Tensor, labels: Tensor, keep: Tensor) -> Detections:
        """The max_det best survivors per image, in decreasing score, zero-padded."""
        ranked = torch.where(keep > 0, scores, -1.0)
        count = min(self.max_det, self.top_k)
        best, order = ranked.topk(count, dim=1)
        valid = best > -0.5
        det_boxes = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4)) * valid.unsqueeze(-1)
        det_scores = best * valid
        det_classes = (torch.gather(labels, 1, order) * valid).to(torch.int32)
        num_dets = valid.sum(1, keepdim=True).to(torch.int32)
        if count < self.max_det:
            extra = self.max_det - count
            det_boxes = F.pad(det_boxes, (0, 0, 0, extra))
            det_scores, det_classes = F.pad(det_scores, (0, extra)), F.pad(det_classes, (0, extra))
        return num_dets, det_boxes, det_scores, det_classes


class End2EndModel(nn.Module):
    """Images -> final detections: `DecodedModel` then `End2EndHead`."""

    def __init__(self, decoded: DecodedModel, head: End2EndHead):
        super().__init__()
        self.decoded, self.head = decoded, head

    def forward(self, images: Tensor) -> Detections:
        return self.head(*self.decoded(images))
