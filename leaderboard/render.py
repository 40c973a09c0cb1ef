"""Render the leaderboard from its entry files only: Markdown, CSV, a static sortable HTML page and
PNG plots, every one from the same typed view rows (:mod:`sapabench.leaderboard.views`). The same
entries always give the same files."""

from __future__ import annotations

from pathlib import Path

from sapabench.core.atomic import stale_temporaries, write_text
from sapabench.core.owned import own_folder, replace_owned
from sapabench.leaderboard.cost import COST_COLUMNS, cost_view
from sapabench.leaderboard.pairs import SIGNIFICANCE_NOTE, family, sapa_pairs
from sapabench.leaderboard.plots import plots
from sapabench.leaderboard.records import CLAIMS_FILE, RUNS_FILE, load_claims_record, load_runs
from sapabench.leaderboard.schema import load_entries
from sapabench.leaderboard.views import (
    DEFENSE_COLUMNS,
    ENTRY_COLUMNS,
    PAIR_COLUMNS,
    THREAT_COLUMNS,
    csv_text,
    defense_view,
    entry_row,
    markdown,
    threat_view,
)

THREAT_NOTE = (
    "Per threat model, victim protocol and setting, every attack strongest first; value in % (targeted: success, "
    "with the adversarial margin in logits); clean_reference: the clean victim's accuracy (untargeted) or adversarial "
    "margin (targeted); each baseline against its own SAPA twin (else the strongest SAPA attack of its group): gap in "
    "points, > 0 = SAPA stronger, p two-sided (paired by craft seed where they share seeds, else unpaired, said in "
    "pairs), p_adjusted and significant by the page's one convention; targeted: margin_gap (logits) and margin_p, the "
    "same test on the adversarial margin."
)
PAIR_NOTE = (
    "gap in points, > 0: SAPA stronger; p: the exact two-sided sign-flip permutation test paired over craft seeds, "
    "smallest possible p = 2^(1-poisons); {significance}; margin: the adversarial margin on the target in logits "
    "(> 0 = success), tested the same way. Protocols are never pooled; known-init = white-box upper bound."
)
COST_NOTE = (
    "Per setting and attack family, one row per (attack, K architectures, R initialisations): value in %, crafting "
    "seconds per poison set without (craft_s) and with (total_s) the clean surrogates' training; sapa_*_ratio = "
    "SAPA(1x1) time / this row's; each row against SAPA at K = R = 1 paired by craft seed (gap in points, > 0 = SAPA "
    "stronger; targeted rows with tied success compare the adversarial margin, in logits)."
)
DEFENSE_NOTE = (
    "Per defense, every attack strongest first; `without_defense` is the same attack and setting without it, "
    "`clean_acc_cost` the accuracy in points the defense costs, precision/recall of the removed images against the "
    "true poisons (data-level filters)."
)


def _section(title: str, note: str, body: str) -> str:
    return f"\n## {title}\n\n{note}\n\n{body}"


def render(entries_dir: str | Path, out: str | Path) -> list[Path]:
    """Render every format from the entry files in ``entries_dir`` into ``out`` (the page also
    reads ``out/runs.json`` and ``out/claims.json`` when they exist: :mod:`sapabench.leaderboard.records`)."""
    entries = load_entries(entries_dir)
    out = own_folder(Path(out), "leaderboard folder")
    stale_temporaries(out)
    rows = [entry_row(e) for e in entries]
    fam = family(entries)  # the page's one family of comparisons, adjusted once for every view
    pairs = sapa_pairs(entries, fam)
    threat_rows = threat_view(entries, fam)
    defense_rows = defense_view(entries)
    cost_rows = cost_view(entries)
    views = {
        "threat-models": (THREAT_COLUMNS, threat_rows),
        "defenses": (DEFENSE_COLUMNS, defense_rows),
        "cost": (COST_COLUMNS, cost_rows),
    }
    board = (
        "# sapabench leaderboard\n\nMetric and accuracies in %, mean and SE over trials.\n\n"
        + markdown(ENTRY_COLUMNS, rows)
        + _section(
            "SAPA vs baseline (Table-4 view)",
            PAIR_NOTE.format(significance=SIGNIFICANCE_NOTE),
            markdown(PAIR_COLUMNS, pairs),
        )
    )
    for title, note, name in (
        ("Per threat model (Tables 1-3 view)", THREAT_NOTE, "threat-models"),
        ("Ensemble and re-initialisation vs SAPA (Figure 2 view)", COST_NOTE, "cost"),
        ("Defenses", DEFENSE_NOTE, "defenses"),
    ):
        columns, view = views[name]
        board += _section(title, note, markdown(columns, view)) if view else ""
    files = {
        "leaderboard.md": board,
        "leaderboard.csv": csv_text(ENTRY_COLUMNS, rows),
        "table4.csv": csv_text(PAIR_COLUMNS, pairs),
        "table4.md": markdown(PAIR_COLUMNS, pairs),
    }
    for name, (columns, view) in views.items():
        if view or name == "threat-models":
            files[f"{name}.md"] = markdown(columns, view)
            files[f"{name}.csv"] = csv_text(columns, view)
    written = []
    for name, text in files.items():
        write_text(out / name, text)
        written.append(out / name)
    claims = load_claims_record(out / CLAIMS_FILE)
    figures = plots(entries, pairs, out, claims)
    written += [f.path for f in figures]
    from sapabench.leaderboard.page import render_page  # the page builds on this module's views

    page = render_page(
        entries,
        rows,
        pairs,
        threat_rows,
        cost_rows,
        defense_rows,
        figures,
        load_runs(out / RUNS_FILE),
        claims,
    )
    write_text(out / "leaderboard.html", page)
    written.append(out / "leaderboard.html")
    replace_owned(out, written)  # tables and plots it no longer produces go; nothing it did not write
    return written
