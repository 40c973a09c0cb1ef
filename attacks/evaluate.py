"""Re-train victims on a poisoned set and report the metric as mean +/- standard error."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from attacks.artifact import PoisonSet
from attacks.metrics import higher_is_stronger, measure, metric_name
from benchmark.datasets import ImageDataset
from benchmark.stats import mean_se
from victims.recipes import Recipe
from victims.train import train_victim


@dataclass(frozen=True)
class TrialResult:
    seed: int
    metric: float
    clean_accuracy: float
    train_seconds: float
    eval_seconds: float
    images_per_s: float
    diagnostics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """Per-trial results of one (poison or clean) setting, with their summary."""

    metric: str
    higher_is_stronger: bool
    trials: tuple[TrialResult, ...]
    poisoned: bool
    device: str
    extra: dict = field(default_factory=dict)

    @property
    def values(self) -> list[float]:
        return [t.metric for t in self.trials]

    @property
    def mean_se(self) -> tuple[float, float]:
        return mean_se(self.values)

    @property
    def clean_mean_se(self) -> tuple[float, float]:
        return mean_se([t.clean_accuracy for t in self.trials])


def evaluate(
    poison: PoisonSet,
    dataset: ImageDataset,
    arch: str,
    recipe: Recipe,
    trials: int,
    *,
    base_seed: int = 100,
    device: torch.device | str = "cpu",
    with_poison: bool = True,
    on_trial: Callable[[int, TrialResult], None] | None = None,
) -> Evaluation:
    """Train ``trials`` victims (seeds ``base_seed + i``) on the poisoned data (or, with
    ``with_poison=False``, on the clean data: the clean baseline) and measure the poison's metric."""
    poison.check_dataset(dataset)
    results = []
    for i in range(trials):
        seed = base_seed + i
        res = train_victim(arch, recipe, dataset, poison=poison if with_poison else None, seed=seed, device=device)
        t0 = time.perf_counter()
        m = measure(res.model, poison, dataset, res.clean_accuracy)
        trial = TrialResult(
            seed, m.value, m.clean_accuracy, res.timing.total_s, time.perf_counter() - t0, res.timing.images_per_s, m.diagnostics
        )
        results.append(trial)
        if on_trial is not None:
            on_trial(i, trial)
    return Evaluation(
        metric_name(poison.threat.kind), higher_is_stronger(poison.threat.kind), tuple(results), with_poison, str(device)
    )
