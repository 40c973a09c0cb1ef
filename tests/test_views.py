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
    assert (row["p_value"], row["p_floor"], row["pairs"]) == ("0.125", "0.1250", "3 victim seeds")
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    pairs = html[html.index('id="pairs"') :]
    assert re.search(r'<td data-k="0\.125" class="num">0\.125°</td>', pairs)  # 3 pairs: 2^-3 is the best
    eight = _entries()[:2]
    render(_write(tmp_path / "e8", eight), tmp_path / "b8")
    html = (tmp_path / "b8" / "leaderboard.html").read_text()
    pairs = html[html.index('id="pairs"') :]
    assert re.search(r'<td data-k="0\.00390625" class="num sig">0\.004</td>', pairs)  # 8 poisons can decide
