"""The one place that talks to the terminal. Rich is used here and only here.

Messages go to stderr (so stdout stays clean for data such as `cfg` or JSON); `set_verbose(False)`
silences everything but errors. Progress bars are shown only on a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)
_state = {"verbose": True}
T = TypeVar("T")


def set_verbose(verbose: bool) -> None:
    """verbose=False prints only errors."""
    _state["verbose"] = bool(verbose)


def is_verbose() -> bool:
    return _state["verbose"]


@contextmanager
def verbosity(verbose: bool) -> Iterator[None]:
    """Verbose (or errors only) for the enclosed calls, then back to what it was."""
    previous = _state["verbose"]
    set_verbose(verbose)
    try:
        yield
    finally:
        set_verbose(previous)


def each_step_with_verbosity(steps: Iterator[T], verbose: bool) -> Iterator[T]:
    """Yield the items of the generator `steps`, running each of its steps (and its closing) with verbosity
    `verbose`; between the items the caller's verbosity is back, so a paused generator changes nothing."""
    try:
        while True:
            with verbosity(verbose):
                try:
                    item = next(steps)
                except StopIteration:
                    return
            yield item
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            with verbosity(verbose):
                close()


def info(message: str) -> None:
    """A normal progress message (stderr), silenced by verbose=False."""
    if _state["verbose"]:
        err_console.print(message, markup=False)


def warn(message: str) -> None:
    """A warning (stderr), silenced by verbose=False."""
    if _state["verbose"]:
        err_console.print(f"WARNING: {message}", style="yellow", markup=False)


def error(message: str) -> None:
    """A one-line error (stderr), always printed."""
    err_console.print(f"Error: {message}", style="bold red", markup=False)


def out(renderable: object) -> None:
    """Data or tables for the user, on stdout."""
    out_console.print(renderable)


def text(message: str) -> None:
    """Plain text for the user on stdout, printed as is (no markup, no highlighting, no wrapping)."""
    out_console.print(message, markup=False, emoji=False, highlight=False, soft_wrap=True)


def stdout_is_terminal() -> bool:
    """True when stdout is a terminal (False when piped or redirected to a file)."""
    return sys.stdout.isatty()


def interactive() -> bool:
    """True when stderr is a terminal (progress bars are drawn only then)."""
    return sys.stderr.isatty() and _state["verbose"]


@contextmanager
def download_progress(description: str, total: int | None) -> Iterator:
    """A byte progress bar; yields `advance(n)`. Silent when not a terminal."""
    if not interactive():
        yield lambda n: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def count_progress(description: str, total: int | None) -> Iterator:
    """An item progress bar (images, frames); yields `advance(n=1)`. Silent when not a terminal."""
    if not interactive():
        yield lambda n=1: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
