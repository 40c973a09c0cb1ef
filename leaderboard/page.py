"""The leaderboard page: one self-contained HTML file, readable offline, rendered from the entry
files (and the ``runs.json`` / ``claims.json`` records beside them) with the Jinja2 template
``templates/leaderboard.html.j2``.

What it shows, top to bottom: what was run (suites, datasets, protocols, trials, machine,
versions, every run's executor and wall time) and the claims' verdicts when ``sapabench claims``
was run on these entries; filters (dataset, architecture, recipe, protocol, defense); the
SAPA-vs-baseline view with its bar plots beside it; per threat model, one ranked table per
victim protocol (strongest attack first, the clean reference beside) with the crafting-time
plot of that threat model; the cost view; the defense view; and every entry. Rows that stand
for an entry open into its detail: trial values with their seeds, clean accuracy, timings per
phase and device, poison hashes, setting and provenance. Columns sort on a click.

Scripts, styles and plots (as ``data:`` URIs) are inline and nothing is fetched, so the file
can be mailed or archived; the same entries, records and plots give the same bytes.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from sapabench.core.names import NO_DEFENSE, base_name, is_sapa
from sapabench.core.threats import ADVERSARIAL_MARGIN, NO_THREAT, THREATS
from sapabench.leaderboard.cost import CostRow
from sapabench.leaderboard.defended import decide
from sapabench.leaderboard.pairs import (
    ALPHA,
    FILTERS,
    SIGNIFICANCE_NOTE,
    Pair,
    numerics_label,
    protocol_label,
)
from sapabench.leaderboard.plots import Figure
from sapabench.leaderboard.records import VERDICT_TEXT, VERDICTS, entries_digest, twin_dataset
from sapabench.leaderboard.summary import threat_summaries
from sapabench.leaderboard.views import (
    Cell,
    Change,
    Column,
    DefenseRow,
    EntryRow,
    Num,
    Spread,
    ThreatRow,
    decided,
    defense_decision,
    defense_test,
    eps_text,
    logits,
    metric_label,
    num,
    oracle_share,
    pairs_label,
    pct,
    sig,
    sort_key,
    tested_p,
    text,
)

TEMPLATE = "leaderboard.html.j2"


@dataclass(frozen=True)
class Row:
    """One table row: its cells, each cell's numeric sort key (None: sorted as text), the filter
    values it belongs to, the entry whose detail it opens (None: no detail) and CSS classes per cell."""

    cells: tuple[str, ...]
    keys: tuple[float | None, ...]
    where: tuple[tuple[str, str], ...]
    detail: dict[str, Any] | None = None
    marks: tuple[str, ...] = ()
    cls: str = ""
    anchor: str = ""  # the row's permalink id (the entries table: ``entry-<entry_id>``)


@dataclass(frozen=True)
class Table:
    """A sortable table; ``numeric`` columns (some row has a number there) align right."""

    caption: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    tips: tuple[str, ...] = ()

    @property
    def numeric(self) -> tuple[bool, ...]:
        return tuple(any(r.keys[i] is not None for r in self.rows) for i in range(len(self.columns)))


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    note: str
    tables: tuple[Table, ...]
    figures: tuple[dict[str, Any], ...] = ()
    wide: bool = False  # figures under the tables (wide plots) instead of beside them


def _row(
    cells: Iterable[Cell],
    where: dict[str, str],
    detail: dict[str, Any] | None = None,
    marks: Iterable[str] = (),
    cls: str = "",
    anchor: str = "",
) -> Row:
    """A table row from typed cells: each shown as HTML text and sorted by its own number."""
    cells = tuple(cells)
    marks = tuple(marks) or ("",) * len(cells)
    return Row(
        tuple(text(c, html=True) for c in cells),
        tuple(sort_key(c) for c in cells),
        tuple(sorted(where.items())),
        detail,
        marks,
        cls,
        anchor,
    )


def _table(
    caption: str,
    columns: tuple[Column[Any], ...],
    rows: list[Any],
    where: Any,
    details: Any = None,
    setting: tuple[list[str], str] | None = None,
    anchor: Any = None,
) -> Table:
    """A page table of typed ``rows`` read through ``columns`` (``where(row)``: its filter
    values; ``details(row)``: the entry detail it opens), with a first ``setting`` column (its
    texts per row and its tooltip) where the rows differ in more than the caption says;
    ``anchor(row)``: the row's permalink id."""
    out = []
    for i, r in enumerate(rows):
        cells: list[Cell] = [c.cell(r) for c in columns]
        marks = [c.mark(r) if c.mark else "" for c in columns]
        if setting is not None:
            cells, marks = [setting[0][i], *cells], ["", *marks]
        out.append(
            _row(
                cells,
                where(r),
                None if details is None else details(r),
                marks,
                anchor="" if anchor is None else anchor(r),
            )
        )
    names = tuple(c.name for c in columns)
    tips = tuple(c.tip for c in columns)
    if setting is not None:
        names, tips = ("setting", *names), (setting[1], *tips)
    return without_empty(Table(caption, names, tuple(out), tips))


def _pct(m: dict[str, Any], trials: int) -> str:
    return text(Spread(m["mean"], m["se"], trials), html=True)


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min {sec:02d} s"


def _metric_label(e: dict[str, Any]) -> str:
    return metric_label(e["metric"]["name"], e["metric"]["higher_is_stronger"])


def detail(e: dict[str, Any]) -> dict[str, Any]:
    """What an entry's expandable detail shows."""
    s, t, p, m = e["setting"], e["timings"], e["provenance"], e["metric"]
    margin = e["measures"].get(ADVERSARIAL_MARGIN)
    trials = []
    for i, ((craft, victim), value) in enumerate(zip(p["cell_seeds"], m["values"], strict=True)):
        row = [str(craft), str(victim), f"{100 * value:.1f}"]
        if margin is not None:
            row += [f"{margin['values'][i]:+.2f}", f"{margin['clean_values'][i]:+.2f}"]
        trials.append(row)
    seeds = p["craft_seeds"]
    poisons = (
        [[str(c), h] for c, h in zip(seeds, p["poison_sha256"], strict=True)]
        if len(seeds) == len(p["poison_sha256"])
        else [["-", h] for h in p["poison_sha256"]]
    )
    devices = [
        [
            name,
            str(d["trials"]),
            ", ".join(d["hosts"]) or "-",
            f"{d['train_s_mean']:.1f}",
            f"{d['eval_s_mean']:.2f}",
            f"{d['images_per_s']:.0f}",
            f"{d['peak_memory_mb']:.0f}",
        ]
        for name, d in sorted(t["devices"].items())
    ]
    phases = [
        ("crafting (all poison sets)", f"{t['craft_s']:.1f} s"),
        ("clean surrogates' training", f"{t['surrogates_s']:.1f} s"),
        (
            "victim training, per victim",
            "per device below" if t["train_s_mean"] is None else f"{t['train_s_mean']:.1f} s",
        ),
        ("evaluation, per victim", "per device below" if t["eval_s_mean"] is None else f"{t['eval_s_mean']:.2f} s"),
        ("total", f"{t['total_s']:.1f} s"),
    ]
    setting = [
        ("suite", s["suite"]),
        ("threat model", s["threat"]),
        ("eps", f"{s['eps'] * 255:.1f}/255"),
        ("budget", f"{s['budget']:g}"),
        ("preset", s["preset"]),
        ("options", json.dumps(s["options"], sort_keys=True)),
        ("victim", json.dumps(s["victim"], sort_keys=True)),
        ("protocol", protocol_label(s)),
        ("numerics", numerics_label(s)),
        ("crafting numerics", numerics_label(s, "craft_")),
        ("surrogate", s["surrogate"]),
    ]
    provenance = [
        ("sapabench", p["sapabench_version"]),
        ("git commit", p["git_commit"]),
        ("torch", p["torch"]),
        ("timm", p["timm"]),
        ("device", p["device"]),
        ("instruction set", p["isa"]),
        ("deterministic", "yes" if p["deterministic"] else "no"),
        ("crafted on", ", ".join(t["craft_devices"]) or "-"),
        ("schema", f"v{e['schema_version']}"),
        ("content sha256", e["content_sha256"]),
    ]
    return {
        "title": f"{e['attack']}"
        + ("" if e["defense"] == NO_DEFENSE else f" + {e['defense']}")
        + f" ({e['entry_id']})",
        "metric": _metric_label(e),
        "trial_columns": ["craft seed", "victim seed", "metric %"]
        + (["adv. margin", "clean margin"] if margin is not None else []),
        "trials": trials,
        "summary": f"{m['name'].replace('_', ' ')} {_pct(m, m['trials'])} over {m['trials']} trials; clean accuracy "
        f"{_pct(e['clean_accuracy'], m['trials'])}"
        + ("" if margin is None else f"; adversarial margin {margin['mean']:+.2f} ± {margin['se']:.2f}"),
        "phases": phases,
        "devices": devices,
        "poisons": poisons,
        "defense_stats": [
            (k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in sorted(e["defense_stats"].items())
        ],
        "setting": setting,
        "attack_config": json.dumps(s["attack_config"], sort_keys=True, indent=1),
        "provenance": provenance,
    }


def _unique(values: Iterable[str]) -> str:
    return ", ".join(sorted(set(values))) or "-"


def run_summary(entries: list[dict[str, Any]], runs: dict[str, Any] | None) -> dict[str, Any]:
    """The page's header: what was run, on what, with which versions, and every run's timing."""
    settings = [e["setting"] for e in entries]
    provenance = [e["provenance"] for e in entries]
    hosts = sorted({h for e in entries for d in e["timings"]["devices"].values() for h in d["hosts"]})
    devices = sorted({name for e in entries for name in e["timings"]["devices"]})
    attacked = [e for e in entries if e["setting"]["threat"] != NO_THREAT]
    poisons = {h for e in entries for h in e["provenance"]["poison_sha256"]}
    facts = [
        ("suite", (runs or {}).get("suite") or _unique(s["suite"] for s in settings)),
        ("datasets", _unique(s["dataset"] for s in settings)),
        ("victim protocols", _unique(protocol_label(s) for s in settings)),
        ("architectures", _unique(s["arch"] for s in settings)),
        ("recipes", _unique(s["recipe"] for s in settings)),
        (
            "attacks",
            f"{len({e['attack'] for e in attacked})} ({sum(e['sapa'] for e in attacked)} SAPA entries of "
            f"{len(attacked)} attacked)",
        ),
        ("defenses", _unique(e["defense"] for e in entries)),
        (
            "trials",
            f"{sum(e['metric']['trials'] for e in entries)} victims in {len(entries)} entries; {len(poisons)} poison sets",
        ),
        ("machine", f"{_unique(devices)}" + (f" on {', '.join(hosts)}" if hosts else "")),
        ("instruction set", _unique(p["isa"] for p in provenance)),
        (
            "versions",
            f"sapabench {_unique(p['sapabench_version'] for p in provenance)}, torch {_unique(p['torch'] for p in provenance)}"
            f", timm {_unique(p['timm'] for p in provenance)}, git {_unique(p['git_commit'][:12] for p in provenance)}",
        ),
        ("deterministic", _unique("yes" if p["deterministic"] else "no" for p in provenance)),
    ]
    run_rows = []
    if runs is not None:
        total = sum(r["wall_s"] for r in runs["runs"])
        facts.append(
            ("wall time", f"{_seconds(total)} over {len(runs['runs'])} run(s)"),
        )
        for r in runs["runs"]:
            run_rows.append(
                [
                    r["started_at"],
                    _executor(r),
                    str(r.get("concurrency", "-"))
                    + (f" x {r['threads_per_task']} threads" if "threads_per_task" in r else ""),
                    r["device"],
                    str(r["cells"]),
                    str(r["failed"]),
                    _seconds(r["wall_s"]),
                    f"{r['device_s']:.0f} s",
                ]
            )
    return {"facts": facts, "runs": run_rows}


def _executor(run: dict[str, Any]) -> str:
    """The executor of a run as the page shows it (with a Ray run's address and cluster)."""
    text = run["executor"]
    if isinstance(run.get("address"), str):
        text += f" @ {run['address']}"
    cluster = run.get("cluster")
    if isinstance(cluster, dict) and cluster:
        text += " (" + ", ".join(f"{k} {v:g}" for k, v in sorted(cluster.items()) if isinstance(v, (int, float))) + ")"
    if isinstance(run.get("gpus_per_victim"), (int, float)) and run["gpus_per_victim"] > 0:
        text += f", {run['gpus_per_victim']:g} GPU per victim"
    return text


def claims_view(
    claims: dict[str, Any] | None, entries: list[dict[str, Any]], figures: list[Figure] = ()
) -> dict[str, Any] | None:
    """The verdicts block, or None when claims were not checked; ``stale`` when they were checked
    against other entries than these. Untested claims (no matching results: most of the paper's
    rows for any one suite) are listed apart, folded."""
    if claims is None:
        return None
    rows = claims["verdicts"]
    return {
        "alpha": claims["alpha"],
        "test": claims["test"],
        "correction": claims["correction"],
        "plan": claims.get("plan"),
        "stale": claims["entries_sha256"] != entries_digest(entries),
        "counts": [(k.replace("+", "-"), VERDICT_TEXT[k], sum(r["verdict"] == k for r in rows)) for k in VERDICTS],
        "rows": [_verdict_row(r) for r in rows if r["verdict"] != "untested"],
        "untested": [_verdict_row(r) for r in rows if r["verdict"] == "untested"],
        "figures": [_figure(f) for f in figures if f.view == "claims"],
    }


def _p4(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _gain_text(r: dict[str, Any]) -> str:
    """A claim's gain with its 95 % interval, in points (logits on the margin)."""
    if r.get("gain") is None:
        return "-"
    margin = r["decided_on"] == "adversarial margin"
    scale, spec = (1.0, "+.2f") if margin else (100.0, "+.1f")
    lo, hi = r["interval"] or (None, None)
    bound = "[" + ", ".join("∞" if x is None else format(scale * x, spec) for x in (lo, hi)) + "]"
    return f"{format(scale * r['gain'], spec)} {bound}"


def _design_power(r: dict[str, Any]) -> str:
    dp = r.get("design_power")
    if not dp:
        return "-"
    return f"{100 * dp['held_at_delta']:.0f}% / {100 * dp['below_at_zero']:.0f}%"


def _answers(entries: list[dict[str, Any]], claims: dict[str, Any] | None) -> list[str]:
    """The page's first lines: per threat model SAPA against its base, the claims' verdicts, and,
    where no setting could decide anything and no claim was decided, that this run decides nothing."""
    summaries = threat_summaries(entries)
    lines = [a.line() for a in summaries] + claim_answers(claims)
    decided = claims is not None and any(
        r["kind"] == "claim" and r["verdict"] not in ("inconclusive", "untested") for r in claims["verdicts"]
    )
    if summaries and all(a.underpowered == a.settings for a in summaries) and not decided:
        lines.append(
            "this run decides nothing: every setting has too few poisons to reach alpha (it demonstrates the "
            "pipeline; the main job, sapabench run, is designed to decide)"
        )
    return lines


ANSWER_CLAIMS = 5
"""How many claim verdicts the page's first lines name (the primary claims first)."""


def claim_answers(claims: dict[str, Any] | None) -> list[str]:
    """The claims' verdicts as the page's first lines: the pre-registered ones, else the decided
    ones (at most :data:`ANSWER_CLAIMS`), each with its gain, interval and delta."""
    if claims is None:
        return []
    rows = [r for r in claims["verdicts"] if r["kind"] == "claim" and r["verdict"] != "untested"]
    if claims.get("plan"):
        rows = [r for r in rows if r["family"] == "primary"]
    else:
        rows = [r for r in rows if r["verdict"] != "inconclusive"]
    out = []
    for r in rows[:ANSWER_CLAIMS]:
        delta = "" if r.get("delta") is None else f", delta {_verdict_row(r)['delta_text']}"
        out.append(f"claim {r['id']}: {VERDICT_TEXT[r['verdict']].upper()} (gain {_gain_text(r)}{delta})")
    if len(rows) > ANSWER_CLAIMS:
        out.append(f"and {len(rows) - ANSWER_CLAIMS} more decided claims below")
    return out


def _verdict_row(r: dict[str, Any]) -> dict[str, Any]:
    scale = 1.0 if r["decided_on"] == "adversarial margin" else 100.0
    return {
        **r,
        "css": r["verdict"].replace("+", "-"),
        "words": VERDICT_TEXT.get(r["verdict"], r["verdict"]),
        "p": _p4(r["p_value"]),
        "q": _p4(r["p_adjusted"]),
        "p_below_text": _p4(r.get("p_below")),
        "q_below": _p4(r.get("p_below_adjusted")),
        "floor": _p4(r["p_floor"]),
        "gain_text": _gain_text(r),
        "delta_text": "-" if r.get("delta") is None else f"{scale * r['delta']:+.1f}",
        "power_text": _design_power(r),
        "proxy": r["kind"] == "claim" and r["decided_on"] != "metric",
        "twin": twin_dataset(r) is not None,
    }


def _figure(f: Figure) -> dict[str, Any]:
    data = base64.b64encode(f.path.read_bytes()).decode("ascii")
    return {"src": f"data:image/png;base64,{data}", "caption": f.caption, "where": f.where, "name": f.path.name}


def _direction(p: Pair) -> str:
    return "↑" if p.higher_is_stronger else "↓"


PAIR_PAGE: tuple[Column[Pair], ...] = (
    Column(
        "attack",
        lambda p: f"{p.attack} ({p.metric.replace('_', ' ')} {_direction(p)})",
        "the baseline attack; SAPA = its sharpness-aware version",
    ),
    Column(
        "baseline",
        lambda p: Spread(p.baseline.mean, p.baseline.se, p.baseline.trials),
        "baseline metric %, mean ± SE over trials",
    ),
    Column("SAPA", lambda p: Spread(p.sapa.mean, p.sapa.se, p.sapa.trials), "SAPA metric %, mean ± SE"),
    Column("gap", lambda p: Num(p.gap, "+.1f", 100.0), "gap in points, > 0 = SAPA stronger", lambda p: sig(p.test)),
    Column(
        "p",
        lambda p: tested_p(p.test),
        "exact two-sided p (sign-flip test over poisons); bold where significant after Benjamini-Yekutieli over "
        "the page's comparisons; ° where the design cannot reach alpha (one poison, or floor 2^(1-poisons))",
        lambda p: sig(p.test),
    ),
    Column("pairs", lambda p: pairs_label(p.test), "what was paired"),
    Column(
        "margin",
        lambda p: None if p.margin is None else Change(p.margin.baseline.mean, p.margin.sapa.mean),
        "adversarial margin on the target in logits: baseline → SAPA (> 0 = success)",
    ),
    Column(
        "margin gap",
        lambda p: None if p.margin_test is None else logits(p.margin_test.mean_difference),
        "margin gap in logits, > 0 = SAPA stronger",
        lambda p: sig(p.margin_test),
    ),
    Column(
        "margin p",
        lambda p: tested_p(p.margin_test),
        "two-sided p on the margin, marked as p",
        lambda p: sig(p.margin_test),
    ),
)
"""The page's Table-4 view (after its setting column)."""


def _pairs_section(pairs: list[Pair], figures: list[Figure]) -> Section:
    parts = [
        (p.dataset, p.arch, p.recipe, p.protocol, p.numerics) + (() if p.defense == NO_DEFENSE else (f"+{p.defense}",))
        for p in pairs
    ]
    width = max(len(part) for part in parts)
    parts = [part + ("",) * (width - len(part)) for part in parts]  # defended rows name their defense
    shared, varying = _split_setting(parts, keep=2)
    settings = [" · ".join(part[i] for i in varying if part[i]) for part in parts]
    tip = (
        "what differs between the rows (what they share is in the caption): dataset · victim architecture · recipe · "
        "protocol · numerics (+ defense)"
    )
    return Section(
        "pairs",
        "SAPA vs baseline (Table-4 view)",
        "Each SAPA attack beside its own baseline in the same setting (never across protocols or numerics). gap in "
        "points > 0: SAPA stronger (for accuracy metrics, ↓, the baseline's accuracy minus SAPA's); p: "
        f"{SIGNIFICANCE_NOTE}. Known-init rows are a white-box upper bound.",
        (_table(" · ".join(shared), PAIR_PAGE, pairs, lambda p: p.where, setting=(settings, tip)),),
        tuple(_figure(f) for f in figures if f.view == "pairs"),
    )


GRID_LEVELS = (5.0, 15.0, 30.0, 50.0)
"""Points of strength (success, or accuracy lost against the clean victim) at which a grid cell
turns one shade stronger."""


def _heat(points: float) -> str:
    """The CSS mark of a grid cell ``points`` strong: ``h0`` (none) to ``h4``."""
    return f"h{sum(points >= level for level in GRID_LEVELS)}"


def _options(preset: str, options: dict[str, Any]) -> str:
    return json.dumps([preset, options], sort_keys=True)


def _gap_cell(p: Pair | None) -> tuple[Cell, str]:
    """A SAPA - base grid cell: the gap in points, ``*`` where significant by the page's one
    convention (:data:`sapabench.leaderboard.pairs.SIGNIFICANCE_NOTE`), ``°`` where the design
    cannot reach alpha."""
    if p is None:
        return None, ""
    t = p.test
    flag = "°" if not t.decidable(ALPHA) else "*" if t.significant(ALPHA) else ""
    return Num(p.gap, "+.1f", 100.0, suffix=flag), "up" if p.gap > 0 else "down" if p.gap < 0 else ""


def _grid_tables(entries: list[dict[str, Any]], pairs: list[Pair], axis: str) -> dict[str, list[Table]]:
    """Per threat model, one attack x ``axis`` grid per setting: ``recipe`` (undefended victims,
    one column per recipe) or ``defense`` (one column per defense, ``none`` first, per recipe;
    only settings where a defense ran). The clean victims' accuracy on top, in every column (in a
    defense column the clean victims trained under that defense: its cost with no attack), every
    attack's metric shaded by its strength (success; for untargeted attacks the accuracy lost
    against the clean victims of its column), on the defense axis a row of each defense's
    reduction of the attack (its exact interval over poisons, bold where significant), and a
    SAPA - base row per SAPA attack whose base ran."""
    clean: dict[tuple, float] = {}
    grids: dict[tuple, dict[str, dict[str, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for e in entries:
        s = e["setting"]
        where = (s["dataset"], s["arch"], protocol_label(s), numerics_label(s))
        if s["threat"] == NO_THREAT:
            clean[(*where, s["recipe"], e["defense"])] = e["metric"]["mean"]
            continue
        if axis == "recipe" and e["defense"] != NO_DEFENSE:
            continue
        column = s["recipe"] if axis == "recipe" else e["defense"]
        fixed = where if axis == "recipe" else (*where, s["recipe"])
        grids[(s["threat"], fixed, _options(s["preset"], s["options"]))][e["attack"]][column] = e
    twin = {
        (
            p.threat,
            p.dataset,
            p.arch,
            p.protocol,
            p.numerics,
            p.recipe,
            p.defense,
            p.sapa_attack,
            _options(p.preset, p.options),
        ): p
        for p in pairs
        if p.own_base
    }
    tables: dict[str, list[Table]] = defaultdict(list)
    decisions = decide(entries) if axis == "defense" else {}
    for key in sorted(grids):
        threat, fixed, options = key
        by_attack = grids[key]
        columns = sorted({c for cells in by_attack.values() for c in cells}, key=lambda c: (c != NO_DEFENSE, c))
        if axis == "defense" and columns == [NO_DEFENSE]:
            continue
        ds, arch, protocol, numerics = fixed[:4]

        def cell_where(column: str, fixed: tuple = fixed) -> tuple[str, str]:
            """(recipe, defense) of a column."""
            return (column, NO_DEFENSE) if axis == "recipe" else (fixed[4], column)

        def reference(column: str, fixed: tuple = fixed) -> float | None:
            return clean.get((*fixed[:4], *cell_where(column)))

        rows = []
        refs = [reference(c) for c in columns]
        if threat == "untargeted" or any(r is not None for r in refs):
            rows.append(
                _row(["clean (accuracy)", *(pct(r) for r in refs)], {"dataset": ds, "arch": arch}, cls="cleanrow")
            )
        for attack in sorted(by_attack, key=lambda a: (base_name(a), is_sapa(a))):
            cells: list[Cell] = [attack]
            marks = ["sapa" if is_sapa(attack) else ""]
            for c in columns:
                e = by_attack[attack].get(c)
                if e is None:
                    cells.append(None)
                    marks.append("")
                    continue
                m = e["metric"]
                baseline = reference(c)
                strength = 100 * (m["mean"] if m["higher_is_stronger"] else (baseline or 1.0) - m["mean"])
                cells.append(pct(m["mean"]))
                marks.append(_heat(strength))
            rows.append(_row(cells, {"dataset": ds, "arch": arch}, marks=marks))
            if axis == "defense":  # each defense's reduction of this attack, with its interval
                reductions = [
                    None if (e := by_attack[attack].get(c)) is None else decisions.get(e["entry_id"]) for c in columns
                ]
                if any(d is not None and d.reduction is not None for d in reductions):
                    rows.append(
                        _row(
                            [
                                f"{attack}: reduction",
                                *(None if d is None else decided(d.reduction) for d in reductions),
                            ],
                            {"dataset": ds, "arch": arch},
                            marks=[
                                "",
                                *(
                                    "" if d is None or d.reduction is None else sig(d.reduction.test)
                                    for d in reductions
                                ),
                            ],
                            cls="reductionrow",
                        )
                    )
            if not is_sapa(attack) or base_name(attack) not in by_attack:
                continue
            cells, marks = [f"{attack} - base"], ["gaprow"]
            for c in columns:
                gap, mark = _gap_cell(twin.get((threat, ds, arch, protocol, numerics, *cell_where(c), attack, options)))
                cells.append(gap)
                marks.append(mark)
            rows.append(_row(cells, {"dataset": ds, "arch": arch}, marks=marks, cls="gaprow"))
        setting = " · ".join(x for x in fixed if x)
        preset, opts = json.loads(options)
        extra = ", ".join(f"{k} {v}" for k, v in sorted(opts.items()))
        caption = f"{setting} · {preset} preset" + (f" ({extra})" if extra else "")
        tables[threat].append(Table(caption, ("attack", *columns), tuple(rows)))
    return tables


def _grid_sections(entries: list[dict[str, Any]], pairs: list[Pair]) -> list[Section]:
    """Per threat model, the attack x recipe grids and, where defenses ran, the attack x defense
    grids (:func:`_grid_tables`), each SAPA - base cell coloured by its sign."""
    by_recipe, by_defense = _grid_tables(entries, pairs, "recipe"), _grid_tables(entries, pairs, "defense")
    note = (
        "per attack and {axis}, shaded by strength; each SAPA attack's row is followed by SAPA - base in points (+ = "
        "SAPA stronger; * significant: exact two-sided test over poisons, Benjamini-Yekutieli over the page's "
        "comparisons, below 0.05; ° the design cannot reach 0.05)."
    )
    sections = []
    for threat in THREATS:
        metric = "accuracy % (lower = stronger)" if threat == "untargeted" else "success %"
        if by_recipe.get(threat):
            sections.append(
                Section(
                    f"grid-{threat}",
                    f"At a glance: {threat} attacks x recipes",
                    f"{metric} " + note.format(axis="victim recipe, undefended"),
                    tuple(by_recipe[threat]),
                )
            )
        if by_defense.get(threat):
            sections.append(
                Section(
                    f"grid-{threat}-defenses",
                    f"At a glance: {threat} attacks x defenses",
                    f"{metric} "
                    + note.format(axis="defense (none = undefended)")
                    + " The top row is the clean victims' accuracy under each defense (its cost with no attack); "
                    "untargeted strength is the accuracy lost against the clean victims of the same column. Under each "
                    "attack, each defense's reduction of it in points (undefended - defended, > 0 = weaker) with its "
                    "exact 95 % interval over poisons, bold where significant by the page's one convention.",
                    tuple(by_defense[threat]),
                )
            )
    return sections


def _split_setting(parts: list[tuple[str, ...]], keep: int) -> tuple[list[str], list[int]]:
    """The parts of a table's settings shared by every row (for its caption) and the indices of
    those that vary (its setting column; part ``keep`` always stays in the column)."""
    varying = [i for i in range(len(parts[0])) if i == keep or len({p[i] for p in parts}) > 1]
    return [parts[0][i] for i in range(len(parts[0])) if i not in varying], varying


def without_empty(table: Table) -> Table:
    """``table`` without the columns that are ``-`` in every row (margins of untargeted attacks...)."""
    keep = [i for i in range(len(table.columns)) if any(r.cells[i] != "-" for r in table.rows)]
    if len(keep) == len(table.columns):
        return table

    def pick(values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(values[i] for i in keep)

    rows = tuple(
        Row(pick(r.cells), pick(r.keys), r.where, r.detail, pick(r.marks) if r.marks else (), r.cls, r.anchor)
        for r in table.rows
    )
    return Table(table.caption, pick(table.columns), rows, pick(table.tips) if table.tips else ())


THREAT_PAGE: tuple[Column[ThreatRow], ...] = (
    Column(
        "rank",
        lambda r: Num(r.rank, "d"),
        "1 = strongest in its setting (targeted ties of success broken by the margin)",
    ),
    Column("attack", lambda r: r.entry.attack, "attack (bold: SAPA)", lambda r: "sapa" if r.entry.sapa else ""),
    Column("value", lambda r: r.entry.value, "metric %, mean ± SE over trials"),
    Column("margin", lambda r: r.entry.margin, "targeted: the adversarial margin on the target in logits, mean ± SE"),
    Column(
        "clean ref.",
        lambda r: r.clean_reference,
        "clean victims: accuracy % (untargeted) or the adversarial margin in logits (targeted)",
    ),
    Column(
        "vs SAPA",
        lambda r: None if r.versus is None else r.versus.sapa_attack,
        "the SAPA attack this baseline is compared with: its own SAPA twin, else the strongest SAPA attack of the setting",
    ),
    Column(
        "gap",
        lambda r: None if r.versus is None else Num(r.versus.gap, "+.1f", 100.0),
        "gap in points, > 0 = SAPA stronger",
        lambda r: sig(r.versus_test),
    ),
    Column(
        "p",
        lambda r: tested_p(r.versus_test),
        "exact two-sided p, bold where significant after the page's correction (° its poisons cannot reach alpha)",
        lambda r: sig(r.versus_test),
    ),
    Column("pairs", lambda r: None if r.versus is None else pairs_label(r.versus.test), "what was paired"),
    Column(
        "margin gap",
        lambda r: None if r.margin_test is None else logits(r.margin_test.mean_difference),
        "margin gap in logits, > 0 = SAPA stronger",
        lambda r: sig(r.margin_test),
    ),
    Column("margin p", lambda r: tested_p(r.margin_test), "two-sided p on the margin", lambda r: sig(r.margin_test)),
)
"""The page's per-threat tables (after their setting column)."""


def _threat_sections(
    by_id: dict[str, dict[str, Any]], threat_rows: list[ThreatRow], figures: list[Figure]
) -> list[Section]:
    tip = (
        "what differs between the rows (what they share is in the caption): dataset · victim architecture · recipe · "
        "numerics · attack eps, budget and preset"
    )
    sections = []
    for threat in THREATS:
        rows = [r for r in threat_rows if r.entry.threat == threat]
        if not rows:
            continue
        tables = []
        for protocol in sorted({r.entry.protocol for r in rows}):
            group = [r for r in rows if r.entry.protocol == protocol]
            parts = [(r.entry.dataset, r.entry.arch, r.entry.recipe, r.entry.numerics, r.setting) for r in group]
            shared, varying = _split_setting(parts, keep=2)  # the recipe column stays even when constant
            settings = [" · ".join(part[i] for i in varying) for part in parts]
            metrics = sorted({metric_label(r.entry.metric, r.entry.higher_is_stronger) for r in group})
            caption = " — ".join([f"protocol {protocol}", " · ".join(shared), "; ".join(metrics)])
            tables.append(
                _table(
                    caption,
                    THREAT_PAGE,
                    group,
                    lambda r: r.entry.where,
                    lambda r: detail(by_id[r.entry.entry_id]),
                    (settings, tip),
                )
            )
        sections.append(
            Section(
                f"threat-{threat}",
                f"{threat} attacks",
                "",
                tuple(tables),
                tuple(_figure(f) for f in figures if f.view == "threat" and f.threat == threat),
            )
        )
    return sections


COST_PAGE: tuple[Column[CostRow], ...] = (
    Column("attack", lambda r: r.entry.attack, mark=lambda r: "sapa" if r.entry.sapa else ""),
    Column("KxR", lambda r: f"{r.k}x{r.r}", "architectures x initialisations of the surrogate ensemble"),
    Column("value", lambda r: r.entry.value, "metric %, mean ± SE"),
    Column("margin", lambda r: r.entry.margin, "adversarial margin in logits"),
    Column("craft s", lambda r: Num(r.craft_s), "crafting seconds per poison set"),
    Column("+ surrogates s", lambda r: Num(r.total_s), "with the clean surrogates' training"),
    Column(
        "SAPA time ratio",
        lambda r: num(r.sapa_time_ratio, ".2f"),
        "SAPA(1x1) crafting seconds / this row's",
    ),
    Column(
        "with surrogates",
        lambda r: num(r.sapa_total_ratio, ".2f"),
        "the same ratio with the surrogates' training",
    ),
    Column("vs SAPA 1x1", lambda r: r.gap, "points (or margin in logits where success ties), > 0 = SAPA stronger"),
    Column(
        "p",
        lambda r: tested_p(r.test),
        "exact two-sided p of SAPA 1x1 differing from this row (the sign of the gap says which way); bold where "
        "significant after Benjamini-Yekutieli over this view",
        mark=lambda r: sig(r.test),
    ),
)
"""The page's cost view."""


def _cost_section(by_id: dict[str, dict[str, Any]], cost_rows: list[CostRow], figures: list[Figure]) -> Section:
    tables = []
    for where in sorted({(r.entry.dataset, r.entry.threat, r.entry.protocol) for r in cost_rows}):
        group = [r for r in cost_rows if (r.entry.dataset, r.entry.threat, r.entry.protocol) == where]
        tables.append(
            _table(
                " · ".join(where), COST_PAGE, group, lambda r: r.entry.where, lambda r: detail(by_id[r.entry.entry_id])
            )
        )
    return Section(
        "cost",
        "Ensemble and re-initialisation vs SAPA (Figure 2 view)",
        "Per setting, one row per (attack, K architectures, R initialisations): crafting seconds per poison set without "
        "and with the clean surrogates' training; SAPA time ratio = SAPA(1x1) seconds / this row's; each row against "
        "SAPA at K = R = 1 paired by craft seed (gap in points > 0 = SAPA stronger; targeted rows with tied success "
        "compare the adversarial margin).",
        tuple(tables),
        tuple(_figure(f) for f in figures if f.view == "cost"),
        wide=True,
    )


def _decided_column(header: str, test: str, tip: str) -> Column[DefenseRow]:
    """A decided test of the defense view: its interval, bold where significant."""
    return Column(header, lambda r: decided(defense_decision(r, test)), tip, mark=lambda r: sig(defense_test(r, test)))


DEFENSE_PAGE: tuple[Column[DefenseRow], ...] = (
    Column("defense", lambda r: r.entry.defense),
    Column("rank", lambda r: Num(r.rank, "d"), "1 = strongest attack against this defense"),
    Column("attack", lambda r: r.entry.attack, mark=lambda r: "sapa" if r.entry.sapa else ""),
    Column(
        "setting",
        lambda r: f"{r.entry.dataset} · {r.entry.arch} · {r.entry.recipe} · {r.entry.protocol}",
        "dataset · victim architecture · recipe · protocol",
    ),
    Column("with defense", lambda r: r.entry.value, "metric %, mean ± SE, against the defended victims"),
    Column("without", lambda r: r.without, "the same attack and setting undefended"),
    _decided_column(
        "reduction [95 %]",
        "reduction",
        "how much the defense weakens the attack, points per poison (undefended - defended, > 0 = weaker), with the "
        "exact 95 % interval over poisons; bold where significant",
    ),
    _decided_column(
        "beyond random",
        "beyond_random",
        "its reduction beyond random-like-DEFENSE, which removes as many images per class at random (> 0 = the "
        "filter found more than its count of images does)",
    ),
    Column(
        "oracle share",
        oracle_share,
        "the reduction over oracle-filter's, which removes exactly the poisons (1 = as good as knowing them)",
    ),
    _decided_column(
        "remaining",
        "remaining",
        "the attack's effect under the defense, points per poison (accuracy: clean victims under the defense minus "
        "poisoned; success: the rate), with its exact 95 % interval",
    ),
    _decided_column(
        "clean cost",
        "clean_cost",
        "accuracy the defense costs with no attack, points (clean victims without minus with it, paired by seed)",
    ),
    Column("removed", lambda r: num(r.removed, ".0f"), "images a data filter removed"),
    Column("precision", lambda r: pct(r.precision), "% of the removed images that were poisons"),
    Column("recall", lambda r: pct(r.recall), "% of the poisons removed"),
    Column(
        "ε",
        lambda r: num(r.epsilon, ".3g"),
        "DP-SGD's privacy spent at its delta (Opacus's RDP accountant; the entry's detail gives delta)",
    ),
    Column("pruned", lambda r: num(r.pruned, ".0f"), "penultimate units fine-pruning pruned (mean over victims)"),
    Column(
        "peak test",
        lambda r: pct(r.peak_test_accuracy),
        "early stopping: the peak test accuracy % over the epochs trained (the test set's choice of epoch: an upper "
        "bound on what stopping on the held-out split keeps; the entry's detail gives the epoch kept)",
    ),
    Column(
        "defense s",
        lambda r: num(r.defense_s, ".1f"),
        "seconds the defense took per victim (its own model's training included where it was trained: once per "
        "poison, shared by the poison's filters and controls; a model-level defense's: the whole defended training)",
    ),
)
"""The page's defense view."""


def _defense_section(by_id: dict[str, dict[str, Any]], defense_rows: list[DefenseRow]) -> Section:
    tables = []
    for threat in THREATS:
        group = [r for r in defense_rows if r.entry.threat == threat]
        if group:
            metric = metric_label(group[0].entry.metric, group[0].entry.higher_is_stronger)
            tables.append(
                _table(
                    f"{threat} attacks — {metric}",
                    DEFENSE_PAGE,
                    group,
                    lambda r: r.entry.where,
                    lambda r: detail(by_id[r.entry.entry_id]),
                )
            )
    return Section(
        "defenses",
        "Defenses",
        "Per defense and threat model, every attack strongest first against the defended victims; without = the same "
        "attack and setting undefended. Decided over poisons (victims paired by seed): the defense's reduction of the "
        "attack, beyond its random twin (random-like-DEFENSE), its share of the oracle filter's, the attack's "
        "remaining effect and the defense's clean cost, each in points with its exact 95 % interval; "
        + SIGNIFICANCE_NOTE.replace("every SAPA-vs-baseline comparison of this page", "every test of this view")
        + ". Removed, precision and recall of a data-level filter against the true poisons.",
        tuple(tables),
    )


ENTRY_PAGE: tuple[Column[EntryRow], ...] = (
    Column("attack", lambda r: r.attack, mark=lambda r: "sapa" if r.sapa else ""),
    Column("defense", lambda r: r.defense),
    Column(
        "setting",
        lambda r: f"{r.dataset} · {r.arch} · {r.recipe} · {r.protocol} · {r.numerics}",
        "dataset · victim architecture · recipe · protocol · numerics",
    ),
    Column("threat", lambda r: r.threat),
    Column("eps · budget", lambda r: f"{eps_text(r.eps)} · {r.budget:g}"),
    Column(
        "value",
        lambda r: Spread(r.value.mean, r.value.se, r.value.trials, suffix=f" ({r.metric.replace('_', ' ')})"),
        "the threat model's metric %, mean ± SE",
    ),
    Column("clean acc.", lambda r: r.clean_acc, "clean accuracy %, mean ± SE"),
    Column("trials", lambda r: Num(r.value.trials or 0, "d"), "victims trained"),
    Column("craft s", lambda r: Num(r.craft_s), "crafting seconds, all poison sets"),
    Column("total s", lambda r: Num(r.total_s), "every phase, all trials"),
)
"""The page's table of every entry."""


def _entries_section(by_id: dict[str, dict[str, Any]], rows: list[EntryRow]) -> Section:
    table = _table(
        "",
        ENTRY_PAGE,
        rows,
        lambda r: r.where,
        lambda r: detail(by_id[r.entry_id]),
        anchor=lambda r: f"entry-{r.entry_id}",
    )
    return Section(
        "entries",
        "Every entry",
        "One row per entry file; open a row for its trials, timings, poisons and provenance.",
        (table,),
    )


def render_page(
    entries: list[dict[str, Any]],
    rows: list[EntryRow],
    pairs: list[Pair],
    threat_rows: list[ThreatRow],
    cost_rows: list[CostRow],
    defense_rows: list[DefenseRow],
    figures: list[Figure],
    runs: dict[str, Any] | None,
    claims: dict[str, Any] | None,
) -> str:
    """The page's HTML (see the module docstring)."""
    by_id = {e["entry_id"]: e for e in entries}  # the views' rows name their entries by id
    sections = _grid_sections(entries, pairs)
    sections += [_pairs_section(pairs, figures)] if pairs else []
    sections += _threat_sections(by_id, threat_rows, figures)
    if cost_rows:
        sections.append(_cost_section(by_id, cost_rows, figures))
    if defense_rows:
        sections.append(_defense_section(by_id, defense_rows))
    sections.append(_entries_section(by_id, rows))
    wheres = [r.where for r in rows]
    filters = [(name, sorted({w[name] for w in wheres})) for name in FILTERS]
    env = Environment(
        loader=PackageLoader("sapabench.leaderboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE).render(
        answers=_answers(entries, claims),
        summary=run_summary(entries, runs),
        claims=claims_view(claims, entries, figures),
        filters=filters,
        sections=sections,
        alpha=ALPHA,
    )
