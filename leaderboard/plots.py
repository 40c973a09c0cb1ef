"""The leaderboard's plots, drawn from the same typed rows as its tables: SAPA beside its base per
recipe (bar plots with their values written on them), a forest plot per threat model, the rho
ablation, the cost view's Figure 2 and every attack's metric against its crafting time.

matplotlib is imported only to draw (validating entries, the claims and ``verify`` import the
views without drawing anything); every file is written without a software tag, so the same
entries give the same bytes.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sapabench.core.atomic import replacing
from sapabench.core.names import NO_DEFENSE, SCRATCH, file_name, sapa_name
from sapabench.core.stats import sign_flip_interval
from sapabench.core.threats import NO_THREAT, THREATS
from sapabench.leaderboard.pairs import ALPHA, Pair, answer_pairs, protocol_label


@dataclass(frozen=True)
class Figure:
    """A written plot and where the page shows it: ``view`` is ``pairs`` (beside the Table-4
    view), ``threat`` (beside the tables of threat model ``threat``) or ``cost``; ``where`` holds
    the filter values it belongs to (dataset, arch, ...; a filter it does not name keeps it)."""

    path: Path
    view: str
    threat: str
    caption: str
    where: tuple[tuple[str, str], ...] = ()


def plots(
    entries: list[dict[str, Any]], pairs: list[Pair], out: Path, claims: dict[str, Any] | None = None
) -> list[Figure]:
    """Every plot of the leaderboard, written into ``out`` (``claims``: the folder's claims.json
    record, whose tested claims get a forest plot)."""
    # Imported here, not at the top: matplotlib (with its font cache) is needed only to draw, and
    # the backend must be chosen before pyplot is imported; validating entries, the claims and
    # verify import this module without drawing anything.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sapabench.leaderboard.cost import cost_plots

    # names in labels come from entries and plugins: text, never mathtext ($...$ would be parsed,
    # and a name like $\undefinedmacro$ would stop the whole render after every cell finished)
    with matplotlib.rc_context({"text.parse_math": False}):
        written = _pair_plots(pairs, out, plt)
        written += _forest_plots(pairs, out, plt)
        written += _rho_plots(entries, out, plt)
        written += cost_plots(entries, out, plt)
        written += _crafting_time_plots(entries, out, plt)
        if claims is not None:
            written += _claims_forest(claims, out, plt)
    return written


def _claims_forest(claims: dict[str, Any], out: Path, plt: Any) -> list[Figure]:
    """Every tested claim's gain (points, or logits on the margin) with its 95 % interval, a line
    at 0 and a mark at its delta (the paper's effect scaled to the setting): an interval right of
    0 is HELD, left of delta BELOW THE PAPER, left of 0 FAILED (each after the family's correction,
    which the verdict beside it states)."""
    rows = [r for r in claims["verdicts"] if r["kind"] == "claim" and r.get("gain") is not None]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(8.0, 0.34 * len(rows) + 1.6), dpi=100)
    for i, r in enumerate(rows):
        scale = 1.0 if r["decided_on"] == "adversarial margin" else 100.0
        gain = scale * r["gain"]
        lo, hi = (None, None) if r["interval"] is None else r["interval"]
        left = 0.0 if lo is None else gain - scale * lo
        right = 0.0 if hi is None else scale * hi - gain
        color = {"failed": "#c62828", "held": "#1a7f37", "held+below": "#1a7f37"}.get(r["verdict"], "#555")
        ax.errorbar(gain, i, xerr=[[left], [right]], fmt="o", color=color, capsize=3, markersize=5)
        if r.get("delta") is not None:
            ax.plot([scale * r["delta"]] * 2, [i - 0.35, i + 0.35], color="#1f4e9c", linewidth=2)
    ax.axvline(0.0, color="#555", linewidth=1)
    ax.set_yticks(range(len(rows)), [f"{r['id']} ({r['label']})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("gain (points; logits on the margin), 95 % exact interval; blue bar: delta", fontsize=8)
    ax.set_title("SAPA's gain per claim, against 0 and the paper's effect (delta)", fontsize=9)
    fig.tight_layout()
    path = out / "forest--claims.png"
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    caption = (
        "each tested claim's gain over its baseline with the 95 % interval of the exact sign-flip test, a line at 0 "
        "and a blue bar at delta (the paper's effect scaled to the setting); the verdict beside the id is decided "
        "after the family's correction"
    )
    return [Figure(path, "claims", "", caption)]


def _pair_plots(pairs: list[Pair], out: Path, plt: Any) -> list[Figure]:
    """Per dataset, victim architecture and base attack, the base and its SAPA twin side by side
    per recipe, protocol and defense (mean +/- SE), each bar with its value written on it, so a
    setting where every trial is 0 % reads as 0.0 and not as an empty plot."""
    written = []
    by_attack: dict[tuple[str, str, str], list[Pair]] = defaultdict(list)
    for p in pairs:
        by_attack[(p.dataset, p.arch, p.attack)].append(p)
    for (ds, arch, attack), rows in sorted(by_attack.items()):
        rows.sort(key=lambda p: (p.protocol, p.defense, p.recipe))
        labels = [
            p.recipe
            + ("" if p.protocol == SCRATCH else f"\n{p.protocol.split(' ')[0]}")
            + ("" if p.defense == NO_DEFENSE else f"\n+{p.defense}")
            for p in rows
        ]
        x = range(len(rows))
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 1.5), 3.6), dpi=100)
        for shift, arm, name, color in (
            (-0.2, [p.baseline for p in rows], attack, "#8da0cb"),
            (0.2, [p.sapa for p in rows], sapa_name(attack), "#fc8d62"),
        ):
            bars = ax.bar(
                [i + shift for i in x],
                [100 * a.mean for a in arm],
                0.4,
                yerr=[100 * a.se for a in arm],
                capsize=3,
                label=name,
                color=color,
                edgecolor="#333",
                linewidth=0.5,
            )
            ax.bar_label(bars, labels=[f"{100 * a.mean:.1f}" for a in arm], fontsize=7, padding=2)
        if all(p.baseline.mean == 0 and p.sapa.mean == 0 for p in rows):
            ax.text(
                0.5,
                0.5,
                "0 % in every setting"
                + (
                    "\nthe adversarial margin tells them apart:\nsee the margin columns beside"
                    if rows[0].margin
                    else ""
                ),
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=8,
                color="#555",
            )
        ax.set_xticks(list(x), labels)
        ax.set_title(f"{attack} vs SAPA\n{ds}, victim {arch}", fontsize=9)
        ax.set_ylim(0, 112)  # room for the values over 100 % bars
        path = _save(
            fig,
            ax,
            rows[0].metric,
            rows[0].higher_is_stronger,
            out / file_name("pair", ds, arch, attack, suffix=".png"),
        )
        written.append(
            Figure(
                path,
                "pairs",
                rows[0].threat,
                f"{attack} vs {sapa_name(attack)} on {ds}, victim {arch}: per recipe, "
                "protocol and defense, mean +/- SE",
                (("dataset", ds), ("arch", arch)),
            )
        )
    return written


def _forest_plots(pairs: list[Pair], out: Path, plt: Any) -> list[Figure]:
    """Per threat model, a forest plot of SAPA - base over every black-box setting (defended ones
    included, named so) where a SAPA attack met its own base: the paired mean difference over poisons (points of the
    metric, + = SAPA stronger) with the 95 % interval that inverts the exact sign-flip test (the
    claims' interval), a zero line, red where SAPA is weaker, hollow and without a bar where the
    design cannot reach alpha (one poison, or too few for the exact test)."""

    by_threat: dict[str, list[Pair]] = defaultdict(list)
    for p in answer_pairs(pairs):
        by_threat[p.threat].append(p)
    written = []
    for threat, rows in sorted(by_threat.items()):
        rows.sort(key=lambda p: (p.sapa_attack, p.defense, p.dataset, p.arch, p.protocol, p.recipe, p.numerics))
        fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(rows) + 1.5), dpi=100)
        for i, p in enumerate(rows):
            mean = 100 * p.test.mean_difference
            lo, hi = sign_flip_interval(p.test.differences, ALPHA) if p.test.decidable(ALPHA) else (mean, mean)
            color = "#c62828" if mean < 0 else "#1a7f37"
            hollow = not p.test.decidable(ALPHA)
            xerr = [[mean - 100 * lo if math.isfinite(lo) else 0.0], [100 * hi - mean if math.isfinite(hi) else 0.0]]
            if hollow:
                xerr = [[0.0], [0.0]]
            ax.errorbar(
                mean, i, xerr=xerr, fmt="o", color=color, mfc="white" if hollow else color, capsize=3, markersize=5
            )
        ax.axvline(0.0, color="#555", linewidth=1)
        several = len({r.dataset for r in rows}) > 1
        labels = [
            " · ".join(
                [p.sapa_attack, p.recipe, p.protocol]
                + ([p.dataset] if several else [])
                + ([] if p.defense == NO_DEFENSE else [f"+{p.defense}"])
            )
            for p in rows
        ]
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("SAPA - base (points; + = SAPA stronger), 95 % exact sign-flip interval over poisons", fontsize=8)
        ax.set_title(f"{threat}: SAPA against its own base", fontsize=9)
        fig.tight_layout()
        path = out / f"forest--{threat}.png"
        with replacing(path) as tmp:
            fig.savefig(tmp, format="png", metadata={"Software": None})
        plt.close(fig)
        written.append(
            Figure(
                path,
                "pairs",
                threat,
                f"{threat}: SAPA - base per setting, mean over poisons with the 95 % interval of the exact sign-flip "
                "test; red where SAPA is weaker, hollow (no interval) where one poison or so few cannot reach 0.05",
            )
        )
    return written


def _crafting_time_plots(entries: list[dict[str, Any]], out: Path, plt: Any) -> list[Figure]:
    """Per threat model (so the metric axis has one direction): every attacked entry's metric
    against its crafting seconds (log scale). Each attack family has its colour, baselines are
    squares and their SAPA twins circles, and the legend names every attack, so points stacked
    at the same cost still say whose they are."""
    written = []
    for threat in THREATS:
        attacked = [e for e in entries if e["setting"]["threat"] == threat and e["defense"] == NO_DEFENSE]
        if not attacked:
            continue
        families = sorted({e["base_attack"] for e in attacked})
        colors = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
        fig, ax = plt.subplots(figsize=(7.6, 4.0), dpi=100)
        for attack in sorted({e["attack"] for e in attacked}, key=lambda a: (a.removeprefix("sapa-"), a)):
            mine = [e for e in attacked if e["attack"] == attack]
            ax.errorbar(
                [max(e["timings"]["craft_s"], 1e-2) for e in mine],
                [100 * e["metric"]["mean"] for e in mine],
                yerr=[100 * e["metric"]["se"] for e in mine],
                fmt="o" if mine[0]["sapa"] else "s",
                color=colors[mine[0]["base_attack"]],
                mfc="white" if mine[0]["sapa"] else colors[mine[0]["base_attack"]],
                alpha=0.85,
                capsize=2,
                label=f"{attack} ({len(mine)})",
            )
        ax.set_xscale("log")
        times = [max(e["timings"]["craft_s"], 1e-2) for e in attacked]
        ax.set_xlim(min(times) / 1.6, max(times) * 1.6)  # a readable decade even when every attack took as long
        ax.set_ylim(-4, 104)  # percent: the whole range, so a flat 0 % reads as 0 % and not as noise
        ax.set_xlabel("crafting time of the poison sets (s, log scale)")
        ax.set_title(f"{threat} attacks: metric vs crafting time (squares: baseline, circles: SAPA)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(
            fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title="attack (settings)", title_fontsize=7
        )
        metric = attacked[0]["metric"]
        path = _save(
            fig, ax, metric["name"], metric["higher_is_stronger"], out / f"crafting-time--{threat}.png", legend=False
        )
        written.append(
            Figure(
                path,
                "threat",
                threat,
                f"{threat}: {metric['name'].replace('_', ' ')} of every entry against its "
                "crafting seconds (no defense)",
            )
        )
    return written


PAPER_RHO = 0.05  # the SAPA radius of every preset; a SAPA entry without a rho option used it


def rho_ablation(entries: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """The Table-10 view: per setting (dataset, arch, recipe, protocol, base attack, other
    options) and radius scale (``rho_scale``: absolute or relative), the SAPA entries by their
    radius rho and the baseline (rho = none, shared by both scales), where two or more radii
    were run."""
    groups: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"sapa": {}, "baseline": None})
    baselines: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        s = e["setting"]
        if e["defense"] != NO_DEFENSE or s["threat"] == NO_THREAT:
            continue
        options = {k: v for k, v in s["options"].items() if k not in ("rho", "rho_scale")}
        key = (s["dataset"], s["arch"], s["recipe"], protocol_label(s), e["base_attack"], json.dumps(options))
        if e["sapa"]:
            scale = str(s["options"].get("rho_scale", "absolute"))
            groups[(*key, scale)]["sapa"][float(s["options"].get("rho", PAPER_RHO))] = e
        elif "rho" not in s["options"] and "rho_scale" not in s["options"]:
            baselines[key] = e
    for key, g in groups.items():
        g["baseline"] = baselines.get(key[:-1])
    return {k: g for k, g in sorted(groups.items()) if len(g["sapa"]) >= 2}


def _rho_plots(entries: list[dict[str, Any]], out: Path, plt: Any) -> list[Figure]:
    written = []
    for (ds, arch, recipe, protocol, attack, _, scale), g in rho_ablation(entries).items():
        rhos = sorted(g["sapa"])
        fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=100)
        ax.errorbar(
            rhos,
            [100 * g["sapa"][r]["metric"]["mean"] for r in rhos],
            yerr=[100 * g["sapa"][r]["metric"]["se"] for r in rhos],
            fmt="o-",
            capsize=3,
            color="#fc8d62",
            label=sapa_name(attack),
        )
        base = g["baseline"]
        if base is not None:
            m, se = 100 * base["metric"]["mean"], 100 * base["metric"]["se"]
            ax.axhline(m, color="#8da0cb", label=f"{attack} (rho = none)")
            ax.axhspan(m - se, m + se, color="#8da0cb", alpha=0.25)
        metric = g["sapa"][rhos[0]]["metric"]
        ax.set_xscale("log")
        relative = scale != "absolute"
        ax.set_xlabel("SAPA radius rho" + (" (x ||theta|| / ||theta ResNet-18 at init||)" if relative else ""))
        ax.set_title(f"rho ablation: {attack}, {ds}/{arch}/{recipe}/{protocol}", fontsize=9)
        tail = f"--{scale}" if relative else ""
        name = file_name(
            "rho", ds, arch, recipe, protocol.replace("/", "-").split(" ")[0], f"{attack}{tail}", suffix=".png"
        )
        path = _save(fig, ax, metric["name"], metric["higher_is_stronger"], out / name)
        threat = g["sapa"][rhos[0]]["setting"]["threat"]
        where = (("dataset", ds), ("arch", arch), ("recipe", recipe), ("protocol", protocol))
        written.append(
            Figure(
                path, "threat", threat, f"rho ablation of {sapa_name(attack)}: {ds}/{arch}/{recipe}/{protocol}", where
            )
        )
    return written


def _save(fig: Any, ax: Any, metric: str, higher_is_stronger: bool, path: Path, legend: bool = True) -> Path:
    """Label the metric axis with its direction, add the legend, write ``path`` (no software tag:
    deterministic)."""
    import matplotlib.pyplot as plt

    ax.set_ylabel(
        f"{metric.replace('_', ' ')} (%), " + ("higher = stronger" if higher_is_stronger else "lower = stronger")
    )
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with replacing(path) as tmp:  # a link at ``path`` is replaced, never written through
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
