"""Turn raw values (command-line strings, JSON, TOML, GUI widgets) into typed option values."""

from __future__ import annotations

import ast
import math
import shlex
from typing import Any, Callable

from ..errors import UserError
from .schema import Option

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError(f"{raw!r} is not true or false")


def _parse_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a whole number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        raw = raw.strip()
        try:
            return int(raw)
        except ValueError:
            pass
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r} is not a whole number") from None
    if not number.is_integer():
        raise ValueError(f"{raw!r} is not a whole number")
    return int(number)


def _parse_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a number")
    try:
        number = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{raw!r} is not a number") from None
    # NaN passes every range check and inf overflows later; neither is ever meant.
    if not math.isfinite(number):
        raise ValueError(f"{raw!r} is not a finite number")
    return number


def _parse_list(raw: Any) -> list[str]:
    if isinstance(raw, (list, tuple)):
        return [str(item) for item in raw]
    if isinstance(raw, str):
        return shlex.split(raw)
    raise ValueError(f"{raw!r} is not a list of key=value texts")


def normalize_resolution(raw: Any) -> str:
    """512 -> "512"; "768, 512" / [768, 512] -> "768,512"."""
    if isinstance(raw, (list, tuple)):
        raw = ",".join(str(part) for part in raw)
    text = str(raw).replace(" ", "").strip("()[]")
    return text


_PARSERS: dict[type, Callable[[Any], Any]] = {bool: parse_bool, int: _parse_int, float: _parse_float, list: _parse_list, str: str}
_NORMALIZERS = {"resolution": normalize_resolution}


def coerce(option: Option, raw: Any) -> Any:
    """Return the typed value for `raw`, or raise UserError naming the option."""
    if raw is None or (isinstance(raw, str) and raw.strip() == "" and option.type is not str):
        if option.type is list:
            return []
        if option.type is bool and raw is not None:
            return False
        if option.nullable:
            return None
        raise UserError(f"needs a value (default: {option.default!r})", option=option.name)
    if option.type is str and isinstance(raw, str) and raw.strip() == "" and option.nullable:
        return None
    try:
        value = _PARSERS[option.type](raw)
    except ValueError as err:
        raise UserError(str(err), option=option.name) from None
    if option.name in _NORMALIZERS:
        value = _NORMALIZERS[option.name](value)
    if option.choices is not None:
        value = _match_choice(option, option.choices, value)
    _check_range(option, value)
    return value


def _match_choice(option: Option, choices: tuple, value: Any) -> Any:
    for choice in choices:
        if value == choice or (isinstance(value, str) and str(choice).lower() == value.lower()):
            return choice
    allowed = ", ".join(str(c) for c in choices)
    raise UserError(f"{value!r} is not one of: {allowed}", option=option.name)


def _check_range(option: Option, value: Any) -> None:
    if option.type not in (int, float):
        return
    if option.minimum is not None and value < option.minimum:
        raise UserError(f"{value} is below the minimum {_fmt(option.minimum)}",
                        option=option.name)
    if option.maximum is not None and value > option.maximum:
        raise UserError(f"{value} is above the maximum {_fmt(option.maximum)}",
                        option=option.name)


def allowed_values(option: Option) -> str | None:
    """'use a value from 0 to 1', 'use 0 or more', 'use one of: ...'; None when any value goes."""
    low, high = option.minimum, option.maximum
    if option.choices is not None:
        return "use one of: " + ", ".join(str(c) for c in option.choices)
    if low is not None and high is not None:
        return f"use a value from {_fmt(low)} to {_fmt(high)}"
    if low is not None:
        return f"use {_fmt(low)} or more"
    if high is not None:
        return f"use {_fmt(high)} or less"
    return None


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def parse_key_values(items: list[str], option_name: str) -> dict[str, str]:
    """["weight_decay=0.01", "betas=0.9,0.99"] -> {"weight_decay": "0.01", ...}."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{item!r} is not key=value (e.g. weight_decay=0.01)",
                            option=option_name)
        result[key.strip()] = value.strip()
    return result


def literal(text: str):
    """'0.01' -> 0.01, '0.9,0.99' -> (0.9, 0.99), 'True' -> True, other text stays text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def is_finite_value(value) -> bool:
    """False for NaN or infinity, also spelled as text or inside a tuple."""
    if isinstance(value, (tuple, list)):
        return all(is_finite_value(item) for item in value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return True
    if isinstance(value, float):
        return math.isfinite(value)
    return True
