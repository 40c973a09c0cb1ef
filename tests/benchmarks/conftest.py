"""Fixtures of the benchmarks."""

from __future__ import annotations

import pytest

from sapabench.core.datasets import load_dataset
from tests._fakedata import write_cifar10


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """50,000 random 32x32 training images (and 1,000 test) in CIFAR-10's on-disk format:
    accuracy means nothing on them, timings are real."""
    root = write_cifar10(tmp_path_factory.mktemp("cifar"), n_per_batch=10000, n_test=1000)
    return load_dataset("cifar10", data_root=str(root), verify_checksums=False)
