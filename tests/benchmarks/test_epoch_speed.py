"""One training epoch of every architecture (pytest-benchmark; deselected by default).

Run: ``python -m pytest tests/benchmarks --run-benchmarks``. Each round is one epoch of the
``sgd`` recipe (crop augmentation, batch 64) over 512 digits images at 16x16, on the device
the harness would pick (CUDA when available).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sapabench.core.runtime import resolve_device
from sapabench.victims.archs import ARCHS
from sapabench.victims.recipes import RECIPES
from sapabench.victims.train import Trainer

N_IMAGES = 512


@pytest.fixture(scope="module")
def small_digits(digits):
    return replace(digits, train_x=digits.train_x[:N_IMAGES], train_y=digits.train_y[:N_IMAGES], fingerprint="")


@pytest.mark.parametrize("arch", ARCHS.list())
def test_one_epoch(benchmark, small_digits, arch):
    device = resolve_device("auto")
    torch.manual_seed(0)
    trainer = Trainer(arch, RECIPES.create("sgd", epochs=1000, batch_size=64), small_digits, None, 0, device)
    trainer.run_epoch()  # warm-up: allocator, kernels, lazy init
    stats, count = benchmark.pedantic(trainer.run_epoch, rounds=3, iterations=1)
    benchmark.extra_info.update(
        arch=arch,
        device=str(device),
        images=count,
        images_per_s=round(count / benchmark.stats.stats.mean, 1),
        threads=torch.get_num_threads(),
    )
    assert count == N_IMAGES and stats.loss == stats.loss  # a real epoch ran (loss is not NaN)
