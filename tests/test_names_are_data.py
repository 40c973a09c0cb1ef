"""Names from entries, databases and plugins are data, never paths or markup: a file the harness
writes for them stays inside its folder, a spreadsheet never runs them as a formula, and
matplotlib never parses them as mathtext."""

import csv
import io
import json

import pytest

from sapabench.core.names import file_name
from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import seal
from tests._entries import make_entry

HOSTILE = [
    "../../../escape",
    "/etc/passwd",
    "a/b",
    "..",
    ".hidden",
    "$\\undefinedmacro$",
    '=HYPERLINK("http://x")',
    "tab\tand\nnewline",
    "x" * 400,
    "",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_file_name_never_leaves_its_folder(tmp_path, name):
    made = file_name("pair", name, "error-min", suffix=".png")
    assert "/" not in made and "\\" not in made and not made.startswith(".") and len(made) <= 200
    assert (tmp_path / made).parent == tmp_path
    (tmp_path / made).write_text("x")  # the file system takes it
    assert [p.name for p in tmp_path.iterdir()] == [made]


def test_safe_names_are_kept_and_changed_ones_never_collide():
    assert file_name("pair", "digits", "convnet", "sapa-error-min", suffix=".png") == (
        "pair--digits--convnet--sapa-error-min.png"
    )
    assert file_name("a/b") != file_name("a_b") and file_name("a/b") != file_name("a:b")


def _entry(attack, arch):
    e = make_entry(attack, [0.5, 0.6, 0.55], arch=arch)
    return seal({k: v for k, v in e.items() if k != "content_sha256"})


def test_hostile_names_in_entries_render_inside_the_folder_as_text(tmp_path):
    arch = '=HYPERLINK("x")|../../$\\undefinedmacro$'
    entries = tmp_path / "runs" / "entries"
    entries.mkdir(parents=True)
    for i, attack in enumerate(("error-min", "sapa-error-min")):
        (entries / f"{i}.json").write_text(json.dumps(_entry(attack, arch)))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    board = tmp_path / "runs" / "board"
    written = render(entries, board)  # the mathtext name no longer stops the render
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert all(board in p.parents or p.parent == board for p in written)
    new = set(after) - set(before)
    assert new == {p.name for p in written} | {"board", ".sapabench-written"}  # nothing anywhere else
    (row,) = csv.DictReader(io.StringIO((board / "table4.csv").read_text()))
    assert row["arch"] == "'" + arch  # a spreadsheet shows it, never runs it
    assert "\\|../../$\\undefinedmacro$" in (board / "table4.md").read_text()  # the pipe no longer splits the row
    assert row["gap"].startswith(("-", "+")) and not row["gap"].startswith("'")  # numbers stay numbers


def _resealed(**changes):
    e = make_entry("sapa-error-min", [0.5, 0.6], margin=([1.0, 2.0], [0.0, 0.0]))
    for path, value in changes.items():
        target = e
        *head, last = path.split(".")
        for key in head:
            target = target[key]
        target[last] = value
    e.pop("content_sha256")
    from sapabench.leaderboard.schema import content_hash

    e["content_sha256"] = content_hash(e)  # re-sealed: the hash matches, the values are hostile
    return e


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timings.craft_s": 1e308}, "timings must be seconds from 0 to 1e\\+08"),
        ({"timings.total_s": float("nan")}, "must be finite|timings must be seconds"),
        ({"measures.adversarial_margin.values": [1e308, -1e308]}, "from -10000 to 10000 logits"),
        ({"defense_stats": {"recall_mean": float("nan")}}, "recall_mean \\(fractions in \\[0, 1\\]\\)"),
        ({"defense_stats": {"removed_mean": 1e300}}, "removed_mean \\(0 to 1e\\+09 images\\)"),
    ],
)
def test_re_sealed_entries_with_values_out_of_range_are_refused_at_load(tmp_path, changes, message):
    from sapabench.leaderboard.schema import EntryError, load_entry

    path = tmp_path / "e.json"
    path.write_text(json.dumps(_resealed(**changes)))
    with pytest.raises(EntryError, match=message):
        load_entry(path)


def test_a_killed_renders_temporaries_are_cleaned_and_a_users_files_kept(tmp_path):
    entries = tmp_path / "entries"
    entries.mkdir()
    for i, attack in enumerate(("error-min", "sapa-error-min")):
        (entries / f"{i}.json").write_text(json.dumps(_entry(attack, "convnet")))
    board = tmp_path / "board"
    board.mkdir()
    ours = board / ".leaderboard.html.k3j_4h5g.tmp"  # what a render killed before its rename leaves
    ours.write_text("half a page")
    theirs = [board / ".notes.draft.tmp", board / ".leaderboard.html.tmp", board / "mine.tmp"]
    for p in theirs:
        p.write_text("a user's")
    render(entries, board)
    assert not ours.exists() and all(p.read_text() == "a user's" for p in theirs)


def test_the_summary_counts_ties_and_a_run_that_decides_nothing_says_so(tmp_path):
    from sapabench.leaderboard.summary import threat_summaries

    tie = [make_entry("error-min", [0.5, 0.6]), make_entry("sapa-error-min", [0.6, 0.5])]  # one poison, equal means
    (summary,) = threat_summaries(tie)
    assert summary.line().startswith(
        "untargeted: SAPA stronger than its base in 0 of 1 setting(s) (0 significant), weaker in 0 (0 significant), "
        "tied in 1; 1 underpowered"
    )
    entries = tmp_path / "entries"
    entries.mkdir()
    for i, e in enumerate(tie):
        (entries / f"{i}.json").write_text(json.dumps(e))
    render(entries, tmp_path / "board")
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    answer = html[html.index('id="answer"') : html.index("</section>", html.index('id="answer"'))]
    assert "this run decides nothing: every setting has too few poisons" in answer


def test_the_poison_dtype_check_names_the_dtypes():
    import torch

    from sapabench.core.errors import ConfigError
    from tests._poisons import make_poison

    with pytest.raises(ConfigError, match=r"delta is torch.float64, not torch.float32"):
        make_poison(delta=torch.zeros(4, 1, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize(
    ("message", "said"),
    [
        ("database or disk is full", "the disk is full: free some space"),
        ("attempt to write a readonly database", "read-only: choose a writable --out"),
        ("disk I/O error", "the disk reported an I/O error"),
    ],
)
def test_a_full_or_read_only_disk_is_named_as_such_never_as_a_corrupt_database(
    tmp_path, monkeypatch, capsys, message, said
):
    import sqlite3

    from sapabench.benchmark import store as store_module
    from sapabench.benchmark.cli import main
    from sapabench.benchmark.store import ResultsStore
    from sapabench.core.errors import ConfigError

    ResultsStore(tmp_path / "run")  # a good database, written before the disk filled

    def failing(*args, **kwargs):
        raise sqlite3.OperationalError(message)

    monkeypatch.setattr(store_module.ResultsStore, "_connect", failing)
    with pytest.raises(ConfigError) as err:
        ResultsStore(tmp_path / "run")
    assert said in str(err.value) and "not a sapabench results database" not in str(err.value)
    monkeypatch.setattr(store_module.ResultsStore, "__init__", lambda self, folder: failing())
    assert main(["run", "--suite", "smoke", "--out", str(tmp_path / "run")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sapabench: error:")]
    assert len(errors) == 1 and said in errors[0] and "corrupt" not in errors[0]


@pytest.mark.parametrize(("option", "value"), [("steps", 10**9), ("restarts", 5_000)])
def test_an_unbounded_attack_option_is_refused_in_one_line_before_work(tmp_path, capsys, option, value):
    from sapabench.benchmark.cli import main
    from sapabench.benchmark.suite import parse_suite
    from sapabench.core.errors import ConfigError

    assert (
        main(["attack", "error-max", "--preset", "smoke", "--set", f"{option}={value}", "--out", str(tmp_path / "p")])
        == 2
    )
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"invalid {option}={value}: at most" in err
    assert not (tmp_path / "p").exists()
    suite = (
        'name = "big"\ndataset = "digits"\npreset = "smoke"\n[[grid]]\nattacks = ["error-max"]\n'
        f'recipes = ["sgd"]\narchs = ["convnet"]\noptions = {{ {option} = {value} }}\n'
    )
    with pytest.raises(ConfigError, match=f"invalid {option}={value}: at most"):
        parse_suite(suite)
