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
