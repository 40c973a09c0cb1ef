"""The harness on CUDA (marked ``gpu``: skipped without a GPU, run where one is lent).

Crafting and training on the GPU, deterministic mode giving identical values twice (what exact
verification of GPU entries relies on), bf16 autocast training, and the bounded-memory SAPA
objective's peak memory measured by the CUDA allocator.
"""

from __future__ import annotations

import pytest
import torch

from attacks import create_attack
from attacks.sapa import mean_loss_terms, worst_case_weights
from benchmark.suite import parse_suite
from benchmark.trial import DONE, Trial, run_trial
from core.datasets import DataSource
from core.numerics import Numerics
from victims.archs import ARCHS

pytestmark = pytest.mark.gpu

SUITE = """
name = "gpu"
dataset = "digits"
preset = "smoke"
trials = 1
craft_seeds = [0]
[victim]
epochs = 2
[[grid]]
attacks = ["sapa-error-min"]
recipes = ["sgd"]
archs = ["convnet"]
"""


def test_crafting_on_cuda_gives_a_valid_poison(digits):
    for name in ("sapa-gradient-matching", "sapa-sleeper-agent", "sapa-error-max"):
        poison = create_attack(name, dataset="digits", preset="smoke").run(digits, seed=0, device="cuda")
        poison.validate(digits)
        assert poison.extra["sapa_v_norms"][0] == pytest.approx(0.05, rel=1e-4)


def test_deterministic_mode_gives_identical_values_twice():
    cell = next(c for c in parse_suite(SUITE).cells() if c.poison is None)
    trial = Trial.of(cell, None, DataSource("digits"), "cuda", deterministic=True)
    a, b = run_trial(trial), run_trial(trial)
    assert a.status == DONE and b.status == DONE, (a.error, b.error)
    assert a.metric == b.metric and a.clean_accuracy == b.clean_accuracy
    assert a.provenance["deterministic"] and a.provenance["device"].startswith("cuda")


@pytest.mark.skipif(not torch.cuda.is_available() or not torch.cuda.is_bf16_supported(), reason="no bf16 GPU")
def test_bf16_autocast_training_on_cuda():
    cell = next(c for c in parse_suite(SUITE).cells() if c.poison is None)
    trial = Trial.of(cell, None, DataSource("digits"), "cuda")
    from dataclasses import replace

    record = run_trial(replace(trial, numerics=Numerics("bf16", "channels_last")))
    assert record.status == DONE, record.error
    assert record.clean_accuracy > 0.5


def test_untargeted_sapa_step_memory_is_flat_in_the_set_size():
    model = ARCHS.create("resnet18", in_chans=3, num_classes=10, img_size=32).cuda().eval()

    def peak(n: int) -> int:
        x = torch.rand(n, 3, 32, 32, device="cuda")
        y = torch.randint(0, 10, (n,), device="cuda")
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with worst_case_weights(model, lambda: mean_loss_terms(model, x, y, chunk=256), 0.05):
            pass
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    small, large = peak(1024), peak(8192)
    print(f"\nresnet18 SAPA step peak above inputs: 1,024 images {small / 2**20:.0f} MB, 8,192 {large / 2**20:.0f} MB")
    assert large <= 1.2 * small
