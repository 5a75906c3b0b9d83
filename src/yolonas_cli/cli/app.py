"""The `yolo-nas` command: `yolo-nas MODE key=value ...`, on a Typer entrypoint.

Typer provides the entrypoint and hands over the raw tokens (`ctx.args`); everything after that is ours:
special commands (help, version, checks, cfg), per-mode help, the key=value grammar (`cli/parse.py`) and the
dispatch. A mode runs through a lazy registry, `MODE_RUNNERS[mode] = "module:function"`; the function is
called as `run(args) -> int | None` with the mode's validated dataclass, and its return value is the exit
code (None = 0). Errors become one line on stderr: `YoloNasError` → its `exit_code` (2 for `UsageError`),
Ctrl-C → 130, SIGTERM → 143 and SIGHUP → 129 (handled like Ctrl-C, see `core.signals`), anything else → 1
("internal error"); `YOLONAS_DEBUG=1` re-raises for the traceback.
Importing this module does not import torch.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
from collections.abc import Sequence
from typing import Any, Callable

import typer

from yolonas_cli.cfg import MODES, args_class
from yolonas_cli.cli.parse import parse_args
from yolonas_cli.cli.texts import COMMAND_HELP, cfg_text, checks_text, command_help_text, help_text, mode_help_text
from yolonas_cli.core import console, signals
from yolonas_cli.core.checks import did_you_mean
from yolonas_cli.core.errors import UsageError, YoloNasError
from yolonas_cli.core.version import __version__

MODE_RUNNERS: dict[str, str] = {mode: f"yolonas_cli.modes.{mode}:run" for mode in MODES}
MODE_RUNNERS["track"] = "yolonas_cli.modes.track.mode:run"  # modes/track/ also holds the trackers
_ALIASES = {"h": "help", "check": "checks", "v": "version"}
_TASK = "detect"  # Ultralytics' optional TASK word (`yolo detect predict ...`); YOLO-NAS only detects


# ---------------------------------------------------------------- texts


def _print(text: str) -> None:
    """Plain text on stdout (no markup: `[onnx,openvino]` must print as typed)."""
    console.out_console.print(text, markup=False, emoji=False, highlight=False)


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
        errno.EPERM: "check the permissions or write elsewhere (project=...)",
        errno.EROFS: "the file system is read-only: write elsewhere (project=...)",
        errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    }
    return f"cannot use{where}: {reason}; {hint.get(exc.errno or 0, 'check the path and its permissions')}"


def run_cli(tokens: Sequence[str]) -> int:
    """Run one command line (without the program name) and return its exit code; never raises,
    except with YOLONAS_DEBUG=1."""
    try:
        with signals.terminations_as_interrupts():
            return _dispatch(list(tokens))
    except YoloNasError as exc:
        if _debug():
            raise
        console.error(_one_line(str(exc)) or type(exc).__name__)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP: the mode has kept what it finished
        console.error(signals.describe(exc))
        return signals.exit_code(exc)
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
