"""Folders the harness writes into and may clean up: only ever what it wrote itself.

An output folder (a run's ``leaderboard/entries``, a rendered leaderboard) can also hold a
user's files, and a folder reached through a symbolic link can be anywhere. So a writer records
every file it writes, by name and sha256, in the folder's :data:`OWNED_FILE`; removing a stale
file (one the writer no longer produces) is allowed only when the file is listed there and its
bytes are still the ones written. Anything else is left where it is. Folders that are links are
refused before anything is written.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from sapabench.core.atomic import file_sha256, write_json
from sapabench.core.errors import ConfigError
from sapabench.core.files import read_json

OWNED_FILE = ".sapabench-written"
"""The record of the files a harness writer wrote into a folder: JSON ``{name: sha256}``."""


PROJECT_MARKERS = (".git", "pyproject.toml", "setup.py", ".hg")
"""What marks a folder as a source checkout or a project root: the harness never writes its
results straight into one without ``--force-out`` (``--out .`` in a checkout of sapabench would
write entries into its ``leaderboard/`` package)."""


def check_out(out: str | Path, option: str = "--out", force: bool = False) -> Path:
    """``out`` as an output folder the harness may write into, refused in one line where it is
    the file system's root, the user's home, or a source checkout / project root
    (:data:`PROJECT_MARKERS`) unless ``force``; the real path."""
    path = Path(out).expanduser()
    real = path.resolve()
    if real == Path(real.anchor):
        raise ConfigError(f"{option} {out} is the file system's root: choose a folder of its own, e.g. runs/NAME")
    if force:
        return path
    if real == Path.home().resolve():
        raise ConfigError(
            f"{option} {out} is your home folder: choose a folder of its own (e.g. ~/sapabench-runs/NAME)"
        )
    marker = next((m for m in PROJECT_MARKERS if (real / m).exists()), None)
    if marker is not None:
        raise ConfigError(
            f"{option} {out} is a source checkout or project root (it holds {marker}): the harness writes results "
            f"only into a folder of their own; choose e.g. {path / 'runs'}, or pass --force-out to write there anyway"
        )
    return path


def own_folder(folder: Path, what: str) -> Path:
    """Create ``folder`` (and its parents) if needed; refuse it if it, or a parent inside the run,
    is a symbolic link or not a folder."""
    if folder.is_symlink():
        raise ConfigError(
            f"{folder}: the {what} is a symbolic link; sapabench writes only into real folders: remove the link"
        )
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: the {what} is a file, not a folder; move it away or choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _recorded(folder: Path) -> dict[str, str]:
    path = folder / OWNED_FILE
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        data = read_json(path, "record of written files")
    except ConfigError:
        return {}  # unreadable: nothing counts as ours, so nothing is removed
    return (
        {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}
    )


def _ours(path: Path, digest: str | None) -> bool:
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    return digest is not None and stat.S_ISREG(mode) and file_sha256(path) == digest


def replace_owned(folder: Path, written: Iterable[Path]) -> list[Path]:
    """After a writer wrote ``written`` into ``folder``: remove the files it wrote before and no
    longer writes (still byte-identical to what it wrote), record ``written`` as its files, and
    return the files it left alone (in the folder, not written by it)."""
    recorded = _recorded(folder)
    keep = {p.name: file_sha256(p) for p in written}
    for name, digest in recorded.items():
        path = folder / name
        if name not in keep and Path(name).name == name and _ours(path, digest):
            path.unlink()
    write_json(folder / OWNED_FILE, keep)
    return sorted(
        p for p in folder.iterdir() if p.name not in keep and p.name != OWNED_FILE and not p.name.startswith(".")
    )


LOCK_FILE = ".sapabench.lock"
"""The lock file a ``sapabench run`` holds in its output folder while it runs."""


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s run lock for the block; a second holder is refused with who holds it.

    A POSIX record lock (``lockf``), not ``flock``: it belongs to this process alone, so worker
    processes forked while it is held do not inherit it, and the kernel releases it the moment
    this process ends, however it ends (a ``flock`` would live on in a forked worker until that
    worker died)."""
    own_folder(folder, "run folder")
    path = folder / LOCK_FILE
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link; remove it")
    if fcntl is None:  # no POSIX locks (Windows): runs into one folder are not guarded
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise ConfigError(
                f"{folder} is in use by another sapabench run ({holder}); wait for it to end or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0
        )
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with the next holder)


@contextmanager
def one_at_a_time(path: Path) -> Iterator[None]:
    """Wait for, then hold, the lock file ``path`` for the block: processes that would each do
    the same expensive work (train the same cached surrogate) do it one after the other, so the
    second finds the first's result. A POSIX record lock, as :func:`exclusive` explains: released
    by the kernel when its process ends, however it ends. The lock file stays."""
    if fcntl is None:  # no POSIX locks (Windows): the work may be done twice, never wrongly
        yield
        return
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link; remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
