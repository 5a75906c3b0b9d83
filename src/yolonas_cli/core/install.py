"""How this copy of yolo-nas was installed, and the `pip install` command of an extra that works for it.

A source checkout (this package under `<root>/src/yolonas_cli` next to the project's `pyproject.toml`, run
from an editable install or with PYTHONPATH) installs extras from the checkout: `pip install -e '.[onnx]'`
when the current folder is the checkout, else with the checkout's path. An installed wheel installs them by
name: `pip install 'yolo-nas[onnx]'`.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from yolonas_cli.core.errors import MissingExtraError

DISTRIBUTION = "yolo-nas"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # .../yolonas_cli


@lru_cache(maxsize=1)
def source_checkout() -> Path | None:
    """The root of the source checkout this package runs from, or None for an installed wheel."""
    src = _PACKAGE_DIR.parent
    root = src.parent
    if src.name != "src" or not (root / "pyproject.toml").is_file():
        return None
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return root if f'name = "{DISTRIBUTION}"' in text else None


def pip_extra(extra: str, *, cwd: Path | None = None) -> str:
    """The command that installs the project's extra `extra` for this installation (see the module doc)."""
    root = source_checkout()
    if root is None:
        return f"pip install '{DISTRIBUTION}[{extra}]'"
    try:
        here = (cwd or Path.cwd()).resolve()
    except OSError:  # the current folder was deleted
        here = None
    where = "." if here == root else str(root)
    return f"pip install -e '{where}[{extra}]'"


def require(module: str, needed_for: str, hint: str | None = None) -> ModuleType:
    """`import module`, or MissingExtraError "<needed_for> needs <module>, which is not installed: <hint>"
    (hint default: `pip install <module>`)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{needed_for} needs {module}, which is not installed: {hint or f'pip install {module}'}"
        ) from None
