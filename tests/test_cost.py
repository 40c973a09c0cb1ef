"""The E&R cost view, its plot and the cost claims (section 5.5 of the SAPA paper)."""

import json

import pytest

from sapabench.benchmark.claims import test_cost_claims as cost_claims_of
from sapabench.benchmark.entries import entries_dir
from sapabench.leaderboard.cost import COST_COLUMNS, cost_verdicts, cost_view
from sapabench.leaderboard.render import render
from sapabench.leaderboard.views import table
from tests._entries import make_entry

SEEDS = range(8)


def _point(attack, k, r, values, craft_s, surrogates_s):
    """A backdoor entry over 8 craft seeds (one victim each) crafted with K x R surrogates."""
    return make_entry(
        attack=attack,
        values=values,
        threat="backdoor",
        metric="attack_success_rate",
        higher=True,
        cells=[(s, 100) for s in SEEDS],
        options={"ensemble": k, "reinit": r},
        attack_config={"ensemble": k, "reinit": r, "steps": 60},
        craft_s=craft_s * len(SEEDS),
        surrogates_s=surrogates_s * len(SEEDS),
    )


def _family(er_4x1):
    return [
        _point("sapa-sleeper-agent", 1, 1, [0.5 + 0.01 * s for s in SEEDS], 10.0, 20.0),
        _point("sapa-sleeper-agent", 2, 2, [0.6 + 0.01 * s for s in SEEDS], 40.0, 80.0),
        _point("sleeper-agent", 1, 1, [0.3 + 0.01 * s for s in SEEDS], 10.0, 20.0),
        _point("sleeper-agent", 2, 1, [0.35 + 0.01 * s for s in SEEDS], 20.0, 40.0),
        _point("sleeper-agent", 4, 1, er_4x1, 40.0, 80.0),
    ]


def test_the_cost_view_puts_every_k_x_r_beside_sapa_with_time_ratios():
    typed = cost_view(_family([0.2 + 0.01 * s for s in SEEDS]))
    assert typed[2].sapa_time_ratio == pytest.approx(0.25) and typed[2].test.p_greater == 2**-8  # numbers
    rows = table(COST_COLUMNS, typed)  # as cost.md and cost.csv show them
    assert [(r["attack"], r["K"], r["R"]) for r in rows] == [
        ("sleeper-agent", "1", "1"),
        ("sleeper-agent", "2", "1"),
        ("sleeper-agent", "4", "1"),
        ("sapa-sleeper-agent", "1", "1"),
        ("sapa-sleeper-agent", "2", "2"),
    ]
    four = rows[2]
    assert (four["craft_s"], four["surrogates_s"], four["total_s"]) == ("40.0", "80.0", "120.0")
    assert four["sapa_time_ratio"] == "0.25" and four["sapa_total_ratio"] == "0.25"  # SAPA 1x1: 10 s | 30 s
    assert four["vs_sapa_1x1_gap"] == "+30.0" and four["pairs"] == "8 craft seeds (paired)"
    assert four["p_value"] == "0.0078" and four["significant"] == "yes"  # 2^-7, the two-sided floor of 8 pairs
    assert rows[3]["vs_sapa_1x1_gap"] == "-"  # SAPA 1x1 is the reference


def test_sapa_not_weaker_by_the_margin_than_every_ensemble_holds():
    (verdict,) = cost_verdicts(_family([0.2 + 0.01 * s for s in SEEDS]), "sleeper-agent", "metric", 0.05, 0.10)
    assert verdict.verdict == "held" and verdict.overtaken is None
    assert [(r["K"], r["R"]) for r in verdict.rows] == [(1, 1), (2, 1), (4, 1)]


def test_an_ensemble_that_beats_sapa_fails_the_claim_and_names_the_cost_ratio():
    (verdict,) = cost_verdicts(_family([0.9 + 0.01 * s for s in SEEDS]), "sleeper-agent", "metric", 0.05, 0.10)
    assert verdict.verdict == "failed"
    assert (verdict.overtaken["K"], verdict.overtaken["R"]) == (4, 1)
    assert verdict.overtaken["time_ratio"] == pytest.approx(4.0)  # 40 s against SAPA's 10 s
    assert verdict.overtaken["total_ratio"] == pytest.approx(4.0)


def test_comparable_strength_at_a_fraction_of_the_cost_holds():
    """Table 11's situation: the largest ensemble a little stronger than SAPA 1x1 (3 points,
    inside the 10-point margin) in every pair: SAPA is non-inferior, the claim holds."""
    (verdict,) = cost_verdicts(_family([0.53 + 0.01 * s for s in SEEDS]), "sleeper-agent", "metric", 0.05, 0.10)
    four = verdict.rows[-1]
    assert four["test"].p_less == 2**-8 and four["p_noninferior"] == 2**-8
    assert verdict.verdict == "held" and verdict.overtaken is None
    # the same data with a 2-point margin: E&R is stronger by more than it, after Holm over 3 points
    (strict,) = cost_verdicts(_family([0.53 + 0.01 * s for s in SEEDS]), "sleeper-agent", "metric", 0.05, 0.02)
    assert strict.verdict == "failed" and strict.overtaken["p_inferior_holm"] == pytest.approx(3 * 2**-8)


def test_a_tie_within_noise_of_the_margin_is_inconclusive():
    tie = [0.6 + 0.01 * s + (0.15 if s % 2 else -0.15) for s in SEEDS]
    (verdict,) = cost_verdicts(_family(tie), "sleeper-agent", "metric", 0.05, 0.10)
    assert verdict.verdict == "inconclusive"


def test_without_ensembles_there_is_no_cost_view():
    plain = [e for e in _family([0.2] * 8) if e["setting"]["options"] == {"ensemble": 1, "reinit": 1}]
    assert cost_view(plain) == [] and cost_verdicts(plain, "sleeper-agent", "metric", 0.05, 0.10) == []


def test_cost_claims_are_read_from_the_results_and_plotted(tmp_path):
    folder = entries_dir(tmp_path)
    folder.mkdir(parents=True)
    for i, e in enumerate(_family([0.9 + 0.01 * s for s in SEEDS])):
        (folder / f"{i}.json").write_text(json.dumps(e))
    outcomes = {c.id: v for c, v in cost_claims_of(tmp_path, 0.05)}
    assert outcomes["F2-sleeper-agent"].verdict == "failed"
    assert outcomes["F2-gradient-matching"] is None  # untested: no gradient-matching results
    written = {p.name for p in render(folder, tmp_path / "board")}
    assert "cost.md" in written and any(n.startswith("cost--digits--backdoor--sleeper-agent") for n in written)
    assert "Figure 2 view" in (tmp_path / "board" / "leaderboard.html").read_text()
