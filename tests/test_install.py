"""Install hints for the extras follow how yolo-nas was installed: from this source checkout (editable or on
PYTHONPATH) `pip install -e '.[onnx]'` (or the checkout's path from elsewhere), from an installed wheel
`pip install 'yolo-nas[onnx]'` (a copy of the package outside any checkout, run in a child process)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yolonas_cli
from yolonas_cli.cli.app import run_cli
from yolonas_cli.core.install import pip_extra, source_checkout

PACKAGE = Path(yolonas_cli.__file__).resolve().parent
CHECKOUT = PACKAGE.parents[1]  # <checkout>/src/yolonas_cli


def test_a_source_checkout_installs_extras_from_itself(tmp_path: Path) -> None:
    assert PACKAGE.parent.name == "src" and (CHECKOUT / "pyproject.toml").is_file(), "tests run from a checkout"
    assert source_checkout() == CHECKOUT
    assert pip_extra("onnx", cwd=CHECKOUT) == "pip install -e '.[onnx]'"
    assert pip_extra("openvino", cwd=tmp_path) == f"pip install -e '{CHECKOUT}[openvino]'"


def test_an_installed_copy_installs_extras_by_name(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    shutil.copytree(PACKAGE, site / "yolonas_cli", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    script = (
        "from yolonas_cli.core.install import pip_extra, source_checkout; print(source_checkout(), pip_extra('onnx'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env={"PYTHONPATH": str(site)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None pip install 'yolo-nas[onnx]'"


def test_checks_gives_the_hint_for_this_install(capsys, monkeypatch) -> None:
    import importlib.util

    monkeypatch.chdir(CHECKOUT)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert run_cli(["checks"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("openvino "))
    assert line.split(None, 1)[1] == "not installed (pip install -e '.[openvino]')"
