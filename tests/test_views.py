"""The views are typed rows read through one Column list each: a column added once shows in the
Markdown, the CSV and the page alike; the page sorts on the numbers, never on re-read text; the
attack x defense grid puts every defense beside the undefended victim."""

from __future__ import annotations

import csv
import importlib
import io
import re

import pytest

from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import seal
from sapabench.leaderboard.views import THREAT_COLUMNS, Column, Num, threat_view
from tests._entries import make_entry

EIGHT = [(c, 100) for c in range(8)]


def _write(folder, entries):
    import json

    folder.mkdir(parents=True, exist_ok=True)
    for e in entries:
        (folder / f"{e['entry_id']}.json").write_text(json.dumps(e))
    return folder


def _defended(e, defense):
    e = dict(e, defense=defense, entry_id=f"{e['entry_id']}-{defense}")
    e.pop("content_sha256")
    return seal(e)


def _entries():
    low, high = [0.50 + 0.01 * i for i in range(8)], [0.70 + 0.01 * i for i in range(8)]
    return [
        make_entry("error-min", high, cells=EIGHT),
        make_entry("sapa-error-min", low, cells=EIGHT),  # 20 points stronger undefended
        _defended(make_entry("error-min", [v - 0.10 for v in high], cells=EIGHT), "median-filter"),
        _defended(make_entry("sapa-error-min", [v + 0.05 for v in high], cells=EIGHT), "median-filter"),
    ]


def test_a_column_added_once_shows_in_the_markdown_and_the_csv(tmp_path, monkeypatch):
    extra = Column("poisons", lambda r: Num(len(r.versus.test.differences), "d") if r.versus else None)
    monkeypatch.setattr(
        importlib.import_module("sapabench.leaderboard.render"), "THREAT_COLUMNS", (*THREAT_COLUMNS, extra)
    )
    render(_write(tmp_path / "entries", _entries()[:2]), tmp_path / "board")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "board" / "threat-models.csv").read_text())))
    assert {r["attack"]: r["poisons"] for r in rows} == {"sapa-error-min": "-", "error-min": "8"}
    md = (tmp_path / "board" / "threat-models.md").read_text()
    assert md.splitlines()[0].endswith("| poisons |") and md.splitlines()[-1].endswith("| 8 |")


def test_the_views_keep_numbers_and_the_page_sorts_on_them(tmp_path):
    (sapa, base) = threat_view(_entries()[:2])
    assert base.versus is not None and base.versus.gap == pytest.approx(0.20)  # a number, not "+20.0"
    assert sapa.entry.value.mean == pytest.approx(0.535) and sapa.versus is None
    render(_write(tmp_path / "entries", _entries()[:2]), tmp_path / "board")
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    table = html[html.index('id="threat-untargeted"') :]
    gap = re.search(r'<td data-k="([^"]+)" class="num[^"]*">\+20\.0</td>', table)
    assert gap is not None and float(gap.group(1)) == pytest.approx(20.0)
    value = re.search(r'<td data-k="([^"]+)" class="num[^"]*">73\.5 ± 0\.9</td>', table)
    assert value is not None and float(value.group(1)) == pytest.approx(73.5)


def test_the_attack_by_defense_grid_puts_each_defense_beside_the_undefended_victim(tmp_path):
    render(_write(tmp_path / "entries", _entries()), tmp_path / "board")
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    assert "At a glance: untargeted attacks x defenses" in html
    grid = html[html.index('id="grid-untargeted-defenses"') :]
    grid = grid[: grid.index("</section>")]
    header = re.findall(r"<th[^>]*>([^<]+)</th>", grid)
    assert header[:3] == ["attack", "none", "median-filter"]  # undefended first
    gaps = re.findall(r'<td data-k="[^"]+" class="num (up|down)">([^<]+)</td>', grid)
    # undefended SAPA is 20 points stronger (8 of 8 poisons: *), under the filter 15 points weaker
    assert gaps == [("up", "+20.0*"), ("down", "-15.0*")]
    # under each attack, each defense's reduction of it with its exact interval over poisons
    reductions = re.findall(r">((?:sapa-)?error-min): reduction</td>(.*?)</tr>", grid)
    assert [a for a, _ in reductions] == ["error-min", "sapa-error-min"]
    for _, row in reductions:
        cells = re.findall(r'<td data-k="[^"]+" class="num ?(sig)?">([^<]+)</td>', row)
        assert len(cells) == 1 and re.fullmatch(r"[-+]\d+\.\d \[[-+]\d+\.\d, [-+]\d+\.\d\]", cells[0][1]), row
    recipes = html[html.index('id="grid-untargeted"') :]
    assert "median-filter" not in recipes[: recipes.index("</section>")]  # the recipe grid stays undefended


def test_each_sapa_row_of_the_grid_shows_its_own_gap(tmp_path):
    low, high = [0.50 + 0.01 * i for i in range(8)], [0.70 + 0.01 * i for i in range(8)]
    entries = [
        *_entries()[:2],  # error-min and its twin under sgd
        make_entry("error-min", high, recipe="adam", cells=EIGHT),
        make_entry("sapa-error-min", low, recipe="adam", cells=EIGHT),
        make_entry("error-max", low, cells=EIGHT),  # error-max under sgd only, its twin 3 points weaker
        make_entry("sapa-error-max", [v + 0.03 for v in low], cells=EIGHT),
    ]
    render(_write(tmp_path / "entries", entries), tmp_path / "board")
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    grid = html[html.index('id="grid-untargeted"') :]
    grid = grid[: grid.index("</section>")]
    rows = {}
    for body in re.findall(r"<tr[^>]*>(.*?)</tr>", grid, re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", body, re.S)]
        rows[cells[0]] = cells[1:]
    assert rows["attack"] == ["adam", "sgd"]
    assert rows["sapa-error-min - base"] == ["+20.0*", "+20.0*"]
    assert rows["sapa-error-max - base"] == ["-", "-3.0*"]  # no error-max under adam: no gap there


def test_a_p_value_its_pairs_cannot_push_below_alpha_is_marked_and_its_floor_written(tmp_path):
    three = [make_entry("error-min", (0.70, 0.72, 0.74)), make_entry("sapa-error-min", (0.50, 0.52, 0.54))]
    render(_write(tmp_path / "entries", three), tmp_path / "board")
    (row,) = csv.DictReader(io.StringIO((tmp_path / "board" / "table4.csv").read_text()))
    # two-sided p, the one convention of every view; one poison (victims as pairs) never decides
    assert (row["p_value"], row["p_floor"], row["pairs"]) == ("0.2500", "0.2500", "3 victim seeds")
    assert (row["p_adjusted"], row["significant"]) == ("-", "undecidable")
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    pairs = html[html.index('id="pairs"') :]
    assert re.search(r'<td data-k="0\.25" class="num">0\.2500°</td>', pairs)  # 3 pairs: 2^-2 is the best
    eight = _entries()[:2]
    render(_write(tmp_path / "e8", eight), tmp_path / "b8")
    html = (tmp_path / "b8" / "leaderboard.html").read_text()
    pairs = html[html.index('id="pairs"') :]
    assert re.search(r'<td data-k="0\.0078125" class="num sig">0\.0078</td>', pairs)  # 8 poisons can decide


def test_every_view_marks_the_same_comparisons_significant(tmp_path):
    """One convention: the exact two-sided test, Benjamini-Yekutieli over the page's comparisons.
    table4.csv, threat-models.csv, the page's Table-4 view, its grid and the answer line agree."""
    eight = [(c, 100) for c in range(8)]
    base = [0.70 + 0.01 * i for i in range(8)]
    shifts = {
        "sgd": [0.20] * 8,  # every poison: significant
        "adam": [-0.20] * 8,  # every poison the other way: significant (SAPA weaker)
        "cutout": [0.05, -0.04, 0.03, -0.02, 0.04, -0.05, 0.01, 0.02],  # noise: not
        "mixup": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, -0.01],  # raw two-sided p 2/256 x ... near the edge
    }
    entries = []
    for recipe, shift in shifts.items():
        entries += [
            make_entry("error-min", base, recipe=recipe, cells=eight),
            make_entry("sapa-error-min", [b - s for b, s in zip(base, shift, strict=True)], recipe=recipe, cells=eight),
        ]
    # one poison with many victims: never significant, whatever its p
    entries += [
        make_entry("error-min", [0.7 + 0.001 * i for i in range(8)], recipe="sam"),
        make_entry("sapa-error-min", [0.5 + 0.001 * i for i in range(8)], recipe="sam"),
    ]
    board = tmp_path / "board"
    render(_write(tmp_path / "entries", entries), board)
    table4 = {r["recipe"]: r["significant"] for r in csv.DictReader(io.StringIO((board / "table4.csv").read_text()))}
    threats = {
        r["recipe"]: r["significant"]
        for r in csv.DictReader(io.StringIO((board / "threat-models.csv").read_text()))
        if r["attack"] == "error-min"
    }
    assert table4 == threats
    rows = [r.split("|")[1:-1] for r in (board / "table4.md").read_text().splitlines()[2:]]
    header = [h.strip() for h in (board / "table4.md").read_text().splitlines()[0].split("|")[1:-1]]
    markdown = {r[header.index("recipe")].strip(): r[header.index("significant")].strip() for r in rows}
    assert markdown == table4  # the Markdown says what the CSV says
    assert table4["sgd"] == table4["adam"] == "yes" and table4["cutout"] == "no" and table4["sam"] == "undecidable"
    html = (board / "leaderboard.html").read_text()
    pairs = html[html.index('id="pairs"') : html.index("</section>", html.index('id="pairs"'))]
    bold = set()
    for body in re.findall(r"<tr[^>]*>(.*?)</tr>", pairs, re.S):
        recipe = next((r for r in shifts if f">{r}<" in body or f"· {r}" in body or f"{r} ·" in body), None)
        if recipe is None and "sam" in body:
            recipe = "sam"
        if recipe is not None and 'class="num sig"' in body:
            bold.add(recipe)
    assert bold == {r for r, v in table4.items() if v == "yes"}
    grid = html[html.index('id="grid-untargeted"') :]
    grid = grid[: grid.index("</section>")]
    cells = []
    for body in re.findall(r"<tr[^>]*>(.*?)</tr>", grid, re.S):
        row = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", body, re.S)]
        if row and row[0] == "sapa-error-min - base":
            cells += row[1:]
    starred = sum(c.endswith("*") for c in cells)
    assert starred == sum(v == "yes" for v in table4.values())
    assert any(c.endswith("°") for c in cells)  # the one-poison setting cannot decide
    answer = re.search(
        r"untargeted: SAPA stronger than its base in (\d+) of (\d+) setting\(s\) \((\d+) significant\), "
        r"weaker in (\d+) \((\d+) significant\)",
        html,
    )
    assert answer is not None
    assert int(answer.group(3)) + int(answer.group(5)) == sum(v == "yes" for v in table4.values())


def test_the_defense_view_decides_over_poisons_with_controls_and_clean_cost(tmp_path):
    """Eight poisons: the filter raises the poisoned victims' accuracy by 10 points (+/- noise) per
    poison, its random twin by 1, the oracle by 20; with no attack it costs 2 points. Each test
    is decided over poisons with its exact interval, and the view's CSV carries every number."""
    import csv
    import io

    from sapabench.leaderboard.views import defense_view
    from tests._entries import make_clean_entry

    noise = [0.003 * ((-1) ** i) * (i % 3) for i in range(8)]
    base = [0.50 + 0.01 * i for i in range(8)]
    entries = [
        make_entry("error-min", base, cells=EIGHT),
        _defended(
            make_entry("error-min", [v + 0.10 + n for v, n in zip(base, noise, strict=True)], cells=EIGHT),
            "spectral-signatures",
        ),
        _defended(
            make_entry("error-min", [v + 0.01 - n for v, n in zip(base, noise, strict=True)], cells=EIGHT),
            "random-like-spectral-signatures",
        ),
        _defended(make_entry("error-min", [v + 0.20 for v in base], cells=EIGHT), "oracle-filter"),
    ]
    clean_values = [0.98, 0.99, 0.97, 0.985, 0.975, 0.99, 0.98, 0.97]
    clean = make_clean_entry(clean_values)
    entries += [clean, _defended(make_clean_entry([v - 0.02 for v in clean_values]), "spectral-signatures")]
    rows = {(r.entry.attack, r.entry.defense): r for r in defense_view(entries)}
    d = rows[("error-min", "spectral-signatures")].decision
    assert d.reduction.test.n == 8 and d.reduction.test.unit == "craft seed"
    assert d.reduction.mean == pytest.approx(0.10, abs=0.005) and 0.09 < d.reduction.lower < d.reduction.upper < 0.11
    assert d.reduction.test.significant(0.05)  # 8 of 8 poisons, BY-adjusted with the view's other tests
    assert d.beyond_random.mean == pytest.approx(0.09, abs=0.01) and d.beyond_random.lower > 0
    assert d.oracle_share == pytest.approx(0.5, abs=0.03)
    assert d.clean_cost.mean == pytest.approx(0.02) and d.clean_cost.test.unit == "clean victim"
    assert d.clean_cost.test.decidable(0.05)  # 8 clean victims: independent draws, decided like poisons
    # the attack's remaining effect: clean victims under the filter (96.8 %) minus the defended (mean 63.5 %)
    assert d.remaining.mean == pytest.approx(0.9675 - (0.535 + 0.10), abs=0.01)
    assert rows[("clean", "spectral-signatures")].decision.reduction is None
    render(_write(tmp_path / "entries", entries), tmp_path / "board")
    table = list(csv.DictReader(io.StringIO((tmp_path / "board" / "defenses.csv").read_text())))
    row = next(r for r in table if r["attack"] == "error-min" and r["defense"] == "spectral-signatures")
    assert (
        row["poisons"] == "8 craft seeds"
        and row["reduction"].startswith("+10.")
        and row["reduction_significant"] == "yes"
    )
    assert row["oracle_share"] == "0.50" and row["clean_cost"].startswith("+2.0 [")
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    assert "beyond random" in html and "oracle share" in html and "clean cost" in html
    grid = html[html.index('id="grid-untargeted-defenses"') :]
    clean_row = re.search(
        r'<tbody class="row cleanrow"[^>]*>(.*?)</tbody>', grid[: grid.index("</section>")], re.S
    ).group(1)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", clean_row, re.S)]
    # the clean victims under each defense (columns none, oracle-filter, random-like-..., spectral-signatures):
    # 98.0 undefended, 96.0 under the filter (its cost with no attack); no clean arm ran for the controls here
    assert cells == ["clean (accuracy)", "98.0", "-", "-", "96.0"], cells
