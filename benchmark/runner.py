"""``sapabench run``: expand a suite into cells, craft each poison once, run every cell's trial,
record each cell in the results database as it finishes, then write the leaderboard.

Data flow (``benchmark.trial`` runs the middle): suite -> cells -> attack.craft (once per
poison key, saved as an artifact) -> poison artifact (re-loaded and validated) -> defense ->
victim training -> metrics -> results row (``benchmark.store``) -> leaderboard entry
(``benchmark.entries``) -> rendered tables and plots (``leaderboard``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from benchmark.entries import write_leaderboard
from benchmark.executor import CRAFT, Executor, Graph, LocalExecutor
from benchmark.store import ResultsStore, now
from benchmark.suite import Cell, Suite
from benchmark.trial import (
    DONE,
    FAILED,
    CraftRecord,
    CraftTask,
    Trial,
    TrialRecord,
    cached_dataset,
    craft,
    error_text,
    run_trial,
    where_it_ran,
)
from core.datasets import DataSource
from core.errors import ConfigError
from core.numerics import resolve_numerics
from core.poison import PoisonSet

NO_POISON_CRAFTED = "its poison set could not be crafted (see the poisons table)"


@dataclass(frozen=True)
class CellTask:
    """A cell and where its trial runs (what the executor ships; the trial is built where it
    runs, once the cell's poison exists)."""

    cell: Cell
    source: DataSource
    device: str
    deterministic: bool = False


def run_cell(task: CellTask, crafted: CraftRecord | None) -> TrialRecord:
    """The cell's trial on its crafted poison (``None``: a cell without poison); never raises."""
    if task.cell.poison is None:
        poison = None
    elif crafted is None or crafted.poison is None:
        return TrialRecord(FAILED, error=NO_POISON_CRAFTED, **where_it_ran())
    else:
        poison = crafted.poison
    return run_trial(Trial.of(task.cell, poison, task.source, task.device, task.deterministic))


def craft_lost(err: BaseException) -> CraftRecord:
    return CraftRecord(FAILED, error=f"the crafting task was lost: {error_text(err)}")


def cell_lost(err: BaseException) -> TrialRecord:
    return TrialRecord(FAILED, error=f"the cell's task was lost: {error_text(err)}")


# --------------------------------------------------------------------------------- progress


class Progress:
    """Cells done, rate, ETA and failures so far (tqdm), on stderr when it is a terminal."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None) -> None:
        stream = stream or sys.stderr
        shown = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.bar = tqdm(total=total, unit="cell", file=stream, disable=not shown, dynamic_ncols=True)
        self.failed = 0

    def update(self, label: str, record: TrialRecord) -> None:
        self.failed += record.status == FAILED
        result = f"{record.metric:.3f}" if record.status == DONE else "FAILED"
        self.bar.set_postfix_str(f"failed {self.failed} | {label}: {result}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ------------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class RunReport:
    cells: int
    skipped: int
    ran: int
    failed: int
    wall_s: float
    out: Path
    device_s: float = 0.0  # seconds the run's tasks held their device (crafting and cells)


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    source: DataSource | None = None,
    device: str = "auto",
    executor: Executor | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    deterministic: bool = False,
) -> RunReport:
    """Run every unfinished cell of ``suite`` into ``out`` (resumable) and write its leaderboard;
    ``deterministic``: craft and train under :func:`core.runtime.deterministic_algorithms`.

    Crafting and cells are streamed (:class:`benchmark.executor.Graph`): a cell starts once its
    own poison is crafted. Only this process writes the results store, each result as it
    arrives, so a killed run loses at most the tasks in flight.
    """
    say = log or (lambda message: print(message, file=sys.stderr))
    out = Path(out).resolve()  # poison folders are absolute paths, valid wherever a task runs
    store = ResultsStore(out)
    previous = store.get_meta("suite")
    if previous is not None and previous != suite.name:
        raise ConfigError(f"{out} holds results of suite {previous!r}, not {suite.name!r}; choose another --out")
    store.set_meta("suite", suite.name)
    store.set_meta("suite_source", suite.source)
    source = source or DataSource(suite.dataset)
    if source.name != suite.dataset:
        raise ConfigError(f"data source {source.name!r} does not match the suite's dataset {suite.dataset!r}")
    cached_dataset(source)  # a missing or corrupt dataset fails here, before anything runs
    executor = executor or LocalExecutor()
    resolved = executor.resolve_device(device)
    device = str(resolved)
    started, t0 = now(), time.perf_counter()

    numerics = resolve_numerics(suite.precision, suite.memory_format, resolved)
    cells = suite.cells(numerics)
    store.fill_settings({c.key: (c.poison.resolved_preset, dict(c.poison.options)) for c in cells if c.poison})
    done = store.done_keys()
    pending = [c for c in cells if c.key not in done]
    say(
        f"suite {suite.name}: {len(cells)} cells, {len(cells) - len(pending)} already done, {len(pending)} to run "
        f"({executor.name} executor, device {device}, victims in {numerics.label}) -> {out}"
    )

    specs = {c.poison.key: c.poison for c in pending if c.poison is not None}
    crafted: dict[str, CraftRecord] = {}
    to_craft: dict[str, CraftTask] = {}
    for key, spec in specs.items():
        previous = store.poison(key)
        if previous is not None and previous.poison is not None and Path(previous.poison.folder).is_dir():
            try:  # a poison crafted by an earlier run is re-checked (seal, bounds) before any victim uses it
                PoisonSet.load(previous.poison.folder)
            except ConfigError as err:
                raise ConfigError(f"{err}; delete {previous.poison.folder} to craft it again") from None
            crafted[key] = previous
        else:
            to_craft[key] = CraftTask(spec, str(out / "poisons" / key), source, device, deterministic)
    if to_craft:
        say(f"crafting {len(to_craft)} poison set(s); each poison's cells start once it is crafted")
    graph = Graph(
        craft=craft,
        run=run_cell,
        craft_failed=craft_lost,
        run_failed=cell_lost,
        parents=to_craft,
        known=crafted,
        children=[
            (None if c.poison is None else c.poison.key, CellTask(c, source, device, deterministic)) for c in pending
        ],
    )

    bar = Progress(len(pending), enabled=progress)
    failed = 0
    device_s = 0.0
    try:
        for finished in executor.stream(graph):
            record = finished.result
            device_s += record.task_s or 0.0
            if finished.kind == CRAFT:
                store.put_poison(to_craft[finished.item].spec, record)
                if record.status == DONE:
                    say(f"  crafted {finished.item} in {record.craft_s:.1f} s")
                else:
                    say(f"  FAILED to craft {finished.item}: {record.error}")
                continue
            cell = finished.item.cell
            store.put_trial(cell, record)
            failed += record.status == FAILED
            bar.update(f"{cell.attack} {cell.recipe} {cell.arch} seed {cell.trial_seed}", record)
            if record.status == FAILED:
                say(f"  cell {cell.key} failed: {record.error}")
    finally:
        bar.close()
        wall = time.perf_counter() - t0
        store.add_run(
            {
                "started_at": started,
                "wall_s": round(wall, 3),
                "device_s": round(device_s, 3),
                "device": device,
                "cells": len(pending),
                "failed": failed,
                **executor.describe(),
            }
        )

    write_leaderboard(out)
    return RunReport(len(cells), len(cells) - len(pending), len(pending), failed, wall, out, device_s)
