"""``sapabench compare BEFORE AFTER``: equal runs exit 0, a gap that moved beyond its margin exits
1, bad input is one line and exit 2."""

import json

import pytest

from sapabench.benchmark.cli import main
from sapabench.benchmark.compare import compare_runs
from sapabench.leaderboard.schema import seal
from tests._entries import make_clean_entry, make_entry

CELLS = [(c, 1000 + c) for c in range(8)]  # eight poisons, one nested victim each
BASE = [0.70 + 0.01 * i for i in range(8)]


def _run(folder, sapa, base=BASE, suite="t", clean=None, sapa_options=None, **kw):
    """A run folder of suite ``suite``: Error-Min and SAPA Error-Min under sgd (accuracy, lower
    = stronger) over eight poisons, and optionally the clean victims."""
    entries = folder / "leaderboard" / "entries"
    entries.mkdir(parents=True)
    sapa_kw = {**kw, "options": sapa_options} if sapa_options is not None else kw
    made = [
        make_entry("error-min", base, cells=CELLS, **kw),
        make_entry("sapa-error-min", sapa, cells=CELLS, **sapa_kw),
    ]
    if clean is not None:
        made.append(make_clean_entry(clean))
    for e in made:
        e["setting"]["suite"] = suite
        e = seal({k: v for k, v in e.items() if k != "content_sha256"})
        (entries / f"{e['entry_id']}.json").write_text(json.dumps(e))
    (folder / "leaderboard" / "runs.json").write_text(json.dumps({"suite": suite, "runs": []}))
    return folder


def test_two_equal_runs_compare_equal(tmp_path, capsys):
    sapa = [v - 0.2 for v in BASE]
    a, b = _run(tmp_path / "a", sapa), _run(tmp_path / "b", sapa)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "0 differ" in out and "equal: every matched trial has the same value" in out


def test_a_weakened_attack_moves_its_gap_beyond_the_margin(tmp_path, capsys):
    a = _run(tmp_path / "a", [v - 0.20 for v in BASE])
    b = _run(tmp_path / "b", [v - 0.05 + 0.002 * i for i, v in enumerate(BASE)])  # SAPA 15 points weaker
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "MOVED  sapa-error-min vs error-min" in out and "2 comparison(s) moved beyond their margin" in out
    assert "MOVED     sapa-error-min digits/convnet/sgd" in out  # its own accuracy rose 15 points too
    c = compare_runs(a, b)
    (row,) = c.changes
    assert row.change == pytest.approx(-0.15, abs=0.01) and row.margin == 0.02 and row.margin_from == "default"
    assert row.poisons == 8 and row.p_adjusted < 0.05
    # a change inside a wide margin is not a regression
    assert compare_runs(a, b, margin=0.5).exit_code == 0


def test_each_attacks_strength_is_equal_within_the_margin_moved_beyond_it_or_undecided(tmp_path, capsys):
    """A change of the harness that should not move results (crafting numerics): each attack's
    metric per poison, after minus before, against the margin, with its exact interval."""
    jitter = [0.004, -0.003, 0.002, -0.004, 0.003, -0.002, 0.001, -0.001]
    a = _run(tmp_path / "a", [v - 0.20 for v in BASE])
    b = _run(
        tmp_path / "b",
        [v - 0.20 + 0.30 * (i % 2) for i, v in enumerate(BASE)],  # SAPA: +30 points on every other poison
        base=[v + j for v, j in zip(BASE, jitter, strict=True)],  # the base: within 0.4 points
    )
    c = compare_runs(a, b, margin=0.02)
    rows = {r.attack: r for r in c.strengths}
    em, sapa = rows["error-min"], rows["sapa-error-min"]
    assert em.poisons == 8 and em.change == pytest.approx(0.0, abs=1e-9)
    assert em.low < 0 < em.high and em.low > -0.02 and em.high < 0.02
    assert em.verdict(0.05) == "EQUAL" and em.p_equal_adjusted < 0.05
    assert sapa.change == pytest.approx(0.15) and sapa.verdict(0.05) == "undecided"  # half the poisons moved
    assert sapa.low < 0.02 < sapa.high
    shifted = _run(
        tmp_path / "c", [v - 0.20 for v in BASE], base=[v + 0.10 + j for v, j in zip(BASE, jitter, strict=True)]
    )
    (moved,) = [r for r in compare_runs(a, shifted, margin=0.02).strengths if r.attack == "error-min"]
    assert moved.verdict(0.05) == "MOVED" and moved.low > 0.02  # 10 points weaker on every poison
    main(["compare", str(a), str(b), "--margin", "0.02"])
    out = capsys.readouterr().out
    assert "EQUAL     error-min digits/convnet/sgd" in out and "[95 % interval]" in out
    assert "crafted" not in out  # both runs crafted in plain fp32: nothing to name


def test_runs_crafted_in_other_numerics_match_and_the_report_names_them(tmp_path, capsys):
    """The before/after of a crafting-numerics change: entries match across crafting numerics, and
    each line says what the poisons were crafted in, before -> after."""
    a = _run(tmp_path / "a", [v - 0.20 for v in BASE])
    bf16 = [v + 0.001 * (-1) ** i for i, v in enumerate(BASE)]  # other draws, within a point
    b = _run(tmp_path / "b", [v - 0.20 for v in bf16], base=bf16, craft_numerics=("bf16", "channels_last"))
    c = compare_runs(a, b, margin=0.05)
    assert {r.attack for r in c.strengths} == {"error-min", "sapa-error-min"} and len(c.changes) == 1
    assert all(r.where.endswith("/crafted fp32 -> bf16+cl") for r in (*c.strengths, *c.changes))
    assert main(["compare", str(a), str(b), "--margin", "0.05"]) == 0
    assert "digits/convnet/sgd/scratch/fp32/crafted fp32 -> bf16+cl" in capsys.readouterr().out


def test_the_margin_is_half_the_claims_delta_where_a_claim_tests_the_comparison(tmp_path):
    clean = [0.98, 0.99, 0.98, 0.97]
    a = _run(tmp_path / "a", [v - 0.20 for v in BASE], clean=clean)
    b = _run(tmp_path / "b", [v - 0.19 for v in BASE], clean=clean)
    (row,) = compare_runs(a, b).changes
    r = (21.2 - 10.9) / (94.8 - 21.2)  # T4-sgd-error-min
    delta = r * (sum(clean) / 4 - sum(BASE) / 8)
    assert row.margin_from == "delta/2 of T4-sgd-error-min" and row.margin == pytest.approx(delta / 2)
    assert not row.moved(0.05)


def test_an_attack_weakened_through_its_own_option_is_caught(tmp_path, capsys):
    """Only SAPA's option changed (its entry no longer pairs with its base inside the AFTER run):
    compare still matches each arm to its BEFORE entry and sees the gap fall."""
    a = _run(tmp_path / "a", [v - 0.20 for v in BASE])
    b = _run(tmp_path / "b", [v - 0.01 * (i % 2) for i, v in enumerate(BASE)], sapa_options={"eps": 1 / 255})
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "attack options changed: sapa-error-min (sgd): {} -> {'eps': 0.00392" in out and "MOVED" in out


def test_an_option_that_changed_is_named(tmp_path, capsys):
    a = _run(tmp_path / "a", [v - 0.2 for v in BASE])
    b = _run(tmp_path / "b", [v - 0.2 for v in BASE], options={"eps": 0.01})
    main(["compare", str(a), str(b)])
    assert "options changed" in capsys.readouterr().out


def _notes(folder):
    """A user's folder that is no run folder."""
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    return folder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _run(p, BASE, suite="other"), "holds suite 't' and .* suite 'other': compare two runs of the same"),
        (lambda p: (p / "leaderboard" / "entries").mkdir(parents=True) or p, "holds no leaderboard entries"),
        (lambda p: _notes(p), "is not an output folder of sapabench run"),
        (lambda p: p, "is not a folder"),
    ],
)
def test_bad_folders_are_one_line_and_exit_2(tmp_path, capsys, make, message):
    a = _run(tmp_path / "a", [v - 0.2 for v in BASE])
    b = make(tmp_path / "b")
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("sapabench: error: ")
    import re

    assert re.search(message, err)


def test_two_runs_of_the_smoke_suite_on_one_machine_are_equal(tmp_path, capsys):
    """End to end: the same suite run twice into two folders reproduces every trial."""
    from sapabench.benchmark.runner import run_suite
    from sapabench.benchmark.suite import load_suite

    suite = load_suite("smoke")
    for name in ("a", "b"):
        run_suite(suite, tmp_path / name, progress=False, log=lambda _: None)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "equal: every matched trial has the same value" in capsys.readouterr().out
