"""Shared fixtures and the marker policy: ``slow`` and ``tests/benchmarks`` are deselected
unless asked for (``--run-slow``, ``--run-benchmarks``); ``gpu`` tests skip without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

BENCH_DIR = Path(__file__).parent / "benchmarks"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    parser.addoption(
        "--run-benchmarks", action="store_true", help="run the pytest-benchmark timings in tests/benchmarks"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        is_bench = BENCH_DIR in Path(str(item.fspath)).parents
        if is_bench:
            item.add_marker(pytest.mark.benchmark_suite)
        if (is_bench and not config.getoption("--run-benchmarks")) or (
            item.get_closest_marker("slow") and not config.getoption("--run-slow")
        ):
            drop.append(item)
        else:
            keep.append(item)
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Surrogates trained by tests go to a throw-away cache, not the user's."""
    import os

    old = os.environ.get("SAPABENCH_CACHE")
    os.environ["SAPABENCH_CACHE"] = str(tmp_path_factory.mktemp("sapabench-cache"))
    yield
    if old is None:
        os.environ.pop("SAPABENCH_CACHE", None)
    else:
        os.environ["SAPABENCH_CACHE"] = old


@pytest.fixture(scope="session")
def digits():
    from sapabench.core.datasets import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def tiny_digits(digits):
    """200 training and 100 test images of digits, for fast training tests."""
    from dataclasses import replace

    return replace(
        digits,
        train_x=digits.train_x[:200],
        train_y=digits.train_y[:200],
        test_x=digits.test_x[:100],
        test_y=digits.test_y[:100],
        fingerprint="",
    )


@pytest.fixture(scope="session")
def smoke_cli(tmp_path_factory):
    """The smoke suite run once from the CLI, then its claims checked (which re-renders the page
    with the verdicts): (results folder, run's stdout, run's stderr, claims' stdout)."""
    import contextlib
    import io

    from sapabench.benchmark.cli import main

    out = tmp_path_factory.mktemp("smoke-run") / "smoke"
    streams = []
    for argv in (
        ["run", "--suite", "smoke", "--out", str(out), "--device", "cpu"],
        ["claims", "--results", str(out)],
    ):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            assert main(argv) == 0, stderr.getvalue()
        streams.append((stdout.getvalue(), stderr.getvalue()))
    return out, streams[0][0], streams[0][1], streams[1][0]
