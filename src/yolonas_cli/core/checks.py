"""Checks of argument values: each takes (name, value) and returns the value normalised, or raises
`UsageError` with one line naming the argument, the bad value and what is allowed. And the messages they share:
a value written as typed on the command line, and "Did you mean ...?".

Types are checked strictly: a bool is only True or False; an int only an integer (`2.0` is refused); a float
an int or a float; text a non-empty str or a path-like object (turned into str).
"""

from __future__ import annotations

import difflib
import numbers
import os
import re
import reprlib
from typing import Any, Callable

from yolonas_cli.core.errors import UsageError
from yolonas_cli.core.sizes import MAX_IMGSZ, round_up

Check = Callable[[str, Any], Any]

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+)$")


# ---------------------------------------------------------------- messages


def format_value(value: Any) -> str:
    """A value written the way it is typed on the command line: None, True, 640, 640,480, [0,2], text."""
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


_SHOWN_CHARS = 60
_SHOWN_ITEMS = 8
_SHOWN_LEVELS = 3
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = _SHOWN_LEVELS
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _SHOWN_CHARS
for _kind in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_SHORT_REPR, _kind, _SHOWN_ITEMS)


def _show(value: Any) -> str:
    """A bad value for an error message, at most 60 characters: text as typed, lists and tuples as typed on
    the command line, other objects by a bounded repr. Only the first 8 items of 3 levels are ever looked at,
    so a value that is huge when expanded (a YAML alias bomb, a shared nested list) costs nothing to show."""
    if isinstance(value, str):
        text = value if value else "''"
    elif isinstance(value, (tuple, list)):
        text = _show_sequence(value, _SHOWN_LEVELS)
    elif isinstance(value, os.PathLike):
        text = os.fspath(value)
    else:
        text = _SHORT_REPR.repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _show_sequence(value: tuple | list, levels: int) -> str:
    """`format_value` of a list or tuple, looking at no more than `_SHOWN_ITEMS` items per level."""
    if levels <= 0:
        return "..."
    parts = [
        _show_sequence(item, levels - 1) if isinstance(item, (list, tuple)) else _show(item)
        for item in value[:_SHOWN_ITEMS]
    ]
    if len(value) > _SHOWN_ITEMS:
        parts.append("...")
    joined = ",".join(parts)
    return joined if isinstance(value, tuple) else f"[{joined}]"


def bad_value(name: str, value: Any, problem: str, allowed: str) -> UsageError:
    return UsageError(f"{name}={_show(value)} {problem}: {allowed}")


def did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    """' Did you mean 'x'?' (up to 3 close matches by difflib), or '' when nothing is close."""
    matches = [f"'{m}'" for m in difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)]
    if not matches:
        return ""
    listed = matches[0] if len(matches) == 1 else ", ".join(matches[:-1]) + " or " + matches[-1]
    return f" Did you mean {listed}?"


# ---------------------------------------------------------------- checks


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def boolean(name: str, value: Any) -> bool:
    """True or False only."""
    if isinstance(value, bool):
        return value
    raise bad_value(name, value, "is not a boolean", f"use {name}=True or {name}=False")


def integer(minimum: int, optional: bool = False) -> Check:
    """A check for a whole number >= minimum (or None when optional)."""
    allowed = f"use a whole number >= {minimum}" + (" or None" if optional else "")

    def check(name: str, value: Any) -> int | None:
        if value is None and optional:
            return None
        if not _is_int(value):
            raise bad_value(name, value, "is not a whole number", allowed)
        if value < minimum:
            raise bad_value(name, value, "is out of range", allowed)
        return int(value)

    return check


def number(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Check:
    """A check for a float in [low, high] ((low, ...] when low_open, [..., high) when high_open); ints are
    accepted."""
    lower = f"> {low:g}" if low_open else f">= {low:g}"
    upper = f"< {high:g}" if high_open else f"<= {high:g}"
    if low_open or high_open:
        allowed = f"use a number {lower} and {upper}"
    else:
        allowed = f"use a number between {low:g} and {high:g}"

    def check(name: str, value: Any) -> float:
        if not _is_real(value):
            raise bad_value(name, value, "is not a number", allowed)
        above = low < value if low_open else low <= value
        below = value < high if high_open else value <= high
        if not (above and below):  # also catches NaN
            raise bad_value(name, value, "is out of range", allowed)
        return float(value)

    return check


def text(optional: bool = False) -> Check:
    """A check for a non-empty str (a path-like object becomes str); None too when optional."""
    allowed = "use a non-empty path or name" + (" (or None)" if optional else "")

    def check(name: str, value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value:
            raise bad_value(name, value, "is not valid", allowed)
        return value

    return check


def choice(options: tuple[str, ...], aliases: dict[str, str] | None = None) -> Check:
    """A check for one of `options` (case-insensitive; `aliases` map other spellings onto options)."""
    aliases = aliases or {}

    def check(name: str, value: Any) -> str:
        key = value.lower() if isinstance(value, str) else value
        key = aliases.get(key, key) if isinstance(key, str) else key
        if key in options:
            return key
        allowed = f"use one of {', '.join(options)}"
        hint = did_you_mean(key, options) if isinstance(key, str) else ""
        raise bad_value(name, value, "is not valid", f"{allowed}.{hint}" if hint else allowed)

    return check


def imgsz(name: str, value: Any) -> int | tuple[int, int]:
    """An int or an (h, w) pair of positive ints, each rounded up to a multiple of 32."""
    allowed = f"use a whole number from 1 to {MAX_IMGSZ} or (h, w), e.g. imgsz=640 or imgsz=640,480"
    if _is_int(value):
        sizes = [value]
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_int, value)):
        sizes = list(value)
    else:
        raise bad_value(name, value, "is not valid", allowed)
    if min(sizes) < 1 or max(sizes) > MAX_IMGSZ:
        raise bad_value(name, value, "is out of range", allowed)
    rounded = [round_up(int(s)) for s in sizes]
    return rounded[0] if len(rounded) == 1 else (rounded[0], rounded[1])


def device(name: str, value: Any) -> str:
    """auto, cpu, cuda, cuda:N or mps; an int N (or the text "N") means cuda:N."""
    allowed = "use auto, cpu, cuda, cuda:N (or just N) or mps"
    if _is_int(value):
        if value < 0:
            raise bad_value(name, value, "is not valid", allowed)
        return f"cuda:{int(value)}"
    if not isinstance(value, str):
        raise bad_value(name, value, "is not valid", allowed)
    spelled = value.strip().lower()
    if spelled.isdigit():
        return f"cuda:{int(spelled)}"
    if not _DEVICE_RE.match(spelled):
        raise bad_value(name, value, "is not valid", allowed)
    return spelled


def source(name: str, value: Any) -> Any:
    """A path, URL, glob or stream (str), a webcam index (int >= 0), or None (the bundled sample photos).

    Other objects (numpy arrays, PIL images, lists of them) are passed through for the Python API.
    """
    allowed = "use a path, URL, glob or stream, or a webcam index >= 0"
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    fractional = _is_real(value) and not _is_int(value)
    if isinstance(value, bool) or fractional or (isinstance(value, str) and not value):
        raise bad_value(name, value, "is not valid", allowed)
    if _is_int(value):
        if value < 0:
            raise bad_value(name, value, "is not valid", allowed)
        return int(value)
    return value


def classes(name: str, value: Any) -> list[int] | None:
    """None (every class), a class id, or a list/tuple of class ids >= 0; returned as a list."""
    allowed = "use class ids >= 0, e.g. classes=0 or classes=[0,2]"
    if value is None:
        return None
    ids = list(value) if isinstance(value, (list, tuple)) else [value]
    if not ids or not all(_is_int(i) and i >= 0 for i in ids):
        raise bad_value(name, value, "is not valid", allowed)
    return [int(i) for i in ids]
