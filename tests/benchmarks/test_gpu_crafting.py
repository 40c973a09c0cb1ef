"""SAPA's crafting cost against its base attack on a GPU, at the paper preset.

Run where a GPU is lent: ``python -m pytest tests/benchmarks/test_gpu_crafting.py --run-benchmarks -s``
(marked ``gpu``). A CIFAR-10-shaped set of 50,000 random 32x32 images in torchvision's on-disk
format stands in for CIFAR-10. ``SAPABENCH_BENCH_JSON`` names a file to add the figures to.

- error-min (paper preset: every training image, M = 10 model steps and T = 20 PGD steps per
  round over all 50,000 images, SAPA's step over all of them each round), ``ROUNDS`` rounds;
- error-max (paper preset but ``ERROR_MAX_STEPS`` PGD steps instead of 250, to fit a lease: SAPA
  adds one full-set gradient per restart, so the ratio at 250 steps is smaller still).

Each pair is crafted base first, then SAPA, with the same seed; ``craft_s`` excludes surrogate
training (error-max's ResNet-18 surrogate is trained for ``SURROGATE_EPOCHS`` epoch and cached).
"""

from __future__ import annotations

import json

import pytest
import torch

from sapabench.attacks import create_attack
from sapabench.attacks.surrogate import SurrogateSpec
from tests.benchmarks._gpu import record

pytestmark = pytest.mark.gpu

ROUNDS = 1
ERROR_MAX_STEPS = 20
SURROGATE_EPOCHS = 1


@pytest.mark.parametrize(
    "base, options",
    [
        ("error-min", dict(max_rounds=ROUNDS, stop_accuracy=1.0)),
        ("error-max", dict(steps=ERROR_MAX_STEPS, surrogate=SurrogateSpec("resnet18", "sgd", epochs=SURROGATE_EPOCHS))),
    ],
)
def test_sapa_over_base_crafting_time(benchmark, cifar, base, options, tmp_path, monkeypatch):
    monkeypatch.setenv("SAPABENCH_CACHE", str(tmp_path.parent / "crafting-cache"))
    seconds = {}
    for name in (base, f"sapa-{base}"):
        poison = create_attack(name, dataset="cifar10", preset="paper", **options).run(cifar, seed=0, device="cuda")
        poison.validate(cifar)  # a timing of a valid poison of the whole set, SAPA's step of norm rho
        assert poison.num_poisons == cifar.num_train
        if name.startswith("sapa-"):
            assert poison.extra["sapa_v_norms"][0] == pytest.approx(0.05, rel=1e-4)
        seconds[name] = poison.craft_s
    ratio = seconds[f"sapa-{base}"] / seconds[base]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    info = {
        "gpu": torch.cuda.get_device_name(),
        "options": {k: str(v) for k, v in options.items()},
        **{f"{k}_craft_s": round(v, 2) for k, v in seconds.items()},
        "sapa_over_base": round(ratio, 3),
    }
    benchmark.extra_info.update(info)
    record(f"crafting_{base}", info)
    print(f"\n{base} vs SAPA at the paper preset on {info['gpu']}: " + json.dumps(info))
