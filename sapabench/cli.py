"""The ``sapabench`` command's entry point: ``--version`` answers without importing torch (a
second instead of five); everything else runs :func:`sapabench.benchmark.cli.main`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        from sapabench import __version__

        print(f"sapabench {__version__}")
        return 0
    from sapabench.benchmark.cli import main as run

    return run(argv)
