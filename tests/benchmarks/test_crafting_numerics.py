"""Crafting an untargeted poison on the embedded preset: the default crafting numerics against
plain fp32.

Run: ``python -m pytest tests/benchmarks/test_crafting_numerics.py --run-benchmarks -s``. For
each of Error-Min, Error-Max and their SAPA twins on the whole ``digits`` set, the same poison
(same craft seed) is crafted in plain fp32 (how every poison was crafted before 2026-12-06) and
in the numerics ``auto`` resolves to on this machine (bf16 + channels-last on a CPU with AVX-512
bf16 or AMX: what ``sapabench run`` crafts with), in one run, interleaved, median of
``REPEATS``; every clean surrogate is trained (and cached) before the clock starts, as a suite
shares it between an attack and its SAPA twin.

``extra_info`` reports the medians, ``default_over_fp32`` (the goal: at most 0.6 on a CPU with
bf16 hardware) and Error-Min's rounds (its stopping rule may stop a bf16 crafting at another
round than an fp32 one; ``per_round_default_over_fp32`` compares the arithmetic alone).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
import torch

from sapabench.attacks import create_attack
from sapabench.attacks.surrogate import get_surrogate
from sapabench.core.numerics import FP32, resolve_numerics

REPEATS = 3
SEED = 0


def _base(attack: str) -> str:
    return attack.removeprefix("sapa-")


@pytest.mark.parametrize("attack", ["error-min", "sapa-error-min", "error-max", "sapa-error-max"])
def test_crafting_default_numerics_vs_fp32(benchmark, digits, attack):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    default = resolve_numerics("auto", "auto", device)
    ways: dict[str, tuple[Any, Any]] = {
        "fp32": (create_attack(attack, dataset="digits"), FP32),
        "default": (create_attack(attack, dataset="digits"), default),
    }
    if _base(attack) == "error-max":  # its clean surrogates, trained and cached before any clock
        for a, numerics in ways.values():
            get_surrogate(a.config.surrogate, digits.to(device), SEED, device, True, numerics)
    times: dict[str, list[float]] = {name: [] for name in ways}
    rounds: dict[str, list[int]] = {name: [] for name in ways}
    for _ in range(REPEATS):
        for name, (a, numerics) in ways.items():
            t0 = time.perf_counter()
            poison = a.run(digits, seed=SEED, device=device, numerics=numerics)
            times[name].append(time.perf_counter() - t0)
            rounds[name].append(int(poison.extra.get("rounds", 1)))
    median = {name: statistics.median(ts) for name, ts in times.items()}
    per_round = {name: median[name] / statistics.median(rounds[name]) for name in ways}
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(
        attack=attack,
        device=str(device),
        threads=torch.get_num_threads(),
        default_numerics=default.label,
        repeats=REPEATS,
        **{f"{name}_median_s": round(m, 3) for name, m in median.items()},
        **{f"{name}_rounds": rounds[name] for name in ways},
        default_over_fp32=round(median["default"] / median["fp32"], 3),
        per_round_default_over_fp32=round(per_round["default"] / per_round["fp32"], 3),
    )
    print(
        f"\n{attack} crafting on {device} ({torch.get_num_threads()} threads, default {default.label}), median of "
        f"{REPEATS}: "
        + ", ".join(f"{name} {m:.2f} s ({statistics.median(rounds[name])} rounds)" for name, m in median.items())
        + f"; default / fp32 = {median['default'] / median['fp32']:.3f}, per round default / fp32 = "
        f"{per_round['default'] / per_round['fp32']:.3f}"
    )
    assert all(m > 0 for m in median.values())
