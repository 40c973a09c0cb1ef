"""Render the leaderboard from its entry files only: Markdown, CSV, a static sortable HTML page,
the Table-4 view (every SAPA attack beside its baseline, with the signed gap and a one-sided
test), and PNG plots. The same entries always give the same files."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sapabench.core.atomic import replacing, write_text
from sapabench.core.names import NO_DEFENSE, base_name, is_sapa, sapa_name
from sapabench.core.numerics import Numerics
from sapabench.core.owned import own_folder, replace_owned
from sapabench.core.stats import PairedTest, compare_arms
from sapabench.core.threats import ADVERSARIAL_MARGIN, NO_THREAT, THREATS
from sapabench.leaderboard.records import CLAIMS_FILE, RUNS_FILE, load_claims_record, load_runs
from sapabench.leaderboard.schema import load_entries
from sapabench.victims.protocols import FILE_PREFIX, NO_PRETRAINED, SCRATCH, is_white_box

ALPHA = 0.05
COLUMNS = (
    "attack",
    "defense",
    "dataset",
    "arch",
    "recipe",
    "protocol",
    "numerics",
    "threat",
    "eps",
    "budget",
    "metric",
    "mean",
    "se",
    "trials",
    "margin",
    "clean_margin",
    "clean_acc",
    "clean_acc_se",
    "craft_s",
    "train_s_per_victim",
    "eval_s_per_victim",
    "total_s",
    "images_per_s",
    "peak_mem_mb",
)
DEFENSE_COLUMNS = (
    "defense",
    "threat",
    "rank",
    "attack",
    "arch",
    "recipe",
    "metric",
    "with_defense",
    "without_defense",
    "clean_acc",
    "clean_acc_cost",
    "removed",
    "precision",
    "recall",
)
PAIR_COLUMNS = (
    "dataset",
    "arch",
    "recipe",
    "protocol",
    "numerics",
    "defense",
    "attack",
    "metric",
    "baseline",
    "sapa",
    "gap",
    "p_value",
    "significant",
    "pairs",
    "margin_baseline",
    "margin_sapa",
    "margin_gap",
    "margin_p",
)


def _row(e: dict[str, Any]) -> dict[str, Any]:
    s, m, t = e["setting"], e["metric"], e["timings"]
    return {
        "attack": e["attack"],
        "defense": e["defense"],
        "dataset": s["dataset"],
        "arch": s["arch"],
        "recipe": s["recipe"],
        "protocol": protocol_label(s),
        "numerics": numerics_label(s),
        "threat": s["threat"],
        "eps": f"{s['eps'] * 255:.0f}/255",
        "budget": f"{s['budget']:g}",
        "metric": m["name"]
        + (
            " (higher = stronger)"
            if m["higher_is_stronger"]
            else (" (lower = stronger)" if s["threat"] != NO_THREAT else "")
        ),
        "mean": f"{100 * m['mean']:.1f}",
        "se": f"{100 * m['se']:.1f}",
        "trials": str(m["trials"]),
        "margin": _margin(e, "mean", "se"),
        "clean_margin": _margin(e, "clean_mean", "clean_se"),
        "clean_acc": f"{100 * e['clean_accuracy']['mean']:.1f}",
        "clean_acc_se": f"{100 * e['clean_accuracy']['se']:.1f}",
        "craft_s": f"{t['craft_s']:.1f}",
        "train_s_per_victim": _per_device(t, "train_s_mean", ".1f"),
        "eval_s_per_victim": _per_device(t, "eval_s_mean", ".2f"),
        "total_s": f"{t['total_s']:.1f}",
        "images_per_s": _per_device(t, "images_per_s", ".0f"),
        "peak_mem_mb": _per_device(t, "peak_memory_mb", ".0f"),
    }


def _per_device(timings: dict[str, Any], key: str, fmt: str) -> str:
    """A per-victim timing: the one device's, or each device's (``device: value; ...``) when the
    entry's trials ran on several (never averaged across devices)."""
    if timings[key] is not None:
        return format(timings[key], fmt)
    return "; ".join(f"{name}: {format(d[key], fmt)}" for name, d in sorted(timings["devices"].items()))


def _margin(e: dict[str, Any], mean: str, se: str) -> str:
    m = e["measures"].get(ADVERSARIAL_MARGIN)
    return "-" if m is None else f"{m[mean]:+.2f} +/- {m[se]:.2f}"


def protocol_label(setting: dict[str, Any]) -> str:
    """The victim protocol of an entry's setting as tables show it: ``scratch``,
    ``linear/surrogate``, ``known-init (white-box bound)``..."""
    protocol, pretrained = setting["protocol"], setting["pretrained"]
    bound = " (white-box bound)" if white_box(setting) else ""
    if pretrained == NO_PRETRAINED:
        return f"{protocol}{bound}"
    if pretrained.startswith(FILE_PREFIX):
        pretrained = "file " + pretrained.rpartition("@")[2][:8]
    return f"{protocol}/{pretrained}{bound}"


def surrogate_arch(setting: dict[str, Any]) -> str | None:
    """The architecture of the surrogate the entry's poison was crafted against (None: clean
    data, or an entry that does not record it)."""
    surrogate = (setting.get("attack_config") or {}).get("surrogate")
    return surrogate.get("arch") if isinstance(surrogate, dict) else None


def white_box(setting: dict[str, Any]) -> bool:
    """Whether the entry's victims are the attacker's own model (:func:`sapabench.victims.protocols.is_white_box`)."""
    return is_white_box(setting["protocol"], setting["pretrained"], setting["arch"], surrogate_arch(setting))


def numerics_label(setting: dict[str, Any]) -> str:
    """The victims' numerics of an entry's setting, as tables show them (``fp32``, ``bf16+cl``, ...)."""
    return Numerics(setting["precision"], setting["memory_format"]).label


def _variant(e: dict[str, Any]) -> str:
    """What else tells settings apart: the attack preset and options, the victim protocol and
    numerics (entries that differ only by these are different results and must not be paired
    across)."""
    s = e["setting"]
    return json.dumps(
        [s["preset"], s["options"], s["victim"], s["precision"], s["memory_format"], s["protocol"], s["pretrained"]],
        sort_keys=True,
    )


def _trials(e: dict[str, Any], values: list[float], stronger_is_higher: bool) -> dict[tuple[Any, Any], float]:
    """An entry's trial values keyed by (craft seed, victim seed), signed so larger = stronger."""
    sign = 1.0 if stronger_is_higher else -1.0
    return {(craft, trial): sign * v for (craft, trial), v in zip(e["provenance"]["cell_seeds"], values, strict=True)}


def compare(sapa: dict[str, Any], base: dict[str, Any], measure: str | None = None) -> PairedTest:
    """SAPA against a baseline, paired by seeds (:func:`sapabench.core.stats.compare_arms`: unpaired only
    where the two entries share no seeds), on the metric or on the continuous ``measure``;
    positive differences mean SAPA is stronger."""
    if measure is None:
        higher = sapa["metric"]["higher_is_stronger"]
        return compare_arms(
            _trials(sapa, sapa["metric"]["values"], higher), _trials(base, base["metric"]["values"], higher)
        )
    return compare_arms(
        _trials(sapa, sapa["measures"][measure]["values"], True),
        _trials(base, base["measures"][measure]["values"], True),
    )


def sapa_pairs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Table-4 view: each SAPA entry beside its baseline in the same setting (same victim
    protocol and numerics: never across them).

    ``gap`` is signed so that positive means SAPA is stronger (for accuracy metrics, where lower
    is stronger, it is baseline minus SAPA); ``test`` is the paired sign-flip test of that over
    craft seeds (or victim seeds when there is one craft seed), ``p_value`` its one-sided p.
    Targeted pairs also compare the adversarial margin (``margin_test``).
    """
    index = {(*_key(e)[:-1], e["attack"], _key(e)[-1]): e for e in entries}
    pairs = []
    for key, sapa in sorted(index.items()):
        attack = key[-2]
        if not is_sapa(attack):
            continue
        base = index.get((*key[:-2], base_name(attack), key[-1]))
        if base is not None:
            pairs.append(pair(sapa, base))
    return pairs


def _key(e: dict[str, Any]) -> tuple:
    """What an entry's setting is, but for its attack: entries with the same key are compared."""
    s = e["setting"]
    return (s["suite"], s["dataset"], s["arch"], s["recipe"], e["defense"], s["surrogate"], _variant(e))


def pair(sapa: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """A SAPA entry against a baseline entry of the same setting (its own base attack, or any
    other attack of its threat model): means, signed gap, and the test of SAPA being stronger."""
    higher = sapa["metric"]["higher_is_stronger"]
    gap = (sapa["metric"]["mean"] - base["metric"]["mean"]) * (1 if higher else -1)
    test = compare(sapa, base)
    both = ADVERSARIAL_MARGIN in sapa["measures"] and ADVERSARIAL_MARGIN in base["measures"]
    margin_test = compare(sapa, base, ADVERSARIAL_MARGIN) if both else None
    s = sapa["setting"]
    return {
        "dataset": s["dataset"],
        "arch": s["arch"],
        "recipe": s["recipe"],
        "protocol": protocol_label(s),
        "protocol_name": s["protocol"],
        "white_box": white_box(s),
        "threat": s["threat"],
        "numerics": numerics_label(s),
        "defense": sapa["defense"],
        "attack": base["attack"],
        "sapa_attack": sapa["attack"],
        "sapa_entry_id": sapa["entry_id"],
        "base_entry_id": base["entry_id"],
        "preset": s["preset"],
        "options": dict(s["options"]),
        "metric": sapa["metric"]["name"],
        "higher_is_stronger": higher,
        "baseline": (base["metric"]["mean"], base["metric"]["se"]),
        "sapa": (sapa["metric"]["mean"], sapa["metric"]["se"]),
        "gap": gap,
        "test": test,
        "p_value": test.p_greater,
        "significant": test.p_greater < ALPHA,
        "trials": (base["metric"]["trials"], sapa["metric"]["trials"]),
        "margin": None
        if margin_test is None
        else {
            "baseline": (base["measures"][ADVERSARIAL_MARGIN]["mean"], base["measures"][ADVERSARIAL_MARGIN]["se"]),
            "sapa": (sapa["measures"][ADVERSARIAL_MARGIN]["mean"], sapa["measures"][ADVERSARIAL_MARGIN]["se"]),
            "clean": base["measures"][ADVERSARIAL_MARGIN]["clean_mean"],
            "test": margin_test,
        },
    }


def rival_pairs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every SAPA entry against every non-SAPA attack of its threat model in the same setting
    (its own base attack included): the comparisons of the paper's Tables 1-3."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        if e["setting"]["threat"] != NO_THREAT:
            groups[(*_key(e), e["setting"]["threat"])].append(e)
    pairs = []
    for _, group in sorted(groups.items()):
        for sapa in sorted((e for e in group if e["sapa"]), key=lambda e: e["attack"]):
            for base in sorted((e for e in group if not e["sapa"]), key=lambda e: e["attack"]):
                pairs.append(pair(sapa, base))
    return pairs


THREAT_COLUMNS = (
    "dataset",
    "threat",
    "protocol",
    "arch",
    "recipe",
    "setting",
    "rank",
    "attack",
    "metric",
    "value",
    "clean_reference",
    "vs_sapa",
    "gap",
    "p_value",
    "pairs",
    "margin_gap",
    "margin_p",
)


def threat_view(entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Per threat model and victim protocol (and dataset, arch, recipe, attack settings): every
    attack ranked strongest first (targeted ties of success broken by the adversarial margin), beside the clean reference (clean accuracy for untargeted
    attacks, the clean victim's adversarial margin for targeted ones), each baseline compared
    with its own SAPA twin, or where it has none in the group with the group's strongest SAPA
    attack (gap > 0: SAPA stronger; one-sided p)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    clean: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        if e["defense"] != NO_DEFENSE:
            continue
        s = e["setting"]
        where = (s["suite"], s["dataset"], s["arch"], s["recipe"], protocol_label(s), numerics_label(s))
        if s["threat"] == NO_THREAT:
            clean[where] = e
        else:
            options = json.dumps([s["preset"], s["options"], s["victim"]], sort_keys=True)
            groups[(s["threat"], *where, options)].append(e)
    rows = []
    for (threat, suite, ds, arch, recipe, protocol, numerics, _), group in sorted(groups.items()):
        group.sort(key=lambda e: (-_strength(e), -_margin_mean(e), e["attack"]))
        strongest_sapa = next((e for e in group if e["sapa"]), None)
        by_attack = {e["attack"]: e for e in group}
        ref = clean.get((suite, ds, arch, recipe, protocol, numerics))
        setting = group[0]["setting"]
        for rank, e in enumerate(group, 1):
            # a baseline against its own SAPA twin; one without a twin here (Poison Frogs, Separable...)
            # against the strongest SAPA attack of the group, as the paper's Tables 1-3 compare them
            sapa = by_attack.get(sapa_name(e["attack"]), strongest_sapa)
            versus = pair(sapa, e) if sapa is not None and not e["sapa"] else None
            mv = None if versus is None else versus["margin"]
            m = e["metric"]
            rows.append(
                {
                    "dataset": ds,
                    "threat": threat,
                    "protocol": protocol,
                    "arch": arch,
                    "recipe": recipe,
                    "setting": f"eps {setting['eps'] * 255:.0f}/255, budget {setting['budget']:g}, {setting['preset']}",
                    "rank": str(rank),
                    "attack": e["attack"],
                    "metric": m["name"],
                    "value": percent(m) + _margin_note(e),
                    "clean_reference": _clean_reference(threat, e, ref),
                    "vs_sapa": "-" if versus is None else versus["sapa_attack"],
                    "gap": "-" if versus is None else f"{100 * versus['gap']:+.1f}",
                    "p_value": "-" if versus is None else f"{versus['p_value']:.3f}",
                    "pairs": "-" if versus is None else _pairs_label(versus["test"]),
                    "margin_gap": "-" if mv is None else f"{mv['test'].mean_difference:+.2f}",
                    "margin_p": "-" if mv is None else f"{mv['test'].p_greater:.3f}",
                    # not CSV columns: for the page (bold where significant, from the p itself)
                    "significant": "yes" if versus is not None and versus["significant"] else "no",
                    "margin_significant": "yes" if mv is not None and mv["test"].p_greater < ALPHA else "no",
                    "entry_id": e["entry_id"],
                }
            )
    return rows


def percent(m: dict[str, Any], sep: str = "+/-") -> str:
    """A metric summary in percent: ``mean +/- SE``, or the mean alone for one trial (whose SE of
    0.0 would read as a certainty it does not have)."""
    if m.get("trials", 2) == 1:
        return f"{100 * m['mean']:.1f} (1 trial)"
    return f"{100 * m['mean']:.1f} {sep} {100 * m['se']:.1f}"


def _strength(e: dict[str, Any]) -> float:
    m = e["metric"]
    return m["mean"] if m["higher_is_stronger"] else -m["mean"]


def _margin_mean(e: dict[str, Any]) -> float:
    """The adversarial margin of a targeted entry (ties of success broken by it), else 0."""
    m = e["measures"].get(ADVERSARIAL_MARGIN)
    return 0.0 if m is None else m["mean"]


def _margin_note(e: dict[str, Any]) -> str:
    m = e["measures"].get(ADVERSARIAL_MARGIN)
    return "" if m is None else f" (margin {m['mean']:+.2f})"


def _clean_reference(threat: str, e: dict[str, Any], ref: dict[str, Any] | None) -> str:
    m = e["measures"].get(ADVERSARIAL_MARGIN)
    if m is not None:
        return f"margin {m['clean_mean']:+.2f}"
    if threat == "untargeted" and ref is not None:
        return f"{100 * ref['metric']['mean']:.1f}"
    return "-"


def _pairs_label(test: PairedTest) -> str:
    return f"{test.n} {test.unit}s" + (" (unpaired)" if test.design == "unpaired" else "")


def defense_view(entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """For each defense, every attack (baseline and SAPA) in each setting, strongest first,
    beside the same attack without the defense and the clean-accuracy cost."""
    plain = {}
    for e in entries:
        if e["defense"] == NO_DEFENSE:
            s = e["setting"]
            plain[(s["suite"], s["dataset"], s["arch"], s["recipe"], s["surrogate"], e["attack"], _variant(e))] = e
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        if e["defense"] != NO_DEFENSE:
            groups[(e["defense"], e["setting"]["threat"], e["setting"]["dataset"])].append(e)
    rows = []
    for (defense, threat, _), group in sorted(groups.items()):
        group.sort(
            key=lambda e: (
                -e["metric"]["mean"] if e["metric"]["higher_is_stronger"] else e["metric"]["mean"],
                e["attack"],
            )
        )
        for rank, e in enumerate(group, 1):
            s, ds = e["setting"], e["defense_stats"]
            base = plain.get(
                (s["suite"], s["dataset"], s["arch"], s["recipe"], s["surrogate"], e["attack"], _variant(e))
            )
            fmt = percent
            rows.append(
                {
                    "defense": defense,
                    "threat": threat,
                    "rank": str(rank),
                    "attack": e["attack"],
                    "arch": s["arch"],
                    "recipe": s["recipe"],
                    "metric": e["metric"]["name"],
                    "with_defense": fmt(e["metric"]),
                    "without_defense": fmt(base["metric"]) if base else "-",
                    "clean_acc": f"{100 * e['clean_accuracy']['mean']:.1f}",
                    "clean_acc_cost": f"{100 * (base['clean_accuracy']['mean'] - e['clean_accuracy']['mean']):+.1f}"
                    if base
                    else "-",
                    "removed": f"{ds['removed_mean']:.0f}" if "removed_mean" in ds else "-",
                    "precision": f"{100 * ds['precision_mean']:.1f}" if "precision_mean" in ds else "-",
                    "recall": f"{100 * ds['recall_mean']:.1f}" if "recall_mean" in ds else "-",
                    "entry_id": e["entry_id"],
                }
            )
    return rows


def _pair_row(p: dict[str, Any]) -> dict[str, str]:
    m = p["margin"]
    return {
        "dataset": p["dataset"],
        "arch": p["arch"],
        "recipe": p["recipe"],
        "protocol": p["protocol"],
        "numerics": p["numerics"],
        "defense": p["defense"],
        "attack": p["attack"],
        "metric": p["metric"],
        "baseline": f"{100 * p['baseline'][0]:.1f} +/- {100 * p['baseline'][1]:.1f}",
        "sapa": f"{100 * p['sapa'][0]:.1f} +/- {100 * p['sapa'][1]:.1f}",
        "gap": f"{100 * p['gap']:+.1f}",
        "p_value": f"{p['p_value']:.3f}",
        "significant": "yes" if p["significant"] else "no",
        "pairs": _pairs_label(p["test"]),
        "margin_baseline": "-" if m is None else f"{m['baseline'][0]:+.2f} +/- {m['baseline'][1]:.2f}",
        "margin_sapa": "-" if m is None else f"{m['sapa'][0]:+.2f} +/- {m['sapa'][1]:.2f}",
        "margin_gap": "-" if m is None else f"{m['test'].mean_difference:+.2f}",
        "margin_p": "-" if m is None else f"{m['test'].p_greater:.3f}",
    }


def _markdown_table(columns: tuple[str, ...], rows: list[dict[str, str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(r[c] for c in columns) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _csv(columns: tuple[str, ...], rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows({c: r[c] for c in columns} for r in rows)
    return buf.getvalue()


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


def _plots(entries: list[dict[str, Any]], pairs: list[dict[str, Any]], out: Path) -> list[Figure]:
    # Imported here, not at the top: matplotlib (with its font cache) is needed only to draw, and
    # the backend must be chosen before pyplot is imported; validating entries, the claims and
    # verify import this module without drawing anything.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    by_attack: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for p in pairs:
        by_attack[(p["dataset"], p["arch"], p["attack"])].append(p)
    for (ds, arch, attack), rows in sorted(by_attack.items()):
        rows.sort(key=lambda p: (p["protocol"], p["defense"], p["recipe"]))
        labels = [
            p["recipe"]
            + ("" if p["protocol"] == SCRATCH else f"\n{p['protocol'].split(' ')[0]}")
            + ("" if p["defense"] == NO_DEFENSE else f"\n+{p['defense']}")
            for p in rows
        ]
        x = range(len(rows))
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 1.5), 3.6), dpi=100)
        for shift, side, name, color in (
            (-0.2, "baseline", attack, "#8da0cb"),
            (0.2, "sapa", sapa_name(attack), "#fc8d62"),
        ):
            ax.bar(
                [i + shift for i in x],
                [100 * p[side][0] for p in rows],
                0.4,
                yerr=[100 * p[side][1] for p in rows],
                capsize=3,
                label=name,
                color=color,
            )
        ax.set_xticks(list(x), labels)
        ax.set_title(f"{attack} vs SAPA\n{ds}, victim {arch}", fontsize=9)
        ax.set_ylim(0, 105)
        path = _save(
            fig, ax, rows[0]["metric"], rows[0]["higher_is_stronger"], out / f"pair--{ds}--{arch}--{attack}.png"
        )
        threat = next(e["setting"]["threat"] for e in entries if e["attack"] == attack)
        written.append(
            Figure(
                path,
                "pairs",
                threat,
                f"{attack} vs {sapa_name(attack)} on {ds}, victim {arch}: per recipe, "
                "protocol and defense, mean +/- SE",
                (("dataset", ds), ("arch", arch)),
            )
        )

    written += _forest_plots(pairs, out, plt)
    written += _rho_plots(entries, out, plt)
    from sapabench.leaderboard.cost import cost_plots

    written += cost_plots(entries, out, plt)
    written += _crafting_time_plots(entries, out, plt)
    return written


def _forest_plots(pairs: list[dict[str, Any]], out: Path, plt: Any) -> list[Figure]:
    """Per threat model, a forest plot of SAPA - base over every black-box, undefended setting
    where a SAPA attack met its own base: the paired mean difference over poisons (points of the
    metric, + = SAPA stronger) with its 95 % t interval, a zero line, red where SAPA is weaker,
    hollow where the design cannot reach alpha (too few poisons for the exact test)."""
    from scipy import stats

    by_threat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in pairs:
        if p["defense"] == NO_DEFENSE and not p["white_box"] and p["attack"] == base_name(p["sapa_attack"]):
            by_threat[p["threat"]].append(p)
    written = []
    for threat, rows in sorted(by_threat.items()):
        rows.sort(key=lambda p: (p["sapa_attack"], p["dataset"], p["arch"], p["protocol"], p["recipe"], p["numerics"]))
        fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(rows) + 1.5), dpi=100)
        for i, p in enumerate(rows):
            test = p["test"]
            diffs = [100 * d for d in test.differences]
            mean = 100 * test.mean_difference
            half = (
                float(stats.t.ppf(0.975, len(diffs) - 1)) * statistics.stdev(diffs) / len(diffs) ** 0.5
                if len(diffs) >= 2
                else 0.0
            )
            color = "#c62828" if mean < 0 else "#1a7f37"
            hollow = test.p_floor_two_sided >= ALPHA
            ax.errorbar(
                mean, i, xerr=half, fmt="o", color=color, mfc="white" if hollow else color, capsize=3, markersize=5
            )
        ax.axvline(0.0, color="#555", linewidth=1)
        labels = [
            " · ".join(
                [p["sapa_attack"], p["recipe"], p["protocol"]]
                + ([p["dataset"]] if len({r["dataset"] for r in rows}) > 1 else [])
            )
            for p in rows
        ]
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("SAPA - base (points; + = SAPA stronger), 95 % t interval over poisons", fontsize=8)
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
                f"{threat}: SAPA - base per setting, mean over poisons with its 95 % interval; red where SAPA is "
                "weaker, hollow where the exact test over so few poisons cannot reach 0.05",
            )
        )
    return written


def _crafting_time_plots(entries: list[dict[str, Any]], out: Path, plt: Any) -> list[Figure]:
    """Per threat model (so the metric axis has one direction): every attacked entry's metric
    against its crafting seconds (log scale), baselines as squares, SAPA as circles, each
    attack labelled once (at its first scratch entry), labels staggered so none overlap."""
    written = []
    for threat in THREATS:
        attacked = [e for e in entries if e["setting"]["threat"] == threat and e["defense"] == NO_DEFENSE]
        if not attacked:
            continue
        fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=100)
        for e in attacked:
            ax.errorbar(
                max(e["timings"]["craft_s"], 1e-2),
                100 * e["metric"]["mean"],
                yerr=100 * e["metric"]["se"],
                fmt="o" if e["sapa"] else "s",
                color="#fc8d62" if e["sapa"] else "#8da0cb",
                alpha=0.8,
                capsize=2,
            )
        first: dict[str, dict[str, Any]] = {}
        for e in sorted(attacked, key=lambda e: (e["setting"]["protocol"] != SCRATCH, e["setting"]["recipe"])):
            first.setdefault(e["attack"], e)
        for i, (name, e) in enumerate(sorted(first.items(), key=lambda kv: kv[1]["metric"]["mean"])):
            ax.annotate(
                name,
                (max(e["timings"]["craft_s"], 1e-2), 100 * e["metric"]["mean"]),
                fontsize=7,
                xytext=(5, 4 if i % 2 == 0 else -10),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        times = [max(e["timings"]["craft_s"], 1e-2) for e in attacked]
        ax.set_xlim(min(times) / 1.6, max(times) * 1.6)  # a readable decade even when every attack took as long
        ax.set_ylim(-4, 104)  # percent: the whole range, so a flat 0 % reads as 0 % and not as noise
        ax.set_xlabel("crafting time of the poison sets (s, log scale)")
        ax.set_title(f"{threat} attacks: metric vs crafting time (squares: baseline, circles: SAPA)", fontsize=9)
        ax.grid(alpha=0.3)
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
        name = f"rho--{ds}--{arch}--{recipe}--{protocol.replace('/', '-').split(' ')[0]}--{attack}{tail}.png"
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


def render(entries_dir: str | Path, out: str | Path) -> list[Path]:
    """Render every format from the entry files in ``entries_dir`` into ``out`` (the page also
    reads ``out/runs.json`` and ``out/claims.json`` when they exist: :mod:`sapabench.leaderboard.records`)."""
    entries = load_entries(entries_dir)
    out = own_folder(Path(out), "leaderboard folder")
    rows = [_row(e) for e in entries]
    pairs = sapa_pairs(entries)
    prow = [_pair_row(p) for p in pairs]
    drows = defense_view(entries)
    trows = threat_view(entries)
    from sapabench.leaderboard.cost import COST_COLUMNS, cost_view  # cost builds on this module's comparisons

    crows = cost_view(entries)
    cost_md = (
        (
            "\n## Ensemble and re-initialisation vs SAPA (Figure 2 view)\n\nPer setting and attack family, one row per "
            "(attack, K architectures, R initialisations): value in %, crafting seconds per poison set without "
            "(craft_s) and with (total_s) the clean surrogates' training; sapa_*_ratio = SAPA(1x1) time / this row's; "
            "each row against SAPA at K = R = 1 paired by craft seed (gap > 0 = SAPA stronger; targeted rows with "
            "tied success compare the adversarial margin).\n\n" + _markdown_table(COST_COLUMNS, crows)
        )
        if crows
        else ""
    )
    threat_md = (
        (
            "\n## Per threat model (Tables 1-3 view)\n\nPer threat model, victim protocol and setting, every attack "
            "strongest first; value in % (targeted: success, with the adversarial margin); clean_reference: the clean "
            "victim's accuracy (untargeted) or adversarial margin (targeted); each baseline against its own SAPA twin "
            "(else the strongest SAPA attack of its group): gap > 0 = SAPA stronger, p one-sided (paired by craft seed where they share seeds, "
            "else unpaired, said in pairs); targeted: margin_gap and margin_p, the same test on the adversarial margin."
            "\n\n" + _markdown_table(THREAT_COLUMNS, trows)
        )
        if trows
        else ""
    )
    defense_md = (
        (
            "\n## Defenses\n\nPer defense, every attack strongest first; `without_defense` is the same attack and "
            "setting without it, `clean_acc_cost` the accuracy the defense costs, precision/recall of the removed "
            "images against the true poisons (data-level filters).\n\n" + _markdown_table(DEFENSE_COLUMNS, drows)
        )
        if drows
        else ""
    )
    files = {
        "leaderboard.md": "# sapabench leaderboard\n\nMetric and accuracies in %, mean and SE over trials.\n\n"
        + _markdown_table(COLUMNS, rows)
        + "\n## SAPA vs baseline (Table-4 view)\n\ngap > 0: SAPA stronger; p: one-sided exact sign-flip "
        + "permutation test paired over craft seeds (one craft seed: over victim seeds), smallest possible "
        + f"p = 2^-pairs, significant at alpha = {ALPHA}; margin: the adversarial margin on the target "
        + "(> 0 = success), tested the same way. Protocols are never pooled; known-init = white-box upper bound.\n\n"
        + _markdown_table(PAIR_COLUMNS, prow)
        + threat_md
        + cost_md
        + defense_md,
        "leaderboard.csv": _csv(COLUMNS, rows),
        "table4.csv": _csv(PAIR_COLUMNS, prow),
        "table4.md": _markdown_table(PAIR_COLUMNS, prow),
        "threat-models.csv": _csv(THREAT_COLUMNS, trows),
        "threat-models.md": _markdown_table(THREAT_COLUMNS, trows),
        **(
            {"defenses.md": _markdown_table(DEFENSE_COLUMNS, drows), "defenses.csv": _csv(DEFENSE_COLUMNS, drows)}
            if drows
            else {}
        ),
        **({"cost.md": _markdown_table(COST_COLUMNS, crows), "cost.csv": _csv(COST_COLUMNS, crows)} if crows else {}),
    }
    written = []
    for name, text in files.items():
        write_text(out / name, text)
        written.append(out / name)
    figures = _plots(entries, pairs, out)
    written += [f.path for f in figures]
    from sapabench.leaderboard.page import render_page  # the page builds on this module's views

    page = render_page(
        entries,
        pairs,
        trows,
        crows,
        drows,
        figures,
        load_runs(out / RUNS_FILE),
        load_claims_record(out / CLAIMS_FILE),
    )
    write_text(out / "leaderboard.html", page)
    written.append(out / "leaderboard.html")
    replace_owned(out, written)  # tables and plots it no longer produces go; nothing it did not write
    return written
