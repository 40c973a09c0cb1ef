"""Crafting an untargeted poison on the embedded preset: the default crafting numerics against
plain fp32.

Run: ``python -m pytest tests/benchmarks/test_crafting_numerics.py --run-benchmarks -s``. For
each of Error-Min, Error-Max and their SAPA twins on the whole ``digits`` set, the same poison
(same craft seed) is crafted in plain fp32 (how every poison was crafted before 2026-12-06) and
in the numerics ``auto`` resolves to on this machine (bf16 + channels-last on a CPU with AVX-512
bf16 or AMX: what ``sapabench run`` crafts with), in one run, interleaved, median of
``REPEATS``; every clean surrogate is trained (and cached) before the clock starts, as a suite
shares it between an attack and its SAPA twin.

Where ``auto`` resolves to fp32 (+ channels-last on a CPU without bf16 hardware: AVX2 only),
bf16 + channels-last is timed as well, so the run shows what ``auto`` declined and why; where
it resolves to bf16 + channels-last that is the default itself. To see an AVX2-only CPU's
kernels on a newer one, cap them: ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``
(``auto`` still reads the CPU's flags, so the default it prints is the uncapped one: read the
bf16 + channels-last ratio).

``extra_info`` reports the medians, ``default_over_fp32`` (the goal: at most 0.6 on a CPU with
bf16 hardware), ``bf16_cl_over_fp32`` and Error-Min's rounds (its stopping rule may stop a bf16
crafting at another round than an fp32 one; ``per_round_*`` compare the arithmetic alone).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
import torch

from sapabench.attacks import create_attack
from sapabench.attacks.surrogate import get_surrogate
from sapabench.core.numerics import FP32, Numerics, resolve_numerics

REPEATS = 3
SEED = 0
BF16_CL = Numerics("bf16", "channels_last")


def _base(attack: str) -> str:
    return attack.removeprefix("sapa-")


@pytest.mark.parametrize("attack", ["error-min", "sapa-error-min", "error-max", "sapa-error-max"])
def test_crafting_default_numerics_vs_fp32(benchmark, digits, attack):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    default = resolve_numerics("auto", "auto", device)
    ways: dict[str, tuple[Any, Numerics]] = {
        numerics.label: (create_attack(attack, dataset="digits"), numerics) for numerics in (FP32, default, BF16_CL)
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

    def over_fp32(values: dict[str, float], name: str) -> float:
        return round(values[name] / values[FP32.label], 3)

    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(
        attack=attack,
        device=str(device),
        threads=torch.get_num_threads(),
        default_numerics=default.label,
        repeats=REPEATS,
        **{f"{name}_median_s": round(m, 3) for name, m in median.items()},
        **{f"{name}_rounds": rounds[name] for name in ways},
        default_over_fp32=over_fp32(median, default.label),
        per_round_default_over_fp32=over_fp32(per_round, default.label),
        bf16_cl_over_fp32=over_fp32(median, BF16_CL.label),
        per_round_bf16_cl_over_fp32=over_fp32(per_round, BF16_CL.label),
    )
    print(
        f"\n{attack} crafting on {device} ({torch.get_num_threads()} threads, default {default.label}), median of "
        f"{REPEATS}: "
        + ", ".join(f"{name} {m:.2f} s ({statistics.median(rounds[name])} rounds)" for name, m in median.items())
        + f"; default / fp32 = {over_fp32(median, default.label):.3f} (per round "
        f"{over_fp32(per_round, default.label):.3f}), bf16+cl / fp32 = {over_fp32(median, BF16_CL.label):.3f}"
    )
    assert all(m > 0 for m in median.values())
