"""``sapabench evaluate``: victims trained on one poison set, in arms that share their victim
seeds, so that the arms compare pair by pair.

Arms: the poison without a defense; with ``--defense D`` the poison under D beside it; with
``--baseline`` clean data too (and clean data under D when a defense is given: the defense's
cost with no attack). A defended arm reports what the defense did (removed, precision, recall
against the true poisons) and what it cost (its seconds in each trial, and what the defender's
own model took to train). Comparisons are paired by victim seed: the exact sign-flip interval of
the mean difference over this poison's victims (:func:`sapabench.core.stats.sign_flip_interval`).
One poison says nothing about the attack's other poisons: ``sapabench run --suite defenses``
replicates over poisons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from sapabench.benchmark.trial import DEFENSE_STATS, DONE, Trial, TrialRecord, run_trial
from sapabench.core.errors import ConfigError
from sapabench.core.names import NO_DEFENSE
from sapabench.core.stats import mean_se, sign_flip_interval

ALPHA = 0.05
POISONED, CLEAN = "poisoned", "clean"


@dataclass(frozen=True)
class Arm:
    """One arm: its label, whether it trains on the poison, its defense, and each victim's record."""

    label: str
    on_poison: bool
    defense: str
    records: tuple[TrialRecord, ...]

    @property
    def values(self) -> list[float]:
        return [float(r.metric) for r in self.records]  # type: ignore[arg-type]

    @property
    def clean_accuracies(self) -> list[float]:
        return [float(r.clean_accuracy) for r in self.records]  # type: ignore[arg-type]

    def mean_of(self, field: str) -> float | None:
        values = [getattr(r, field) for r in self.records if getattr(r, field) is not None]
        return sum(values) / len(values) if values else None

    def filter_stats(self) -> dict[str, float]:
        """The defense's statistics over this arm's victims (empty without a data-level defense)."""
        out = {k: self.mean_of(v) for k, v in DEFENSE_STATS.items()}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class Comparison:
    """Arm ``a`` minus arm ``b``, paired by victim seed (in the metric's units, a fraction)."""

    what: str
    a: str
    b: str
    measure: str  # "metric" or "clean_accuracy"
    differences: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.differences) / len(self.differences)

    @property
    def interval(self) -> tuple[float, float]:
        return sign_flip_interval(self.differences, ALPHA)

    def line(self) -> str:
        lo, hi = self.interval
        n = len(self.differences)
        if math.isinf(lo) or math.isinf(hi):
            bounds = f"no 95 % interval from {n} victim{'s' if n != 1 else ''} (the exact test needs at least 7)"
        else:
            bounds = f"95 % interval [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        return f"{self.what}: {100 * self.mean:+.1f} points ({bounds}; {self.a} - {self.b}, paired by victim seed)"


def plan_arms(defense: str, baseline: bool) -> list[tuple[str, bool, str]]:
    """(label, on the poison?, defense) of each arm, in the order they train."""
    arms = [(POISONED, True, NO_DEFENSE)]
    if defense != NO_DEFENSE:
        arms.append((f"{POISONED} + {defense}", True, defense))
    if baseline:
        arms.append((CLEAN, False, NO_DEFENSE))
        if defense != NO_DEFENSE:
            arms.append((f"{CLEAN} + {defense}", False, defense))
    return arms


def run_arms(
    trials: Sequence[Trial], defense: str, baseline: bool, on_trial: Callable[[str, int, TrialRecord], None]
) -> list[Arm]:
    """Train every arm on the victims of ``trials`` (one per victim seed, on the poison, without a
    defense); a failed trial is one line (ConfigError) naming the arm, the victim and the error."""
    arms = []
    for label, on_poison, arm_defense in plan_arms(defense, baseline):
        records = []
        for i, trial in enumerate(trials):
            record = run_trial(replace(trial, defense=arm_defense, train_on_poison=on_poison))
            if record.status != DONE:
                raise ConfigError(f"{label} victim {i + 1} (seed {trial.seed}) failed: {record.error}")
            records.append(record)
            on_trial(label, i, record)
        arms.append(Arm(label, on_poison, arm_defense, tuple(records)))
    return arms


def comparisons(
    arms: Sequence[Arm], defense: str, higher_is_stronger: bool, metric_is_accuracy: bool = False
) -> list[Comparison]:
    """What the arms answer: the defense's change of the attack's metric and of the poisoned
    victims' clean accuracy, and (with clean arms) the attack's effect with and without the
    defense and the defense's clean cost."""
    by = {a.label: a for a in arms}

    def diff(a: str, b: str, measure: str) -> tuple[float, ...]:
        get = (lambda arm: arm.values) if measure == "metric" else (lambda arm: arm.clean_accuracies)
        return tuple(x - y for x, y in zip(get(by[a]), get(by[b]), strict=True))

    out = []
    defended, clean_defended = f"{POISONED} + {defense}", f"{CLEAN} + {defense}"
    if defended in by:
        out.append(
            Comparison(
                "defense's change of the attack metric",
                defended,
                POISONED,
                "metric",
                diff(defended, POISONED, "metric"),
            )
        )
    if defended in by and not metric_is_accuracy:  # else the same numbers as the metric's change
        out.append(
            Comparison(
                "defense's change of the poisoned victims' clean accuracy",
                defended,
                POISONED,
                "clean_accuracy",
                diff(defended, POISONED, "clean_accuracy"),
            )
        )
    if CLEAN in by:  # the attack's effect: poisoned minus clean, signed so that positive = the attack works
        effect = [(POISONED, CLEAN), (defended, clean_defended)]
        for (poisoned, clean), where in zip(effect, ("without the defense", "under the defense"), strict=True):
            if poisoned in by and clean in by:
                a_, b_ = (poisoned, clean) if higher_is_stronger else (clean, poisoned)
                out.append(Comparison(f"attack's effect {where}", a_, b_, "metric", diff(a_, b_, "metric")))
    if clean_defended in by:
        cost = diff(CLEAN, clean_defended, "clean_accuracy")
        out.append(
            Comparison(
                "defense's clean cost (accuracy lost with no attack)", CLEAN, clean_defended, "clean_accuracy", cost
            )
        )
    return out


def summary(arm: Arm) -> tuple[float, float, float, float]:
    """Mean and SE of the arm's metric and of its clean accuracy."""
    return (*mean_se(arm.values), *mean_se(arm.clean_accuracies))
