"""The ``sapabench`` command's entry point. Arguments are parsed by
:mod:`sapabench.benchmark.parser`, which imports no torch, so ``--help``, ``--version`` and a
mistyped option answer in a fraction of a second; only a command that runs imports the harness
(:func:`sapabench.benchmark.cli.dispatch`)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from sapabench.benchmark.parser import build_parser

    args = build_parser().parse_args(argv)
    from sapabench.benchmark.cli import dispatch

    return dispatch(args)
