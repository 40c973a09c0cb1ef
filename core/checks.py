"""Validation of config values, with one message shape everywhere:
``invalid <name>=<value>: must be ... (set <flag>)``, the flag naming where the user sets it."""

from __future__ import annotations

import math

from sapabench.core.errors import ConfigError


def shown(value: object, width: int = 60) -> str:
    """``repr(value)`` for a message, cut to ``width`` (an integer of thousands of digits has no
    repr in Python: it is described by its size)."""
    try:
        text = repr(value)
    except ValueError:
        return f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else "<unprintable>"
    return text if len(text) <= width else text[: width - 3] + "..."


def _fix(flag: str | None) -> str:
    return f" (set {flag})" if flag else ""


def positive(
    name: str, value: object, *, integer: bool = False, flag: str | None = None, maximum: float | None = None
) -> None:
    """``value`` is a positive integer (``integer``) or a positive finite number, at most
    ``maximum`` when given; bools are neither."""
    if isinstance(value, bool):
        ok = False
    elif integer:
        ok = isinstance(value, int) and value > 0
    else:
        ok = isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    if ok and maximum is not None:
        ok = value <= maximum  # type: ignore[operator]
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        limit = f" of at most {maximum:g}" if maximum is not None else ""
        raise ConfigError(f"invalid {name}={shown(value)}: must be {kind}{limit}{_fix(flag)}")


def in_range(name: str, value: object, lo: float, hi: float, *, flag: str | None = None, hint: str = "") -> None:
    """``lo <= value <= hi`` for a number ``value``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"invalid {name}={shown(value)}: must be in [{lo:g}, {hi:g}]{hint}{_fix(flag)}")


def open_fraction(name: str, value: object, *, flag: str | None = None) -> None:
    """``0 < value < 1``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
        raise ConfigError(f"invalid {name}={shown(value)}: must be in (0, 1){_fix(flag)}")
