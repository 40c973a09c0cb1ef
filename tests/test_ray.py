"""The ray executor on a local cluster (skipped without the ``ray`` extra; the dev extra has it).

One 2-CPU cluster with one *logical* GPU serves the module (a CPU-only machine can declare GPUs:
Ray only accounts for them), so GPU shares are checked without a GPU.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

ray = pytest.importorskip("ray")

from sapabench.benchmark.executor import CELL, CRAFT, Graph, Resources  # noqa: E402
from sapabench.benchmark.ray_executor import RayExecutor  # noqa: E402
from sapabench.benchmark.runner import run_suite  # noqa: E402
from sapabench.benchmark.store import ResultsStore  # noqa: E402
from sapabench.benchmark.suite import load_suite  # noqa: E402
from tests import _graph_tasks  # noqa: E402

SMOKE_CELLS = 10


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=1,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"SAPABENCH_CACHE": os.environ["SAPABENCH_CACHE"]}},
    )
    ray.cloudpickle.register_pickle_by_value(_graph_tasks)  # the workers need not import tests/
    yield
    ray.shutdown()


def _values(out):
    return {r["key"]: (r["metric"], r["clean_accuracy"], r["poison_sha256"]) for r in ResultsStore(out).rows("done")}


def test_the_smoke_suite_on_ray_gives_the_local_cells(cluster, tmp_path):
    threads = torch.get_num_threads()  # Ray tasks get the local run's thread count: same kernels, same numbers
    local = run_suite(load_suite("smoke"), tmp_path / "local", device="cpu", progress=False, log=lambda m: None)
    executor = RayExecutor(resources=Resources(cpus_per_task=threads))
    on_ray = run_suite(
        load_suite("smoke"), tmp_path / "ray", device="cpu", executor=executor, progress=False, log=lambda m: None
    )
    assert local.ran == on_ray.ran == SMOKE_CELLS and on_ray.failed == 0
    assert _values(tmp_path / "ray") == _values(tmp_path / "local")
    rows = ResultsStore(tmp_path / "ray").rows("done")
    assert all(r["device"] == f"cpu:{os.uname().machine}x{threads}threads" and r["host"] for r in rows)
    assert all(r["task_s"] >= r["train_s"] > 0 for r in rows)
    (run,) = json.loads((tmp_path / "ray" / "leaderboard" / "runs.json").read_text())["runs"]
    assert run["executor"] == "ray" and run["threads_per_task"] == threads and run["cluster"]["CPU"] == 2
    assert run["cells"] == SMOKE_CELLS and run["device_s"] > 0 and run["wall_s"] > 0
    entries = [json.loads(p.read_text()) for p in (tmp_path / "ray" / "leaderboard" / "entries").glob("*.json")]
    assert all(list(e["timings"]["devices"]) == [rows[0]["device"]] for e in entries)


def _graph(marker, children):
    return Graph(
        craft=_graph_tasks.die_once,
        run=_graph_tasks.run_child,
        craft_failed=_graph_tasks.lost,
        run_failed=_graph_tasks.lost,
        parents={"p": str(marker)},
        children=children,
    )


def test_a_task_whose_worker_is_killed_is_retried_and_the_run_completes(cluster, tmp_path):
    executor = RayExecutor(resources=Resources(max_retries=2))
    events = {(f.kind, f.item): f.result for f in executor.stream(_graph(tmp_path / "died", [("p", "c"), (None, "x")]))}
    assert events[(CRAFT, "p")].startswith("crafted after")  # the first worker died; the retry crafted
    assert events[(CELL, "c")][1] == events[(CRAFT, "p")] and events[(CELL, "x")][1] is None
    # without retries the lost craft is a failed result, and so is the cell waiting on it; the run goes on
    events = {
        (f.kind, f.item): f.result
        for f in RayExecutor(resources=Resources(max_retries=0)).stream(_graph(tmp_path / "again", [("p", "c")]))
    }
    assert events[(CRAFT, "p")].startswith("lost:") and events[(CELL, "c")].startswith("lost:")


def test_a_poisons_cells_run_before_the_next_poison_is_crafted(cluster):
    graph = Graph(
        craft=_graph_tasks.craft_label,
        run=_graph_tasks.run_child,
        craft_failed=_graph_tasks.lost,
        run_failed=_graph_tasks.lost,
        parents={"p1": "a", "p2": "b", "p3": "c"},
        children=[("p1", "c1"), ("p2", "c2"), ("p3", "c3"), ("p1", "c4"), (None, "clean")],
    )
    executor = RayExecutor(resources=Resources(cpus_per_task=2))  # one task at a time on the 2-CPU cluster
    order = [(f.kind, f.item) for f in executor.stream(graph)]
    assert order == [
        (CELL, "clean"),
        (CRAFT, "p1"),
        (CELL, "c1"),
        (CELL, "c4"),
        (CRAFT, "p2"),
        (CELL, "c2"),
        (CRAFT, "p3"),
        (CELL, "c3"),
    ]


def test_gpu_shares_are_passed_to_ray(cluster):
    graph = Graph(
        craft=_graph_tasks.assigned_resources_craft,
        run=_graph_tasks.assigned_resources,
        craft_failed=_graph_tasks.lost,
        run_failed=_graph_tasks.lost,
        parents={"p": "p"},
        children=[("p", "a"), ("p", "b")],
    )
    executor = RayExecutor(resources=Resources(gpus_per_victim=0.25, gpus_per_craft=1))
    results = {(f.kind, f.item): f.result for f in executor.stream(graph)}
    assert results[(CRAFT, "p")]["GPU"] == 1.0
    assert results[(CELL, "a")]["GPU"] == results[(CELL, "b")]["GPU"] == 0.25
    assert executor.describe()["victims_per_gpu"] == 4.0


def _done(db):
    if not db.exists():
        return {}
    with sqlite3.connect(db) as con:
        return dict(con.execute("SELECT key, finished_at || ' ' || metric FROM cells WHERE status = 'done'"))


def test_a_killed_driver_loses_no_finished_cell(cluster, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sapabench", "run", "--suite", "smoke", "--out", str(out), "--executor", "ray"]
    driver = subprocess.Popen(
        [*cmd, "--device", "cpu", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the driver and the local cluster it started
    )
    deadline = time.monotonic() + 240
    while len(_done(out / "results.sqlite")) < 3 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = _done(out / "results.sqlite")
    assert 3 <= len(before) < SMOKE_CELLS, "the driver should be killed mid-run"
    report = run_suite(
        load_suite("smoke"), out, device="cpu", executor=RayExecutor(), progress=False, log=lambda m: None
    )
    after = _done(out / "results.sqlite")
    assert report.skipped == len(before) and report.failed == 0 and len(after) == SMOKE_CELLS
    assert {k: after[k] for k in before} == before  # finished cells kept as they were, not re-run
