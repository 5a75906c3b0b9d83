"""The `yolo-nas` entrypoint: help, special commands, dispatch and error handling.

In-process through Typer's CliRunner (with fake modes registered by monkeypatch), and as a real subprocess
of the installed console script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from yolonas_cli import __version__
from yolonas_cli.cfg import MODES, PredictArgs, defaults, describe
from yolonas_cli.cli import app as app_module
from yolonas_cli.cli.app import app
from yolonas_cli.core import console
from yolonas_cli.core.checks import format_value
from yolonas_cli.core.errors import MissingExtraError, UsageError, YoloNasError

SCRIPT = Path(sys.executable).parent / "yolo-nas"
runner = CliRunner()


def invoke(*tokens: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(tokens), env=env)


def cli(*tokens: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed console script, in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if k != "YOLONAS_DEBUG"} | (env or {})
    return subprocess.run([str(SCRIPT), *tokens], capture_output=True, text=True, timeout=120, env=full_env)


def assert_lists_every_argument(text: str, mode: str) -> None:
    for name, default, meaning in describe(mode):
        assert f"{name}={format_value(default)}" in text, name
        assert meaning in text, name


# ---------------------------------------------------------------- help and special commands (CliRunner)


@pytest.mark.parametrize("tokens", [[], ["-h"], ["--help"], ["help"], ["h"], ["HELP"], ["detect"]])
def test_help(tokens: list[str]) -> None:
    result = invoke(*tokens)
    assert result.exit_code == 0
    assert "Usage: yolo-nas MODE [key=value ...]" in result.stdout
    for word in (*MODES, "version", "checks", "cfg"):
        assert f"  {word}" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "form", ["{mode} --help", "{mode} -h", "help {mode}", "{mode} conf=9 help", "detect {mode} --help"]
)
def test_mode_help_lists_every_argument_with_its_default(mode: str, form: str) -> None:
    result = invoke(*form.format(mode=mode).split())
    assert result.exit_code == 0, result.output
    assert f"Usage: yolo-nas {mode} [key=value ...]" in result.stdout
    assert_lists_every_argument(result.stdout, mode)


@pytest.mark.parametrize("command", ["cfg", "checks", "version", "help"])
@pytest.mark.parametrize("form", ["help {command}", "{command} --help", "{command} -h", "{command} help"])
def test_command_help_like_the_modes_help(command: str, form: str) -> None:
    """`yolo-nas help cfg`, `cfg --help`, `checks --help`: what the command does, its usage and examples;
    nothing else runs (no YAML, no environment report)."""
    result = invoke(*form.format(command=command).split())
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"yolo-nas {command}: ")
    assert any(line.startswith(f"Usage: yolo-nas {command}") for line in lines)
    assert "Examples:" in lines and lines[-1].startswith("  yolo-nas ")
    assert "predict:" not in result.stdout and "Python " not in result.stdout  # not cfg's YAML, not checks
    assert result.stderr == ""


def test_version() -> None:
    result = invoke("version")
    assert (result.exit_code, result.stdout.strip()) == (0, __version__)
    assert invoke("--version").stdout.strip() == __version__


def test_cfg_prints_every_mode_as_yaml() -> None:
    result = invoke("cfg")
    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout) == {mode: defaults(mode) for mode in MODES}


def test_cfg_of_one_mode_round_trips_through_cfg_file(tmp_path: Path) -> None:
    result = invoke("cfg", "predict")
    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout) == defaults("predict")
    file = tmp_path / "p.yaml"
    file.write_text(result.stdout)
    from yolonas_cli.cli.parse import parse_args

    assert parse_args("predict", [f"cfg={file}"]) == PredictArgs()


def test_checks_reports_versions_without_importing_optional_backends() -> None:
    before = set(sys.modules)
    result = invoke("checks")
    assert result.exit_code == 0, result.output
    for key in (
        "yolo-nas",
        "Python",
        "torch",
        "numpy",
        "opencv",
        "CUDA",
        "CPU",
        "onnx",
        "onnxruntime",
        "openvino",
        "tensorrt",
    ):
        assert any(line.startswith(key + " ") for line in result.stdout.splitlines()), key
    imported = set(sys.modules) - before
    assert not imported & {"onnx", "onnxruntime", "openvino", "tensorrt", "cv2"}


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (["predcit"], "Error: 'predcit' is not a valid mode. Did you mean 'predict'?"),
        (["vall"], "Error: 'vall' is not a valid mode. Did you mean 'val'?"),
        (
            ["xyzzy"],
            "Error: 'xyzzy' is not a valid mode. Use one of predict, val, export, info, benchmark, serve, or "
            "help, version, checks, cfg.",
        ),
        (
            ["train"],
            "Error: mode 'train' is not supported: yolo-nas runs pretrained models "
            "(predict, val, export, info, benchmark, serve)",
        ),
        (
            ["conf=0.5"],
            "Error: no mode given: use 'yolo-nas MODE key=value ...' with MODE one of predict, val, "
            "export, info, benchmark, serve",
        ),
        (["help", "predit"], "Error: 'predit' is not a valid mode. Did you mean 'predict'?"),
        (["cfg", "val", "export"], "Error: 'cfg' takes at most one mode, got val export"),
        (["version", "x"], "Error: 'version' takes no arguments"),
        (["predict", "confx=0.5"], "Error: 'confx' is not a valid argument for predict. Did you mean 'conf'?"),
        (["predict", "imgsz"], "Error: 'imgsz' needs a value, e.g. imgsz=640"),
        (["predict", "conf=1.5"], "Error: conf=1.5 is out of range: use a number between 0 and 1"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tokens: list[str], message: str) -> None:
    result = invoke(*tokens)
    assert result.exit_code == 2
    assert result.stderr == message + "\n"
    assert result.stdout == ""


# ---------------------------------------------------------------- dispatch (fake modes)


@pytest.fixture
def fake_mode(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Registers a fake `predict` whose behaviour the test sets (`state.action`); records its calls."""
    state = types.SimpleNamespace(calls=[], verbose_seen=[], action=None)

    def run(args: PredictArgs) -> int | None:
        state.calls.append(args)
        state.verbose_seen.append(console.is_verbose())
        return state.action() if state.action else None

    module = types.ModuleType("fake_yolonas_mode")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_yolonas_mode", module)
    monkeypatch.setitem(app_module.MODE_RUNNERS, "predict", "fake_yolonas_mode:run")
    monkeypatch.delenv("YOLONAS_DEBUG", raising=False)
    return state


def test_dispatch_passes_the_typed_args(fake_mode: types.SimpleNamespace) -> None:
    result = invoke(
        "predict", "source=bus.jpg", "conf", "=", "0.4", "imgsz=[640,", "480]", "save_txt", "device=0", "classes=0"
    )
    assert result.exit_code == 0, result.output
    (args,) = fake_mode.calls
    assert args == PredictArgs(
        source="bus.jpg", conf=0.4, imgsz=(640, 480), save_txt=True, device="cuda:0", classes=[0]
    )


def test_mode_return_value_is_the_exit_code(fake_mode: types.SimpleNamespace) -> None:
    fake_mode.action = lambda: 3
    assert invoke("predict").exit_code == 3
    fake_mode.action = lambda: None
    assert invoke("predict").exit_code == 0


def test_verbose_is_set_for_the_run_and_restored(fake_mode: types.SimpleNamespace) -> None:
    assert invoke("predict", "verbose=False").exit_code == 0
    assert invoke("predict").exit_code == 0
    assert fake_mode.verbose_seen == [False, True]
    assert console.is_verbose()


def _raise(exc: BaseException):
    def action() -> None:
        raise exc

    return action


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (
            YoloNasError("weights file is truncated: download it again"),
            1,
            "Error: weights file is truncated: download it again",
        ),
        (
            MissingExtraError("onnx is not installed: pip install 'yolo-nas[onnx]'"),
            1,
            "Error: onnx is not installed: pip install 'yolo-nas[onnx]'",
        ),
        (
            UsageError("int8=True needs data=...: give a calibration dataset"),
            2,
            "Error: int8=True needs data=...: give a calibration dataset",
        ),
        (YoloNasError("first line\n  second line"), 1, "Error: first line second line"),
        (KeyboardInterrupt(), 130, "Error: interrupted"),
        (RuntimeError("boom"), 1, "Error: internal error: RuntimeError: boom (set YOLONAS_DEBUG=1 for the traceback)"),
    ],
)
def test_errors_from_a_mode_are_one_line(
    fake_mode: types.SimpleNamespace, exc: BaseException, code: int, line: str
) -> None:
    fake_mode.action = _raise(exc)
    result = invoke("predict")
    assert result.exit_code == code
    assert result.stderr == line + "\n"
    assert "Traceback" not in result.output


def test_debug_env_reraises(fake_mode: types.SimpleNamespace) -> None:
    fake_mode.action = _raise(RuntimeError("boom"))
    result = invoke("predict", env={"YOLONAS_DEBUG": "1"})
    assert isinstance(result.exception, RuntimeError)
    fake_mode.action = _raise(YoloNasError("bad weights"))
    assert isinstance(invoke("predict", env={"YOLONAS_DEBUG": "1"}).exception, YoloNasError)


def test_a_missing_mode_module_is_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app_module.MODE_RUNNERS, "val", "yolonas_cli.modes.no_such_mode_xyz:run")
    result = invoke("val", "batch=2")
    assert result.exit_code == 1
    assert result.stderr == "Error: mode 'val' is not available in this version\n"


def test_a_missing_dependency_inside_a_mode_is_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "broken_yolonas_mode.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(app_module.MODE_RUNNERS, "info", "broken_yolonas_mode:run")
    result = invoke("info")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: internal error: ModuleNotFoundError: No module named 'no_such_dependency_xyz'"
    )


def test_usage_errors_are_reported_before_loading_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app_module.MODE_RUNNERS, "val", "yolonas_cli.modes.no_such_mode_xyz:run")
    assert invoke("val", "batch=0").exit_code == 2


# ---------------------------------------------------------------- the installed console script


@pytest.mark.parametrize("tokens", [[], ["-h"], ["--help"]])
def test_script_help(tokens: list[str]) -> None:
    done = cli(*tokens)
    assert done.returncode == 0
    assert "Usage: yolo-nas MODE [key=value ...]" in done.stdout


def test_script_predict_help() -> None:
    done = cli("predict", "--help")
    assert done.returncode == 0
    assert_lists_every_argument(done.stdout, "predict")


def test_script_version_cfg_checks() -> None:
    assert cli("version").stdout.strip() == __version__
    assert yaml.safe_load(cli("cfg").stdout) == {mode: defaults(mode) for mode in MODES}
    done = cli("checks")
    assert done.returncode == 0, done.stderr
    assert "torch" in done.stdout and "onnxruntime" in done.stdout and "Python" in done.stdout
    for module in ("onnx", "onnxruntime", "openvino", "tensorrt"):  # every runtime a format needs, once
        assert sum(line.split()[0] == module for line in done.stdout.splitlines() if line.strip()) == 1, module


def test_python_dash_m_runs_the_same_cli() -> None:
    """`python -m yolonas_cli` is the `yolo-nas` command: same output, same usage-error exit code."""
    run = [sys.executable, "-m", "yolonas_cli"]
    version = subprocess.run([*run, "version"], capture_output=True, text=True, timeout=120)
    assert (version.returncode, version.stdout.strip()) == (0, __version__)
    wrong = subprocess.run([*run, "predcit"], capture_output=True, text=True, timeout=120)
    assert (
        wrong.returncode == 2
        and wrong.stderr.strip() == "Error: 'predcit' is not a valid mode. Did you mean 'predict'?"
    )


@pytest.mark.parametrize(
    ("tokens", "line"),
    [
        (["predcit"], "Error: 'predcit' is not a valid mode. Did you mean 'predict'?"),
        (["predict", "confx=0.5"], "Error: 'confx' is not a valid argument for predict. Did you mean 'conf'?"),
    ],
)
def test_script_usage_errors(tokens: list[str], line: str) -> None:
    done = cli(*tokens)
    assert done.returncode == 2
    assert done.stderr == line + "\n"
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_importing_the_app_does_not_import_torch() -> None:
    heavy = ("torch", "cv2", "onnxruntime", "openvino", "tensorrt")
    code = f"import sys, yolonas_cli.cli.app; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
