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

import functools
import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
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


@functools.lru_cache(maxsize=EXACT_UP_TO + 4)
def _sign_vectors(n: int) -> np.ndarray:
    """Every sign vector of ``n`` pairs (n <= :data:`EXACT_UP_TO`), else 2^16 seeded random ones
    (read-only: the cache hands one array to every caller)."""
    if n <= EXACT_UP_TO:
        out = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        out = np.random.default_rng(0).choice((1.0, -1.0), size=(2**16, n))
    out.flags.writeable = False
    return out


def _p_greater(d: np.ndarray, signs: np.ndarray) -> float:
    """:func:`sign_flip_p` of ``d`` with precomputed sign vectors (same ties and add-one rule)."""
    observed = float(d.sum())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).sum()))
    hits = float(np.sum(signs @ np.abs(d) >= observed - tolerance))
    if len(d) <= EXACT_UP_TO:
        return hits / len(signs)
    return (1 + hits) / (len(signs) + 1)


def sign_flip_p(differences: Sequence[float]) -> float:
    """Exact one-sided sign-flip permutation p-value for ``mean(differences) > 0``.

    Under the null hypothesis each difference is as likely positive as negative; p is the
    fraction of the 2^n sign vectors whose sum reaches the observed sum (ties counted, so a
    zero difference never helps). Its smallest possible value is 2^-n; an empty sample gives 1.
    """
    d = np.asarray(differences, dtype=np.float64)
    if len(d) == 0:
        return 1.0
    return _p_greater(d, _sign_vectors(len(d)))


CLEAN_VICTIM = "clean victim"
INDEPENDENT_UNITS = ("craft seed", CLEAN_VICTIM)
"""The units a test may decide over: poisons, or victims trained on no poison at all."""


@dataclass(frozen=True)
class PairedTest:
    """A paired one-sided comparison of arm ``a`` against arm ``b`` (is a larger?).

    Attributes:
        unit: what the pairs are: ``"craft seed"`` (per craft seed, the mean over its victims)
            or ``"victim seed"`` (one craft seed: each victim pair), or ``"clean victim"``
            (no poison at all: clean victims, independent draws of the training).
        n: number of pairs; differences: a - b per pair, in seed order.
        mean_difference: mean of ``differences``.
        p_greater / p_less: sign-flip p for mean(a - b) > 0 / < 0.
        p_floor: the smallest p-value ``n`` pairs can give (2^-n).
        unpaired: trials of either arm without a partner (left out of the test).
        design: ``paired`` (the sign-flip test above), or ``unpaired`` (:func:`unpaired_test`:
            the arms share no seeds, so their units are compared as two independent samples).
    """

    unit: str
    n: int
    differences: tuple[float, ...]
    mean_difference: float
    p_greater: float
    p_less: float
    p_floor: float
    unpaired: int
    design: str = "paired"
    p_adjusted: float | None = None
    """The two-sided p after the multiplicity correction of the family it was shown in (None:
    not adjusted, or not decidable by its design)."""

    def decidable(self, alpha: float) -> bool:
        """Whether the design can decide at ``alpha``: two or more poisons (craft seeds: victims of
        one poison are not independent draws of the attack), or of clean victims (no poison: each
        is an independent draw of the training), whose two-sided floor is below it."""
        return self.unit in INDEPENDENT_UNITS and self.n >= 2 and self.p_floor_two_sided < alpha

    def significant(self, alpha: float) -> bool:
        """Decided at ``alpha`` after its family's correction (two-sided: either direction)."""
        return self.p_adjusted is not None and self.decidable(alpha) and self.p_adjusted < alpha

    @property
    def test(self) -> str:
        if self.design == "unpaired":
            return (
                f"two-sample permutation test of the mean over {self.n} {self.unit}s, unpaired "
                f"(the arms share no seeds; one-sided, p >= {self.p_floor:.3g})"
            )
        return f"exact sign-flip permutation test over {self.n} {self.unit}s (one-sided, p >= {self.p_floor:.3g})"

    @property
    def p_two_sided(self) -> float:
        """Twice the smaller one-sided p, at most 1: a two-sided decision keeps alpha overall."""
        return min(1.0, 2 * min(self.p_greater, self.p_less))

    @property
    def p_floor_two_sided(self) -> float:
        """The smallest two-sided p the design allows (twice :attr:`p_floor`, at most 1)."""
        return min(1.0, 2 * self.p_floor)


Key = tuple[Hashable, Hashable]


def paired_test(a: Mapping[Key, float], b: Mapping[Key, float]) -> PairedTest:
    """Compare two arms whose trials are keyed by ``(craft seed, victim seed)``.

    Only keys present in both arms are paired. With two or more shared craft seeds the unit is
    the craft seed (victims of one poison are not independent draws of the attack, so each craft
    seed contributes the mean of its victims); with one, it is the victim seed; with none (clean
    victims, craft seed None), the clean victim, each an independent draw.
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
        unit = CLEAN_VICTIM if crafts and None in crafts else "victim seed"
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


def _units(arm: Mapping[Key, float]) -> list[float]:
    """An arm's units: per craft seed the mean of its victims (two or more craft seeds), else
    each victim's value."""
    crafts: dict[Hashable, list[float]] = defaultdict(list)
    for (craft, _), v in sorted(arm.items(), key=repr):
        crafts[craft].append(v)
    if len(crafts) >= 2:
        return [sum(vs) / len(vs) for _, vs in sorted(crafts.items(), key=lambda kv: repr(kv[0]))]
    return [v for _, v in sorted(arm.items(), key=repr)]


def permutation_p(a: Sequence[float], b: Sequence[float]) -> float:
    """One-sided two-sample permutation p-value for ``mean(a) > mean(b)``: the fraction of the
    C(n_a + n_b, n_a) relabellings whose difference of means reaches the observed one (exact up
    to 2^16 relabellings, else 2^16 seeded random ones with the add-one correction)."""
    pooled = np.asarray([*a, *b], dtype=np.float64)
    n_a, n = len(a), len(pooled)
    if n_a == 0 or n_a == n:
        return 1.0
    total = pooled.sum()
    observed = float(np.mean(a)) - float(np.mean(b))
    tolerance = 1e-12 * max(1.0, float(np.abs(pooled).sum()))

    def diff(sum_a: np.ndarray) -> np.ndarray:
        return sum_a / n_a - (total - sum_a) / (n - n_a)

    if math.comb(n, n_a) <= 2**16:
        sums = np.array([pooled[list(c)].sum() for c in itertools.combinations(range(n), n_a)])
        return float(np.mean(diff(sums) >= observed - tolerance))
    rng = np.random.default_rng(0)
    sums = np.array([pooled[rng.permutation(n)[:n_a]].sum() for _ in range(2**16)])
    return float((1 + np.sum(diff(sums) >= observed - tolerance)) / (2**16 + 1))


def unpaired_test(a: Mapping[Key, float], b: Mapping[Key, float]) -> PairedTest:
    """Compare two arms that share no (craft seed, victim seed) keys, as independent samples of
    their units (:func:`_units`) by a two-sample permutation test. Used only where the design
    gives no pairs (e.g. entries crafted with different seeds); ``n`` is the smaller arm's size."""
    ua, ub = _units(a), _units(b)
    n = min(len(ua), len(ub))
    unit = "craft seed" if len({k[0] for k in a}) >= 2 else "victim seed"
    splits = math.comb(len(ua) + len(ub), len(ua))
    floor = (1 / splits if splits <= 2**16 else 1 / (2**16 + 1)) if n else 1.0
    return PairedTest(
        unit=unit,
        n=n,
        differences=(),
        mean_difference=(float(np.mean(ua)) - float(np.mean(ub))) if n else 0.0,
        p_greater=permutation_p(ua, ub) if n else 1.0,
        p_less=permutation_p(ub, ua) if n else 1.0,
        p_floor=floor,
        unpaired=len(a) + len(b),
        design="unpaired",
    )


def compare_arms(a: Mapping[Key, float], b: Mapping[Key, float]) -> PairedTest:
    """Arm ``a`` against ``b`` (is a larger?): paired (:func:`paired_test`) where they share
    seeds, as two independent samples (:func:`unpaired_test`) where they share none."""
    if set(a) & set(b) or not a or not b:
        return paired_test(a, b)
    return unpaired_test(a, b)


@dataclass(frozen=True)
class Agreement:
    """Whether values re-measured on another platform agree with the recorded ones of the same
    trials: the test used, its p-value (or the interval), and the verdict at ``alpha``."""

    test: str
    agree: bool
    detail: str
    detectable: float = 0.0
    """The smallest difference of the mean the test refuses (rates: the interval's half-width;
    0/1 trials: 1.0 when even every success flipped could not be refused, else 0)."""


RESOLUTION = 0.01
"""Smallest trial spread assumed for a rate (one point in a hundred): entries whose trials all
gave one value would otherwise allow no platform difference at all."""


def agreement(
    recorded: Sequence[float], measured: Sequence[float], trial_sd: float, trials: int, alpha: float
) -> Agreement:
    """Compare ``measured`` (re-run elsewhere) with ``recorded`` (the same trials, from the entry).

    0/1 trials (targeted success): the recorded and re-measured success counts over the same k
    trials, Fisher's exact test (two-sided): it is exact for counts as small as these.
    Rates (accuracy, attack success rate over many test images): the mean difference against a
    Student t interval, ``t_{1-alpha/2, n-1} x sqrt(2) x sd / sqrt(k)``, where ``sd`` is the spread
    of single trials the entry reports over its ``n`` trials (at least :data:`RESOLUTION`): on
    another platform a trial of the same seed is at worst an independent trial, so a difference
    has at most ``sqrt(2) x sd`` spread.
    """
    from scipy import stats as sps  # scipy comes with scikit-learn

    k = len(measured)
    if k == 0 or len(recorded) != k:
        raise ValueError("agreement needs the same, non-empty set of trials on both sides")
    if all(v in (0.0, 1.0) for v in (*recorded, *measured)):
        a, b = int(sum(recorded)), int(sum(measured))
        p = float(sps.fisher_exact([[a, k - a], [b, k - b]]).pvalue)
        floor = float(sps.fisher_exact([[k, 0], [0, k]]).pvalue)  # every trial flipped
        return Agreement(
            "Fisher's exact test",
            p >= alpha,
            f"0/1 trials: {a}/{k} successes recorded, {b}/{k} re-measured; Fisher's exact test p = {p:.3g} "
            f"(refused below {alpha}; with {k} trials p cannot go below {floor:.3g})",
            1.0 if floor >= alpha else 0.0,
        )
    diff = float(np.mean(measured) - np.mean(recorded))
    sd = max(trial_sd, RESOLUTION)
    df = max(trials - 1, 1)
    half = float(sps.t.ppf(1 - alpha / 2, df)) * math.sqrt(2) * sd / math.sqrt(k)
    return Agreement(
        "t interval",
        abs(diff) <= half,
        f"mean of {k} re-run trials differs by {diff:+.4f} from the recorded ones; accepted within "
        f"+/-{half:.4f} (t_{{{1 - alpha / 2:g}, {df}}} x sqrt(2) x trial sd {sd:.4f} / sqrt({k}))",
        half,
    )


# ----------------------------------------------------------------------------- multiplicity

CORRECTIONS = ("holm", "bh", "by")
"""Multiplicity corrections by name: ``holm`` (Holm 1979: family-wise error rate, any
dependence), ``bh`` (Benjamini & Hochberg 1995: false discovery rate, independent or positively
dependent tests) and ``by`` (Benjamini & Yekutieli 2001: false discovery rate, any dependence)."""

CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg", "by": "Benjamini-Yekutieli"}


def adjust_p(pvalues: Sequence[float], method: str) -> list[float]:
    """The adjusted p-values of ``pvalues`` (in their order) under ``method`` (:data:`CORRECTIONS`):
    a hypothesis is rejected at level alpha exactly where its adjusted p is below alpha. Ties
    get equal adjusted values; adjusted values never exceed 1 (statsmodels' ``multipletests``
    computes the same numbers)."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; choose {', '.join(CORRECTIONS)}")
    m = len(pvalues)
    if any(not 0 <= p <= 1 for p in pvalues):
        raise ValueError("p-values must lie in [0, 1]")
    if m == 0:
        return []
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    if method == "holm":  # step-down: running maximum of (m - k) p_(k), k = 0..m-1
        running = 0.0
        for k, i in enumerate(order):
            running = max(running, min(1.0, (m - k) * pvalues[i]))
            adjusted[i] = running
        return adjusted
    scale = sum(1.0 / k for k in range(1, m + 1)) if method == "by" else 1.0
    running = 1.0  # step-up: running minimum of m c(m) p_(k) / k from the largest p down
    for k in range(m - 1, -1, -1):
        i = order[k]
        running = min(running, min(1.0, scale * m * pvalues[i] / (k + 1)))
        adjusted[i] = running
    return adjusted


# ----------------------------------------------------------------------------- design and power


def two_sided_floor(n: int) -> float:
    """The smallest two-sided p (twice the one-sided, at most 1) the exact sign-flip test over
    ``n`` pairs can give: ``2^(1-n)``; 1 without pairs."""
    return 1.0 if n <= 0 else min(1.0, 2.0 ** (1 - n)) if n <= EXACT_UP_TO else 2 / (2**16 + 1)


def sign_flip_power(effect: float, sd: float, n: int, alpha: float, draws: int = 4000, seed: int = 0) -> float:
    """Power of the exact two-sided sign-flip test (:func:`sign_flip_p`, both directions) over
    ``n`` pairs at level ``alpha``, for paired differences drawn from a normal distribution with
    mean ``effect`` and standard deviation ``sd``: the fraction of ``draws`` seeded samples whose
    two-sided p is below ``alpha`` (Monte Carlo; its standard error is at most 0.5 / sqrt(draws)).
    Exact enumeration of the 2^n sign vectors, so ``n`` is at most :data:`EXACT_UP_TO`."""
    if not 1 <= n <= EXACT_UP_TO:
        raise ValueError(f"n must be 1..{EXACT_UP_TO} pairs, got {n}")
    if sd < 0 or not 0 < alpha < 1:
        raise ValueError("sd must be >= 0 and alpha in (0, 1)")
    if two_sided_floor(n) >= alpha:
        return 0.0
    rng = np.random.default_rng(seed)
    d = rng.normal(effect, sd, size=(draws, n))
    signs = _sign_vectors(n)  # 2^n x n, the exact test's (cached)
    rejected = 0
    for chunk in np.array_split(d, max(1, draws * 2**n // 2**22)):
        observed = chunk.sum(axis=1)
        tolerance = 1e-12 * np.maximum(1.0, np.abs(chunk).sum(axis=1))
        sums = signs @ np.abs(chunk).T  # 2^n x draws
        p_greater = np.mean(sums >= observed - tolerance, axis=0)
        p_less = np.mean(-sums <= observed + tolerance, axis=0)
        rejected += int(np.sum(np.minimum(1.0, 2 * np.minimum(p_greater, p_less)) < alpha))
    return rejected / draws


def pairs_for_power(
    effect: float, sd: float, alpha: float, power: float = 0.8, most: int = EXACT_UP_TO
) -> tuple[int, float] | None:
    """The fewest pairs (up to ``most``) whose two-sided sign-flip test reaches ``power`` at
    ``alpha`` for normal differences of mean ``effect`` and SD ``sd``, and that power; None
    where no design up to ``most`` pairs does."""
    for n in range(1, most + 1):
        achieved = sign_flip_power(effect, sd, n, alpha)
        if achieved >= power:
            return n, achieved
    return None


# ----------------------------------------------------------------------------- decisions against an effect


def sign_flip_interval(differences: Sequence[float], alpha: float) -> tuple[float, float]:
    """The two-sided ``1 - alpha`` interval of the mean paired difference that inverts the exact
    sign-flip test: every shift ``c`` whose one-sided tests of ``mean(d - c) > 0`` and ``< 0``
    both keep p at or above ``alpha / 2`` (bounds found by bisection to 1e-9 of the data's range).
    Where ``n`` pairs cannot reach ``alpha / 2`` (``2^-n >= alpha / 2``) a bound is infinite."""
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    if n == 0:
        return -math.inf, math.inf
    if 2.0**-n >= alpha / 2 and n <= EXACT_UP_TO:
        return -math.inf, math.inf
    signs = _sign_vectors(n)
    spread = max(float(d.max() - d.min()), 1e-12)
    lo_edge, hi_edge = float(d.min()) - spread, float(d.max()) + spread

    def bound(reject: Callable[[float], bool], inside: float, outside: float) -> float:
        # ``outside`` is rejected, ``inside`` is not: bisect to the boundary
        for _ in range(200):
            if abs(outside - inside) <= 1e-9 * spread:
                break
            mid = (inside + outside) / 2
            inside, outside = (inside, mid) if reject(mid) else (mid, outside)
        return (inside + outside) / 2

    mean = float(d.mean())
    lower = bound(lambda c: _p_greater(d - c, signs) < alpha / 2, mean, lo_edge)
    upper = bound(lambda c: _p_greater(c - d, signs) < alpha / 2, mean, hi_edge)
    return lower, upper


def shaffer_holm(groups: Sequence[Hashable], pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment with Shaffer's logical restriction for hypotheses of which at
    most one per group can be true (a claim's "gain = 0" and "gain >= the paper's effect"): at
    step ``j`` the multiplier is the number of groups that still have an unrejected hypothesis,
    never more than Holm's ``m - j``. Adjusted p-values in the input order; family-wise error at
    alpha under any dependence (Shaffer 1986, method S1 with a conservative count). With one
    hypothesis per group it is Holm's adjustment."""
    m = len(pvalues)
    if len(groups) != m:
        raise ValueError("one group per p-value")
    if any(not 0 <= p <= 1 for p in pvalues):
        raise ValueError("p-values must lie in [0, 1]")
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for j, i in enumerate(order):
        live = len({groups[k] for k in order[j:]})
        running = max(running, min(1.0, live * pvalues[i]))
        adjusted[i] = running
    return adjusted


def spent_alpha(looks: Sequence[int], alpha: float) -> list[float]:
    """The level of each declared look (poisons at the look, increasing) under the O'Brien-Fleming
    type spending function of Lan and DeMets, ``a(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))`` with
    ``t`` the look's share of the last look's poisons: look ``k`` spends ``a(t_k) - a(t_{k-1})``.
    Each look is tested at its own spent level, so the chance of any false rejection over all
    looks is at most their sum, alpha, whatever the dependence between looks (Bonferroni over
    the looks; exact group-sequential boundaries would be less conservative)."""
    from scipy.stats import norm

    if not looks or any(b <= a for a, b in itertools.pairwise(looks)) or looks[0] < 1:
        raise ValueError("looks must be increasing numbers of poisons")
    z = float(norm.ppf(1 - alpha / 2))
    spent = [2 - 2 * float(norm.cdf(z / math.sqrt(n / looks[-1]))) for n in looks]
    return [b - a for a, b in zip([0.0, *spent[:-1]], spent, strict=True)]


def one_sided_power(effect: float, sd: float, n: int, level: float, draws: int = 4000, seed: int = 0) -> float:
    """Power of the exact one-sided sign-flip test of ``mean > 0`` (:func:`sign_flip_p`) over ``n``
    pairs at ``level``, for normal differences of mean ``effect`` and SD ``sd`` (Monte Carlo,
    ``draws`` seeded samples). Used before the data, at the effect a plan states."""
    if not 1 <= n <= EXACT_UP_TO:
        raise ValueError(f"n must be 1..{EXACT_UP_TO} pairs, got {n}")
    if sd < 0 or not 0 < level < 1:
        raise ValueError("sd must be >= 0 and the level in (0, 1)")
    if 2.0**-n >= level:
        return 0.0
    rng = np.random.default_rng(seed)
    d = rng.normal(effect, sd, size=(draws, n))
    signs = _sign_vectors(n)
    rejected = 0
    for chunk in np.array_split(d, max(1, draws * 2**n // 2**22)):
        observed = chunk.sum(axis=1)
        tolerance = 1e-12 * np.maximum(1.0, np.abs(chunk).sum(axis=1))
        p = np.mean(signs @ np.abs(chunk).T >= observed - tolerance, axis=0)
        rejected += int(np.sum(p < level))
    return rejected / draws


@dataclass(frozen=True)
class GainTest:
    """SAPA's gain over a baseline, per poison, tested both ways and against an expected effect.

    ``gains``: per poison (craft seed) the mean over its victims of the paired difference, signed
    so > 0 = SAPA stronger; ``expected``: per poison the gain the paper's effect predicts there
    (None where the claim states no effect). ``interval``: the two-sided ``1 - alpha`` interval of
    the mean gain inverting the exact sign-flip test (:func:`sign_flip_interval`); ``delta``: the
    mean expected gain (the line the interval is read against). ``p_stronger`` / ``p_weaker``:
    one-sided exact p of the mean gain above / below 0; ``p_below``: one-sided exact p of
    ``mean(gain - expected) < 0``, the gain smaller than the paper's effect."""

    n: int
    gains: tuple[float, ...]
    expected: tuple[float, ...] | None
    alpha: float
    interval: tuple[float, float]
    p_stronger: float
    p_weaker: float
    p_below: float | None
    below_bound: float | None = None
    """The one-sided ``1 - alpha`` upper bound of mean(gain - expected) by the same exact test:
    BELOW THE PAPER (before any correction) exactly where it is below 0."""

    @property
    def mean_gain(self) -> float:
        return sum(self.gains) / self.n if self.n else 0.0

    @property
    def delta(self) -> float | None:
        return None if self.expected is None else sum(self.expected) / len(self.expected)

    @property
    def p_two_sided(self) -> float:
        return min(1.0, 2 * min(self.p_stronger, self.p_weaker))

    @property
    def floor_two_sided(self) -> float:
        return two_sided_floor(self.n)


def gain_test(gains: Sequence[float], expected: Sequence[float] | None, alpha: float) -> GainTest:
    """:class:`GainTest` of per-poison ``gains`` (and per-poison ``expected`` gains)."""
    g = [float(x) for x in gains]
    if expected is not None and len(expected) != len(g):
        raise ValueError("one expected gain per poison")
    below = None if expected is None else sign_flip_p([e - x for x, e in zip(g, expected, strict=True)])
    bound = None
    if expected is not None:
        bound = sign_flip_interval([x - e for x, e in zip(g, expected, strict=True)], 2 * alpha)[1]
    return GainTest(
        n=len(g),
        gains=tuple(g),
        expected=None if expected is None else tuple(float(e) for e in expected),
        alpha=alpha,
        interval=sign_flip_interval(g, alpha),
        p_stronger=sign_flip_p(g),
        p_weaker=sign_flip_p([-x for x in g]),
        p_below=below,
        below_bound=bound,
    )


def variance_components(groups: Sequence[Sequence[float]]) -> tuple[float, float]:
    """One-way random effects by the method of moments: the SD between groups (of their true
    means) and within a group, from values grouped by poison (victims within). With ``v``
    values per group (the smallest group's count for unequal ones) the between-group variance is
    the variance of the group means minus the within-group variance over ``v`` (0 where that is
    negative)."""
    if len(groups) < 2 or any(len(g) < 2 for g in groups):
        raise ValueError("two or more groups of two or more values each")
    means = [sum(g) / len(g) for g in groups]
    within = sum(float(np.var(g, ddof=1)) for g in groups) / len(groups)
    v = min(len(g) for g in groups)
    between = max(0.0, float(np.var(means, ddof=1)) - within / v)
    return math.sqrt(between), math.sqrt(within)
