"""Render the leaderboard from its entry files only: Markdown, CSV, a static sortable HTML page,
the Table-4 view (every SAPA attack beside its baseline, with the signed gap and a one-sided
test), and PNG plots. The same entries always give the same files."""

from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from core.atomic import write_text
from core.names import NO_DEFENSE, base_name, is_sapa, sapa_name
from core.numerics import Numerics
from core.stats import p_greater
from core.threats import NO_THREAT
from leaderboard.schema import load_entries

ALPHA = 0.05
COLUMNS = (
    "attack",
    "defense",
    "dataset",
    "arch",
    "recipe",
    "numerics",
    "threat",
    "eps",
    "budget",
    "metric",
    "mean",
    "se",
    "trials",
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
    "numerics",
    "defense",
    "attack",
    "metric",
    "baseline",
    "sapa",
    "gap",
    "p_value",
    "significant",
    "trials",
)


def _row(e: dict[str, Any]) -> dict[str, Any]:
    s, m, t = e["setting"], e["metric"], e["timings"]
    return {
        "attack": e["attack"],
        "defense": e["defense"],
        "dataset": s["dataset"],
        "arch": s["arch"],
        "recipe": s["recipe"],
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
        "clean_acc": f"{100 * e['clean_accuracy']['mean']:.1f}",
        "clean_acc_se": f"{100 * e['clean_accuracy']['se']:.1f}",
        "craft_s": f"{t['craft_s']:.1f}",
        "train_s_per_victim": f"{t['train_s_mean']:.1f}",
        "eval_s_per_victim": f"{t['eval_s_mean']:.2f}",
        "total_s": f"{t['total_s']:.1f}",
        "images_per_s": f"{t['images_per_s']:.0f}",
        "peak_mem_mb": f"{t['peak_memory_mb']:.0f}",
    }


def numerics_label(setting: dict[str, Any]) -> str:
    """The victims' numerics of an entry's setting, as tables show them (``fp32``, ``bf16+cl``, ...)."""
    return Numerics(setting["precision"], setting["memory_format"]).label


def _variant(e: dict[str, Any]) -> str:
    """What else tells settings apart: the attack preset and options, the victim protocol and
    numerics (entries that differ only by these are different results and must not be paired
    across)."""
    s = e["setting"]
    return json.dumps([s["preset"], s["options"], s["victim"], s["precision"], s["memory_format"]], sort_keys=True)


def sapa_pairs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Table-4 view: each SAPA entry beside its baseline in the same setting.

    ``gap`` is signed so that positive means SAPA is stronger (for accuracy metrics, where lower
    is stronger, it is baseline minus SAPA); ``p_value`` is the one-sided Welch test of that.
    """
    index = {}
    for e in entries:
        s = e["setting"]
        index[
            (s["suite"], s["dataset"], s["arch"], s["recipe"], e["defense"], s["surrogate"], e["attack"], _variant(e))
        ] = e
    pairs = []
    for (suite, ds, arch, recipe, defense, surrogate, attack, variant), sapa in sorted(index.items()):
        if not is_sapa(attack):
            continue
        base = index.get((suite, ds, arch, recipe, defense, surrogate, base_name(attack), variant))
        if base is None:
            continue
        higher = sapa["metric"]["higher_is_stronger"]
        sv, bv = sapa["metric"]["values"], base["metric"]["values"]
        gap = (sapa["metric"]["mean"] - base["metric"]["mean"]) * (1 if higher else -1)
        p = p_greater(sv, bv) if higher else p_greater(bv, sv)
        pairs.append(
            {
                "dataset": ds,
                "arch": arch,
                "recipe": recipe,
                "numerics": numerics_label(sapa["setting"]),
                "defense": defense,
                "attack": base["attack"],
                "metric": sapa["metric"]["name"],
                "higher_is_stronger": higher,
                "baseline": (base["metric"]["mean"], base["metric"]["se"]),
                "sapa": (sapa["metric"]["mean"], sapa["metric"]["se"]),
                "gap": gap,
                "p_value": p,
                "significant": p < ALPHA,
                "trials": (len(bv), len(sv)),
                "baseline_values": bv,
                "sapa_values": sv,
            }
        )
    return pairs


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
            fmt = lambda m: f"{100 * m['mean']:.1f} +/- {100 * m['se']:.1f}"  # noqa: E731
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
                }
            )
    return rows


def _pair_row(p: dict[str, Any]) -> dict[str, str]:
    return {
        "dataset": p["dataset"],
        "arch": p["arch"],
        "recipe": p["recipe"],
        "numerics": p["numerics"],
        "defense": p["defense"],
        "attack": p["attack"],
        "metric": p["metric"],
        "baseline": f"{100 * p['baseline'][0]:.1f} +/- {100 * p['baseline'][1]:.1f}",
        "sapa": f"{100 * p['sapa'][0]:.1f} +/- {100 * p['sapa'][1]:.1f}",
        "gap": f"{100 * p['gap']:+.1f}",
        "p_value": f"{p['p_value']:.3f}",
        "significant": "yes" if p["significant"] else "no",
        "trials": f"{p['trials'][0]}/{p['trials'][1]}",
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


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sapabench leaderboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ cursor: pointer; background: #f3f3f3; user-select: none; }}
td:nth-child(-n+6) {{ text-align: left; }}
tr.sapa td:first-child {{ font-weight: bold; }}
</style></head><body>
<h1>sapabench leaderboard</h1>
<p>Metric values and accuracies in percent, mean and standard error over trials. For targeted and
backdoor attacks higher metric = stronger attack; for untargeted attacks the metric is the clean
test accuracy of the re-trained victim, lower = stronger. Click a column header to sort.</p>
<h2>All entries</h2>
{main}
<h2>SAPA vs baseline (Table-4 view)</h2>
<p>gap &gt; 0: SAPA stronger; p: one-sided Welch test of that, significant at alpha = {alpha}.</p>
{pairs}
{defenses}
<script>
document.querySelectorAll("table.sortable").forEach(function (table) {{
  table.querySelectorAll("th").forEach(function (th, col) {{
    th.addEventListener("click", function () {{
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = th.dataset.order !== "asc"; th.dataset.order = asc ? "asc" : "desc";
      rows.sort(function (a, b) {{
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      }});
      rows.forEach(function (r) {{ body.appendChild(r); }});
    }});
  }});
}});
</script>
</body></html>
"""


def _html_table(columns: tuple[str, ...], rows: list[dict[str, str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in columns) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body) + "\n</tbody></table>"


def _plots(entries: list[dict[str, Any]], pairs: list[dict[str, Any]], out: Path) -> list[Path]:
    # Imported here, not at the top: matplotlib (with its font cache) is needed only to draw, and
    # the backend must be chosen before pyplot is imported; validating entries, the claims and
    # verify import this module without drawing anything.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    meta = {"Software": None}
    by_attack: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for p in pairs:
        by_attack[(p["dataset"], p["arch"], p["attack"])].append(p)
    for (ds, arch, attack), rows in sorted(by_attack.items()):
        rows.sort(key=lambda p: (p["defense"], p["recipe"]))
        labels = [p["recipe"] + ("" if p["defense"] == NO_DEFENSE else f"\n+{p['defense']}") for p in rows]
        x = range(len(rows))
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 1.5), 3.6), dpi=100)
        ax.bar(
            [i - 0.2 for i in x],
            [100 * p["baseline"][0] for p in rows],
            0.4,
            yerr=[100 * p["baseline"][1] for p in rows],
            capsize=3,
            label=attack,
            color="#8da0cb",
        )
        ax.bar(
            [i + 0.2 for i in x],
            [100 * p["sapa"][0] for p in rows],
            0.4,
            yerr=[100 * p["sapa"][1] for p in rows],
            capsize=3,
            label=sapa_name(attack),
            color="#fc8d62",
        )
        ax.set_xticks(list(x), labels)
        metric = rows[0]["metric"].replace("_", " ")
        ax.set_ylabel(f"{metric} (%)" + ("" if rows[0]["higher_is_stronger"] else ", lower = stronger"))
        ax.set_title(f"{attack} vs SAPA: {ds}, victim {arch}")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"pair--{ds}--{arch}--{attack}.png"
        fig.savefig(path, metadata=meta)
        plt.close(fig)
        written.append(path)

    attacked = [e for e in entries if e["setting"]["threat"] != NO_THREAT]
    if attacked:
        fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=100)
        for e in attacked:
            marker = "o" if e["sapa"] else "s"
            ax.errorbar(
                e["timings"]["craft_s"],
                100 * e["metric"]["mean"],
                yerr=100 * e["metric"]["se"],
                fmt=marker,
                color="#fc8d62" if e["sapa"] else "#8da0cb",
                alpha=0.8,
                capsize=2,
            )
        seen = set()
        for e in attacked:
            if e["attack"] not in seen and e["setting"]["recipe"] == "sgd":
                seen.add(e["attack"])
                ax.annotate(
                    e["attack"],
                    (e["timings"]["craft_s"], 100 * e["metric"]["mean"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.set_xlabel("crafting time (s)")
        ax.set_ylabel("metric (%): success rate, or accuracy for untargeted")
        ax.set_title("attack metric vs crafting time (squares: baseline, circles: SAPA)")
        fig.tight_layout()
        path = out / "success-vs-crafting-time.png"
        fig.savefig(path, metadata=meta)
        plt.close(fig)
        written.append(path)
    return written


def render(entries_dir: str | Path, out: str | Path) -> list[Path]:
    """Render every format from the entry files in ``entries_dir`` into ``out``."""
    entries = load_entries(entries_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [_row(e) for e in entries]
    pairs = sapa_pairs(entries)
    prow = [_pair_row(p) for p in pairs]
    drows = defense_view(entries)
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
        + "\n## SAPA vs baseline (Table-4 view)\n\ngap > 0: SAPA stronger; p: one-sided Welch test, "
        + f"significant at alpha = {ALPHA}.\n\n"
        + _markdown_table(PAIR_COLUMNS, prow)
        + defense_md,
        "leaderboard.csv": _csv(COLUMNS, rows),
        "table4.csv": _csv(PAIR_COLUMNS, prow),
        "table4.md": _markdown_table(PAIR_COLUMNS, prow),
        **(
            {"defenses.md": _markdown_table(DEFENSE_COLUMNS, drows), "defenses.csv": _csv(DEFENSE_COLUMNS, drows)}
            if drows
            else {}
        ),
        "leaderboard.html": _HTML.format(
            main=_html_table(COLUMNS, rows, ["sapa" if e["sapa"] else "" for e in entries]),
            pairs=_html_table(PAIR_COLUMNS, prow),
            defenses=("<h2>Defenses</h2>\n" + _html_table(DEFENSE_COLUMNS, drows)) if drows else "",
            alpha=ALPHA,
        ),
    }
    for stale in [*out.glob("*.png"), *out.glob("defenses.*")]:
        stale.unlink()
    written = []
    for name, text in files.items():
        write_text(out / name, text)
        written.append(out / name)
    written += _plots(entries, pairs, out)
    return written
