"""Statistics of the leaderboard: mean, standard error, one-sided Welch tests."""

from __future__ import annotations

from typing import Sequence

from benchmark.stats import mean_se

__all__ = ["mean_se", "p_greater"]


def p_greater(a: Sequence[float], b: Sequence[float]) -> float:
    """One-sided Welch t-test p-value for ``mean(a) > mean(b)``.

    With zero variance on both sides the test is undefined; then p is 0 when a's mean is
    larger and 1 otherwise (identical constant samples give no evidence).
    """
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return 1.0
    ma, sa = mean_se(a)
    mb, sb = mean_se(b)
    if sa == 0 and sb == 0:
        return 0.0 if ma > mb else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
