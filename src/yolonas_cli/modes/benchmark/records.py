"""What a benchmark run records: timed samples, the rows to measure and their measurements, the machine's
matrix-multiply peak, and the whole report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.engine.engine import STAGES, Engine
from yolonas_cli.formats.registry import BY_NAME

PHOTO = Path(__file__).parents[2] / "assets" / "rocket.jpg"  # the timed photo, resized to PHOTO_HW
PHOTO_HW = (720, 1280)
AUTO = "auto"  # the format name of the row of predict's default engine (backend=auto)


class Unavailable(YoloNasError):
    """A row that cannot be measured here (a missing package, exporter or backend, or a CPU-only device)."""


@dataclass(frozen=True)
class Stats:
    """Summary of timed samples in milliseconds."""

    median: float
    p90: float
    mean: float
    min: float
    count: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        values = np.asarray(samples, dtype=np.float64)
        return cls(
            float(np.median(values)),
            float(np.percentile(values, 90)),
            float(values.mean()),
            float(values.min()),
            int(values.size),
        )


@dataclass(frozen=True)
class Variant:
    """One row to measure: a format at a precision. The two rows run the way the original runs (eager, in a
    process of their own, `original`): `baseline`, the unfused model (SG <= 3.1.1 predict, Ultralytics' NAS),
    which speed-ups are measured against, and `sg_predict`, the partially fused one (SG >= 3.5 predict)."""

    format: str
    precision: str  # fp32, fp16, int8
    baseline: bool = False
    sg_predict: bool = False

    def __post_init__(self) -> None:
        if self.baseline and self.sg_predict:
            raise ValueError("a row is the unfused baseline or SG >= 3.5's predict, not both")

    @property
    def original_style(self) -> bool:
        return self.baseline or self.sg_predict

    @property
    def title(self) -> str:
        if self.baseline:
            return "PyTorch eager, unfused (baseline)"
        if self.sg_predict:
            return "PyTorch eager, partially fused (SG >= 3.5 predict)"
        if self.format == AUTO:
            return "Predict default (backend=auto)"
        return BY_NAME[self.format].runtime if self.format in BY_NAME else self.format


@dataclass
class Row:
    """The measurements of one variant (`status` is "ok", or why it was not measured)."""

    variant: Variant
    status: str = "ok"
    file: str | None = None
    size_mb: float | None = None
    model: Stats | None = None  # the inference stage of the timed passes
    e2e: Stats | None = None  # whole passes
    stages: dict[str, float] = field(default_factory=dict)  # ms per batch of each stage, of the median pass
    busy: Stats | None = None  # whole passes beside the busy processes (busy=N)
    images_per_s: float | None = None
    gflops: float | None = None
    peak_pct: float | None = None
    agreement: dict[str, Any] = field(default_factory=dict)
    speedup: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def busy_ratio(self) -> float | None:
        """End-to-end median beside the busy processes over the quiet one."""
        return self.busy.median / self.e2e.median if self.busy and self.e2e else None

    def to_dict(self) -> dict[str, Any]:
        """A flat record (the CSV columns; the JSON row)."""
        v, a = self.variant, self.agreement
        return {
            "format": v.format,
            "title": v.title,
            "precision": v.precision,
            "baseline": v.baseline,
            "sg_predict": v.sg_predict,
            "status": self.status,
            "file": self.file,
            "size_mb": significant(self.size_mb),
            "model_median_ms": rounded(self.model.median if self.model else None),
            "model_p90_ms": rounded(self.model.p90 if self.model else None),
            "e2e_median_ms": rounded(self.e2e.median if self.e2e else None),
            "e2e_p90_ms": rounded(self.e2e.p90 if self.e2e else None),
            **{f"{stage}_ms": rounded(self.stages.get(stage)) for stage in STAGES},
            "busy_e2e_median_ms": rounded(self.busy.median if self.busy else None),
            "busy_e2e_p90_ms": rounded(self.busy.p90 if self.busy else None),
            "busy_ratio": significant(self.busy_ratio, 3),
            "images_per_s": significant(self.images_per_s),
            "gflops": significant(self.gflops),
            "peak_pct": significant(self.peak_pct),
            "box_diff_px": significant(a.get("box_diff_px"), 3),
            "score_diff": significant(a.get("score_diff"), 3),
            "detections_matched": a.get("matched"),
            "detections_reference": a.get("reference"),
            "map50_95": rounded(a.get("map50_95"), 4),
            "map50_95_diff": rounded(a.get("map50_95_diff"), 4),
            "speedup": significant(self.speedup, 3),
        }


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def significant(value: float | None, digits: int = 4) -> float | None:
    """`value` to `digits` significant digits (None stays None)."""
    return None if value is None else float(f"{float(value):.{digits}g}")


@dataclass(frozen=True)
class Peak:
    """The matrix-multiply peak: GFLOP/s per method and precision, and the best per precision."""

    methods: dict[str, float]  # e.g. {"torch.mm fp32": 230.1, "oneDNN fp32": 431.0}
    size: int
    threads: int

    def best(self, precision: str = "fp32") -> float | None:
        values = [v for k, v in self.methods.items() if k.endswith(precision)]
        return max(values) if values else None


@dataclass
class BenchmarkReport:
    """Everything one benchmark run measured."""

    rows: list[Row]
    peak: Peak
    flops: int  # per image, fused model
    settings: dict[str, Any]
    environment: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        peak = {"methods": self.peak.methods, "size": self.peak.size, "threads": self.peak.threads}
        return {
            "settings": self.settings,
            "environment": self.environment,
            "peak_gflops": peak,
            "flops_per_image": self.flops,
            "summary": self.summary,
            "rows": [r.to_dict() for r in self.rows],
        }


@dataclass
class Opened:
    """A row ready to time: its engine (the backend is `engine.backend`), file and size; `timed_pass` makes one
    timed pass when the row is not timed through `engine` in this process (the baseline's own process)."""

    engine: Engine
    file: Path | None
    size_mb: float | None
    timed_pass: Callable[[], dict[str, float]] | None = None
