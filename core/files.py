"""Reading files someone else may have made: only regular files, bounded in size, parsed with
one-line errors.

A submission, a run folder or a suite can hold anything: a FIFO or ``/dev/zero`` behind a
symbolic link (reading never ends), a gigabyte of JSON, 200,000 nested arrays (the parser's
recursion overflows), a 5,000-digit integer (Python refuses to convert it), invalid UTF-8 or a
key given twice (JSON's last one silently wins). Every harness read of such a document goes
through :func:`read_bytes` and :func:`parse_json` / :func:`parse_toml`, which turn each of these
into a :class:`~sapabench.core.errors.ConfigError` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from sapabench.core.errors import ConfigError

MAX_DOCUMENT_BYTES = 16 << 20
"""The largest JSON or TOML document read (an entry is a few kB; a manifest of thousands of
entries well under a MB)."""


def regular_file(path: str | Path, what: str, cap: int) -> int:
    """The size of ``path`` if it is a regular file (not a link, FIFO, device or folder) of at
    most ``cap`` bytes; otherwise a one-line :class:`ConfigError` naming it."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what} ({err.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"{path}: the {what} is a symbolic link; only regular files are read (copy the file in)")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: the {what} is not a regular file (a folder, FIFO or device); replace it")
    if info.st_size > cap:
        raise ConfigError(f"{path}: the {what} is {info.st_size} bytes, over the limit of {cap}")
    return info.st_size


def read_bytes(path: str | Path, what: str, cap: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``cap`` bytes (:func:`regular_file`)."""
    regular_file(path, what, cap)
    try:  # O_NOFOLLOW | O_NONBLOCK: a file swapped for a link or FIFO since lstat is refused, not waited on
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what} ({err.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ConfigError(f"{path}: the {what} is not a regular file; replace it")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise ConfigError(f"{path}: the {what} is over the limit of {cap} bytes")
    return data


def decode_text(data: bytes | str, where: str, what: str) -> str:
    """``data`` as UTF-8 text, or a one-line :class:`ConfigError` naming ``where``."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: the {what} is not UTF-8 text (byte {err.start})") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def parse_json(data: bytes | str, where: str, what: str = "JSON document") -> Any:
    """``data`` as JSON (no duplicate keys), or a one-line :class:`ConfigError` naming ``where``."""
    text = decode_text(data, where, what)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ConfigError(f"{where}: the {what} nests too deeply to be a sapabench document") from None
    except ValueError as err:  # JSONDecodeError, duplicate keys, integers of thousands of digits
        message = str(err).splitlines()[0]
        raise ConfigError(f"{where}: the {what} is not valid JSON ({message})") from None


def parse_toml(data: bytes | str, where: str, what: str = "TOML file") -> dict[str, Any]:
    """``data`` as TOML, or a one-line :class:`ConfigError` naming ``where``."""
    text = decode_text(data, where, what)
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"{where}: the {what} is over the limit of {MAX_DOCUMENT_BYTES} bytes")
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{where}: the {what} nests too deeply") from None
    except (tomllib.TOMLDecodeError, ValueError) as err:
        message = str(err).splitlines()[0]
        raise ConfigError(f"{where}: not valid TOML ({message})") from None


def read_json(path: str | Path, what: str = "JSON document", cap: int = MAX_DOCUMENT_BYTES) -> Any:
    """The JSON document in the regular file ``path`` (:func:`read_bytes`, :func:`parse_json`)."""
    return parse_json(read_bytes(path, what, cap), str(path), what)


def read_toml(path: str | Path, what: str = "TOML file", cap: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """The TOML document in the regular file ``path``."""
    return parse_toml(read_bytes(path, what, cap), str(path), what)
