"""The `yolo-nas` command: `yolo-nas MODE key=value ...`, on a Typer entrypoint.

Typer provides the entrypoint and hands over the raw tokens (`ctx.args`); everything after that is ours:
special commands (help, version, checks, cfg), per-mode help, the key=value grammar (`cli/parse.py`) and the
dispatch. A mode runs through a lazy registry, `MODE_RUNNERS[mode] = "module:function"`; the function is
called as `run(args) -> int | None` with the mode's validated dataclass, and its return value is the exit
code (None = 0). Errors become one line on stderr: `YoloNasError` → its `exit_code` (2 for `UsageError`),
Ctrl-C → 130, anything else → 1 ("internal error"); `YOLONAS_DEBUG=1` re-raises for the traceback.
Importing this module does not import torch.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import typer

from yolonas_cli.cfg import MODES, args_class, describe
from yolonas_cli.cli.parse import parse_args
from yolonas_cli.core import console
from yolonas_cli.core.checks import did_you_mean, format_value
from yolonas_cli.core.errors import UsageError, YoloNasError
from yolonas_cli.core.install import pip_extra
from yolonas_cli.core.version import __version__
from yolonas_cli.formats import registry

MODE_RUNNERS: dict[str, str] = {mode: f"yolonas_cli.modes.{mode}:run" for mode in MODES}
MODE_SUMMARIES = {
    "predict": "detect objects in images, videos, folders, globs, URLs, streams or a webcam",
    "val": "measure mAP on a dataset YAML (COCO-style labels)",
    "export": "export to ONNX, TorchScript, OpenVINO or TensorRT",
    "info": "show a model's classes, input size, layers and parameters",
    "benchmark": "time the model (and optionally its mAP) on every available backend",
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
_ALIASES = {"h": "help", "check": "checks", "v": "version"}
_TASK = "detect"  # Ultralytics' optional TASK word (`yolo detect predict ...`); YOLO-NAS only detects
# Distributions other than the module's namesake that provide a runtime module (for its version in `checks`).
_OTHER_DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "tensorrt": ("tensorrt-cu12", "tensorrt-cu11", "tensorrt-cu13"),
}
_OPENCV = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


# ---------------------------------------------------------------- texts


def _print(text: str) -> None:
    """Plain text on stdout (no markup: `[onnx,openvino]` must print as typed)."""
    console.out_console.print(text, markup=False, emoji=False, highlight=False)


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
        "  yolo-nas val model=yolo_nas_m.pt data=coco8.yaml batch=8",
        "  yolo-nas export model=yolo_nas_s.pt format=onnx imgsz=640",
        "  yolo-nas benchmark model=yolo_nas_s.pt formats=[onnx,openvino]",
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


# ---------------------------------------------------------------- commands


def _command(token: str) -> str:
    """A first token as a command name: case and leading dashes dropped, aliases resolved."""
    name = token.lstrip("-").lower()
    return _ALIASES.get(name, name)


def _at_most_one(command: str, rest: Sequence[str]) -> str | None:
    if len(rest) > 1:
        raise UsageError(f"'{command}' takes at most one mode, got {' '.join(rest)}")
    return _mode_name(rest[0]) if rest else None


def _mode_name(token: str) -> str:
    mode = token.lower()
    args_class(mode)  # UsageError with did-you-mean for an unknown mode
    return mode


def _help(rest: Sequence[str]) -> int:
    if len(rest) == 1 and _command(rest[0]) in COMMAND_HELP:
        _print(command_help_text(_command(rest[0])))
        return 0
    mode = _at_most_one("help", rest)
    _print(mode_help_text(mode) if mode else help_text())
    return 0


def _asks_for_help(tokens: Sequence[str]) -> bool:
    """True when a token is a help word (help, h, -h, --help) rather than a key=value."""
    return any("=" not in t and _command(t) == "help" for t in tokens)


def _version(rest: Sequence[str]) -> int:
    if rest:
        raise UsageError("'version' takes no arguments")
    _print(__version__)
    return 0


def _checks(rest: Sequence[str]) -> int:
    if rest:
        raise UsageError("'checks' takes no arguments")
    _print(checks_text())
    return 0


def _cfg(rest: Sequence[str]) -> int:
    mode = _at_most_one("cfg", rest)
    _print(cfg_text([mode] if mode else list(MODES)))
    return 0


SPECIAL_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "help": _help,
    "version": _version,
    "checks": _checks,
    "cfg": _cfg,
}


def _unknown_first(token: str) -> UsageError:
    if "=" in token:
        return UsageError(f"no mode given: use 'yolo-nas MODE key=value ...' with MODE one of {', '.join(MODES)}")
    if token.lower() == "train":
        return UsageError(f"mode 'train' is not supported: yolo-nas runs pretrained models ({', '.join(MODES)})")
    hint = (
        did_you_mean(token.lower(), [*MODES, *SPECIAL_COMMANDS])
        or f" Use one of {', '.join(MODES)}, or help, version, checks, cfg."
    )
    return UsageError(f"'{token}' is not a valid mode.{hint}")


def load_runner(mode: str) -> Callable[[Any], Any]:
    """The `run` function of `mode`, imported lazily; YoloNasError when its module does not exist."""
    module_name, _, attr = MODE_RUNNERS[mode].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise YoloNasError(f"mode '{mode}' is not available in this version") from None
        raise
    return getattr(module, attr)


def _exit_code(code: Any) -> int:
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def run_mode(mode: str, tokens: Sequence[str]) -> int:
    """Parse `tokens` for `mode`, then run it with console verbosity set from its `verbose`."""
    if _asks_for_help(tokens):
        _print(mode_help_text(mode))
        return 0
    args = parse_args(mode, tokens)
    runner = load_runner(mode)
    with console.verbosity(args.verbose):
        return _exit_code(runner(args))


def _dispatch(tokens: list[str]) -> int:
    if tokens and tokens[0].lower() == _TASK:
        tokens = tokens[1:]
    if not tokens:
        return _help([])
    head, rest = _command(tokens[0]), tokens[1:]
    if head in SPECIAL_COMMANDS:
        if head != "help" and _asks_for_help(rest):  # `cfg --help`, `checks -h`: the command's own help
            _print(command_help_text(head))
            return 0
        return SPECIAL_COMMANDS[head](rest)
    if tokens[0].lower() in MODES:
        return run_mode(tokens[0].lower(), rest)
    raise _unknown_first(tokens[0])


def _debug() -> bool:
    return os.environ.get("YOLONAS_DEBUG", "").strip().lower() in ("1", "true", "yes")


def _one_line(message: str) -> str:
    return " ".join(message.split()) if "\n" in message else message


def os_error_message(exc: OSError) -> str:
    """One line for a file-system failure: what failed, on which path, and what to check."""
    where = f" '{exc.filename}'" if exc.filename else ""
    reason = exc.strerror or str(exc)
    hint = {
        errno.ENOSPC: "free some disk space or write elsewhere (project=...)",
        errno.EACCES: "check the permissions or write elsewhere (project=...)",
        errno.EROFS: "the file system is read-only: write elsewhere (project=...)",
        errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    }
    return f"cannot use{where}: {reason}; {hint.get(exc.errno or 0, 'check the path and its permissions')}"


def run_cli(tokens: Sequence[str]) -> int:
    """Run one command line (without the program name) and return its exit code; never raises,
    except with YOLONAS_DEBUG=1."""
    try:
        return _dispatch(list(tokens))
    except YoloNasError as exc:
        if _debug():
            raise
        console.error(_one_line(str(exc)) or type(exc).__name__)
        return exc.exit_code
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130
    except OSError as exc:
        if _debug():
            raise
        console.error(os_error_message(exc))
        return 1
    except Exception as exc:
        if _debug():
            raise
        console.error(
            f"internal error: {type(exc).__name__}: {_one_line(str(exc))} (set YOLONAS_DEBUG=1 for the traceback)"
        )
        return 1


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(add_help_option=False, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cli(ctx: typer.Context) -> None:
    """Run YOLO-NAS object detectors: yolo-nas MODE key=value ... (yolo-nas help for more)."""
    raise typer.Exit(run_cli(ctx.args))


def main() -> None:
    """The `yolo-nas` console script."""
    app(prog_name="yolo-nas")
