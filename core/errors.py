"""User-facing errors.

A :class:`ConfigError` is raised for every problem a user can fix by changing what they
passed (a name, a number, a path, a file). Its message names the field and the fix; the CLI
prints it on one line and exits with status 2, without a traceback.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input: an unknown name, a value out of range, a missing or corrupt file."""


class UnknownNameError(ConfigError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
