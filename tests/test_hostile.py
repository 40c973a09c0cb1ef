"""Hostile and unlucky input: a run folder is the harness's own, files are read only when they
are regular and small, a foreign database is never altered, and nothing ends in a traceback."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import sapabench.benchmark.entries as entries_module
from sapabench.benchmark.cli import main
from sapabench.benchmark.entries import entries_dir
from sapabench.benchmark.runner import run_suite
from sapabench.benchmark.store import ResultsStore
from sapabench.benchmark.suite import load_suite, parse_suite
from sapabench.benchmark.trial import FAILED, TrialRecord
from sapabench.core.errors import ConfigError
from sapabench.core.owned import exclusive
from sapabench.core.threats import ThreatModel

SMOKE_ARGS = ["--suite", "smoke", "--device", "cpu", "--executor", "local", "--quiet"]


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile") / "run"
    run_suite(load_suite("smoke"), out, device="cpu", progress=False, log=lambda m: None)
    return out


def _copy(smoke_out, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(smoke_out, out, symlinks=True)
    return out


def _one_line_error(capsys, code: int = 2) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]  # after the run's own progress lines
    assert last.startswith("sapabench: error: ") and last.count("sapabench: error") == 1 == err.count("error:"), err
    return last


# ------------------------------------------------------------------------ the run folder is ours


def test_a_foreign_file_in_entries_survives_a_resume_and_stale_own_entries_go(smoke_out, tmp_path, capsys):
    out = _copy(smoke_out, tmp_path)
    entries = entries_dir(out)
    foreign = entries / "my-notes.json"
    foreign.write_text('{"mine": true}')
    ours = sorted(entries.glob("*--*.json"))
    stale = entries / "clean--convnet--sgd--none--0000000000000000.json"
    shutil.copy(ours[0], stale)  # a copy of an entry: its bytes are ours, but it was never written here
    assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 2  # the foreign file is rendered, and refused there
    assert "my-notes.json" in _one_line_error(capsys)
    assert foreign.read_text() == '{"mine": true}' and stale.exists()  # ... and nothing was deleted
    foreign.unlink()
    stale.unlink()
    assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 0
    capsys.readouterr()
    # an entry the harness wrote earlier and no longer produces is removed; a user's copy is not
    recorded = json.loads((entries / ".sapabench-written").read_text())
    gone = entries / "error-min--convnet--sgd--none--ffffffffffffffff.json"
    shutil.copy(ours[0], gone)
    keep = entries / "user-notes.txt"
    keep.write_text("mine")
    (entries / ".sapabench-written").write_text(json.dumps({**recorded, gone.name: recorded[ours[0].name]}))
    assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 0
    assert not gone.exists() and keep.exists()
    assert "user-notes.txt" in capsys.readouterr().err  # the run says what it left alone


def test_a_symlinked_entries_folder_is_refused_and_its_target_untouched(smoke_out, tmp_path, capsys):
    out = _copy(smoke_out, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(entries_dir(out), elsewhere)
    (elsewhere / "precious.json").write_text("{}")
    before = sorted((p.name, p.read_bytes()) for p in elsewhere.iterdir())
    entries_dir(out).symlink_to(elsewhere, target_is_directory=True)
    assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 2
    assert "symbolic link" in _one_line_error(capsys)
    assert sorted((p.name, p.read_bytes()) for p in elsewhere.iterdir()) == before


def test_a_second_run_on_the_same_folder_is_refused_with_who_holds_it(smoke_out, tmp_path, capsys):
    out = _copy(smoke_out, tmp_path)
    # the holder is another process: flock locks are per open file, so a child holds it
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from sapabench.core.owned import exclusive\n"
            "with exclusive(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 2
        err = _one_line_error(capsys)
        assert "in use by another sapabench run" in err and f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    with exclusive(out):  # released by the kernel when its holder died
        pass


def test_a_failed_attempt_never_replaces_a_finished_cell(smoke_out, tmp_path):
    out = _copy(smoke_out, tmp_path)
    store = ResultsStore(out)
    row = store.rows("done")[0]
    cell = next(c for c in load_suite("smoke").cells(_numerics(row)) if c.key == row["key"])
    store.put_trial(cell, TrialRecord(FAILED, error="a late, failed duplicate"))
    (after,) = [r for r in store.rows() if r["key"] == row["key"]]
    assert after["status"] == "done" and after["metric"] == row["metric"]


def _numerics(row):
    from sapabench.core.numerics import Numerics

    return Numerics(row["precision"], row["memory_format"])


def test_a_foreign_database_is_refused_and_left_byte_identical(tmp_path, capsys):
    out = tmp_path / "theirs"
    out.mkdir()
    db = out / "results.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        con.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    before = db.read_bytes()
    assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 2
    assert "is not a sapabench results database" in _one_line_error(capsys)
    assert db.read_bytes() == before
    db.write_bytes(b"garbage " * 600)  # not a database at all
    assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 2
    assert "is not a sapabench results database" in _one_line_error(capsys)
    assert db.read_bytes() == b"garbage " * 600


def test_a_database_of_a_newer_version_or_with_a_corrupt_row_is_refused(smoke_out, tmp_path, capsys):
    out = _copy(smoke_out, tmp_path)
    db = out / "results.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'store_version'")
    before = db.read_bytes()
    assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 2
    assert "written by a newer sapabench" in _one_line_error(capsys) and db.read_bytes() == before
    with sqlite3.connect(db) as con:
        con.execute("UPDATE meta SET value = '2' WHERE key = 'store_version'")
        con.execute("UPDATE cells SET metric = NULL WHERE rowid = (SELECT MIN(rowid) FROM cells)")
    assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 2
    assert "is corrupt (a finished cell without a finite metric)" in _one_line_error(capsys)


def test_file_system_failures_are_one_line_errors(smoke_out, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    assert main(["run", *SMOKE_ARGS, "--out", str(a_file)]) == 2
    assert "is a file, not a folder" in _one_line_error(capsys)
    out = _copy(smoke_out, tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(entries_dir(out) / "x.json"))

    monkeypatch.setattr(entries_module, "write_json", full)
    assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 2
    assert "No space left on device; free some space" in _one_line_error(capsys)
    monkeypatch.undo()
    assert len(ResultsStore(out).rows("done")) == 10  # nothing finished was lost
    if os.geteuid() != 0:  # root writes through read-only permissions
        out = _copy(smoke_out, tmp_path / "ro")
        for path in [out, *out.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            assert main(["run", *SMOKE_ARGS, "--out", str(out)]) == 2
            _one_line_error(capsys)
        finally:
            for path in [out, *out.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)


# ------------------------------------------------------------------------------ what is read


def test_a_fifo_entry_and_an_oversized_entry_are_refused_without_hanging(tmp_path, capsys):
    folder = entries_dir(tmp_path)
    folder.mkdir(parents=True)
    render = ["leaderboard", "render", "--results", str(tmp_path)]
    os.mkfifo(folder / "a-fifo.json")
    t0 = time.monotonic()
    # in a child with a time limit: a regression here would otherwise hang the whole test run
    proc = subprocess.run(
        [sys.executable, "-m", "sapabench", *render],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2 and "not a regular file" in proc.stderr and "Traceback" not in proc.stderr
    (folder / "a-fifo.json").unlink()
    (folder / "zero.json").symlink_to("/dev/zero")
    assert main(render) == 2
    assert "symbolic link" in _one_line_error(capsys)
    (folder / "zero.json").unlink()
    (folder / "huge.json").write_text(" " * (2 << 20) + "{}")
    assert main(render) == 2
    assert "over the limit" in _one_line_error(capsys)
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[" * 200_000 + "]" * 200_000, "nests too deeply"),
        ('{"a": ' + "9" * 5000 + "}", "not valid JSON (Exceeds the limit"),
        ('{"a": 1, "a": 2}', "key 'a' appears twice"),
        (b'{"a": "\xff\xfe"}', "is not UTF-8 text"),
    ],
    ids=["deep-nesting", "5000-digit-integer", "duplicate-key", "invalid-utf8"],
)
def test_hostile_json_entries_give_one_line_and_exit_2(tmp_path, capsys, text, why):
    folder = entries_dir(tmp_path)
    folder.mkdir(parents=True)
    path = folder / "hostile.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["leaderboard", "render", "--results", str(tmp_path)]) == 2
    err = _one_line_error(capsys)
    assert "hostile.json" in err and why in err


@pytest.mark.parametrize(
    "text",
    [
        'name = "x"\ndataset = "digits"\ntrials = '
        + "9" * 5000
        + '\n[[grid]]\nattacks = ["error-min"]\nrecipes = ["sgd"]\narchs = ["convnet"]\n',
        'name = "x"\ndataset = "digits"\nv = ' + "[" * 100_000 + "]" * 100_000 + "\n",
        'name = "x"\ndataset = "digits"\ntrial_seed = 9223372036854775807\n[[grid]]\nattacks = ["error-min"]\nrecipes = ["sgd"]\narchs = ["convnet"]\n',
    ],
    ids=["5000-digit-integer", "deep-nesting", "trial-seed-beyond-sqlite"],
)
def test_hostile_suites_give_one_line_and_exit_2(tmp_path, capsys, text):
    path = tmp_path / "hostile.toml"
    path.write_text(text)
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"]) == 2
    assert "hostile.toml" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_suite_above_the_cell_cap_is_refused_unless_yes(tmp_path, capsys):
    seeds = list(range(3000))
    text = f'name = "big"\ndataset = "digits"\ntrials = 2\ncraft_seeds = {seeds}\n[[grid]]\nattacks = ["error-min"]\nrecipes = ["sgd"]\narchs = ["convnet"]\n'
    suite = parse_suite(text)
    assert suite.planned_cells() == 2 * (1 + 3000)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"plans 6002 cells, more than 5000.*--yes"):
        run_suite(suite, tmp_path / "out", device="cpu", progress=False, log=lambda m: None)
    assert time.monotonic() - t0 < 30 and not (tmp_path / "out").exists()


def test_a_nan_trigger_is_refused_by_validate():
    from tests._poisons import make_poison

    trigger = torch.full((1, 2, 2), float("nan"))
    with pytest.raises(ConfigError, match="NaN or infinite"):  # __post_init__ validates
        make_poison(
            attack="clean-label-backdoor",
            indices=torch.tensor([0]),
            delta=torch.zeros(1, 1, 8, 8),
            budget=0.5,
            threat=ThreatModel("backdoor", target_class=1, source_class=0, trigger_placement="corner", trigger_seed=0),
            trigger=trigger,
        )


# ---------------------------------------------------------------------------------- workers


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_kill_9_of_a_run_leaves_no_worker_alive(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmark",
            "run",
            *SMOKE_ARGS[:4],
            "--out",
            str(tmp_path / "out"),
            "--executor",
            "processes",
            "--workers",
            "2",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    deadline = time.time() + 120
    while time.time() < deadline and len(workers) < 2 and proc.poll() is None:
        workers = _children(proc.pid)
        time.sleep(0.1)
    assert len(workers) >= 2, "the run ended before its workers could be seen"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)


def test_verify_refuses_more_entries_than_its_cap_before_any_work(tmp_path, capsys):
    """A folder of many entries is refused in one line with the time it would take, before any
    re-crafting or re-training (nothing is written into it)."""
    from sapabench.core.atomic import write_json
    from tests._entries import make_entry

    folder = tmp_path / "entries"
    folder.mkdir()
    for i in range(3):
        e = make_entry(values=(0.5, 0.6, 0.7), cells=[[i, 100], [i, 101], [i, 102]])
        write_json(folder / f"e{i}.json", e)
    before = sorted(p.name for p in folder.iterdir())
    assert main(["verify", str(folder), "--max-entries", "2", "--device", "cpu"]) == 2
    line = _one_line_error(capsys)
    assert "3 entries, more than the 2" in line and "--max-entries 3" in line and "re-runs 9 trials" in line
    assert sorted(p.name for p in folder.iterdir()) == before
    assert main(["verify", str(folder), "--max-entries", "0"]) == 2
    assert "--max-entries" in _one_line_error(capsys)


def test_verify_estimates_its_work_from_the_entries_recorded_times(tmp_path):
    from sapabench.benchmark.verify import estimate
    from sapabench.core.atomic import write_json
    from tests._entries import make_entry

    paths = []
    for i in range(2):  # train 2.0 s + eval 0.1 s per trial; crafting 6 s per entry, one poison each
        paths.append(tmp_path / f"e{i}.json")
        write_json(paths[-1], make_entry(values=(0.5, 0.6, 0.7), craft_s=6.0))
    (tmp_path / "bad.json").write_text("{")
    work = estimate([*paths, tmp_path / "bad.json"], cells=None)
    assert (work.entries, work.trials, work.poisons, work.unreadable) == (3, 6, 1, 1)  # one poison sha shared
    assert work.seconds == pytest.approx(6 * 2.1 + 6.0)
    assert work.line().startswith("verifying 3 entries: re-runs 6 trials and at most 1 poisons, about 19 s")
    assert estimate(paths, cells=1).trials == 2


def test_a_folder_with_the_old_batch_clipping_dp_sgd_is_not_resumed_under_dp_sgd(smoke_out, tmp_path, capsys):
    """Before 2026-12-06 'dp-sgd' named batch clipping (now gradient-shaping): a folder holding
    such cells (no epsilon recorded) is refused rather than finished with DP-SGD under one name."""
    out = _copy(smoke_out, tmp_path)
    with sqlite3.connect(out / "results.sqlite") as con:
        (key,) = con.execute("SELECT key FROM cells WHERE status = 'done' LIMIT 1").fetchone()
        con.execute("UPDATE cells SET defense = 'dp-sgd' WHERE key = ?", (key,))
    before = sorted(p.name for p in out.rglob("*"))
    assert main(["run", "--suite", "smoke", "--out", str(out), "--device", "cpu", "--quiet"]) == 2
    line = _one_line_error(capsys)
    assert "batch-clipping defense that 'dp-sgd' named before 2026-12-06" in line and "gradient-shaping" in line
    assert sorted(p.name for p in out.rglob("*")) == before
