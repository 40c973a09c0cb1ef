"""The leaderboard page as HTML (the browser tests open it: tests/test_page_browser.py):
self-contained, deterministic, with the run, the verdicts and every view; bad records refused."""

from __future__ import annotations

import base64
import json
import re

import pytest

from sapabench.leaderboard.records import CLAIMS_FILE, RUNS_FILE, load_claims_record
from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import EntryError
from tests._entries import make_entry
from tests._pages import write_board


def test_the_page_is_self_contained_and_every_plot_is_inline(tmp_path):
    page = write_board(tmp_path)
    html = page.read_text()
    assert not re.search(r"https?://", html)  # nothing fetched: no CDN, no remote font or script
    assert '<link rel="stylesheet"' not in html and "<script src" not in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(sources) == len(pngs) >= 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    inline = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert inline == {p.read_bytes() for p in pngs}  # each plot as written beside the page


def test_the_crafting_time_plot_is_split_per_threat_model(tmp_path):
    write_board(tmp_path)
    names = {p.name for p in tmp_path.glob("*.png")}
    assert {"crafting-time--targeted.png", "crafting-time--untargeted.png"} <= names
    assert "success-vs-crafting-time.png" not in names  # accuracies and success rates never share an axis


def test_the_page_shows_what_was_run_and_the_verdicts_first(tmp_path):
    html = write_board(tmp_path).read_text()
    answer, run, claims = html.index('id="answer"'), html.index('id="run"'), html.index('id="claims"')
    pairs = html.index('id="pairs"')
    assert answer < run < claims < pairs < html.index('id="threat-targeted"') < html.index('id="defenses"')
    assert '<details id="run">' in html  # the run's metadata is folded under the answer
    assert "<li>untargeted: SAPA stronger than its base in " in html
    # the pre-registered claims' verdicts are among the first lines, with gain, interval and delta
    assert "<li>claim T4-sgd-error-min: HELD (gain +20.0 [+5.0, +31.0], delta +4.6)</li>" in html
    assert "40 min 47 s over 1 run(s)" in html and "2 x 1 threads" in html and "processes" in html
    assert "cifar10, digits" in html and "54 victims in 10 entries" in html and "none, spectral-signatures" in html
    assert "T4-sgd-error-min" in html and 'class="verdict v-held"' in html and "1 untested" in html
    # untested claims (most rows, for any one suite) are listed apart, folded
    folded = html.index('<details class="untested">')
    assert folded < html.rindex("T1-gradient-matching") < html.index("</details>", folded)
    assert "Pre-registered by the run: T4-sgd-error-min, T1-gradient-matching (Holm-Shaffer" in html
    assert ">81% / 90%<" in html  # design power before the data: HELD at delta, BELOW at 0
    assert ">+20.0 [+5.0, +31.0]<" in html and ">+4.6<" in html  # the gain, its interval and delta
    assert "forest--claims.png" in {p.name for p in tmp_path.glob("*.png")}
    assert "different set of entries" not in html


def test_verdicts_checked_on_other_entries_are_flagged_stale(tmp_path):
    html = write_board(tmp_path, stale=True).read_text()
    assert "different set of entries" in html and "sapabench claims --results" in html


def test_a_page_without_claims_has_no_verdicts_block(tmp_path):
    html = write_board(tmp_path, claims=False).read_text()
    assert 'id="claims"' not in html and 'id="run"' in html


def test_every_entry_row_carries_its_detail_and_filter_values(tmp_path):
    html = write_board(tmp_path).read_text()
    rows = re.findall(r'<tbody class="row"([^>]*)>', html[html.index('<section id="entries">') :])
    entry_rows = [r for r in rows if "data-f-dataset" in r]
    assert len(entry_rows) >= 9 and all('id="entry-' in r for r in entry_rows)  # each its permalink
    assert all(f"data-f-{k}=" in r for r in entry_rows for k in ("arch", "recipe", "protocol", "defense"))
    # the defended entry's detail: its trials with seeds, the poison hash, the defense's statistics
    assert "spectral-signatures" in html and "removed_mean" in html and "0" * 64 in html
    assert html.count('class="detail" hidden') >= 9


def test_text_from_entries_is_escaped(tmp_path):
    folder = tmp_path / "entries"
    folder.mkdir()
    e = make_entry("error-min", options={"note": "<img src=x onerror=alert(1)>"})
    (folder / "e.json").write_text(json.dumps(e))
    html = render(folder, tmp_path / "board")[-1].read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_rendering_twice_gives_the_same_bytes(tmp_path):
    first = write_board(tmp_path / "a").read_bytes()
    second = write_board(tmp_path / "b").read_bytes()
    assert first == second


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["verdicts"][0].update(verdict="proven"),
            "verdict 'proven' is not one of held, held+below, below, failed",
        ),
        (lambda d: d["verdicts"][0].update(p_value=None), "a held verdict needs its p_value"),
        (lambda d: d["verdicts"][0].pop("summary"), "missing field 'summary'"),
        (lambda d: d.update(alpha=2), "alpha must lie in (0, 1)"),
        (lambda d: d.update(version=99), "not a sapabench-claims v5 record"),
    ],
)
def test_a_tampered_claims_record_is_refused_with_the_fix(tmp_path, edit, message):
    write_board(tmp_path)
    data = json.loads((tmp_path / CLAIMS_FILE).read_text())
    edit(data)
    (tmp_path / CLAIMS_FILE).write_text(json.dumps(data))
    with pytest.raises(EntryError, match=re.escape(message)) as err:
        render(tmp_path / "entries", tmp_path)
    assert "sapabench claims --results" in str(err.value)
    (tmp_path / CLAIMS_FILE).write_text("{not json")
    with pytest.raises(EntryError, match="not valid JSON"):
        load_claims_record(tmp_path / CLAIMS_FILE)


def test_a_tampered_runs_record_is_refused_with_the_fix(tmp_path):
    write_board(tmp_path)
    data = json.loads((tmp_path / RUNS_FILE).read_text())
    data["runs"][0]["wall_s"] = "fast"
    (tmp_path / RUNS_FILE).write_text(json.dumps(data))
    with pytest.raises(EntryError, match=r"runs\[0\]: field 'wall_s' must be int or float, got str; it is written by"):
        render(tmp_path / "entries", tmp_path)


@pytest.mark.parametrize(
    "claims",
    [{"primary": [], "alpha": 0.05}, {"primary": ["T4-sgd-error-min"], "alpha": 1.5}, {"primary": [3], "alpha": 0.05}],
)
def test_a_tampered_plan_in_the_runs_record_is_refused_with_the_fix(tmp_path, claims):
    write_board(tmp_path)
    data = json.loads((tmp_path / RUNS_FILE).read_text())
    data["claims"] = claims
    (tmp_path / RUNS_FILE).write_text(json.dumps(data))
    with pytest.raises(
        EntryError, match=r"'claims' must be an object with a non-empty list 'primary'.*it is written by"
    ):
        render(tmp_path / "entries", tmp_path)


def test_a_verdict_decided_on_a_proxy_or_on_a_twin_dataset_says_so_on_the_page(tmp_path):
    from sapabench.leaderboard.render import render

    write_board(tmp_path)
    record = json.loads((tmp_path / "claims.json").read_text())
    held = record["verdicts"][0]
    assert 'class="badge proxy"' not in (tmp_path / "leaderboard.html").read_text()
    held.update(decided_on="adversarial margin", label="held (margin)")
    (tmp_path / "claims.json").write_text(json.dumps(record))
    render(tmp_path / "entries", tmp_path)
    html = (tmp_path / "leaderboard.html").read_text()
    row = html[html.index('<td class="verdict v-held">') :]
    row = row[: row.index("</tr>")]
    assert ">proxy: adversarial margin</span>" in row  # the badge beside the verdict
    assert ">digits, not cifar10</span>" in row  # tested on the embedded twin's dataset
