"""Summary statistics shared by evaluation, the leaderboard and the claims.

A SAPA attack and its baseline are compared *paired*: crafted with the same seed they share the
target (or class pair, or noise draw), and their victims share seeds. :func:`paired_test` takes
the two arms' trials keyed by (craft seed, victim seed), averages over victims within each craft
seed, and tests the paired differences over craft seeds with an exact one-sided sign-flip
permutation test; with a single craft seed the victims are the pairs. The permutation test needs
no distributional assumption, and its p-value can never be smaller than ``2**-n`` for ``n``
pairs: two trials against two can never "hold" a claim at alpha = 0.05.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

EXACT_UP_TO = 16
"""Pairs up to which the sign-flip test enumerates all 2^n sign vectors; above it, 2^16 seeded
random sign vectors with the add-one correction (p never below 1 / (2^16 + 1))."""


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n); 0 for a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def sign_flip_p(differences: Sequence[float]) -> float:
    """Exact one-sided sign-flip permutation p-value for ``mean(differences) > 0``.

    Under the null hypothesis each difference is as likely positive as negative; p is the
    fraction of the 2^n sign vectors whose sum reaches the observed sum (ties counted, so a
    zero difference never helps). Its smallest possible value is 2^-n; an empty sample gives 1.
    """
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    if n == 0:
        return 1.0
    observed = float(d.sum())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).sum()))
    if n <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        return float(np.mean(signs @ np.abs(d) >= observed - tolerance))
    rng = np.random.default_rng(0)
    draws = 2**16
    signs = rng.choice((1.0, -1.0), size=(draws, n))
    return float((1 + np.sum(signs @ np.abs(d) >= observed - tolerance)) / (draws + 1))


@dataclass(frozen=True)
class PairedTest:
    """A paired one-sided comparison of arm ``a`` against arm ``b`` (is a larger?).

    Attributes:
        unit: what the pairs are: ``"craft seed"`` (per craft seed, the mean over its victims)
            or ``"victim seed"`` (one craft seed: each victim pair).
        n: number of pairs; differences: a - b per pair, in seed order.
        mean_difference: mean of ``differences``.
        p_greater / p_less: sign-flip p for mean(a - b) > 0 / < 0.
        p_floor: the smallest p-value ``n`` pairs can give (2^-n).
        unpaired: trials of either arm without a partner (left out of the test).
    """

    unit: str
    n: int
    differences: tuple[float, ...]
    mean_difference: float
    p_greater: float
    p_less: float
    p_floor: float
    unpaired: int

    @property
    def test(self) -> str:
        return f"exact sign-flip permutation test over {self.n} {self.unit}s (one-sided, p >= {self.p_floor:.3g})"


Key = tuple[Hashable, Hashable]


def paired_test(a: Mapping[Key, float], b: Mapping[Key, float]) -> PairedTest:
    """Compare two arms whose trials are keyed by ``(craft seed, victim seed)``.

    Only keys present in both arms are paired. With two or more shared craft seeds the unit is
    the craft seed (victims of one poison are not independent draws of the attack, so each craft
    seed contributes the mean of its victims); with one, it is the victim seed.
    """
    shared = sorted(set(a) & set(b), key=repr)
    crafts: dict[Hashable, list[Key]] = defaultdict(list)
    for key in shared:
        crafts[key[0]].append(key)
    if len(crafts) >= 2:
        unit = "craft seed"
        diffs = [
            sum(a[k] for k in keys) / len(keys) - sum(b[k] for k in keys) / len(keys)
            for _, keys in sorted(crafts.items(), key=lambda kv: repr(kv[0]))
        ]
    else:
        unit = "victim seed"
        diffs = [a[k] - b[k] for k in shared]
    n = len(diffs)
    return PairedTest(
        unit=unit,
        n=n,
        differences=tuple(diffs),
        mean_difference=sum(diffs) / n if n else 0.0,
        p_greater=sign_flip_p(diffs),
        p_less=sign_flip_p([-d for d in diffs]),
        p_floor=2.0**-n if n <= EXACT_UP_TO else 1 / (2**16 + 1),
        unpaired=len(a) + len(b) - 2 * len(shared),
    )
