"""Summary statistics shared by evaluation, the leaderboard and the claims."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n); 0 for a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def p_greater(a: Sequence[float], b: Sequence[float]) -> float:
    """One-sided Welch t-test p-value for ``mean(a) > mean(b)``.

    With zero variance on both sides the test is undefined; then p is 0 when a's mean is
    larger and 1 otherwise (identical constant samples give no evidence).
    """
    if len(a) < 2 or len(b) < 2:
        return 1.0
    ma, sa = mean_se(a)
    mb, sb = mean_se(b)
    if sa == 0 and sb == 0:
        return 0.0 if ma > mb else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
