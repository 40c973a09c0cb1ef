"""End to end on the smoke suite: run, kill, resume, render."""

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from sapabench.benchmark.runner import run_suite
from sapabench.benchmark.store import ResultsStore
from sapabench.benchmark.suite import load_suite, parse_suite, victim_seed
from sapabench.core.errors import ConfigError
from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import load_entries


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    report = run_suite(load_suite("smoke"), out, device="cpu", progress=False, log=lambda m: None)
    return out, report


def test_smoke_run_records_every_cell_and_writes_the_leaderboard(smoke_run):
    out, report = smoke_run
    assert report.cells == 10 and report.ran == 10 and report.failed == 0
    rows = list(ResultsStore(out).rows())
    assert len(rows) == 10 and all(r["status"] == "done" for r in rows)
    for r in rows:
        assert 0 <= r["metric"] <= 1 and r["train_s"] > 0 and r["images_per_s"] > 0 and r["peak_memory_mb"] > 0
        assert r["provenance"]["torch"] and r["provenance"]["device"].startswith("cpu")
        assert (r["poison_sha256"] is None) == (r["attack"] == "clean")
    board = out / "leaderboard"
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "table4.md", "runs.json"):
        assert (board / name).is_file()
    assert list(board.glob("crafting-time--*.png"))  # one per threat model in the suite
    entries = load_entries(board / "entries")
    assert {e["attack"] for e in entries} == {
        "clean",
        "error-max",
        "sapa-error-max",
        "gradient-matching",
        "sapa-gradient-matching",
    }
    assert all(e["metric"]["trials"] == 2 for e in entries)
    assert len({e["entry_id"] for e in entries}) == len(entries)
    by_attack = {e["attack"]: e for e in entries}
    hashes = {r["attack"]: r["poison_sha256"] for r in rows if r["poison_sha256"]}
    e = by_attack["error-max"]
    assert e["setting"]["preset"] == "smoke" and e["setting"]["options"] == {}
    nested = [[0, victim_seed("nested", 100, 0, i)] for i in range(2)]  # victims nested in the poison
    assert e["provenance"]["cell_seeds"] == sorted(nested) and e["provenance"]["poison_sha256"] == [hashes["error-max"]]
    assert by_attack["sapa-error-max"]["provenance"]["cell_seeds"] == sorted(nested)  # paired with its base
    assert by_attack["clean"]["provenance"]["cell_seeds"] == [[None, 100], [None, 101]]
    # each poison was crafted once and shared by its trials
    assert len({r["poison_key"] for r in rows if r["poison_key"]}) == 4


def test_rerun_skips_finished_cells(smoke_run):
    out, _ = smoke_run
    before = {r["key"]: r["finished_at"] for r in ResultsStore(out).rows()}
    report = run_suite(load_suite("smoke"), out, device="cpu", progress=False, log=lambda m: None)
    assert report.ran == 0 and report.skipped == 10
    assert {r["key"]: r["finished_at"] for r in ResultsStore(out).rows()} == before


def test_results_of_an_older_version_get_their_preset_filled_in_on_rerun(smoke_run, tmp_path):
    import shutil

    from sapabench.benchmark.entries import write_leaderboard

    out = tmp_path / "old"
    shutil.copytree(smoke_run[0], out)
    with sqlite3.connect(out / "results.sqlite") as con:  # as written before the preset column existed
        con.execute("UPDATE cells SET preset = NULL, options = NULL")
    with pytest.raises(ConfigError, match="lack the attack preset"):
        write_leaderboard(out)
    report = run_suite(load_suite("smoke"), out, device="cpu", progress=False, log=lambda m: None)
    assert report.ran == 0
    assert {e["setting"]["preset"] for e in load_entries(out / "leaderboard" / "entries")} == {"smoke", "-"}


def test_a_database_of_an_older_version_is_migrated_and_resumed(smoke_run, tmp_path):
    """Results written before seconds were named *_s (and before the diagnostics column) are
    renamed in place; the re-run finds every cell done and writes the same entries."""
    import shutil

    out = tmp_path / "old"
    shutil.copytree(smoke_run[0], out)
    with sqlite3.connect(out / "results.sqlite") as con:
        for table, new, old in (
            ("poisons", "craft_s", "craft_seconds"),
            ("cells", "craft_s", "craft_seconds"),
            ("cells", "train_s", "train_seconds"),
            ("cells", "eval_s", "eval_seconds"),
        ):
            con.execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {old}")
        con.execute("ALTER TABLE cells DROP COLUMN diagnostics")
    report = run_suite(load_suite("smoke"), out, device="cpu", progress=False, log=lambda m: None)
    assert report.ran == 0 and report.skipped == 10
    rows = ResultsStore(out).rows()
    assert all(r["train_s"] > 0 and "train_seconds" not in r for r in rows)

    # the same entries, except that rows without diagnostics carry no adversarial margin
    def body(folder):
        return {
            e["entry_id"]: {k: v for k, v in e.items() if k not in ("measures", "content_sha256")}
            for e in load_entries(folder)
        }

    entries = out / "leaderboard" / "entries"
    assert body(entries) == body(smoke_run[0] / "leaderboard" / "entries")
    assert all(e["measures"] == {} for e in load_entries(entries))


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_render_is_deterministic_from_entries(smoke_run, tmp_path):
    out, _ = smoke_run
    entries = out / "leaderboard" / "entries"
    render(entries, tmp_path / "a")
    render(entries, tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a")["leaderboard.md"] == _digest(out / "leaderboard")["leaderboard.md"]


def test_kill_mid_run_loses_at_most_the_cell_in_flight(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sapabench", "run", "--suite", "smoke", "--out", str(out), "--device", "cpu", "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = out / "results.sqlite"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    done = con.execute("SELECT COUNT(*) FROM cells WHERE status='done'").fetchone()[0]
            except sqlite3.Error:
                done = 0
            if done >= 3:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done >= 3, "the run finished or stalled before it could be killed"
    survived = {r["key"]: r["finished_at"] for r in ResultsStore(out).rows(status="done")}
    assert len(survived) >= done  # nothing committed was lost
    report = run_suite(load_suite("smoke"), out, device="cpu", progress=False, log=lambda m: None)
    assert report.skipped == len(survived) and report.ran == 10 - len(survived) and report.failed == 0
    after = {r["key"]: r["finished_at"] for r in ResultsStore(out).rows(status="done")}
    assert len(after) == 10 and all(after[k] == v for k, v in survived.items())


def test_a_failing_cell_is_recorded_and_the_run_goes_on(tmp_path):
    text = """
name = "failing"
dataset = "digits"
preset = "smoke"
trials = 1
clean_baseline = true
[victim]
epochs = 1
[[grid]]
attacks = ["error-max"]
recipes = ["sgd"]
archs = ["convnet"]
options = { budget = 0.0001 }
"""
    report = run_suite(parse_suite(text), tmp_path, device="cpu", progress=False, log=lambda m: None)
    rows = {r["attack"]: r for r in ResultsStore(tmp_path).rows()}
    assert report.failed == 1 and rows["clean"]["status"] == "done"
    assert rows["error-max"]["status"] == "failed" and "could not be crafted" in rows["error-max"]["error"]
    with sqlite3.connect(tmp_path / "results.sqlite") as con:
        err = con.execute("SELECT error FROM poisons").fetchone()[0]
    assert "allows no poison" in err


def test_attack_options_given_as_tables_group_into_entries(tmp_path):
    """A suite may give an option as a table (the surrogate); its cells still form entries."""
    text = open_suite_text().replace(
        'attacks = ["error-max", "sapa-error-max", "gradient-matching", "sapa-gradient-matching"]',
        'attacks = ["error-max"]\noptions = { surrogate = { arch = "convnet", epochs = 1 } }',
    )
    report = run_suite(parse_suite(text), tmp_path, device="cpu", progress=False, log=lambda m: None)
    assert report.failed == 0
    (entry,) = [e for e in load_entries(tmp_path / "leaderboard" / "entries") if e["attack"] == "error-max"]
    assert entry["setting"]["options"] == {"surrogate": {"arch": "convnet", "epochs": 1}}
    assert entry["metric"]["trials"] == 2


def test_resuming_with_an_edited_poison_is_refused(smoke_run, tmp_path):
    """A poison crafted by an earlier run is re-checked before a resumed run trains on it: an
    edited threat model is refused, naming the field and the fix."""
    out = tmp_path / "copy"
    shutil.copytree(smoke_run[0], out)
    meta_path = next((out / "poisons").glob("*/poison.json"))
    meta = json.loads(meta_path.read_text())
    meta["eps"] = meta["eps"] / 2
    meta_path.write_text(json.dumps(meta))
    with sqlite3.connect(out / "results.sqlite") as db:
        db.execute("DELETE FROM cells")
        db.execute("UPDATE poisons SET path = replace(path, ?, ?)", (str(smoke_run[0]), str(out)))  # resumed here
    with pytest.raises(ConfigError, match=r"eps in .* differ from what was sealed.*delete .* to craft it again"):
        run_suite(load_suite("smoke"), out, device="cpu", progress=False, log=lambda m: None)


def test_deterministic_mode_on_cpu_is_recorded_and_changes_no_value(smoke_run):
    """CPU kernels are deterministic already: the same trial with and without deterministic
    algorithms gives the same values; the mode is recorded in the trial's provenance."""
    from sapabench.benchmark.trial import Trial, run_trial
    from sapabench.core.datasets import DataSource

    cell = next(c for c in load_suite("smoke").cells() if c.poison is None)
    plain = run_trial(Trial.of(cell, None, DataSource("digits"), "cpu"))
    strict = run_trial(Trial.of(cell, None, DataSource("digits"), "cpu", deterministic=True))
    assert strict.error is None and strict.provenance["deterministic"] and not plain.provenance["deterministic"]
    assert (strict.metric, strict.clean_accuracy) == (plain.metric, plain.clean_accuracy)
    assert not torch.are_deterministic_algorithms_enabled()  # restored afterwards


def test_output_folder_of_another_suite_is_refused(smoke_run):
    out, _ = smoke_run
    other = parse_suite(open_suite_text().replace('name = "smoke"', 'name = "other"'))
    with pytest.raises(ConfigError, match="holds results of suite 'smoke'"):
        run_suite(other, out, device="cpu", progress=False, log=lambda m: None)


def open_suite_text():
    from importlib import resources

    return (resources.files("sapabench.benchmark.suites") / "smoke.toml").read_text()


def test_process_executor_gives_the_same_cells(smoke_run, tmp_path):
    from sapabench.benchmark.executor import ProcessExecutor

    out, _ = smoke_run
    report = run_suite(
        load_suite("smoke"), tmp_path, device="cpu", executor=ProcessExecutor(2), progress=False, log=lambda m: None
    )
    assert report.ran == 10 and report.failed == 0
    local = {r["key"] for r in ResultsStore(out).rows(status="done")}
    assert {r["key"] for r in ResultsStore(tmp_path).rows(status="done")} == local


@pytest.mark.parametrize(
    ("cores", "device", "expected"),
    [(2, "cpu", "processes"), (4, "cpu", "local"), (2, "cuda", "processes"), (16, "cuda", "processes")],
)
def test_auto_executor_is_the_one_measured_faster(monkeypatch, cores, device, expected):
    import torch

    import sapabench.benchmark.executor as executor

    monkeypatch.setattr(executor, "cpu_cores", lambda: cores)
    assert executor.make_executor("auto", device=torch.device(device)).name == expected
    with pytest.raises(ConfigError, match=r"unknown executor 'threads'; choose auto, local, processes"):
        executor.make_executor("threads")


@pytest.mark.slow  # about 30 s; the defense view is also rendered by test_submit's defense submission
def test_defense_cells_and_the_defense_view(tmp_path, capsys):
    text = (
        open_suite_text()
        .replace('archs = ["convnet"]', 'archs = ["convnet"]\ndefenses = ["none", "deep-knn", "gradient-shaping"]')
        .replace(
            'attacks = ["error-max", "sapa-error-max", "gradient-matching", "sapa-gradient-matching"]',
            'attacks = ["error-max", "sapa-error-max"]',
        )
    )
    suite = parse_suite(text)
    report = run_suite(suite, tmp_path, device="cpu", progress=False, log=lambda m: None)
    assert report.failed == 0 and report.ran == 3 * 3 * 2
    rows = [r for r in ResultsStore(tmp_path).rows() if r["defense"] == "deep-knn" and r["attack"] != "clean"]
    assert all(r["defense_removed"] is not None and r["defense_recall"] is not None for r in rows)
    view = (tmp_path / "leaderboard" / "defenses.md").read_text()
    assert "deep-knn" in view and "gradient-shaping" in view and "sapa-error-max" in view
    entries = load_entries(tmp_path / "leaderboard" / "entries")
    assert {e["defense"] for e in entries} == {"none", "deep-knn", "gradient-shaping"}
    assert all(
        "recall_mean" in e["defense_stats"] for e in entries if e["defense"] == "deep-knn" and e["attack"] != "clean"
    )
    # evaluate applies a defense exactly as run does (the same pipeline)
    from sapabench.benchmark.cli import main

    (row,) = [
        r
        for r in ResultsStore(tmp_path).rows()
        if (r["attack"], r["defense"], r["trial_seed"]) == ("error-max", "gradient-shaping", 100)
    ]
    folder = next((tmp_path / "poisons").glob("error-max-*"))
    argv = f"evaluate --poison {folder} --defense gradient-shaping --epochs 1 --seed 100 --trials 1 --device cpu --json --quiet"
    assert main(argv.split()) == 0
    assert json.loads(capsys.readouterr().out)["arms"]["poisoned + gradient-shaping"]["values"] == [row["metric"]]


def test_evaluate_reproduces_the_runs_trials_through_the_same_pipeline(smoke_run, capsys):
    """``sapabench evaluate`` on a run's poison folder gives the run's numbers for the same
    victim protocol and seeds: one trial pipeline serves both."""
    from sapabench.benchmark.cli import main

    out, _ = smoke_run
    rows = [r for r in ResultsStore(out).rows() if r["attack"] == "sapa-error-max"]
    folder = next((out / "poisons").glob("sapa-error-max-*"))
    common = f"evaluate --poison {folder} --epochs 1 --seed 100 --device cpu --json --quiet"
    assert main([*common.split(), "--trials", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arms"]["poisoned"]["values"] == [r["metric"] for r in sorted(rows, key=lambda r: r["trial_seed"])]
    assert main(["evaluate", "--poison", str(folder), "--defense", "grayscal"]) == 2
    assert "did you mean 'grayscale'" in capsys.readouterr().err


def test_packed_cells_give_the_same_values(smoke_run, tmp_path):
    """Cells run as packs (of the same poison and setting; on the CPU their victims train one
    after another inside the task) record exactly the values of cells run one by one."""
    out, _ = smoke_run
    report = run_suite(load_suite("smoke"), tmp_path, device="cpu", pack=3, progress=False, log=lambda m: None)
    assert report.ran == 10 and report.failed == 0
    one = {r["key"]: r["metric"] for r in ResultsStore(out).rows(status="done")}
    packed = {r["key"]: r["metric"] for r in ResultsStore(tmp_path).rows(status="done")}
    assert packed == one
    rows = ResultsStore(tmp_path).rows(status="done")
    assert all(r["provenance"]["train_step"] == "eager" and r["provenance"]["packed"] == 1 for r in rows)


@pytest.mark.parametrize("pack", [0, 65, 2.5, True])
def test_a_bad_pack_size_is_refused(tmp_path, pack):
    with pytest.raises(ConfigError, match=r"invalid pack size .*\(set --pack\)"):
        run_suite(load_suite("smoke"), tmp_path, device="cpu", pack=pack, progress=False, log=lambda m: None)


def test_graph_steps_on_the_cpu_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"needs a CUDA device.*--train-step"):
        run_suite(
            load_suite("smoke"), tmp_path / "out", device="cpu", train_step="graph", progress=False, log=lambda m: None
        )
    assert not (tmp_path / "out").exists()


def test_process_workers_are_spawned_on_cuda(monkeypatch):
    import multiprocessing

    import sapabench.benchmark.executor as executor

    monkeypatch.setattr(executor, "resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(executor, "cpu_cores", lambda: 16)
    pool = executor.ProcessExecutor()
    pool.resolve_device("cuda")
    assert pool.describe()["start_method"] == "spawn" and pool.workers == 2 * executor.GPU_WORKERS
    asked = executor.ProcessExecutor(3)
    asked.resolve_device("cuda")
    assert asked.workers == 3
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["fork"])
    with pytest.raises(ConfigError, match=r"needs the 'spawn' start method.*--executor local"):
        executor.ProcessExecutor().resolve_device("cuda")
