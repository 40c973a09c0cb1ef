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
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from sapabench.core.names import NO_DEFENSE, base_name, is_sapa
from sapabench.core.threats import ADVERSARIAL_MARGIN, NO_THREAT, THREATS
from sapabench.leaderboard.records import VERDICTS, entries_digest, twin_dataset
from sapabench.leaderboard.render import ALPHA, Figure, numerics_label, percent, protocol_label
from sapabench.leaderboard.summary import threat_summaries

TEMPLATE = "leaderboard.html.j2"
FILTERS = ("dataset", "arch", "recipe", "protocol", "defense")
_NUMBER = re.compile(r"\s*(?:margin\s+)?([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)")


@dataclass(frozen=True)
class Row:
    """One table row: its cells, each cell's numeric sort key (None: sorted as text), the filter
    values it belongs to, the entry whose detail it opens (None: no detail) and CSS classes per cell."""

    cells: tuple[str, ...]
    keys: tuple[str | None, ...]
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


def sort_key(text: str) -> str | None:
    """The number a cell sorts by (its leading number, ``margin`` prefix allowed), or None."""
    m = _NUMBER.match(text)
    return None if m is None else repr(float(m.group(1)))


def _row(
    cells: Iterable[str],
    where: dict[str, str],
    detail: dict[str, Any] | None = None,
    marks: Iterable[str] = (),
    cls: str = "",
) -> Row:
    cells = tuple(cells)
    marks = tuple(marks) or ("",) * len(cells)
    return Row(cells, tuple(sort_key(c) for c in cells), tuple(sorted(where.items())), detail, marks, cls)


def _entry_row(e: dict[str, Any], cells: list[str], marks: list[str]) -> Row:
    """A row standing for entry ``e``: its filter values and its detail."""
    return _row(cells, entry_where(e), detail(e), marks)


def _sig(flag: str) -> str:
    """The CSS mark of a p-value cell: bold where the view's row says it is significant."""
    return "sig" if flag == "yes" else ""


def entry_where(e: dict[str, Any]) -> dict[str, str]:
    """The filter values of an entry."""
    s = e["setting"]
    return {
        "dataset": s["dataset"],
        "arch": s["arch"],
        "recipe": s["recipe"],
        "protocol": protocol_label(s),
        "defense": e["defense"],
    }


def _pct(m: dict[str, Any]) -> str:
    return percent(m, "±")


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min {sec:02d} s"


def _metric_label(e: dict[str, Any]) -> str:
    m = e["metric"]
    direction = "higher" if m["higher_is_stronger"] else "lower"
    return f"{m['name'].replace('_', ' ')} %, {direction} = stronger"


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
        "summary": f"{m['name'].replace('_', ' ')} {_pct(m)} over {m['trials']} trials; clean accuracy "
        f"{_pct({**e['clean_accuracy'], 'trials': e['metric']['trials']})}"
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


def claims_view(claims: dict[str, Any] | None, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
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
        "counts": [(k, sum(r["verdict"] == k for r in rows)) for k in VERDICTS],
        "rows": [_verdict_row(r) for r in rows if r["verdict"] != "untested"],
        "untested": [_verdict_row(r) for r in rows if r["verdict"] == "untested"],
    }


def _verdict_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        **r,
        "p": "-" if r["p_value"] is None else f"{r['p_value']:.4f}",
        "q": "-" if r["p_adjusted"] is None else f"{r['p_adjusted']:.4f}",
        "floor": "-" if r["p_floor"] is None else f"{r['p_floor']:.4f}",
        "power_text": "-" if r.get("power") is None else f"{100 * r['power']:.0f}%",
        "proxy": r["kind"] == "claim" and r["decided_on"] != "metric",
        "twin": twin_dataset(r) is not None,
    }


def _figure(f: Figure) -> dict[str, Any]:
    data = base64.b64encode(f.path.read_bytes()).decode("ascii")
    return {"src": f"data:image/png;base64,{data}", "caption": f.caption, "where": f.where, "name": f.path.name}


PAIR_PAGE = ("setting", "attack", "baseline", "SAPA", "gap", "p", "pairs", "margin", "margin gap", "margin p")
PAIR_PAGE_TIPS = (
    "what differs between the rows (what they share is in the caption): dataset · victim architecture · recipe · "
    "protocol · numerics (+ defense)",
    "the baseline attack; SAPA = its sharpness-aware version",
    "baseline metric %, mean ± SE over trials",
    "SAPA metric %, mean ± SE",
    "gap in points, > 0 = SAPA stronger",
    "one-sided p of SAPA being stronger (exact sign-flip test; floor 2^-pairs)",
    "what was paired",
    "adversarial margin on the target: baseline → SAPA (> 0 = success)",
    "margin gap, > 0 = SAPA stronger",
    "one-sided p on the margin",
)


def _pairs_section(pairs: list[dict[str, Any]], figures: list[Figure]) -> Section:
    rows = []
    parts = [
        (p["dataset"], p["arch"], p["recipe"], p["protocol"], p["numerics"])
        + (() if p["defense"] == NO_DEFENSE else (f"+{p['defense']}",))
        for p in pairs
    ]
    width = max(len(part) for part in parts)
    parts = [part + ("",) * (width - len(part)) for part in parts]  # defended rows name their defense
    shared, varying = _split_setting(parts, keep=2)
    for p, part in zip(pairs, parts, strict=True):
        m = p["margin"]
        direction = "↑" if p["higher_is_stronger"] else "↓"
        cells = [
            " · ".join(part[i] for i in varying if part[i]),
            f"{p['attack']} ({p['metric'].replace('_', ' ')} {direction})",
            f"{100 * p['baseline'][0]:.1f} ± {100 * p['baseline'][1]:.1f}",
            f"{100 * p['sapa'][0]:.1f} ± {100 * p['sapa'][1]:.1f}",
            f"{100 * p['gap']:+.1f}",
            f"{p['p_value']:.3f}",
            f"{p['test'].n} {p['test'].unit}s" + (" (unpaired)" if p["test"].design == "unpaired" else ""),
            "-" if m is None else f"{m['baseline'][0]:+.2f} → {m['sapa'][0]:+.2f}",
            "-" if m is None else f"{m['test'].mean_difference:+.2f}",
            "-" if m is None else f"{m['test'].p_greater:.3f}",
        ]
        sig = "sig" if p["significant"] else ""
        margin_sig = "sig" if m is not None and m["test"].p_greater < ALPHA else ""
        marks = ["", "", "", "", sig, sig, "", "", margin_sig, margin_sig]
        where = {k: p[k] for k in ("dataset", "arch", "recipe", "protocol", "defense")}
        rows.append(_row(cells, where, marks=marks))
    return Section(
        "pairs",
        "SAPA vs baseline (Table-4 view)",
        "Each SAPA attack beside its own baseline in the same setting (never across protocols or numerics). gap > 0: "
        "SAPA stronger (for accuracy metrics, ↓, the baseline's accuracy minus SAPA's); p: one-sided exact sign-flip "
        f"permutation test paired over craft seeds, bold when below alpha = {ALPHA}; its floor is 2^-pairs. Known-init "
        "rows are a white-box upper bound.",
        (without_empty(Table(" · ".join(shared), PAIR_PAGE, tuple(rows), PAIR_PAGE_TIPS)),),
        tuple(_figure(f) for f in figures if f.view == "pairs"),
    )


GRID_LEVELS = (5.0, 15.0, 30.0, 50.0)
"""Points of strength (success, or accuracy lost against the clean victim) at which a grid cell
turns one shade stronger."""


def _heat(points: float) -> str:
    """The CSS mark of a grid cell ``points`` strong: ``h0`` (none) to ``h4``."""
    return f"h{sum(points >= level for level in GRID_LEVELS)}"


def _grid_sections(entries: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> list[Section]:
    """Per threat model, an attack x recipe grid per setting (dataset, architecture, protocol,
    numerics, attack options), undefended: the clean victims' accuracy on top, every attack's
    metric shaded by its strength (success; for untargeted attacks the accuracy lost against the
    clean victim), and a SAPA - base row per SAPA attack whose base ran (green where SAPA is
    stronger, red where weaker; ``*`` where the exact two-sided test over poisons is below alpha
    unadjusted, ``°`` where the design cannot reach alpha)."""
    clean: dict[tuple, float] = {}
    grids: dict[tuple, dict[str, dict[str, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for e in entries:
        if e["defense"] != NO_DEFENSE:
            continue
        s = e["setting"]
        where = (s["dataset"], s["arch"], protocol_label(s), numerics_label(s))
        if s["threat"] == NO_THREAT:
            clean[(*where, s["recipe"])] = e["metric"]["mean"]
            continue
        options = json.dumps([s["preset"], s["options"]], sort_keys=True)
        grids[(s["threat"], *where, options)][e["attack"]][s["recipe"]] = e
    twin = {
        (p["threat"], p["dataset"], p["arch"], p["protocol"], p["numerics"], p["sapa_attack"], p["recipe"]): p
        for p in pairs
        if p["defense"] == NO_DEFENSE and p["attack"] == base_name(p["sapa_attack"])
    }
    sections = []
    for threat in THREATS:
        tables = []
        for key in sorted(k for k in grids if k[0] == threat):
            _, ds, arch, protocol, numerics, options = key
            by_attack = grids[key]
            recipes = sorted({r for cells in by_attack.values() for r in cells})
            rows = []
            if threat == "untargeted" or any((ds, arch, protocol, numerics, r) in clean for r in recipes):
                refs = [clean.get((ds, arch, protocol, numerics, r)) for r in recipes]
                rows.append(
                    _row(
                        ["clean (accuracy)"] + ["-" if v is None else f"{100 * v:.1f}" for v in refs],
                        {"dataset": ds, "arch": arch},
                        cls="cleanrow",
                    )
                )
            for attack in sorted(by_attack, key=lambda a: (base_name(a), is_sapa(a))):
                cells, marks = [attack], ["sapa" if is_sapa(attack) else ""]
                for r in recipes:
                    e = by_attack[attack].get(r)
                    if e is None:
                        cells.append("-")
                        marks.append("")
                        continue
                    m = e["metric"]
                    ref = clean.get((ds, arch, protocol, numerics, r))
                    strength = 100 * (m["mean"] if m["higher_is_stronger"] else (ref or 1.0) - m["mean"])
                    cells.append(f"{100 * m['mean']:.1f}")
                    marks.append(_heat(strength))
                rows.append(_row(cells, {"dataset": ds, "arch": arch}, marks=marks))
                if not is_sapa(attack) or base_name(attack) not in by_attack:
                    continue
                cells, marks = [f"{attack} - base"], ["gaprow"]
                for r in recipes:
                    p = twin.get((threat, ds, arch, protocol, numerics, attack, r))
                    if p is None:
                        cells.append("-")
                        marks.append("")
                        continue
                    t = p["test"]
                    flag = "°" if t.p_floor_two_sided >= ALPHA else "*" if t.p_two_sided < ALPHA else ""
                    cells.append(f"{100 * p['gap']:+.1f}{flag}")
                    marks.append("up" if p["gap"] > 0 else "down" if p["gap"] < 0 else "")
                rows.append(_row(cells, {"dataset": ds, "arch": arch}, marks=marks, cls="gaprow"))
            setting = " · ".join(x for x in (ds, arch, protocol, numerics) if x)
            preset, opts = json.loads(options)
            extra = ", ".join(f"{k} {v}" for k, v in sorted(opts.items()))
            caption = f"{setting} · {preset} preset" + (f" ({extra})" if extra else "")
            tables.append(Table(caption, ("attack", *recipes), tuple(rows)))
        if tables:
            metric = "accuracy % (lower = stronger)" if threat == "untargeted" else "success %"
            sections.append(
                Section(
                    f"grid-{threat}",
                    f"At a glance: {threat} attacks x recipes",
                    f"{metric} per attack and victim recipe, shaded by strength; each SAPA attack's row is "
                    "followed by SAPA - base in points (+ = SAPA stronger; * exact two-sided p < 0.05 over poisons, "
                    "unadjusted; ° the design cannot reach 0.05).",
                    tuple(tables),
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
        Row(pick(r.cells), pick(r.keys), r.where, r.detail, pick(r.marks) if r.marks else (), r.cls) for r in table.rows
    )
    return Table(table.caption, pick(table.columns), rows, pick(table.tips) if table.tips else ())


THREAT_PAGE = (
    "setting",
    "rank",
    "attack",
    "value",
    "clean ref.",
    "vs SAPA",
    "gap",
    "p",
    "pairs",
    "margin gap",
    "margin p",
)
THREAT_PAGE_TIPS = (
    "what differs between the rows (what they share is in the caption): dataset · victim architecture · recipe · "
    "numerics · attack eps, budget and preset",
    "1 = strongest in its setting (targeted ties of success broken by the adversarial margin)",
    "attack (bold: SAPA)",
    "metric %, mean ± SE over trials (targeted: with the adversarial margin)",
    "clean victims: accuracy % (untargeted) or the adversarial margin (targeted)",
    "the SAPA attack this baseline is compared with: its own SAPA twin, else the strongest SAPA attack of the setting",
    "gap in points, > 0 = SAPA stronger",
    "one-sided p of SAPA being stronger",
    "what was paired",
    "margin gap, > 0 = SAPA stronger",
    "one-sided p on the margin",
)


def _threat_sections(
    by_id: dict[str, dict[str, Any]], threat_rows: list[dict[str, str]], figures: list[Figure]
) -> list[Section]:
    sections = []
    for threat in THREATS:
        rows = [r for r in threat_rows if r["threat"] == threat]
        if not rows:
            continue
        tables = []
        for protocol in sorted({r["protocol"] for r in rows}):
            group = [r for r in rows if r["protocol"] == protocol]
            parts = [
                (r["dataset"], r["arch"], r["recipe"], numerics_label(by_id[r["entry_id"]]["setting"]), r["setting"])
                for r in group
            ]
            shared, varying = _split_setting(parts, keep=2)  # the recipe column stays even when constant
            out = []
            for r, part in zip(group, parts, strict=True):
                e = by_id[r["entry_id"]]
                cells = [
                    " · ".join(part[i] for i in varying),
                    r["rank"],
                    r["attack"],
                    r["value"].replace("+/-", "±"),
                    r["clean_reference"],
                    r["vs_sapa"],
                    r["gap"],
                    r["p_value"],
                    r["pairs"],
                    r["margin_gap"],
                    r["margin_p"],
                ]
                sig, msig = _sig(r["significant"]), _sig(r["margin_significant"])
                marks = ["", "", "sapa" if e["sapa"] else "", "", "", "", sig, sig, "", msig, msig]
                out.append(_entry_row(e, cells, marks))
            metrics = sorted({_metric_label(by_id[r["entry_id"]]) for r in group})
            caption = " — ".join([f"protocol {protocol}", " · ".join(shared), "; ".join(metrics)])
            tables.append(without_empty(Table(caption, THREAT_PAGE, tuple(out), THREAT_PAGE_TIPS)))
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


COST_PAGE = (
    "attack",
    "KxR",
    "value",
    "margin",
    "craft s",
    "+ surrogates s",
    "SAPA time ratio",
    "with surrogates",
    "vs SAPA 1x1",
    "p SAPA stronger",
    "p E&R stronger",
)


def _cost_section(by_id: dict[str, dict[str, Any]], cost_rows: list[dict[str, str]], figures: list[Figure]) -> Section:
    tables = []
    for where in sorted({(r["dataset"], r["threat"], r["protocol"]) for r in cost_rows}):
        out = []
        for r in (r for r in cost_rows if (r["dataset"], r["threat"], r["protocol"]) == where):
            e = by_id[r["entry_id"]]
            cells = [
                r["attack"],
                f"{r['K']}x{r['R']}",
                r["value"].replace("+/-", "±"),
                r["margin"].replace("+/-", "±"),
                r["craft_s"],
                r["total_s"],
                r["sapa_time_ratio"],
                r["sapa_total_ratio"],
                r["vs_sapa_1x1_gap"],
                r["p_sapa_stronger"],
                r["p_er_stronger"],
            ]
            marks = ["sapa" if e["sapa"] else ""] + [""] * 8
            marks += [_sig(r["sapa_significant"]), _sig(r["er_significant"])]
            out.append(_entry_row(e, cells, marks))
        tables.append(Table(f"{where[0]} · {where[1]} · {where[2]}", COST_PAGE, tuple(out)))
    return Section(
        "cost",
        "Ensemble and re-initialisation vs SAPA (Figure 2 view)",
        "Per setting, one row per (attack, K architectures, R initialisations): crafting seconds per poison set without "
        "and with the clean surrogates' training; SAPA time ratio = SAPA(1x1) seconds / this row's; each row against "
        "SAPA at K = R = 1 paired by craft seed (gap > 0 = SAPA stronger; targeted rows with tied success compare the "
        "adversarial margin).",
        tuple(tables),
        tuple(_figure(f) for f in figures if f.view == "cost"),
        wide=True,
    )


DEFENSE_PAGE = (
    "defense",
    "rank",
    "attack",
    "setting",
    "with defense",
    "without",
    "clean acc.",
    "acc. cost",
    "removed",
    "precision",
    "recall",
)


def _defense_section(by_id: dict[str, dict[str, Any]], defense_rows: list[dict[str, str]]) -> Section:
    tables = []
    for threat in THREATS:
        out = []
        for r in (r for r in defense_rows if r["threat"] == threat):
            e = by_id[r["entry_id"]]
            cells = [
                r["defense"],
                r["rank"],
                r["attack"],
                f"{e['setting']['dataset']} · {r['arch']} · {r['recipe']} · {protocol_label(e['setting'])}",
                r["with_defense"].replace("+/-", "±"),
                r["without_defense"].replace("+/-", "±"),
                r["clean_acc"],
                r["clean_acc_cost"],
                r["removed"],
                r["precision"],
                r["recall"],
            ]
            out.append(_entry_row(e, cells, ["", "", "sapa" if e["sapa"] else ""] + [""] * 8))
        if out:
            metric = _metric_label(by_id[next(r for r in defense_rows if r["threat"] == threat)["entry_id"]])
            tables.append(Table(f"{threat} attacks — {metric}", DEFENSE_PAGE, tuple(out)))
    return Section(
        "defenses",
        "Defenses",
        "Per defense and threat model, every attack strongest first against the defended victim; without = the same "
        "attack and setting undefended; acc. cost = the clean accuracy the defense costs; removed, precision and recall "
        "of the images a data-level filter removes, against the true poisons.",
        tuple(tables),
    )


ENTRY_COLUMNS = (
    "attack",
    "defense",
    "setting",
    "threat",
    "eps · budget",
    "value",
    "clean acc.",
    "trials",
    "craft s",
    "total s",
)


def _entries_section(entries: list[dict[str, Any]]) -> Section:
    rows = []
    for e in entries:
        s = e["setting"]
        cells = [
            e["attack"],
            e["defense"],
            f"{s['dataset']} · {s['arch']} · {s['recipe']} · {protocol_label(s)} · {numerics_label(s)}",
            s["threat"],
            f"{s['eps'] * 255:.0f}/255 · {s['budget']:g}",
            _pct(e["metric"]) + f" ({e['metric']['name'].replace('_', ' ')})",
            _pct({**e["clean_accuracy"], "trials": e["metric"]["trials"]}),
            str(e["metric"]["trials"]),
            f"{e['timings']['craft_s']:.1f}",
            f"{e['timings']['total_s']:.1f}",
        ]
        row = _entry_row(e, cells, ["sapa" if e["sapa"] else ""] + [""] * 9)
        rows.append(replace(row, anchor=f"entry-{e['entry_id']}"))
    return Section(
        "entries",
        "Every entry",
        "One row per entry file; open a row for its trials, timings, poisons and provenance.",
        (Table("", ENTRY_COLUMNS, tuple(rows)),),
    )


def render_page(
    entries: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
    threat_rows: list[dict[str, str]],
    cost_rows: list[dict[str, str]],
    defense_rows: list[dict[str, str]],
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
    sections.append(_entries_section(entries))
    wheres = [entry_where(e) for e in entries]
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
        answers=[a.line() for a in threat_summaries(entries)],
        summary=run_summary(entries, runs),
        claims=claims_view(claims, entries),
        filters=filters,
        sections=sections,
        alpha=ALPHA,
    )
