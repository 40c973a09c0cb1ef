"""Multiplicity corrections against hand-computed examples."""

import itertools

import pytest

from sapabench.core.stats import adjust_p


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.03, 0.04 (m = 4): 4 x 0.01 = 0.04, 3 x 0.02 = 0.06, 2 x 0.03 = 0.06, 1 x 0.04 = 0.04 -> 0.06
    assert adjust_p([0.03, 0.01, 0.04, 0.02], "holm") == pytest.approx([0.06, 0.04, 0.06, 0.06])


def test_benjamini_hochberg_by_hand():
    # m = 4: 0.01 x 4/1 = 0.04, 0.02 x 4/2 = 0.04, 0.03 x 4/3 = 0.04, 0.04 x 4/4 = 0.04
    assert adjust_p([0.03, 0.01, 0.04, 0.02], "bh") == pytest.approx([0.04] * 4)
    # 0.001 x 3 = 0.003; 0.04 x 3/2 = 0.06, but 0.05 x 3/3 = 0.05 is smaller above it -> 0.05
    assert adjust_p([0.001, 0.04, 0.05], "bh") == pytest.approx([0.003, 0.05, 0.05])


def test_benjamini_yekutieli_scales_bh_by_the_harmonic_sum():
    c3 = 1 + 1 / 2 + 1 / 3
    assert adjust_p([0.001, 0.04, 0.05], "by") == pytest.approx([0.003 * c3, 0.05 * c3, 0.05 * c3])


def test_ties_and_p_one():
    assert adjust_p([0.02, 0.02, 1.0], "holm") == pytest.approx([0.06, 0.06, 1.0])
    assert adjust_p([0.02, 0.02, 1.0], "bh") == pytest.approx([0.03, 0.03, 1.0])
    assert adjust_p([1.0, 1.0], "by") == [1.0, 1.0]
    assert adjust_p([0.5], "holm") == [0.5] and adjust_p([], "bh") == []


def test_adjusted_p_never_below_raw_and_monotone_in_raw():
    raw = [0.004, 0.3, 0.011, 0.02, 0.9, 0.011]
    for method in ("holm", "bh", "by"):
        adj = adjust_p(raw, method)
        assert all(a >= r for a, r in zip(adj, raw, strict=True)) and max(adj) <= 1
        ranked = sorted(zip(raw, adj, strict=True))
        assert all(a1 <= a2 for (_, a1), (_, a2) in itertools.pairwise(ranked))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown correction 'bonferonni'"):
        adjust_p([0.1], "bonferonni")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        adjust_p([1.2], "holm")


def test_the_two_sided_floor_of_the_exact_test():
    from sapabench.core.stats import two_sided_floor

    assert two_sided_floor(0) == 1.0 and two_sided_floor(1) == 1.0 and two_sided_floor(3) == 0.25
    assert two_sided_floor(8) == 2**-7


def test_the_power_of_the_sign_flip_test():
    from sapabench.core.stats import pairs_for_power, sign_flip_power

    # no effect: the test keeps its level (Monte Carlo: 4000 draws, 3 standard errors)
    assert sign_flip_power(0.0, 1.0, 10, 0.05) <= 0.05 + 3 * (0.05 * 0.95 / 4000) ** 0.5
    # a design whose floor is not below alpha has no power, whatever the effect
    assert sign_flip_power(10.0, 1.0, 5, 0.05) == 0.0 and sign_flip_power(10.0, 1.0, 6, 0.05) == 1.0
    grows = [sign_flip_power(0.8, 1.0, n, 0.05) for n in (8, 11, 14)]
    assert grows == sorted(grows) and grows[-1] > 0.7
    n, power = pairs_for_power(1.5, 1.0, 0.05)
    assert power >= 0.8 and sign_flip_power(1.5, 1.0, n - 1, 0.05) < 0.8
    assert pairs_for_power(0.1, 1.0, 0.05) is None  # a tiny effect cannot be powered within 16 pairs
    with pytest.raises(ValueError, match=r"n must be 1\.\.16"):
        sign_flip_power(1.0, 1.0, 17, 0.05)
