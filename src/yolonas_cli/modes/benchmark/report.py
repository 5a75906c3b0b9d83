"""The report of a run: headline numbers, the Rich and Markdown tables, and the saved files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from yolonas_cli.core.files import atomic_write_bytes
from yolonas_cli.modes.benchmark.measure import TOP_K
from yolonas_cli.modes.benchmark.records import BenchmarkReport, Row, rounded, significant


def summarize(report: BenchmarkReport) -> dict[str, Any]:
    """The headline numbers: the original-style rows, fastest FP32 row, fastest row (each also as a ratio to
    SG >= 3.5's predict), best FP32 model GFLOP/s vs the peak."""
    ok = [r for r in report.rows if r.ok and r.e2e and not r.variant.original_style]
    base = next((r for r in report.rows if r.variant.baseline and r.ok), None)
    sg = next((r for r in report.rows if r.variant.sg_predict and r.ok and r.e2e), None)
    fp32 = [r for r in ok if r.variant.precision == "fp32"]
    summary: dict[str, Any] = {
        "baseline_e2e_ms": rounded(base.e2e.median) if base and base.e2e else None,
        "sg_predict_e2e_ms": rounded(sg.e2e.median) if sg and sg.e2e else None,
    }
    for key, pool in (("fastest_fp32", fp32), ("fastest", ok)):
        best = min(pool, key=lambda r: r.e2e.median) if pool else None  # type: ignore[union-attr]
        summary[key] = _headline(best)
        if summary[key] is not None and best is not None and best.e2e and sg and sg.e2e:
            summary[key]["speedup_sg_predict"] = significant(sg.e2e.median / best.e2e.median, 3)
    best_model = max(fp32, key=lambda r: r.gflops or 0.0) if fp32 else None
    summary["best_fp32_model"] = _headline(best_model)
    summary["peak_gflops"] = rounded(report.peak.best("fp32"), 1)
    return summary


def _headline(row: Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    d = row.to_dict()
    keys = (
        "title",
        "precision",
        "e2e_median_ms",
        "model_median_ms",
        "speedup",
        "gflops",
        "peak_pct",
        "preprocess_ms",
        "postprocess_ms",
        "box_diff_px",
        "map50_95",
    )
    return {k: d[k] for k in keys}


COLUMNS = (
    "Format",
    "Precision",
    "Size MB",
    "Model ms",
    "E2E ms",
    "Pre / post ms",
    "img/s",
    "GFLOP/s",
    "Agreement",
    "Speed-up",
)
BUSY_COLUMN = "Busy E2E ms"  # shown when the run had busy=N
CAPTION = (
    "Model ms (the inference stage) and E2E (end-to-end) ms: median / p90 per batch, every row timed in turn, "
    "round after round. Pre / post: preprocess and postprocess ms of the median pass (with its inference "
    "they add up to the E2E median). GFLOP/s: fused-model FLOPs / model time (% of the same precision's "
    f"matmul peak). Agreement with PyTorch FP32: largest box (px) and score difference over its top {TOP_K} "
    "anchors, reference detections reproduced. Speed-up: end-to-end, over the baseline. Busy E2E: median "
    "end to end in the alternate rounds run beside the busy processes, and its ratio to the quiet median."
)
_TEXT_COLUMNS = ("Format", "Precision", "Agreement")
_MIN_WIDTHS = {"Format": 9, "Agreement": 14}


def render_table(report: BenchmarkReport) -> Any:
    """The Rich table of a report (print it with `console.out`). Cells fold rather than being cut short
    when the terminal is narrow."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=report_title(report),
        title_justify="left",
        caption=CAPTION,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    for name in columns(report):
        table.add_column(
            name, justify="left" if name in _TEXT_COLUMNS else "right", overflow="fold", min_width=_MIN_WIDTHS.get(name)
        )
    for row in report.rows:
        table.add_row(*table_cells(row, busy=_has_busy(report)))
    return table


def _has_busy(report: BenchmarkReport) -> bool:
    return bool(report.settings.get("busy"))


def columns(report: BenchmarkReport) -> tuple[str, ...]:
    """The table's columns: `COLUMNS`, and the busy column after E2E when the run had busy=N."""
    if not _has_busy(report):
        return COLUMNS
    at = COLUMNS.index("E2E ms") + 1
    return (*COLUMNS[:at], BUSY_COLUMN, *COLUMNS[at:])


def report_title(report: BenchmarkReport) -> str:
    s = report.settings
    return (
        f"{Path(str(s['model'])).name} at {'x'.join(map(str, s['imgsz']))}, batch {s['batch']}, "
        f"{s['device']}, {s['runs']} runs"
    )


def markdown_table(report: BenchmarkReport) -> str:
    """The same table in Markdown (saved as benchmark.md, for READMEs and reports)."""
    names = columns(report)
    lines = [
        f"**{report_title(report)}**",
        "",
        "| " + " | ".join(names) + " |",
        "|" + "|".join("---" if c in _TEXT_COLUMNS else "---:" for c in names) + "|",
    ]
    for row in report.rows:
        cells = table_cells(row, busy=_has_busy(report))
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join([*lines, "", CAPTION, "", *summary_lines(report), ""])


def table_cells(row: Row, busy: bool = False) -> list[str]:
    """The printed cells of a row, ten (eleven with the `busy` column); a row that was not measured shows its
    status instead."""
    v = row.variant
    head = [v.title, v.precision.upper(), _fmt(row.size_mb, 1)]
    if not row.ok or row.model is None or row.e2e is None:
        return [*head, "-", "-", *(["-"] if busy else []), "-", "-", "-", row.status, "-"]
    pct = f" ({row.peak_pct:.0f}%)" if row.peak_pct is not None else ""
    pre_post = f"{row.stages['preprocess']:.1f} / {row.stages['postprocess']:.1f}"
    busy_cell = f"{row.busy.median:.1f} ({row.busy_ratio:.2f}x)" if row.busy and row.busy_ratio else "-"
    return [
        *head,
        f"{row.model.median:.1f} / {row.model.p90:.1f}",
        f"{row.e2e.median:.1f} / {row.e2e.p90:.1f}",
        *([busy_cell] if busy else []),
        pre_post,
        _fmt(row.images_per_s, 1),
        f"{_fmt(row.gflops, 0)}{pct}",
        agreement_text(row.agreement),
        f"{row.speedup:.2f}x" if row.speedup else "-",
    ]


def agreement_text(a: dict[str, Any]) -> str:
    """e.g. 'box 0.0004 px, score 1e-06, dets 3/3' (and 'mAP50-95 0.512 (-0.003)' with data=)."""
    parts = []
    if "box_diff_px" in a:
        parts.append(f"box {a['box_diff_px']:.2g} px, score {a['score_diff']:.1g}")
    if "matched" in a:
        parts.append(f"dets {a['matched']}/{a['reference']}")
    if "map50_95" in a:
        diff = a.get("map50_95_diff")
        parts.append(f"mAP50-95 {a['map50_95']:.3f}" + (f" ({diff:+.3f})" if diff is not None else ""))
    return ", ".join(parts) or "-"


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_lines(report: BenchmarkReport) -> list[str]:
    """Plain-text headline lines printed under the table."""
    s, env = report.summary, report.environment
    lines = [s["note"]] if s.get("note") else []
    if s.get("baseline_e2e_ms") is not None:
        lines.append(
            f"Baseline (unfused eager PyTorch, original-style pipeline): {s['baseline_e2e_ms']:.1f} ms end-to-end"
        )
    if s.get("sg_predict_e2e_ms") is not None:
        lines.append(f"SG >= 3.5 predict (partially fused, eager): {s['sg_predict_e2e_ms']:.1f} ms end-to-end")
    for key, label in (("fastest_fp32", "Fastest FP32"), ("fastest", "Fastest overall")):
        h = s.get(key)
        if h:
            speed = f", {h['speedup']:.2f}x the baseline" if h["speedup"] else ""
            if h.get("speedup_sg_predict"):
                speed += f", {h['speedup_sg_predict']:.2f}x SG >= 3.5 predict"
            lines.append(
                f"{label}: {h['title']} {h['precision'].upper()} {h['e2e_median_ms']:.1f} ms end-to-end{speed}"
            )
    peak_methods = ", ".join(f"{k} {v:.0f}" for k, v in report.peak.methods.items())
    model = f"{report.flops / 1e9:.3g} GFLOP/image" if report.flops else "FLOPs unknown (not an S, M or L model)"
    ops = " (INT8: giga-operations/s)" if any(k.endswith("int8") for k in report.peak.methods) else ""
    lines.append(f"Matrix-multiply peak: {peak_methods} GFLOP/s{ops}; model: {model}")
    cpu = f"{env['cpu']}, {env['torch_threads']} threads" + (f", GPU {env['gpu']}" if "gpu" in env else "")
    lines.append(f"Machine: {cpu}; load average {env['load_before']} before, {env['load_after']} after")
    busy = report.settings.get("busy")
    if busy:
        lines.append(f"Busy E2E: every other round ran beside {busy} spinning processes (busy={busy})")
    return lines


def save_report(report: BenchmarkReport, run_dir: Path) -> list[Path]:
    """benchmark.csv (a line per row), benchmark.json (everything), benchmark.md (the table) in `run_dir`."""
    records = [r.to_dict() for r in report.rows]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(records[0]) if records else ["format"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    payload = json.dumps(report.to_dict(), indent=2).encode("utf-8")
    return [
        atomic_write_bytes(run_dir / "benchmark.csv", text.getvalue().encode("utf-8")),
        atomic_write_bytes(run_dir / "benchmark.json", payload),
        atomic_write_bytes(run_dir / "benchmark.md", markdown_table(report).encode("utf-8")),
    ]
