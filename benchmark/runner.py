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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch

from benchmark.entries import write_leaderboard
from benchmark.executor import Executor, LocalExecutor
from benchmark.store import ResultsStore
from benchmark.suite import Cell, Suite
from benchmark.trial import DONE, FAILED, CraftRecord, CraftTask, Trial, TrialRecord, cached_dataset, craft, run_trial
from core.datasets import DataSource
from core.errors import ConfigError
from core.numerics import resolve_numerics
from core.poison import PoisonSet
from core.runtime import resolve_device

NO_POISON_CRAFTED = "its poison set could not be crafted (see the poisons table)"


@dataclass(frozen=True)
class CellTask:
    """A cell and the trial that measures it (what the executor ships)."""

    cell: Cell
    trial: Trial


def run_cell(task: CellTask) -> TrialRecord:
    return run_trial(task.trial)


# --------------------------------------------------------------------------------- progress


def _fmt_seconds(s: float) -> str:
    s = round(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@dataclass
class Progress:
    total: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    enabled: bool = True

    def update(self, label: str, record: TrialRecord) -> None:
        self.done += 1
        self.failed += record.status == FAILED
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        width = 24
        filled = int(width * self.done / max(1, self.total))
        result = f"{record.metric:.3f}" if record.status == DONE else "FAILED"
        self.stream.write(
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} cells"
            f"{f' ({self.failed} failed)' if self.failed else ''}  elapsed {_fmt_seconds(elapsed)}"
            f"  eta {_fmt_seconds(eta)}  | {label}: {result}\n"
        )
        self.stream.flush()


# ------------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class RunReport:
    cells: int
    skipped: int
    ran: int
    failed: int
    wall_s: float
    out: Path


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
    ``deterministic``: craft and train under :func:`core.runtime.deterministic_algorithms`."""
    say = log or (lambda message: print(message, file=sys.stderr))
    out = Path(out)
    store = ResultsStore(out)
    previous = store.get_meta("suite")
    if previous is not None and previous != suite.name:
        raise ConfigError(f"{out} holds results of suite {previous!r}, not {suite.name!r}; choose another --out")
    store.set_meta("suite", suite.name)
    store.set_meta("suite_source", suite.source)
    source = source or DataSource(suite.dataset)
    if source.name != suite.dataset:
        raise ConfigError(f"data source {source.name!r} does not match the suite's dataset {suite.dataset!r}")
    device = str(resolve_device(device))
    cached_dataset(source)  # a missing or corrupt dataset fails here, before anything runs
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()

    numerics = resolve_numerics(suite.precision, suite.memory_format, torch.device(device))
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
    to_craft = []
    for key, spec in specs.items():
        previous = store.poison(key)
        if previous is not None and previous.poison is not None and Path(previous.poison.folder).is_dir():
            try:  # a poison crafted by an earlier run is re-checked (seal, bounds) before any victim uses it
                PoisonSet.load(previous.poison.folder)
            except ConfigError as err:
                raise ConfigError(f"{err}; delete {previous.poison.folder} to craft it again") from None
            crafted[key] = previous
        else:
            to_craft.append(CraftTask(spec, str(out / "poisons" / key), source, device, deterministic))
    if to_craft:
        say(f"crafting {len(to_craft)} poison set(s)")
    for task, record in executor.map(craft, to_craft):
        store.put_poison(task.spec, record)
        crafted[task.spec.key] = record
        if record.status == DONE:
            say(f"  crafted {task.spec.key} in {record.craft_s:.1f} s")
        else:
            say(f"  FAILED to craft {task.spec.key}: {record.error}")

    bar = Progress(len(pending), enabled=progress)
    failed = 0

    def finish(cell: Cell, record: TrialRecord) -> None:
        nonlocal failed
        store.put_trial(cell, record)
        failed += record.status == FAILED
        bar.update(f"{cell.attack} {cell.recipe} {cell.arch} seed {cell.trial_seed}", record)
        if record.status == FAILED:
            say(f"  cell {cell.key} failed: {record.error}")

    tasks = []
    for cell in pending:
        poison = None if cell.poison is None else crafted[cell.poison.key].poison
        if cell.poison is not None and poison is None:
            finish(cell, TrialRecord(FAILED, error=NO_POISON_CRAFTED))
        else:
            tasks.append(CellTask(cell, Trial.of(cell, poison, source, device, deterministic)))
    for task, record in executor.map(run_cell, tasks):
        finish(task.cell, record)

    write_leaderboard(out)
    return RunReport(len(cells), len(cells) - len(pending), len(pending), failed, time.perf_counter() - t0, out)
