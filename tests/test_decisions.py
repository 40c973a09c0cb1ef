"""The claims' decisions by simulation: type-I error of HELD at a gain of 0 and of BELOW THE
PAPER at a gain of delta, with the exact test, across claims and across declared looks; the
interval that inverts the test; Shaffer's restriction; alpha spending."""

import itertools

import numpy as np
import pytest

from sapabench.benchmark.claims import (
    FAILED,
    HELD,
    HELD_BELOW,
    INCONCLUSIVE,
    PRIMARY,
    SECONDARY,
    Verdict,
    decide_at_looks,
    load_claims,
)
from sapabench.core.stats import (
    adjust_p,
    gain_test,
    paired_test,
    shaffer_holm,
    sign_flip_interval,
    sign_flip_p,
    spent_alpha,
)

ALPHA = 0.05
DESIGNS = 2000
# a rate measured over 2,000 designs exceeds alpha by more than 3 standard errors with
# probability about 0.1 %: the bound every simulation below checks
BOUND = ALPHA + 3 * (ALPHA * (1 - ALPHA) / DESIGNS) ** 0.5


def _claims(k):
    _, claims = load_claims()
    return [c for c in claims if c.table == "4" and c.metric == "accuracy"][:k]


def _pending(claims, gains, expected):
    """One pending claim per row of ``gains`` (poisons in columns), each with its own test."""
    out = []
    for c, g, e in zip(claims, gains, expected, strict=True):
        seeds = list(range(len(g)))
        test = paired_test({(s, 0): 1.0 for s in seeds}, {(s, 0): 0.0 for s in seeds})  # a distinct object per claim
        out.append((Verdict(c, INCONCLUSIVE, None, test), seeds, list(g), None if e is None else list(e)))
    return out


def _rates(truth, n=10, k=1, looks=(None,), family=PRIMARY, seed=0):
    """Over DESIGNS simulated designs of ``k`` claims with ``n`` poisons each, whose per-poison
    gains are normal with mean ``truth`` x delta: how often any claim was HELD (or HELD+BELOW),
    FAILED, and BELOW (alone or with HELD, or FAILED, which implies it)."""
    rng = np.random.default_rng(seed)
    claims = _claims(k)
    delta = 0.05
    levels = spent_alpha([x for x in looks if x is not None], ALPHA) if looks != (None,) else [ALPHA]
    held = failed = below = 0
    for _ in range(DESIGNS):
        effect = rng.uniform(0.2, 0.4, size=(k, n))  # the base attack's effect per poison
        expected = (delta / 0.3) * effect  # r x effect: delta on average
        gains = truth * expected + rng.normal(0.0, 0.06, size=(k, n))
        decided = decide_at_looks(_pending(claims, gains, expected), list(looks), levels, ALPHA, family)
        verdicts = [v.verdict for v in decided.values()]
        held += any(v in (HELD, HELD_BELOW) for v in verdicts)
        failed += any(v == FAILED for v in verdicts)
        below += any(v in ("below", HELD_BELOW, FAILED) for v in verdicts)
    return held / DESIGNS, failed / DESIGNS, below / DESIGNS


def test_held_at_a_gain_of_zero_keeps_alpha():
    held, failed, _ = _rates(truth=0.0)
    assert held + failed <= BOUND  # HELD and FAILED together: the two-sided test at alpha


def test_below_the_paper_at_a_gain_of_delta_keeps_alpha():
    held, failed, below = _rates(truth=1.0)
    assert below <= BOUND and failed <= BOUND
    assert held > 0.5  # and the design still sees SAPA stronger most of the time


def test_several_claims_keep_the_family_wise_error_with_holm_shaffer():
    held, failed, _ = _rates(truth=0.0, k=3)
    assert held + failed <= BOUND
    _, _, below = _rates(truth=1.0, k=3, seed=1)
    assert below <= BOUND


def test_declared_looks_spend_alpha_so_adding_poisons_keeps_it():
    held, failed, _ = _rates(truth=0.0, n=12, looks=(6, 12))
    assert held + failed <= BOUND
    _, _, below = _rates(truth=1.0, n=12, looks=(6, 12), seed=2)
    assert below <= BOUND


def test_looking_at_every_poison_without_spending_inflates_the_error():
    """What the declared looks prevent: testing after each added poison at the full alpha."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(DESIGNS):
        g = rng.normal(0.0, 1.0, size=14)
        hits += any(min(1.0, 2 * min(sign_flip_p(g[:n]), sign_flip_p(-g[:n]))) < ALPHA for n in range(6, 15))
    assert hits / DESIGNS > BOUND


def test_the_secondary_family_keeps_the_false_discovery_rate_under_the_null():
    held, failed, _ = _rates(truth=0.0, k=3, family=SECONDARY, seed=4)
    assert held + failed <= BOUND  # all nulls true: FDR = FWER


def test_a_gain_clearly_above_zero_but_below_delta_is_both():
    gains = [0.01 + 0.001 * i for i in range(12)]
    expected = [0.08] * 12
    (v,) = decide_at_looks(_pending(_claims(1), [gains], [expected]), [None], [ALPHA], ALPHA, PRIMARY).values()
    assert v.verdict == HELD_BELOW and v.label == "held, below the paper"
    lo, hi = v.gain.interval
    assert 0 < lo < hi < v.gain.delta  # the interval sits between 0 and delta


@pytest.mark.parametrize("seed", range(5))
def test_the_interval_is_the_set_of_shifts_the_test_keeps(seed):
    d = np.random.default_rng(seed).normal(1.0, 2.0, size=9)
    lo, hi = sign_flip_interval(d, ALPHA)
    assert lo < d.mean() < hi
    eps = 1e-6 * (d.max() - d.min())
    assert sign_flip_p(d - (lo - eps)) < ALPHA / 2 <= sign_flip_p(d - (lo + eps))  # just outside / inside
    assert sign_flip_p((hi + eps) - d) < ALPHA / 2 <= sign_flip_p((hi - eps) - d)
    # too few poisons: 2^-n not below alpha / 2, the interval is unbounded
    assert sign_flip_interval(d[:5], ALPHA) == (-np.inf, np.inf)


def test_shaffer_holm_is_holm_with_one_hypothesis_per_group_and_never_larger():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = list(rng.uniform(0, 0.2, size=6))
        assert shaffer_holm(list(range(6)), p) == pytest.approx(adjust_p(p, "holm"))
        groups = [0, 0, 1, 1, 2, 2]
        assert all(s <= h + 1e-12 for s, h in zip(shaffer_holm(groups, p), adjust_p(p, "holm"), strict=True))


def test_spent_alpha_sums_to_alpha_and_spends_little_early():
    levels = spent_alpha([5, 10, 15], 0.05)
    assert sum(levels) == pytest.approx(0.05) and levels[0] < levels[1] < levels[2]
    assert spent_alpha([10], 0.05) == pytest.approx([0.05])
    with pytest.raises(ValueError):
        spent_alpha([10, 5], 0.05)


def test_gain_test_p_values_match_brute_force():
    g = [0.3, -0.1, 0.5, 0.2, 0.0, 0.4]
    e = [0.2] * 6
    t = gain_test(g, e, ALPHA)
    sums = [sum(s * abs(x) for s, x in zip(signs, g, strict=True)) for signs in itertools.product((1, -1), repeat=6)]
    assert t.p_stronger == pytest.approx(np.mean([s >= sum(g) - 1e-12 for s in sums]))
    d = [ei - gi for gi, ei in zip(g, e, strict=True)]
    sums = [sum(s * abs(x) for s, x in zip(signs, d, strict=True)) for signs in itertools.product((1, -1), repeat=6)]
    assert t.p_below == pytest.approx(np.mean([s >= sum(d) - 1e-12 for s in sums]))
