"""The first answer of a leaderboard: per threat model, how often SAPA beat its own base attack,
how often significantly, and how many settings could not decide either way.

Each setting (dataset, victim, recipe, protocol, numerics, defense, attack options) pairs a SAPA
attack with its own base attack by craft seed; the exact two-sided sign-flip test of the
paper's metric decides it (:func:`sapabench.core.stats.compare_arms`). Settings whose design floor is not
below alpha (fewer than 6 poisons: 2^(1-n) >= 0.05, or one poison, however many victims) are
counted as underpowered; the others are significant by the page's one convention
(:data:`sapabench.leaderboard.pairs.SIGNIFICANCE_NOTE`: Benjamini-Yekutieli over every
SAPA-vs-baseline comparison of the page, as every view marks them). White-box victims are left
out, as the claims leave them out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sapabench.core.stats import two_sided_floor
from sapabench.core.threats import THREATS
from sapabench.leaderboard.pairs import ALPHA, Pair, answer_pairs, rival_pairs

MIN_PAIRS = next(n for n in range(2, 64) if two_sided_floor(n) < ALPHA)
"""The fewest poisons (pairs) whose exact two-sided test can reach :data:`ALPHA` (6 at 0.05)."""


@dataclass(frozen=True)
class ThreatSummary:
    """SAPA against its own base in every setting of one threat model.

    Attributes:
        threat: ``targeted``, ``backdoor`` or ``untargeted``.
        settings: SAPA-vs-base settings measured (black-box).
        stronger / weaker: settings where SAPA's mean is stronger / weaker (ties are neither, and
            the line counts them: "tied in t").
        stronger_significant / weaker_significant: of those, decided at ``alpha`` after
            the page's one correction (Benjamini-Yekutieli over its comparisons).
        underpowered: settings whose design cannot reach ``alpha`` (fewer than
            :data:`MIN_PAIRS` poisons, or one poison).
        alpha: the level.
    """

    threat: str
    settings: int
    stronger: int
    stronger_significant: int
    weaker: int
    weaker_significant: int
    underpowered: int
    alpha: float = ALPHA

    def line(self) -> str:
        """One line: ``targeted: SAPA stronger than its base in 3 of 8 settings (1 significant) ...``."""
        text = (
            f"{self.threat}: SAPA stronger than its base in {self.stronger} of {self.settings} setting(s) "
            f"({self.stronger_significant} significant), weaker in {self.weaker} ({self.weaker_significant} significant)"
        )
        tied = self.settings - self.stronger - self.weaker
        if tied:
            text += f", tied in {tied}"
        if self.underpowered:
            text += f"; {self.underpowered} underpowered (need >= {MIN_PAIRS} poisons to reach p < {self.alpha:g})"
        return text


def threat_summaries(entries: list[dict[str, Any]], alpha: float = ALPHA) -> list[ThreatSummary]:
    """One :class:`ThreatSummary` per threat model with a SAPA-vs-base pair among ``entries``."""
    by_threat: dict[str, list[Pair]] = defaultdict(list)
    for p in answer_pairs(rival_pairs(entries)):
        by_threat[p.threat].append(p)
    out = []
    for threat in (t for t in THREATS if t in by_threat):
        pairs = by_threat[threat]
        # the page's one convention: significant after Benjamini-Yekutieli over every comparison of
        # the page (the pairs come marked by rival_pairs); one poison never decides
        decidable = [p for p in pairs if p.test.decidable(alpha)]
        significant = {id(p) for p in decidable if p.test.significant(alpha)}
        out.append(
            ThreatSummary(
                threat=threat,
                settings=len(pairs),
                stronger=sum(p.gap > 0 for p in pairs),
                stronger_significant=sum(p.gap > 0 and id(p) in significant for p in pairs),
                weaker=sum(p.gap < 0 for p in pairs),
                weaker_significant=sum(p.gap < 0 and id(p) in significant for p in pairs),
                underpowered=len(pairs) - len(decidable),
                alpha=alpha,
            )
        )
    return out
