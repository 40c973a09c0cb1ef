"""The executors stream a run's graph: a cell starts once its own poison is crafted."""

import pytest

from sapabench.benchmark.executor import CELL, CRAFT, Graph, LocalExecutor, ProcessExecutor, Resources, make_executor
from sapabench.core.errors import ConfigError
from tests._graph_tasks import craft_label, lost, run_child


def _graph(**kw):
    base = dict(
        craft=craft_label,
        run=run_child,
        craft_failed=lost,
        run_failed=lost,
        parents={"p1": "a", "p2": "b"},
        known={"old": "crafted earlier"},
        children=[("p1", "c1"), ("p2", "c2"), (None, "clean"), ("old", "c0"), ("p1", "c3")],
    )
    return Graph(**{**base, **kw})


def _events(executor, graph):
    return [(f.kind, f.item, f.result) for f in executor.stream(graph)]


def test_local_executor_runs_each_poison_then_its_cells():
    events = _events(LocalExecutor(), _graph())
    assert [(k, i) for k, i, _ in events] == [
        (CELL, "clean"),
        (CELL, "c0"),
        (CRAFT, "p1"),
        (CELL, "c1"),
        (CELL, "c3"),
        (CRAFT, "p2"),
        (CELL, "c2"),
    ]
    results = {i: r for k, i, r in events if k == CELL}
    assert results["c1"][1] == "crafted a" and results["c2"][1] == "crafted b"
    assert results["clean"][1] is None and results["c0"][1] == "crafted earlier"


def test_process_executor_starts_a_poisons_cells_before_crafting_the_next():
    events = _events(ProcessExecutor(1), _graph())  # one worker: the order is the schedule
    order = [(k, i) for k, i, _ in events]
    assert order.index((CELL, "c1")) < order.index((CRAFT, "p2"))
    assert order.index((CELL, "c3")) < order.index((CRAFT, "p2"))
    assert {i: r[1] for k, i, r in events if k == CELL} == {
        "c1": "crafted a",
        "c3": "crafted a",
        "c2": "crafted b",
        "clean": None,
        "c0": "crafted earlier",
    }
    assert len(_events(ProcessExecutor(2), _graph())) == 7  # two workers: everything, once


def test_a_child_of_an_unknown_poison_is_refused():
    with pytest.raises(ValueError, match="neither crafted nor to craft"):
        _graph(children=[("nowhere", "c")])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(cpus_per_task=0), r"cpus_per_task must be an integer >= 1"),
        (dict(gpus_per_victim=1.5), r"gpus_per_victim must be 0, a fraction in \(0, 1\] or a whole number"),
        (dict(gpus_per_craft=-1), r"gpus_per_craft must be 0"),
        (dict(max_retries=-1), r"max_retries must be an integer >= 0"),
    ],
)
def test_bad_resources_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Resources(**kwargs)


def test_an_address_needs_the_ray_executor():
    with pytest.raises(ConfigError, match=r"--address is the Ray cluster's address; it needs --executor ray"):
        make_executor("local", address="10.0.0.1:6379")
    assert Resources(gpus_per_victim=0.25).craft_gpus == 0.25 and Resources(1, 0.25, 1.0).craft_gpus == 1.0


def test_more_workers_than_cores_are_refused_unless_forced(capsys):
    from sapabench.benchmark.cli import main
    from sapabench.benchmark.executor import cpu_cores
    from sapabench.core.errors import ConfigError

    with pytest.raises(
        ConfigError, match=rf"--workers {cpu_cores() + 62} is more than this machine's {cpu_cores()} cores"
    ):
        ProcessExecutor(cpu_cores() + 62)
    assert ProcessExecutor(cpu_cores() + 1, force=True).workers == cpu_cores() + 1
    assert main(["run", "--suite", "smoke", "--executor", "processes", "--workers", "64", "--out", "unused"]) == 2
    assert "--force-workers" in capsys.readouterr().err
