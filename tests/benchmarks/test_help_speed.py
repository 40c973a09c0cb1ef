"""How fast the command line answers ``--help``, ``--version`` and a subcommand's ``--help``
(pytest-benchmark; deselected by default; issue 37 asks for under 1 s).

Run: ``python -m pytest tests/benchmarks/test_help_speed.py --run-benchmarks``. Each round starts
a fresh interpreter (``python -m sapabench ...``), as a user's shell does; the median is the
figure to report, beside the machine. ``tests/test_cli.py`` checks, without timing, that
answering them imports no torch.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

ARGS = {"help": ["--help"], "version": ["--version"], "run-help": ["run", "--help"], "bad-option": ["run", "--nope"]}


@pytest.mark.parametrize("case", sorted(ARGS))
def test_help_answers(benchmark, case):
    def answer() -> int:
        return subprocess.run(
            [sys.executable, "-m", "sapabench", *ARGS[case]], capture_output=True, check=False
        ).returncode

    code = benchmark.pedantic(answer, rounds=7, warmup_rounds=1, iterations=1)
    assert code == (2 if case == "bad-option" else 0)
    benchmark.extra_info.update(command="sapabench " + " ".join(ARGS[case]))
