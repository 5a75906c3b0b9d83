"""Command-line tokens → a mode's typed arguments (the `key=value` grammar and value coercion).

After the mode, every token is `key=value`, or a bare `key` for a boolean argument (meaning True).
1. `merge_tokens` rejoins what the shell split: `k = v`, `k= v`, `k =v`, and bracket fragments
   (`imgsz=[640,` `480]` → `imgsz=[640,480]`); an unmatched bracket is an error.
2. Each token loses a leading `--` and a trailing `,`, and is split at its first `=`.
3. `smart_value`: none/true/false (any case) → None/True/False; else a Python literal by `ast.literal_eval`
   (never eval): numbers, lists, tuples (`640,480` → (640, 480)), quoted strings; else the text itself.
4. Arguments that take text (model, source, data, name, project, device, ...) keep the typed text when the
   literal's type does not fit them: `name=123` → "123", `source=1e2` → "1e2", `device=0,1` → "0,1";
   `source=0` stays webcam 0 and `name=none` is None.
5. `cfg=file.yaml` loads more arguments from YAML: a flat mapping, or one section per mode as printed by
   `yolo-nas cfg`. Keys given on the command line win.
The mode's dataclass then validates every value (see `yolonas_cli.cfg`).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from yolonas_cli.cfg import (
    MODES,
    CommonArgs,
    arg_fields,
    args_class,
    check_keys,
    example_value,
    is_bool_field,
    unknown_key_message,
)
from yolonas_cli.core.errors import UsageError
from yolonas_cli.core.paths import expand_user

_OPEN, _CLOSE = "[(", "])"
_WORDS = {"none": None, "true": True, "false": False}


def _join_equals(tokens: Sequence[str]) -> list[str]:
    """Rejoin `k = v`, `k= v` and `k =v` into `k=v`."""
    out: list[str] = []
    for token in tokens:
        glue_to_key = out and token.startswith("=") and "=" not in out[-1]  # `k` + `=v` or `=`
        glue_value = out and out[-1].endswith("=") and "=" not in token  # `k=` + `v`
        if glue_to_key or glue_value:
            out[-1] += token
        else:
            out.append(token)
    return out


def _depth(text: str) -> int:
    return sum(text.count(c) for c in _OPEN) - sum(text.count(c) for c in _CLOSE)


def _join_brackets(tokens: Sequence[str]) -> list[str]:
    """Rejoin bracket fragments the shell split: `imgsz=[640,` `480]` → `imgsz=[640,480]`."""
    out: list[str] = []
    pending = ""
    for token in tokens:
        pending += token
        depth = _depth(pending)
        if depth < 0:
            raise UsageError(f"'{pending}' has an unmatched ']' or ')'")
        if depth == 0:
            out.append(pending)
            pending = ""
    if pending:
        raise UsageError(f"'{pending}' has an unmatched '[' or '('")
    return out


def merge_tokens(tokens: Sequence[str]) -> list[str]:
    """Rejoin the `key=value` tokens that the shell split at spaces."""
    return _join_brackets(_join_equals(tokens))


def smart_value(text: str) -> Any:
    """none/true/false (any case) → None/True/False; a Python literal → its value; else the text."""
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def split_token(token: str) -> tuple[str, str | None]:
    """`--key=value,` → ("key", "value"); a bare `key` → ("key", None)."""
    token = token[2:] if token.startswith("--") else token
    token = token[:-1] if token.endswith(",") else token
    if "=" not in token:
        return token.strip(), None
    key, _, raw = token.partition("=")
    if not key.strip():
        raise UsageError(f"'{token}' has no key: use key=value")
    return key.strip(), raw.strip()


def _fit_text(field: Any, value: Any, raw: str) -> Any:
    """For a text argument, the typed text when the literal's type does not fit (`name=123` → "123")."""
    kinds = field.metadata["text_types"]
    if kinds and value is not None and type(value) not in kinds:
        return raw
    return value


def _token_value(mode: str, key: str, raw: str | None) -> Any:
    """The value of one known `key` (raw is None for a bare token)."""
    if raw is None and is_bool_field(mode, key):
        return True
    if not raw:
        raise UsageError(f"'{key}' needs a value, e.g. {key}={example_value(mode, key)}")
    return _fit_text(arg_fields(mode)[key], smart_value(raw), raw)


def parse_overrides(mode: str, tokens: Sequence[str]) -> tuple[dict[str, Any], str | None]:
    """The arguments given on the command line (key → value) and the `cfg=` file, if any."""
    args_class(mode)  # an unknown mode fails here
    valid = arg_fields(mode)
    overrides: dict[str, Any] = {}
    cfg_file: str | None = None
    for token in merge_tokens(tokens):
        key, raw = split_token(token)
        if key == "cfg":
            if not raw:
                raise UsageError("'cfg' needs a value, e.g. cfg=my_args.yaml")
            cfg_file = None if raw.lower() == "none" else raw
        elif key not in valid:
            raise UsageError(unknown_key_message(mode, key))
        else:
            overrides[key] = _token_value(mode, key, raw)
    return overrides, cfg_file


def _read_yaml(path: str) -> Any:
    import yaml  # lazy: only `cfg=` needs it

    from yolonas_cli.core import safe_yaml

    file = expand_user(path)
    if not file.is_file():
        raise UsageError(f"cfg={path}: no such file")
    try:
        return safe_yaml.read(file)  # bounded: an alias bomb is refused before it is built
    except safe_yaml.YamlTooBig as exc:
        raise UsageError(f"cfg={path} is refused: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cfg={path} is not valid YAML: {first}") from None


def load_cfg_file(mode: str, path: str) -> dict[str, Any]:
    """The arguments of `mode` in a YAML file (flat, or with one section per mode); keys are checked."""
    data = _read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"cfg={path} must hold a mapping of key: value")
    if data and all(key in MODES for key in data):
        data = data.get(mode) or {}
        if not isinstance(data, dict):
            raise UsageError(f"cfg={path}: the '{mode}' section must hold a mapping of key: value")
    values = {str(key): value for key, value in data.items() if key != "cfg"}
    check_keys(mode, values, where=f" (in {path})")
    fields = arg_fields(mode)
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[key] = _fit_text(fields[key], value, str(value))
    return values


def parse_args(mode: str, tokens: Sequence[str]) -> CommonArgs:
    """The validated arguments of `mode` from command-line tokens (UsageError on any mistake)."""
    overrides, cfg_file = parse_overrides(mode, tokens)
    values = load_cfg_file(mode, cfg_file) if cfg_file else {}
    values.update(overrides)
    return args_class(mode)(**values)
