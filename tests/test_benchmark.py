"""`yolo-nas benchmark`: the CLI on the tiny model (2 runs; shapes, positive numbers, agreement), and the
measuring pieces on their own. Nothing here is a timed assertion: timings only have to be positive."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from yolonas_cli.cfg import make_args
from yolonas_cli.cli.app import app
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.formats.auto import runtime_for
from yolonas_cli.modes.benchmark import measure, records, rows
from yolonas_cli.modes.benchmark import original as baseline
from yolonas_cli.modes.benchmark import report as tables

runner = CliRunner()
ASSETS = records.PHOTO.parent


def _onnx_ready() -> bool:
    needed = (
        "onnx",
        "onnxruntime",
        "yolonas_cli.modes.export",
        "yolonas_cli.formats.registry",
        "yolonas_cli.formats.onnx_graph",
        "yolonas_cli.formats.onnx",
    )
    try:
        return all(importlib.util.find_spec(name) is not None for name in needed)
    except ModuleNotFoundError:
        return False


ONNX = _onnx_ready()
FORMATS = ["pytorch", "onnx", "engine"] if ONNX else ["pytorch", "engine"]
AUTO = runtime_for("auto", torch.device("cpu"))  # the runtime of predict's default on this machine, if any


def make_dataset(root: Path) -> Path:
    """A two-image dataset (bundled photos, one box each) with a YAML; returns the YAML."""
    images, labels = root / "data" / "images", root / "data" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for name in ("astronaut.png", "chelsea.png"):
        cv2.imwrite(str(images / name), cv2.imread(str(ASSETS / name)))
        (labels / f"{Path(name).stem}.txt").write_text("0 0.5 0.5 0.4 0.6\n")
    names = "\n".join(f"  {i}: c{i}" for i in range(80))
    (root / "data.yaml").write_text(f"path: {root / 'data'}\nval: images\nnames:\n{names}\n")
    return root / "data.yaml"


@pytest.fixture(scope="module")
def cli_run(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """One CLI benchmark of the tiny model at 160 (2 runs, with a labelled dataset), shared by the tests."""
    project = tmp_path_factory.mktemp("bench")
    data = make_dataset(project)
    result = runner.invoke(
        app,
        [
            "benchmark",
            f"model={tiny_checkpoint}",
            "imgsz=160",
            "runs=2",
            "warmup=1",
            "device=cpu",
            f"formats={','.join(FORMATS)}",
            "int8=False",
            f"data={data}",
            f"project={project}",
            "name=run",
        ],
    )
    return result, project / "run"


# ---------------------------------------------------------------------------------------------- the CLI


def test_an_exported_file_is_timed_as_it_is(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """model=x.onnx: one row in the file's format and precision at the file's own size (a static export),
    measured like any row; no baseline, speed-up or agreement (no weights to compare with); formats= is a
    usage error (exit 2) since there is nothing to choose."""
    if not ONNX:
        pytest.skip("onnx, onnxruntime or the ONNX exporter is not installed")
    import shutil

    from yolonas_cli.api import NAS

    weights = Path(shutil.copy(tiny_checkpoint, tmp_path / "tiny.pt"))
    exported = NAS(weights).export(format="onnx", imgsz=128, verbose=False)
    result = runner.invoke(
        app, ["benchmark", f"model={exported}", "runs=2", "warmup=0", "device=cpu", f"project={tmp_path}", "name=run"]
    )
    assert result.exit_code == 0, result.output
    assert "is an exported model, timed as it is" in result.output
    report = json.loads((tmp_path / "run" / "benchmark.json").read_text())
    (row,) = report["rows"]
    assert (row["format"], row["precision"], row["status"], row["baseline"]) == ("onnx", "fp32", "ok", False)
    assert row["file"] == str(exported) and row["size_mb"] > 0
    assert row["e2e_median_ms"] > 0 and row["model_median_ms"] > 0 and row["images_per_s"] > 0
    assert row["speedup"] is None and row["box_diff_px"] is None and row["detections_matched"] is None
    assert row["gflops"] is None and report["flops_per_image"] == 0  # the tiny test model is not S, M or L
    assert report["settings"]["imgsz"] == [128, 128]  # the static file's size, not the default 640
    refused = runner.invoke(app, ["benchmark", f"model={exported}", "formats=onnx", f"project={tmp_path}"])
    assert refused.exit_code == 2 and "drop formats=" in refused.output


def test_flops_of_an_exported_model_come_from_its_architecture(s_checkpoint: Path) -> None:
    """The FLOPs an exported S/M/L is credited with (from the variant table, on the meta device) are those of
    the fused model loaded from weights; other class counts change only the classification convolutions."""
    from yolonas_cli.api import NAS
    from yolonas_cli.model.profile import count_flops, variant_flops

    fused = NAS(s_checkpoint).fuse().model
    assert variant_flops("yolo_nas_s", 80, 320, 256) == count_flops(fused, 320, 256)
    assert variant_flops("yolo_nas_s", 1, 320, 256) < count_flops(fused, 320, 256)
    assert variant_flops("yolo_nas_l", 80, 640, 640) > variant_flops("yolo_nas_m", 80, 640, 640) > 0
    assert variant_flops("tiny", 80, 640, 640) is None


def test_cli_prints_the_table_and_saves_csv_and_json(cli_run) -> None:
    result, run_dir = cli_run
    assert result.exit_code == 0, result.output
    assert "formula_tiny.pth at 160x160, batch 1, cpu, 2 runs" in result.stdout  # the table's title
    assert "Baseline (unfused eager PyTorch" in result.stdout
    for name in ("benchmark.csv", "benchmark.json", "benchmark.md"):
        assert (run_dir / name).is_file()
    markdown = (run_dir / "benchmark.md").read_text()
    assert "| Format | Precision | Size MB | Model ms |" in markdown
    assert "| PyTorch eager, unfused (baseline) | FP32 |" in markdown
    # stdout is not a terminal here: the table is the Markdown one, one line per row, never wrapped
    assert result.stdout.strip() == markdown.strip()
    assert "Predict:" not in result.output and "Validate:" not in result.output  # no hints per internal export


def test_rows_have_the_expected_shape(cli_run) -> None:
    _, run_dir = cli_run
    report = json.loads((run_dir / "benchmark.json").read_text())
    expected = [("pytorch", "fp32", True, False), ("pytorch", "fp32", False, True), ("pytorch", "fp32", False, False)]
    expected += [("auto", "fp32", False, False)] if AUTO else []
    expected += [("onnx", "fp32", False, False)] if ONNX else []
    expected += [("engine", "fp32", False, False)]
    assert [(r["format"], r["precision"], r["baseline"], r["sg_predict"]) for r in report["rows"]] == expected
    with (run_dir / "benchmark.csv").open(newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(expected)
    assert set(lines[0]) == set(report["rows"][0])
    assert set(report) == {"settings", "environment", "peak_gflops", "flops_per_image", "summary", "rows"}
    assert report["settings"]["imgsz"] == [160, 160] and report["settings"]["runs"] == 2


def test_stage_times_add_up_to_the_end_to_end_time(cli_run) -> None:
    """Every row's stages are those of its median pass (they add up to the end-to-end median, to the 3
    decimals stored), and its model time is the inference stage of the same passes, so neither median nor p90
    of the model exceeds the end-to-end one."""
    _, run_dir = cli_run
    report = json.loads((run_dir / "benchmark.json").read_text())
    ok = [r for r in report["rows"] if r["status"] == "ok"]
    assert ok
    for row in ok:
        stages = row["preprocess_ms"] + row["inference_ms"] + row["postprocess_ms"]
        assert stages == pytest.approx(row["e2e_median_ms"], abs=2e-3), row["title"]
        assert row["model_median_ms"] <= row["e2e_median_ms"] and row["model_p90_ms"] <= row["e2e_p90_ms"]
        assert row["busy_e2e_median_ms"] is None and row["busy_ratio"] is None  # no busy=N in this run


def test_measured_numbers_are_positive_and_agreement_is_computed(cli_run) -> None:
    _, run_dir = cli_run
    report = json.loads((run_dir / "benchmark.json").read_text())
    ok = [r for r in report["rows"] if r["status"] == "ok"]
    assert len(ok) == 3 + ONNX + bool(AUTO)
    for row in ok:
        for key in (
            "size_mb",
            "model_median_ms",
            "model_p90_ms",
            "e2e_median_ms",
            "e2e_p90_ms",
            "preprocess_ms",
            "inference_ms",
            "postprocess_ms",
            "images_per_s",
            "gflops",
            "peak_pct",
            "speedup",
        ):
            assert row[key] is not None and row[key] > 0, (row["title"], key)
        assert row["model_p90_ms"] >= row["model_median_ms"]
        assert row["box_diff_px"] is not None and 0 <= row["box_diff_px"] < 1.0, row["title"]
        assert row["score_diff"] is not None and 0 <= row["score_diff"] < 1e-2
        assert row["detections_matched"] == row["detections_reference"]
    baseline = next(r for r in ok if r["baseline"])
    assert baseline["speedup"] == pytest.approx(1.0)
    sg_predict = next(r for r in ok if r["sg_predict"])
    summary = report["summary"]
    assert summary["sg_predict_e2e_ms"] == sg_predict["e2e_median_ms"]
    fastest = summary["fastest"]
    ratio = sg_predict["e2e_median_ms"] / fastest["e2e_median_ms"]
    assert fastest["speedup_sg_predict"] == pytest.approx(ratio, rel=1e-2)
    assert fastest["title"] not in (baseline["title"], sg_predict["title"])  # original-style rows are references
    assert report["flops_per_image"] > 0
    assert all(v > 0 for v in report["peak_gflops"]["methods"].values())
    assert report["summary"]["fastest"]["speedup"] > 0


def test_the_predict_default_row_runs_the_converted_weights(cli_run) -> None:
    """With OpenVINO or ONNX Runtime installed, a row times what `yolo-nas predict` runs by default: the
    weights converted once into the weights cache, in that runtime, agreeing with PyTorch."""
    if not AUTO:
        pytest.skip("neither OpenVINO nor ONNX Runtime is installed: predict's default is PyTorch")
    _, run_dir = cli_run
    row = next(r for r in json.loads((run_dir / "benchmark.json").read_text())["rows"] if r["format"] == "auto")
    assert row["title"] == "Predict default (backend=auto)" and row["status"] == "ok"
    assert "/converted/" in row["file"] and row["size_mb"] > 0
    assert row["box_diff_px"] < 0.01 and row["detections_matched"] == row["detections_reference"]


def test_a_format_that_cannot_run_here_is_reported_not_fatal(cli_run) -> None:
    _, run_dir = cli_run
    rows = json.loads((run_dir / "benchmark.json").read_text())["rows"]
    engine = next(r for r in rows if r["format"] == "engine")
    assert engine["status"].startswith("not available: TensorRT needs")
    assert engine["e2e_median_ms"] is None


def test_exports_are_reused_while_they_match(cli_run, tiny_checkpoint: Path) -> None:
    if not ONNX:
        pytest.skip("onnx, onnxruntime or the ONNX exporter is not installed")
    from yolonas_cli.api import NAS

    _, run_dir = cli_run
    exported = run_dir.parent / "exports" / f"{tiny_checkpoint.stem}-160x160-b1-fp32.onnx"
    assert exported.is_file()
    before = exported.stat().st_mtime_ns
    args = make_args(
        "benchmark", model=str(tiny_checkpoint), imgsz=160, device="cpu", verbose=False, project=str(run_dir.parent)
    )
    nas = NAS(tiny_checkpoint).fuse()
    ctx = rows.Context(
        args, nas, nas.model, torch.device("cpu"), EngineSettings(imgsz=(160, 160)), run_dir.parent / "exports"
    )
    opened = rows.open_export(ctx, records.Variant("onnx", "fp32"))
    assert opened.path == exported and exported.stat().st_mtime_ns == before


def test_map_is_measured_for_every_row_with_a_labelled_dataset(cli_run) -> None:
    _, run_dir = cli_run
    report = json.loads((run_dir / "benchmark.json").read_text())
    for row in report["rows"]:
        if row["status"] == "ok":
            assert 0.0 <= row["map50_95"] <= 1.0
            assert row["map50_95_diff"] == pytest.approx(0.0, abs=1e-3)
    assert report["settings"]["data"].endswith("data.yaml")
    assert "mAP50-95" in tables.agreement_text({"matched": 0, "reference": 0, "map50_95": 0.5})


# ---------------------------------------------------------------------------------------------- pieces


def test_summarized_runs_are_consistent() -> None:
    """The stages reported are the median pass's (the two middle passes averaged for an even count), so they
    add up to the end-to-end median; the model figure is the inference stage of every pass."""
    runs = [
        {"preprocess": 1.0, "inference": 10.0, "postprocess": 1.0},  # 12
        {"preprocess": 3.0, "inference": 30.0, "postprocess": 5.0},  # 38: an outlier
        {"preprocess": 2.0, "inference": 9.0, "postprocess": 2.0},  # 13
        {"preprocess": 1.5, "inference": 11.0, "postprocess": 1.5},  # 14
        {"preprocess": 1.0, "inference": 12.0, "postprocess": 2.0},  # 15
    ]
    odd = measure.summarize_runs(runs)
    assert odd.e2e.median == 14.0 and odd.stages == runs[3]
    assert odd.model.median == 11.0 and odd.model.count == 5
    even = measure.summarize_runs(runs[:4])  # totals 12, 38, 13, 14: middle passes 13 and 14
    assert even.e2e.median == 13.5 == sum(even.stages.values())
    assert even.stages == {"preprocess": 1.75, "inference": 10.0, "postprocess": 1.75}


def test_rows_are_timed_in_turn_with_busy_rounds_between(tiny_checkpoint: Path) -> None:
    """time_rows: every engine makes one pass per round, in turn; with spinners every other round runs
    beside them, giving each engine its own busy timing of `runs` passes."""
    from yolonas_cli.api import NAS
    from yolonas_cli.modes.benchmark.busy import Spinners

    calls: list[str] = []

    class Recorded:  # the real engine, with its passes written down
        def __init__(self, name: str, engine) -> None:
            self.name, self.engine = name, engine

        def run_batch(self, images):
            calls.append(self.name)
            return self.engine.run_batch(images)

    engine = NAS(tiny_checkpoint).make_engine(EngineSettings(imgsz=(64, 64)), "cpu")
    engines = [Recorded("a", engine), Recorded("b", engine)]
    images = measure.benchmark_images(1)
    with Spinners(1) as spinners:
        passes = [partial(measure.timed_run, e, images) for e in engines]
        timings = measure.time_rows(passes, runs=2, warmup=1, spinners=spinners)
    assert calls == ["a", "b"] + ["a", "b"] * 4  # warm-ups, then 4 rounds (2 quiet, 2 busy)
    for quiet, busy in timings:
        assert quiet.e2e.count == 2 and busy is not None and busy.e2e.count == 2
    ((quiet, busy),) = measure.time_rows(passes[:1], runs=2, warmup=0)
    assert quiet.e2e.count == 2 and busy is None


def _state(pid: int) -> str:
    """The process state letter from /proc (R running, S sleeping, T stopped, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_busy_processes_spin_only_while_running_and_are_gone_after() -> None:
    from yolonas_cli.modes.benchmark.busy import Spinners

    with Spinners(2) as spinners:
        pids = [p.pid for p in spinners.processes]
        time.sleep(0.3)  # started, then paused
        assert [_state(pid) for pid in pids] == ["T", "T"]
        paused = [_cpu_seconds(pid) for pid in pids]
        time.sleep(0.3)
        assert [_cpu_seconds(pid) for pid in pids] == paused
        with spinners.running():
            assert all(_state(pid) in "RS" for pid in pids)
            time.sleep(0.6)
        spun = [_cpu_seconds(pid) - before for pid, before in zip(pids, paused)]
        assert all(s > 0.05 for s in spun), spun  # each had CPU time while running (load elsewhere varies)
        assert [_state(pid) for pid in pids] == ["T", "T"]
    assert all(not Path(f"/proc/{pid}").exists() or _state(pid) == "Z" for pid in pids)


def test_cli_busy_reports_the_busy_column(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    import yolonas_cli.modes.benchmark as benchmark_mode

    # the peak is not what this test checks: a 256^3 GEMM instead of 2048^3 (about 4 s less on 2 loaded cores)
    monkeypatch.setattr(benchmark_mode, "_peak", lambda device, int8=False: measure.matmul_peak(device, 256, 1, int8))
    result = runner.invoke(
        app,
        [
            "benchmark",
            f"model={tiny_checkpoint}",
            "imgsz=64",
            "runs=2",
            "warmup=0",
            "device=cpu",
            "formats=pytorch",
            "int8=False",
            "busy=1",
            f"project={tmp_path}",
            "name=run",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "benchmark.json").read_text())
    assert report["settings"]["busy"] == 1
    for row in report["rows"]:
        assert row["busy_e2e_median_ms"] > 0
        assert row["busy_ratio"] == pytest.approx(row["busy_e2e_median_ms"] / row["e2e_median_ms"], rel=1e-2)
    markdown = (tmp_path / "run" / "benchmark.md").read_text()
    assert "| E2E ms | Busy E2E ms | Pre / post ms |" in markdown
    assert "beside 1 spinning processes (busy=1)" in markdown


def test_stats_median_and_p90() -> None:
    stats = records.Stats.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (stats.median, stats.min, stats.count) == (3.0, 1.0, 5)
    assert stats.p90 == pytest.approx(4.6)


def test_plan_variants_with_the_predict_default() -> None:
    cpu = rows.plan_variants(["pytorch", "onnx"], torch.device("cpu"), half=False, int8=False, auto=True)
    assert [(v.format, v.baseline, v.sg_predict) for v in cpu] == [
        ("pytorch", True, False),
        ("pytorch", False, True),
        ("pytorch", False, False),
        ("auto", False, False),
        ("onnx", False, False),
    ]
    assert "auto" not in [v.format for v in rows.plan_variants(["onnx"], torch.device("cpu"), False, False, auto=True)]


def test_a_row_is_one_reference_at_most() -> None:
    with pytest.raises(ValueError, match="not both"):
        records.Variant("pytorch", "fp32", baseline=True, sg_predict=True)
    assert records.Variant("pytorch", "fp32", sg_predict=True).original_style
    assert not records.Variant("onnx", "fp32").original_style


def test_plan_variants_cpu_and_gpu() -> None:
    cpu = rows.plan_variants(["pytorch", "onnx", "openvino"], torch.device("cpu"), half=False, int8=True)
    assert [(v.format, v.precision, v.baseline, v.sg_predict) for v in cpu[:2]] == [
        ("pytorch", "fp32", True, False),
        ("pytorch", "fp32", False, True),
    ]
    assert [(v.format, v.precision, v.original_style) for v in cpu[2:]] == [
        ("pytorch", "fp32", False),
        ("onnx", "fp32", False),
        ("onnx", "int8", False),
        ("openvino", "fp32", False),
        ("openvino", "int8", False),
    ]
    gpu = rows.plan_variants(["pytorch", "onnx", "engine"], torch.device("cuda", 0), half=True, int8=True)
    assert (gpu[1].sg_predict, gpu[1].precision) == (True, "fp16")  # SG >= 3.5 predicts under CUDA autocast
    assert [(v.format, v.precision) for v in gpu[2:]] == [
        ("pytorch", "fp32"),
        ("pytorch", "fp16"),
        ("onnx", "fp32"),
        ("onnx", "fp16"),
        ("engine", "fp32"),
        ("engine", "fp16"),
        ("engine", "int8"),
    ]
    cpu_half = rows.plan_variants(["pytorch", "onnx"], torch.device("cpu"), half=True, int8=False)
    assert [(v.format, v.precision) for v in cpu_half[2:]] == [
        ("pytorch", "fp32"),
        ("pytorch", "fp16"),
        ("onnx", "fp32"),
    ]


def test_available_formats_always_has_pytorch_and_no_tensorrt_on_a_cpu() -> None:
    found = rows.available_formats(torch.device("cpu"))
    assert found[:2] == ["pytorch", "torchscript"]
    assert "engine" not in found


def test_original_preprocess_gives_the_same_input_as_the_engine() -> None:
    image = measure.benchmark_images(1)[0]
    assert image.shape == (720, 1280, 3)
    lb = Letterbox.for_image(image.shape[:2], 640)
    original = baseline.original_preprocess(lb, image)
    assert original.dtype == np.float32 and original.flags.c_contiguous
    np.testing.assert_array_equal(original, lb.apply(image))


def test_agreement_compares_top_anchors_and_matches_detections() -> None:
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 100, (1, 200, 4)).astype(np.float32)
    scores = rng.uniform(0, 1, (1, 200, 3)).astype(np.float32)
    dets = [np.array([[10, 10, 50, 50, 0.9, 1], [60, 60, 90, 90, 0.8, 2]], np.float32)]
    top = np.argsort(-scores.max(2), axis=1)[:, : measure.TOP_K]
    ref = measure.Reference(boxes, scores, top, dets)
    moved = boxes.copy()
    moved[0, top[0, 0], 0] += 0.25
    outside = np.setdiff1d(np.arange(200), top[0])[0]  # an anchor below the reference's top TOP_K
    moved[0, outside, 1] += 5.0  # not compared: only the top anchors are
    other = [np.array([[10.5, 10, 50, 50, 0.85, 1], [60, 60, 90, 90, 0.8, 0]], np.float32)]
    result = measure.agreement(ref, other, (torch.from_numpy(moved), torch.from_numpy(scores)))
    assert result["box_diff_px"] == pytest.approx(0.25)
    assert result["score_diff"] == 0.0
    assert (result["matched"], result["reference"]) == (1, 2)  # the second detection has another class
    assert "box_diff_px" not in measure.agreement(ref, dets, [dets[0]])  # end-to-end outputs: detections only


def test_matmul_peak_reports_positive_gflops() -> None:
    peak = measure.matmul_peak(torch.device("cpu"), size=256, runs=1)
    assert set(peak.methods) == {"torch.mm fp32", "oneDNN fp32"}
    assert all(v > 0 for v in peak.methods.values())
    assert peak.best("fp32") == max(peak.methods.values()) and peak.best("int8") is None
    assert peak.best("fp16") is None


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="the INT8 peak is measured with OpenVINO")
def test_the_int8_peak_is_an_int8_gemm_through_openvino() -> None:
    """The INT8 GEMM really runs in INT8: OpenVINO's profile shows an I8 kernel for the MatMul (a float one
    would mean FakeQuantize was not folded into INT8 arithmetic), and the peak reports it."""
    peak = measure.matmul_peak(torch.device("cpu"), size=256, runs=1, int8=True)
    assert set(peak.methods) == {"torch.mm fp32", "oneDNN fp32", "OpenVINO int8"}
    assert peak.best("int8") == peak.methods["OpenVINO int8"] > 0
    kernels = openvino_int8_kernels(256)
    assert any("I8" in kernel.upper() for kernel in kernels), kernels


def openvino_int8_kernels(size: int) -> list[str]:
    """The execution kernels OpenVINO's profile reports for the peak's MatMul."""
    import openvino as ov

    model, a = measure.int8_gemm_model(size)
    request = ov.Core().compile_model(model, "CPU", {"PERF_COUNT": True}).create_infer_request()
    request.infer([a])
    return [p.exec_type for p in request.profiling_info if p.node_name == "int8_gemm"]


def test_rows_that_were_not_measured_render_their_status() -> None:
    row = records.Row(records.Variant("openvino", "int8"), status="not available: nncf is not installed")
    cells = tables.table_cells(row)
    assert len(cells) == 10 and cells[0] == "OpenVINO" and cells[1] == "INT8"
    assert "not available" in cells[8]
    assert row.to_dict()["e2e_median_ms"] is None


# ---------------------------------------------------------------------------------------------- the baseline


def test_the_environment_without_policy_drops_only_what_the_policy_added(monkeypatch) -> None:
    from yolonas_cli.core import cpus

    monkeypatch.setitem(cpus._ADDED, "YOLONAS_TEST_ADDED", "1")
    monkeypatch.setenv("YOLONAS_TEST_ADDED", "1")
    monkeypatch.setenv("YOLONAS_TEST_USERS", "kept")
    env = cpus.environment_without_policy()
    assert "YOLONAS_TEST_ADDED" not in env and env["YOLONAS_TEST_USERS"] == "kept"
    monkeypatch.setenv("YOLONAS_TEST_ADDED", "2")  # changed since: somebody else's value now, kept
    assert cpus.environment_without_policy()["YOLONAS_TEST_ADDED"] == "2"


@pytest.mark.parametrize("partial", [False, True])
def test_the_baseline_is_timed_in_a_process_with_the_libraries_default_threading(
    tiny_checkpoint: Path, partial: bool
) -> None:
    """The child (unfused, or partially fused as SG >= 3.5's predict runs) starts without the policy this
    process applied (OMP_WAIT_POLICY unset, unless the user set it) and answers timed passes whose stages are
    the engine's three."""
    from yolonas_cli.core import cpus

    expected = None if "OMP_WAIT_POLICY" in cpus._ADDED else os.environ.get("OMP_WAIT_POLICY")
    with baseline.BaselineProcess(tiny_checkpoint, torch.device("cpu"), (64, 64), 2, partial) as child:
        assert child.started_with["partially_fused_blocks"] == (37 if partial else 0)
        assert child.started_with["omp_wait_policy_now"] == expected  # importing yolonas_cli there set nothing
        assert child.started_with["omp_wait_policy"] == expected
        passes = [child.timed_pass() for _ in range(2)]
        pid = child.process.pid if child.process else -1
    for stages in passes:
        assert set(stages) == {"preprocess", "inference", "postprocess"}
        assert all(ms > 0 for ms in stages.values())
    assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"  # ended with the block


def test_a_baseline_process_that_does_not_answer_in_time_is_ended(tiny_checkpoint: Path, monkeypatch) -> None:
    monkeypatch.setattr(baseline, "STARTUP_TIMEOUT_S", 0.001)  # no child loads weights in a millisecond
    child = baseline.BaselineProcess(tiny_checkpoint, torch.device("cpu"), (64, 64), 1)
    with pytest.raises(RuntimeError, match=r"gave no answer in 0\.001 s"), child:
        pass
    assert child.pid is not None and child.process is None
    assert not Path(f"/proc/{child.pid}").exists()  # killed and reaped, not left loading


def test_a_row_that_fails_while_timed_fails_alone() -> None:
    """time_rows: a pass that raises ends that row's passes (its exception is its result); the others are
    timed in every round."""
    calls = {"good": 0, "bad": 0}

    def good() -> dict[str, float]:
        calls["good"] += 1
        return {"preprocess": 1.0, "inference": 2.0, "postprocess": 3.0}

    def bad() -> dict[str, float]:
        calls["bad"] += 1
        if calls["bad"] == 2:
            raise RuntimeError("the runtime died")
        return good()

    timings = measure.time_rows([bad, good], runs=3, warmup=1)
    assert isinstance(timings[0], RuntimeError) and calls["bad"] == 2  # warm-up, then the failing pass
    quiet, busy = timings[1]  # type: ignore[misc]
    assert quiet.e2e.count == 3 and quiet.e2e.median == 6.0 and busy is None


def test_a_baseline_process_that_cannot_start_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.pt"
    child = baseline.BaselineProcess(missing, torch.device("cpu"), (64, 64), 1)
    with pytest.raises(RuntimeError, match=r"original-style row's process failed: .*nothing\.pt"), child:
        pass
