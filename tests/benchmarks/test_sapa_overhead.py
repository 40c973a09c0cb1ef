"""Cost of the SAPA step in gradient matching (pytest-benchmark; deselected by default).

Run: ``python -m pytest tests/benchmarks --run-benchmarks``. A "step" is what one crafting
iteration of Witches' Brew costs after the target gradient is known (one matching-loss step on
the poisons), plus the target gradient itself: plain, or at theta + v_hat (SAPA, one extra
gradient). ``test_sapa_overhead_ratio`` reports SAPA / baseline in ``extra_info``.
"""

from __future__ import annotations

import timeit

import pytest
import torch
from torch import nn

from sapabench.attacks._matching import _flat_norm, differentiable_augment, matching_loss
from sapabench.attacks.sapa import objective_gradient
from sapabench.victims.archs import build_model

N_POISONS = 143  # 10% of digits' training set, the embedded budget


@pytest.fixture(scope="module")
def setup(digits):
    torch.manual_seed(0)
    model = build_model("convnet", digits).eval()
    x_t, y_t = digits.test_x[:1], torch.tensor([0])
    x_p, y_p = digits.train_x[:N_POISONS], digits.train_y[:N_POISONS]
    delta = torch.zeros_like(x_p).requires_grad_(True)
    augment = differentiable_augment(0.125, False)

    def step(rho: float | None) -> None:
        target, _ = objective_gradient(model, lambda: nn.functional.cross_entropy(model(x_t), y_t), rho)
        loss = matching_loss(model, x_p + delta, y_p, target, _flat_norm(target), augment)
        torch.autograd.grad(loss, delta)

    return step


@pytest.mark.parametrize("sapa", [False, True], ids=["baseline", "sapa"])
def test_gradient_matching_step(benchmark, setup, sapa):
    benchmark.pedantic(setup, args=(0.05 if sapa else None,), rounds=10, warmup_rounds=2, iterations=1)
    benchmark.extra_info.update(sapa=sapa, poisons=N_POISONS, threads=torch.get_num_threads())


def test_sapa_overhead_ratio(benchmark, setup):
    base = min(timeit.repeat(lambda: setup(None), number=3, repeat=5)) / 3
    sapa = min(timeit.repeat(lambda: setup(0.05), number=3, repeat=5)) / 3
    benchmark.pedantic(setup, args=(0.05,), rounds=3, iterations=1)
    benchmark.extra_info.update(baseline_step_s=base, sapa_step_s=sapa, sapa_overhead_ratio=sapa / base)
    assert base > 0 and sapa > 0
