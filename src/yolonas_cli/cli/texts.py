"""The texts of the `yolo-nas` command: the usage with the modes and commands, each mode's and command's
help, the defaults as YAML (`cfg`) and the environment report (`checks`). Importing it does not import torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yolonas_cli.cfg import MODES, describe
from yolonas_cli.core.checks import format_value
from yolonas_cli.core.install import pip_extra
from yolonas_cli.core.version import __version__
from yolonas_cli.formats import registry

MODE_SUMMARIES = {
    "predict": "detect objects in images, videos, folders, globs, URLs, streams or a webcam",
    "track": "follow objects through videos, streams or folders of frames with track ids (ByteTrack, BoT-SORT)",
    "val": "measure mAP on a dataset YAML (COCO-style labels)",
    "export": "export to ONNX, TorchScript, OpenVINO or TensorRT",
    "info": "show a model's classes, input size, layers and parameters",
    "benchmark": "time the model (and optionally its mAP) on every available backend",
    "train": "fine-tune (or train) on a dataset YAML with the original's loss and recipe",
    "serve": "serve detections over HTTP (POST /predict) with dynamic batching",
}
COMMANDS = {
    "help": "help [MODE|COMMAND]  this text, every argument of MODE, or what COMMAND does",
    "version": "version              print the version",
    "checks": "checks               report Python, library versions, devices and optional backends",
    "cfg": "cfg [MODE]           print the default arguments of every mode (or of MODE) as YAML",
}


@dataclass(frozen=True)
class CommandHelp:
    """The help of a special command: its arguments after the name, what it does, examples."""

    arguments: str
    does: str
    examples: tuple[str, ...]


COMMAND_HELP = {
    "help": CommandHelp(
        "[MODE|COMMAND]",
        "print the usage, the modes and these commands; with a mode, every argument of the mode with its "
        "default and meaning; with a command, what the command does.",
        ("yolo-nas help", "yolo-nas help predict", "yolo-nas help cfg"),
    ),
    "version": CommandHelp("", "print the version of yolo-nas.", ("yolo-nas version",)),
    "checks": CommandHelp(
        "",
        "report the Python, OS, CPU, library versions, the CUDA and MPS devices torch sees, and which optional "
        "export backends are installed (with the command that installs a missing one). Only torch is imported.",
        ("yolo-nas checks",),
    ),
    "cfg": CommandHelp(
        "[MODE]",
        "print the default arguments of every mode (or of MODE) as YAML; save it, edit it and load it back "
        "with cfg=file.yaml (keys given on the command line win).",
        ("yolo-nas cfg predict > my.yaml", "yolo-nas predict cfg=my.yaml source=photos/"),
    ),
}
# Distributions other than the module's namesake that provide a runtime module (for its version in `checks`).
_OTHER_DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "tensorrt": ("tensorrt-cu12", "tensorrt-cu11", "tensorrt-cu13"),
}
_OPENCV = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def help_text() -> str:
    """The top-level help: usage, modes, special commands, examples."""
    width = max(map(len, MODES)) + 2
    lines = [
        f"yolo-nas {__version__}: run YOLO-NAS object detectors (S, M, L) without SuperGradients.",
        "",
        "Usage: yolo-nas MODE [key=value ...]",
        "",
        "Modes:",
    ]
    lines += [f"  {mode:<{width}}{MODE_SUMMARIES[mode]}" for mode in MODES]
    lines += ["", "Commands:"] + [f"  {usage}" for usage in COMMANDS.values()]
    lines += [
        "",
        "Examples:",
        "  yolo-nas predict model=yolo_nas_s.pt source=rocket.jpg conf=0.4 save_txt",
        "  yolo-nas predict model=yolo_nas_s.pt source=aerial.jpg slice=640 slice_overlap=0.2",
        "  yolo-nas track model=yolo_nas_s.pt source=clip.mp4 tracker=botsort.yaml save_txt",
        "  yolo-nas val model=yolo_nas_m.pt data=coco8.yaml batch=8",
        "  yolo-nas export model=yolo_nas_s.pt format=onnx imgsz=640",
        "  yolo-nas benchmark model=yolo_nas_s.pt formats=[onnx,openvino]",
        "  yolo-nas train model=yolo_nas_s.pt data=my.yaml epochs=50 imgsz=640 batch=16",
        "  yolo-nas serve model=yolo_nas_s.pt port=8000",
        "  yolo-nas predict --help",
        "",
        "Values: true/false/none (any case), numbers, lists [0,2] or 640,480; anything else is text.",
        "A bare boolean key means True (save_txt = save_txt=True). cfg=file.yaml loads arguments "
        "from YAML (command-line keys win).",
    ]
    return "\n".join(lines)


def mode_help_text(mode: str) -> str:
    """Every argument of `mode` as `key=default  meaning`."""
    rows = [(f"{name}={format_value(default)}", meaning) for name, default, meaning in describe(mode)]
    width = max(len(left) for left, _ in rows) + 2
    lines = [
        f"yolo-nas {mode}: {MODE_SUMMARIES[mode]}.",
        "",
        f"Usage: yolo-nas {mode} [key=value ...]",
        "",
        "Arguments (key=default  meaning):",
    ]
    lines += [f"  {left:<{width}}{meaning}" for left, meaning in rows]
    lines += [
        "",
        "A bare boolean key means True (save_txt = save_txt=True). cfg=file.yaml loads arguments "
        "from YAML (command-line keys win).",
    ]
    return "\n".join(lines)


def command_help_text(command: str) -> str:
    """What a special command does, its usage and examples (`yolo-nas help cfg`, `yolo-nas cfg --help`)."""
    entry = COMMAND_HELP[command]
    usage = f"yolo-nas {command} {entry.arguments}".rstrip()
    lines = [f"yolo-nas {command}: {entry.does}", "", f"Usage: {usage}", "", "Examples:"]
    return "\n".join(lines + [f"  {example}" for example in entry.examples])


def _yaml_scalar(value: Any) -> str:
    """A YAML flow scalar or list for a default value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    if isinstance(value, str):
        plain = value and value.strip() == value and not any(c in value for c in ":#{}[],&*!|>'\"%@`")
        return value if plain and _yaml_reads_back(value) else '"' + value.replace('"', '\\"') + '"'
    return repr(value)


def _yaml_reads_back(value: str) -> bool:
    """True when YAML would read `value` back as the same text (not a bool, null or number)."""
    import yaml

    return yaml.safe_load(value) == value


def cfg_text(modes: Sequence[str]) -> str:
    """The defaults of `modes` as YAML: flat for one mode, one section per mode otherwise."""
    nested = len(modes) > 1
    lines = [f"# yolo-nas {__version__} defaults: save as my.yaml, edit, run `yolo-nas MODE cfg=my.yaml`"]
    for mode in modes:
        if nested:
            lines.append(f"{mode}:")
        indent = "  " if nested else ""
        lines += [f"{indent}{name}: {_yaml_scalar(default)}  # {meaning}" for name, default, meaning in describe(mode)]
    return "\n".join(lines)


def _dist_version(names: Sequence[str]) -> str | None:
    """The installed version of the first of `names` (distribution names) that is installed."""
    import importlib.metadata  # lazy: only `checks` needs it

    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def optional_modules() -> dict[str, str]:
    """The optional modules the formats export and run with (registry order) → the extra that installs them."""
    found: dict[str, str] = {}
    for fmt in registry.FORMATS:
        for module in [m for m, _ in fmt.export_needs] + list(fmt.runtime_needs):
            if fmt.extra is not None:
                found.setdefault(module, fmt.extra)
    return found


def _backend_status(module: str, extra: str) -> str:
    """Whether an optional backend is importable, found with find_spec (nothing is imported)."""
    dists = (module, *_OTHER_DISTRIBUTIONS.get(module, ()))
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"not installed ({pip_extra(extra)})"
    return f"installed {_dist_version(dists) or '(version unknown)'}"


def _torch_rows() -> list[tuple[str, str]]:
    """torch's version and the devices it sees (torch is imported here, and only here)."""
    try:
        import torch
    except Exception as exc:  # a broken install must not break the report
        return [("torch", f"not importable: {type(exc).__name__}: {exc}")]
    rows: list[tuple[str, str]] = [("torch", str(torch.__version__))]
    if torch.cuda.is_available():
        names = [
            f"cuda:{i} {torch.cuda.get_device_name(i)} "
            f"({torch.cuda.get_device_properties(i).total_memory / 2**30:.1f} GiB)"
            for i in range(torch.cuda.device_count())
        ]
        rows.append(("CUDA", f"{torch.version.cuda}: " + ", ".join(names)))
    else:
        rows.append(("CUDA", "not available" + ("" if torch.version.cuda else " (torch built for CPU)")))
    mps = getattr(torch.backends, "mps", None)
    rows.append(("MPS", "available" if mps is not None and mps.is_available() else "not available"))
    return rows


def checks_text() -> str:
    """The environment report of `yolo-nas checks`."""
    rows = [
        ("yolo-nas", __version__),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()}) {sys.executable}"),
        ("OS", platform.platform()),
        ("CPU", f"{platform.machine() or 'unknown'}, {os.cpu_count()} logical cores"),
        ("numpy", _dist_version(("numpy",)) or "not installed"),
        ("opencv", _dist_version(_OPENCV) or "not installed"),
    ]
    rows += _torch_rows()
    rows += [(module, _backend_status(module, extra)) for module, extra in optional_modules().items()]
    width = max(len(key) for key, _ in rows) + 2
    return "\n".join(f"{key:<{width}}{value}" for key, value in rows)
