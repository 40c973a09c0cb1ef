"""Validation of config values, with one message shape everywhere:
``invalid <name>=<value>: must be ... (set <flag>)``, the flag naming where the user sets it."""

from __future__ import annotations

from core.errors import ConfigError


def _fix(flag: str | None) -> str:
    return f" (set {flag})" if flag else ""


def positive(name: str, value: object, *, integer: bool = False, flag: str | None = None) -> None:
    """``value`` is a positive integer (``integer``) or a positive number; bools are neither."""
    if isinstance(value, bool):
        ok = False
    elif integer:
        ok = isinstance(value, int) and value > 0
    else:
        ok = isinstance(value, (int, float)) and value > 0
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"invalid {name}={value!r}: must be {kind}{_fix(flag)}")


def in_range(name: str, value: object, lo: float, hi: float, *, flag: str | None = None, hint: str = "") -> None:
    """``lo <= value <= hi`` for a number ``value``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"invalid {name}={value!r}: must be in [{lo:g}, {hi:g}]{hint}{_fix(flag)}")


def open_fraction(name: str, value: object, *, flag: str | None = None) -> None:
    """``0 < value < 1``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
        raise ConfigError(f"invalid {name}={value!r}: must be in (0, 1){_fix(flag)}")
