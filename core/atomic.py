"""Atomic file writes (a crash leaves the old file or the new one, never half of one), and the
file digest every artifact check uses."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends
    without an error (and is removed when it raises)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; results and pages are meant to be read by others
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files :func:`replacing` left in ``folder`` when a writer was killed
    before its rename (``.NAME.XXXXXXXX.tmp`` beside a file NAME): only regular files of that
    pattern, the harness's own; the ones removed."""
    removed = []
    for p in folder.glob(".*.tmp"):
        m = TEMPORARY.fullmatch(p.name)
        if m and m.group(1).endswith(RENDERED) and p.is_file() and not p.is_symlink():
            p.unlink()
            removed.append(p)
    return removed


TEMPORARY = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.tmp")
"""The name :func:`replacing` gives a temporary file (``tempfile.mkstemp``'s 8 random characters)."""
RENDERED = (".html", ".png", ".md", ".csv", ".json")
"""What a render writes: the only temporaries :func:`stale_temporaries` removes."""


def write_text(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON with sorted keys (how every sapabench JSON document is written)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
