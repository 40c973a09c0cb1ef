"""Paper-scale smoke check (marked ``slow``: ``python -m pytest --run-slow -k paper_scale -s``).

Every SAPA attack with its ``paper`` preset (eps, budget, ResNet-18 surrogate) on a synthetic
CIFAR-shaped dataset written in CIFAR-10's on-disk format (2,000 training images), with the
step counts cut down and a one-epoch surrogate: each crafts a valid poison with one SAPA step of
norm rho, and the memory autograd held at its peak is printed (what the bounded-memory SAPA
objectives keep flat: the untargeted step over all 2,000 images holds one 512-image chunk).
A few minutes on 2 CPU cores; on a GPU pass ``SAPABENCH_TEST_DEVICE=cuda``.
"""

from __future__ import annotations

import os

import pytest

from sapabench.attacks import create_attack
from sapabench.attacks.surrogate import SurrogateSpec
from sapabench.core.datasets import load_dataset
from sapabench.core.memory import peak_saved_bytes
from tests._fakedata import write_cifar10

CUT = {
    "sapa-gradient-matching": dict(steps=2, restarts=1),
    "sapa-sleeper-agent": dict(steps=2, retrainings=1),
    "sapa-error-min": dict(max_rounds=1, model_steps=1, pgd_steps=1),
    "sapa-error-max": dict(steps=1),
}


@pytest.fixture(scope="module")
def cifar_shaped(tmp_path_factory):
    root = write_cifar10(tmp_path_factory.mktemp("cifar"), n_per_batch=400, n_test=200)
    return load_dataset("cifar10", data_root=str(root), verify_checksums=False)


@pytest.mark.slow
@pytest.mark.parametrize("attack", sorted(CUT))
def test_paper_preset_crafts_a_valid_poison_at_cifar_shape(cifar_shaped, attack, tmp_path, monkeypatch):
    monkeypatch.setenv("SAPABENCH_CACHE", str(tmp_path.parent / "paper-scale-cache"))
    device = os.environ.get("SAPABENCH_TEST_DEVICE", "cpu")
    surrogate = SurrogateSpec("resnet18", "sgd", epochs=1)
    a = create_attack(attack, dataset="cifar10", preset="paper", surrogate=surrogate, **CUT[attack])
    out = {}

    def craft():
        out["poison"] = a.run(cifar_shaped, seed=0, device=device)

    if attack == "sapa-sleeper-agent":  # its gradient-norm selection uses torch.func, which refuses
        craft()  # saved-tensor hooks: crafted, its memory not measured
        memory = "peak memory not measured (torch.func selection)"
    else:
        memory = f"peak saved for backward {peak_saved_bytes(craft) / 2**20:.0f} MB"
    poison = out["poison"]
    poison.validate(cifar_shaped)
    assert poison.eps == a.config.eps and 1 <= poison.num_poisons <= a.config.budget * cifar_shaped.num_train
    norms = poison.extra.get("sapa_v_norms") or [poison.extra["sapa_v_norm"]]
    assert all(v == pytest.approx(0.05, rel=1e-4) for v in norms)
    print(f"\n{attack} (paper preset, cut): {poison.num_poisons} poisons, {memory}")
