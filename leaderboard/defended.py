"""What a defense did to each attack, decided over poisons: the defense view's tests.

For an attack entry under defense ``D`` and the same attack, setting and victims without it
(victims are paired by seed: the same craft seed and victim seed train with and without ``D``):

- **reduction**: how much ``D`` weakens the attack, per poison the mean over its victims of the
  undefended minus the defended metric (signed so that > 0 = the attack is weaker under ``D``);
- **beyond random** (data filters): the same against ``random-like-D``, which removes as many
  images per class at random: > 0 = ``D`` found more than its count of images does by itself;
- **share of the oracle**: ``D``'s mean reduction over the reduction of ``oracle-filter``, which
  removes exactly the poisons (a point estimate; the ceiling of any filter is 1);
- **remaining effect**: the attack's effect under ``D``: for accuracy attacks the clean victims'
  accuracy under ``D`` minus the poisoned victims' (per poison, beside the clean victims' mean),
  for success rates the success under ``D``;
- **clean cost**: the accuracy ``D`` costs with no attack (clean victims with and without ``D``,
  paired by victim seed).

Every test is the exact two-sided sign-flip test over poisons (victims where there is one
poison, as for clean data) with the exact interval of the mean difference
(:func:`sapabench.core.stats.sign_flip_interval`), and the page's one significance convention:
Benjamini-Yekutieli over this view's decidable tests at ``ALPHA``, ° where a design cannot reach
it (:data:`sapabench.leaderboard.pairs.SIGNIFICANCE_NOTE`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from sapabench.core.names import CLEAN, NO_DEFENSE, ORACLE_FILTER, RANDOM_LIKE
from sapabench.core.stats import PairedTest, adjust_p, paired_test, sign_flip_interval
from sapabench.leaderboard.pairs import ALPHA, CLEAN_KEYS, VIEW_CORRECTION, trial_values, variant

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Decided:
    """A paired test with its exact interval (fractions of the metric, signed as the test's)."""

    test: PairedTest
    lower: float
    upper: float

    @classmethod
    def of(cls, test: PairedTest) -> Decided:
        lower, upper = sign_flip_interval(test.differences, ALPHA)
        return cls(test, lower, upper)

    @property
    def mean(self) -> float:
        return self.test.mean_difference

    @property
    def bounded(self) -> bool:
        return not (math.isinf(self.lower) or math.isinf(self.upper))


@dataclass(frozen=True)
class DefenseDecision:
    """The tests of one defended entry (None where the run lacks the arm a test needs)."""

    reduction: Decided | None
    beyond_random: Decided | None
    oracle_share: float | None
    remaining: Decided | None
    clean_cost: Decided | None


def _setting_key(e: dict[str, Any]) -> Key:
    s = e["setting"]
    return (s["suite"], s["dataset"], s["arch"], s["recipe"], s["surrogate"], variant(e))


def _clean_key(e: dict[str, Any]) -> Key:
    return tuple(json.dumps(e["setting"][k], sort_keys=True) for k in CLEAN_KEYS)


def _remaining(entry: dict[str, Any], clean: dict[str, Any] | None) -> Decided | None:
    """The attack's effect under the defense, per poison (> 0 = it still works)."""
    values = trial_values(entry)  # signed: larger = stronger (a success rate as it is)
    if entry["metric"]["name"] == "clean_accuracy":
        if clean is None:
            return None
        ref = list(trial_values(clean).values())  # the clean victims' (signed) accuracy under the same defense
        shift = sum(ref) / len(ref)
        values = {k: v - shift for k, v in values.items()}
    zero = dict.fromkeys(values, 0.0)
    return Decided.of(paired_test(values, zero))


def decide(entries: list[dict[str, Any]]) -> dict[str, DefenseDecision]:
    """The decision of every defended entry (keyed by entry id), adjusted as one family."""
    plain: dict[Key, dict[str, Any]] = {}
    defended: dict[tuple[Key, str, str], dict[str, Any]] = {}
    clean: dict[tuple[Key, str], dict[str, Any]] = {}
    for e in entries:
        if e["attack"] == CLEAN:
            clean[(_clean_key(e), e["defense"])] = e
        elif e["defense"] == NO_DEFENSE:
            plain[(*_setting_key(e), e["attack"])] = e
        else:
            defended[(_setting_key(e), e["attack"], e["defense"])] = e
    out: dict[str, DefenseDecision] = {}
    costs: dict[str, Decided] = {}  # one clean-cost test per defended clean entry, shown on each of its rows
    for e in entries:
        if e["defense"] == NO_DEFENSE:
            continue
        c0, cd = clean.get((_clean_key(e), NO_DEFENSE)), clean.get((_clean_key(e), e["defense"]))
        cost = None
        if c0 is not None and cd is not None:  # signed values are -accuracy: cd - c0 = acc0 - accD
            if cd["entry_id"] not in costs:
                costs[cd["entry_id"]] = Decided.of(paired_test(trial_values(cd), trial_values(c0)))
            cost = costs[cd["entry_id"]]
        if e["attack"] == CLEAN:
            out[e["entry_id"]] = DefenseDecision(None, None, None, None, cost)
            continue
        base = plain.get((*_setting_key(e), e["attack"]))
        reduction = None if base is None else Decided.of(paired_test(trial_values(base), trial_values(e)))
        twin = defended.get((_setting_key(e), e["attack"], f"{RANDOM_LIKE}{e['defense']}"))
        beyond = None if twin is None else Decided.of(paired_test(trial_values(twin), trial_values(e)))
        oracle = defended.get((_setting_key(e), e["attack"], ORACLE_FILTER))
        share = None
        if reduction is not None and oracle is not None and base is not None and e["defense"] != ORACLE_FILTER:
            ceiling = paired_test(trial_values(base), trial_values(oracle)).mean_difference
            share = reduction.mean / ceiling if ceiling > 0 else None
        out[e["entry_id"]] = DefenseDecision(reduction, beyond, share, _remaining(e, cd), cost)
    return _adjusted(out)


def _adjusted(decisions: dict[str, DefenseDecision]) -> dict[str, DefenseDecision]:
    """Every distinct decidable test of the view, adjusted together (:data:`VIEW_CORRECTION`):
    a defense's clean cost, shown on each of its rows, is one test of the family."""
    fields = ("reduction", "beyond_random", "remaining", "clean_cost")
    tests: dict[int, Decided] = {}
    for _, d in sorted(decisions.items()):
        for name in fields:
            dec = getattr(d, name)
            if dec is not None and dec.test.decidable(ALPHA):
                tests.setdefault(id(dec), dec)
    adjusted = adjust_p([dec.test.p_two_sided for dec in tests.values()], VIEW_CORRECTION) if tests else []
    marked = {
        key: replace(dec, test=replace(dec.test, p_adjusted=q))
        for (key, dec), q in zip(tests.items(), adjusted, strict=True)
    }

    def mark(dec: Decided | None) -> Decided | None:
        return None if dec is None else marked.get(id(dec), dec)

    return {
        entry_id: replace(d, **{name: mark(getattr(d, name)) for name in fields}) for entry_id, d in decisions.items()
    }
