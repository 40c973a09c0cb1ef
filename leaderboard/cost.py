"""The cost view: ensemble-and-re-initialisation (E&R) against SAPA, success against crafting time.

The paper's section 5.5 (Figure 2, Table 11), measured: per setting and attack family, one row
per (attack, K architectures, R initialisations) with the metric, the crafting time per poison
without and with the clean surrogates' training (E&R trains K x R surrogates, SAPA one), the
time ratio SAPA(1x1) / this row, and the paired comparison with SAPA at K = R = 1 (per craft
seed; positive gap = SAPA stronger). :func:`cost_verdicts` turns each family into the claim
"SAPA at K = R = 1 is at least as strong as E&R at every K x R measured", or, where it is not,
the cost ratio at which E&R overtakes it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sapabench.core.atomic import replacing
from sapabench.core.names import NO_DEFENSE, file_name
from sapabench.core.stats import PairedTest, adjust_p, sign_flip_p
from sapabench.core.threats import ADVERSARIAL_MARGIN, NO_THREAT
from sapabench.leaderboard.pairs import ALPHA, VIEW_CORRECTION, compare, numerics_label, protocol_label
from sapabench.leaderboard.plots import Figure
from sapabench.leaderboard.views import (
    Column,
    EntryRow,
    Num,
    adjusted_p,
    entry_row,
    p_value,
    same_name,
    significant_text,
)

SWEPT = ("ensemble", "reinit")


def ensemble_size(e: dict[str, Any]) -> tuple[int, int] | None:
    """(K, R) of an entry crafted by an attack with the E&R options, else None."""
    cfg = e["setting"]["attack_config"]
    if "ensemble" in cfg and "reinit" in cfg:
        return int(cfg["ensemble"]), int(cfg["reinit"])
    return None


def per_poison(e: dict[str, Any]) -> tuple[float, float]:
    """Mean crafting seconds per poison set, without and with its surrogates' training."""
    n = max(1, len(e["provenance"]["poison_sha256"]))
    t = e["timings"]
    return t["craft_s"] / n, (t["craft_s"] + t["surrogates_s"]) / n


@dataclass(frozen=True)
class CostPoint:
    entry: dict[str, Any]
    k: int
    r: int
    versus: PairedTest | None  # SAPA 1x1 against this entry (None for SAPA 1x1 itself)
    margin_versus: PairedTest | None


def cost_groups(entries: list[dict[str, Any]]) -> dict[tuple, list[CostPoint]]:
    """Per setting and base attack, every (attack, K, R) point, with SAPA at 1x1 compared to each
    (groups where some point has K x R > 1 and SAPA at 1x1 was measured)."""
    groups: dict[tuple, list[tuple[dict[str, Any], int, int]]] = defaultdict(list)
    for e in entries:
        size = ensemble_size(e)
        s = e["setting"]
        if size is None or e["defense"] != NO_DEFENSE or s["threat"] == NO_THREAT:
            continue
        options = {k: v for k, v in s["options"].items() if k not in SWEPT}
        variant = json.dumps([s["preset"], options, s["victim"]], sort_keys=True)
        key = (
            s["suite"],
            s["dataset"],
            s["threat"],
            protocol_label(s),
            s["arch"],
            s["recipe"],
            numerics_label(s),
            e["base_attack"],
            variant,
        )
        groups[key].append((e, *size))
    out = {}
    for key, members in sorted(groups.items()):
        sapa = next((e for e, k, r in members if e["sapa"] and (k, r) == (1, 1)), None)
        if sapa is None or all(k * r == 1 for _, k, r in members):
            continue
        points = []
        for e, k, r in sorted(members, key=lambda m: (m[0]["sapa"], m[1] * m[2], m[1], m[0]["attack"])):
            own = e is sapa
            both = ADVERSARIAL_MARGIN in e["measures"] and ADVERSARIAL_MARGIN in sapa["measures"]
            points.append(
                CostPoint(
                    e,
                    k,
                    r,
                    None if own else compare(sapa, e),
                    None if own or not both else compare(sapa, e, ADVERSARIAL_MARGIN),
                )
            )
        out[key] = points
    return out


@dataclass(frozen=True)
class CostRow:
    """One (attack, K, R) point of a cost group: its numbers beside SAPA at 1x1."""

    entry: EntryRow
    k: int
    r: int
    poisons: int
    craft_s: float  # per poison set
    total_s: float  # per poison set, with the clean surrogates' training
    sapa_time_ratio: float | None  # SAPA(1x1) crafting seconds / this row's
    sapa_total_ratio: float | None
    point: CostPoint
    p_adjusted: float | None = None  # the cost view's family correction (cost_view)

    @property
    def test(self) -> PairedTest | None:
        """The test the row reports (the margin where success is tied, targeted; else the metric),
        with its p adjusted over the cost view's family."""
        return None if self.point.versus is None else replace(_test(self.point), p_adjusted=self.p_adjusted)

    @property
    def gap(self) -> Num | None:
        if self.point.versus is None:
            return None
        test = _test(self.point)
        if test is self.point.margin_versus:
            return Num(test.mean_difference, "+.2f", prefix="margin ")
        return Num(test.mean_difference, "+.1f", 100.0)


COST_COLUMNS: tuple[Column[CostRow], ...] = (
    *same_name("dataset", "threat", "protocol", "attack", via="entry"),
    Column("K", lambda r: Num(r.k, "d")),
    Column("R", lambda r: Num(r.r, "d")),
    Column("metric", lambda r: r.entry.metric),
    Column("value", lambda r: r.entry.value),
    Column("margin", lambda r: r.entry.margin),
    Column("poisons", lambda r: Num(r.poisons, "d")),
    Column("craft_s", lambda r: Num(r.craft_s)),
    Column("surrogates_s", lambda r: Num(r.total_s - r.craft_s)),
    Column("total_s", lambda r: Num(r.total_s)),
    Column("sapa_time_ratio", lambda r: None if r.sapa_time_ratio is None else Num(r.sapa_time_ratio, ".2f")),
    Column("sapa_total_ratio", lambda r: None if r.sapa_total_ratio is None else Num(r.sapa_total_ratio, ".2f")),
    Column("vs_sapa_1x1_gap", lambda r: r.gap),
    Column("p_value", lambda r: None if r.test is None else p_value(r.test.p_two_sided, ".4f")),
    Column("p_adjusted", lambda r: adjusted_p(r.test)),
    Column("significant", lambda r: significant_text(r.test)),
    Column("pairs", lambda r: None if r.test is None else f"{r.test.n} {r.test.unit}s ({r.test.design})"),
)
"""The columns of ``cost.md|.csv``."""


def cost_view(entries: list[dict[str, Any]]) -> list[CostRow]:
    """The rows of ``cost.md|.csv`` and the page's cost view (see the module docstring)."""
    rows = []
    for points in cost_groups(entries).values():
        sapa = next(p for p in points if p.versus is None)
        sapa_craft, sapa_total = per_poison(sapa.entry)
        for p in points:
            craft, total = per_poison(p.entry)
            rows.append(
                CostRow(
                    entry_row(p.entry),
                    p.k,
                    p.r,
                    len(p.entry["provenance"]["poison_sha256"]),
                    craft,
                    total,
                    sapa_craft / craft if craft > 0 else None,
                    sapa_total / total if total > 0 else None,
                    p,
                )
            )
    # one significance convention with every other view: the exact two-sided p, adjusted by
    # Benjamini-Yekutieli over this view's decidable comparisons
    tested = [i for i, r in enumerate(rows) if r.test is not None and r.test.decidable(ALPHA)]
    adjusted = adjust_p([rows[i].test.p_two_sided for i in tested], VIEW_CORRECTION)  # type: ignore[union-attr]
    for i, q in zip(tested, adjusted, strict=True):
        rows[i] = replace(rows[i], p_adjusted=q)
    return rows


def _test(p: CostPoint) -> PairedTest:
    """The test a cost row reports: the margin where success is tied (targeted), else the metric."""
    assert p.versus is not None
    if p.margin_versus is not None and all(d == 0 for d in p.versus.differences):
        return p.margin_versus
    return p.versus


@dataclass(frozen=True)
class CostVerdict:
    """One family's cost claim, a non-inferiority test with ``margin`` fixed in advance:
    ``held`` where SAPA 1x1 is significantly *less than the margin weaker* than E&R at every
    K x R (intersection-union: each point's one-sided test at alpha, no correction needed);
    ``failed`` where E&R is significantly stronger by more than the margin at some K x R after
    Holm's correction over the points (``overtaken`` names the cheapest such point and its time
    ratio); ``inconclusive`` otherwise. The two outcomes exclude each other."""

    setting: tuple
    attack: str
    verdict: str
    rows: list[dict[str, Any]]
    overtaken: dict[str, Any] | None
    margin: float


def margin_p(test: PairedTest, margin: float) -> tuple[float, float] | None:
    """The exact one-sided p-values of SAPA being weaker than an E&R point by less than
    ``margin`` (non-inferior) and by more (inferior): sign-flip tests of the paired differences
    (SAPA - E&R, > 0 = SAPA stronger) shifted by the margin; None for an unpaired design."""
    if test.design != "paired" or test.n == 0:
        return None
    shifted = [d + margin for d in test.differences]
    return sign_flip_p(shifted), sign_flip_p([-d for d in shifted])


def cost_verdicts(
    entries: list[dict[str, Any]], attack: str, measure: str, alpha: float, margin: float
) -> list[CostVerdict]:
    """The cost claim for base attack ``attack`` in every setting where it was measured, on the
    threat model's metric or on the adversarial margin (``measure``), with the non-inferiority
    ``margin`` in that measure's units (a fraction for metrics)."""
    out = []
    for key, points in cost_groups(entries).items():
        if key[7] != attack:
            continue
        sapa = next(p for p in points if p.versus is None)
        sapa_craft, sapa_total = per_poison(sapa.entry)
        rows = []
        for p in points:
            if p.entry["sapa"]:
                continue
            test = p.margin_versus if measure == ADVERSARIAL_MARGIN else p.versus
            if test is None or test.n == 0:
                continue
            craft, total = per_poison(p.entry)
            shifted = margin_p(test, margin)
            rows.append(
                {
                    "attack": p.entry["attack"],
                    "K": p.k,
                    "R": p.r,
                    "test": test,
                    "p_noninferior": None if shifted is None else shifted[0],
                    "p_inferior": 1.0 if shifted is None else shifted[1],
                    "time_ratio": craft / sapa_craft if sapa_craft > 0 else float("inf"),
                    "total_ratio": total / sapa_total if sapa_total > 0 else float("inf"),
                }
            )
        if not rows:
            continue
        for r, q in zip(rows, adjust_p([r["p_inferior"] for r in rows], "holm"), strict=True):
            r["p_inferior_holm"] = q
        losing = sorted((r for r in rows if r["p_inferior_holm"] < alpha), key=lambda r: r["total_ratio"])
        if losing:
            verdict = "failed"
        elif all(r["p_noninferior"] is not None and r["p_noninferior"] < alpha for r in rows):
            verdict = "held"
        else:
            verdict = "inconclusive"
        out.append(CostVerdict(key, attack, verdict, rows, losing[0] if losing else None, margin))
    return out


def cost_plots(entries: list[dict[str, Any]], out: Path, plt: Any) -> list[Figure]:
    """Figure 2, measured: per setting and family, the metric against crafting time per poison
    (log scale; left without, right with the surrogates' training), one point per (attack, K, R)
    with standard-error bars; E&R baselines as squares, SAPA as circles."""
    written = []
    for (_, ds, threat, protocol, arch, _, _, attack, _), points in cost_groups(entries).items():
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.0), dpi=100, sharey=True)
        for ax, with_surrogates in zip(axes, (False, True), strict=True):
            for p in points:
                e, m = p.entry, p.entry["metric"]
                x = per_poison(e)[1 if with_surrogates else 0]
                ax.errorbar(
                    max(x, 1e-3),
                    100 * m["mean"],
                    yerr=100 * m["se"],
                    fmt="o" if e["sapa"] else "s",
                    color="#fc8d62" if e["sapa"] else "#8da0cb",
                    capsize=3,
                )
                ax.annotate(  # SAPA below its point, E&R above: same-cost points keep apart labels
                    f"{'SAPA ' if e['sapa'] else ''}{p.k}x{p.r}",
                    (max(x, 1e-3), 100 * m["mean"]),
                    fontsize=7,
                    xytext=(4, -10 if e["sapa"] else 4),
                    textcoords="offset points",
                )
            ax.set_xscale("log")
            ax.set_xlabel("crafting s / poison set" + (" + surrogates' training" if with_surrogates else ""))
            ax.grid(alpha=0.3)
        m0 = points[0].entry["metric"]
        direction = "higher = stronger" if m0["higher_is_stronger"] else "lower = stronger"
        axes[0].set_ylabel(f"{m0['name']} (%), {direction}")
        fig.suptitle(f"{attack}: E&R (squares, KxR) vs SAPA (circles), {ds} {arch} {protocol}", fontsize=9)
        fig.tight_layout()
        path = out / file_name("cost", ds, threat, attack, protocol.replace("/", "-").replace(" ", "_"), suffix=".png")
        with replacing(path) as tmp:  # a link at ``path`` is replaced, never written through
            fig.savefig(tmp, format="png", metadata={"Software": None})
        plt.close(fig)
        where = (("dataset", ds), ("arch", arch), ("protocol", protocol))
        written.append(Figure(path, "cost", threat, f"{attack}: E&R vs SAPA, {ds} {arch} {protocol}", where))
    return written
