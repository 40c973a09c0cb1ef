"""The harness on CUDA (marked ``gpu``: skipped without a GPU, run where one is lent).

Crafting and training on the GPU, deterministic mode giving identical values twice (what exact
verification of GPU entries relies on), bf16 autocast training, and the bounded-memory SAPA
objective's peak memory measured by the CUDA allocator.
"""

from __future__ import annotations

import pytest
import torch

from sapabench.attacks import create_attack
from sapabench.attacks.sapa import mean_loss_terms, worst_case_weights
from sapabench.benchmark.suite import parse_suite
from sapabench.benchmark.trial import DONE, Trial, run_trial
from sapabench.core.datasets import DataSource
from sapabench.core.numerics import Numerics
from sapabench.victims.archs import ARCHS

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
        # error-min, error-max and Sleeper Agent list one norm per SAPA stage; gradient matching has one
        norms = poison.extra.get("sapa_v_norms") or [poison.extra["sapa_v_norm"]]
        assert norms[0] == pytest.approx(0.05, rel=1e-4)


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


RECIPE_NAMES = ("sgd", "adam", "cutout", "mixup", "sam", "adversarial")


def _weights(trainer):
    return torch.cat([t.detach().float().flatten() for t in trainer.model.state_dict().values()])


@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_graph_steps_equal_eager_steps(digits, recipe):
    """Two epochs (every batch size captured and replayed) give the eager trainer's weights."""
    from sapabench.core.runtime import deterministic_algorithms, seeded
    from sapabench.victims.recipes import RECIPES
    from sapabench.victims.train import Trainer

    rec = RECIPES.create(recipe, epochs=4, batch_size=64)
    out = {}
    for step in ("eager", "graph"):
        with deterministic_algorithms(True), seeded(0, torch.device("cuda")):
            trainer = Trainer("convnet", rec, digits, None, 0, torch.device("cuda"), step=step)
            losses = [trainer.run_epoch()[0].loss for _ in range(2)]
        assert trainer.step_mode == step and trainer.fallback is None
        out[step] = (_weights(trainer), losses)
    (w_eager, l_eager), (w_graph, l_graph) = out["eager"], out["graph"]
    diff = float((w_eager - w_graph).abs().max())
    print(
        f"\n{recipe}: graph vs eager after 2 epochs, max |weight difference| {diff:.3g}, losses {l_eager} / {l_graph}"
    )
    assert torch.allclose(w_eager, w_graph, rtol=1e-4, atol=1e-5)
    assert l_eager == pytest.approx(l_graph, rel=1e-4)


def test_packed_victims_equal_victims_trained_alone(digits):
    from sapabench.core.runtime import deterministic_algorithms
    from sapabench.victims.recipes import RECIPES
    from sapabench.victims.train import VictimSpec, train_packed, train_victim

    rec = RECIPES.create("sgd", epochs=3)
    specs = [VictimSpec("convnet", rec, digits, seed=s) for s in (0, 1, 2)]
    with deterministic_algorithms(True):
        packed = train_packed(specs, device="cuda")
        alone = [train_victim("convnet", rec, digits, seed=s, device="cuda") for s in (0, 1, 2)]
    for p, a in zip(packed, alone, strict=True):
        assert p.timing.step == "graph" and p.timing.packed == 3
        assert p.losses == a.losses and p.clean_accuracy == a.clean_accuracy
        for (k, v), w in zip(p.model.state_dict().items(), a.model.state_dict().values(), strict=True):
            assert torch.equal(v, w), k


def test_dp_sgd_trains_in_a_graph(digits):
    """The DP-SGD defense's gradient transform (clipping, Gaussian noise from torch's generator)
    is captured with the step."""
    from sapabench.defenses.training import GradientShaping
    from sapabench.victims.train import train_victim

    res = train_victim(
        "convnet",
        "sgd",
        digits,
        seed=0,
        device="cuda",
        grad_transform=GradientShaping().gradient_transform(),
        step="graph",
    )
    assert res.timing.step == "graph" and res.timing.fallback is None
    assert res.clean_accuracy > 0.5
