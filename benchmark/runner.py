"""``sapabench run``: expand a suite into cells, craft each poison once, run every cell's trial,
record each cell in the results database as it finishes, then write the leaderboard.

Data flow (``benchmark.trial`` runs the middle): suite -> cells -> attack.craft (once per
poison key, saved as an artifact) -> poison artifact (re-loaded and validated) -> defense ->
victim training -> metrics -> results row (``benchmark.store``) -> leaderboard entry
(``benchmark.entries``) -> rendered tables and plots (``leaderboard``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm

from sapabench.benchmark.claims import plan_claims, undecidable_claims
from sapabench.benchmark.entries import write_leaderboard
from sapabench.benchmark.executor import CRAFT, Executor, Graph, LocalExecutor
from sapabench.benchmark.store import CLAIMS_PLAN, VICTIM_SEEDING, ResultsStore, now
from sapabench.benchmark.suite import Cell, Suite
from sapabench.benchmark.trial import (
    DONE,
    FAILED,
    CraftRecord,
    CraftTask,
    Trial,
    TrialRecord,
    cached_dataset,
    craft,
    error_text,
    run_trials,
    where_it_ran,
)
from sapabench.core.datasets import DataSource
from sapabench.core.errors import ConfigError
from sapabench.core.interrupts import marking_interrupts
from sapabench.core.names import CELL_CAP, SHARED
from sapabench.core.numerics import resolve_numerics
from sapabench.core.owned import exclusive, own_folder
from sapabench.core.poison import PoisonSet
from sapabench.victims.train import resolve_step

NO_POISON_CRAFTED = "its poison set could not be crafted (see the poisons table)"


@dataclass(frozen=True)
class CellTask:
    """A cell and where its trial runs (what the executor ships; the trial is built where it
    runs, once the cell's poison exists)."""

    cell: Cell
    source: DataSource
    device: str
    deterministic: bool = False
    train_step: str = "auto"


@dataclass(frozen=True)
class CellPack:
    """Cells whose victims train together in one task (:func:`sapabench.benchmark.trial.run_trials`): the
    same poison (or none), architecture, recipe, defense, protocol and numerics, different
    seeds. One cell when the run does not pack."""

    tasks: tuple[CellTask, ...]

    @property
    def victims(self) -> int:
        """How many victims the task trains at once (what a GPU share is multiplied by)."""
        return len(self.tasks)


def run_cells(pack: CellPack, crafted: CraftRecord | None) -> list[TrialRecord]:
    """The pack's trials on their crafted poison (``None``: cells without poison); never raises."""
    first = pack.tasks[0]
    if first.cell.poison is None:
        poison = None
    elif crafted is None or crafted.poison is None:
        return [TrialRecord(FAILED, error=NO_POISON_CRAFTED, **where_it_ran()) for _ in pack.tasks]
    else:
        poison = crafted.poison
    return run_trials([Trial.of(t.cell, poison, t.source, t.device, t.deterministic, t.train_step) for t in pack.tasks])


def packs_of(tasks: Sequence[CellTask], size: int) -> list[tuple[str | None, CellPack]]:
    """``tasks`` grouped by poison and victim setting, in packs of at most ``size``."""
    groups: dict[tuple[Any, ...], list[CellTask]] = {}
    for t in tasks:
        c = t.cell
        poison = None if c.poison is None else c.poison.key
        groups.setdefault(
            (poison, c.arch, c.recipe, c.victim, c.defense, c.protocol, c.pretrained, c.numerics), []
        ).append(t)
    return [
        (key[0], CellPack(tuple(group[i : i + size])))
        for key, group in groups.items()
        for i in range(0, len(group), size)
    ]


GPU_PACK = 4
"""Victims per pack on CUDA by default: on an H100, 4 packed ResNet-18 victims trained 1.35x the
images per second of one (docs/performance.md, "Training on a GPU"); on a CPU packs gain nothing."""


def resolve_pack(pack: int | None, device: torch.device) -> int:
    """``None`` (auto): :data:`GPU_PACK` on CUDA, 1 elsewhere."""
    if pack is None:
        return GPU_PACK if device.type == "cuda" else 1
    if not isinstance(pack, int) or isinstance(pack, bool) or not 1 <= pack <= 64:
        raise ConfigError(f"invalid pack size {pack!r}: victims per pack must be an integer from 1 to 64 (set --pack)")
    return pack


def craft_lost(err: BaseException) -> CraftRecord:
    return CraftRecord(FAILED, error=f"the crafting task was lost: {error_text(err)}")


def cell_lost(err: BaseException) -> TrialRecord:
    """A lost task's record, for each of its cells."""
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
    pack: int | None = None,
    train_step: str = "auto",
    yes: bool = False,
) -> RunReport:
    """Run every unfinished cell of ``suite`` into ``out`` (resumable) and write its leaderboard;
    ``deterministic``: craft and train under :func:`sapabench.core.runtime.deterministic_algorithms`;
    ``pack``: victims trained together per task (:func:`resolve_pack`; ``None``: auto);
    ``train_step``: how victims' steps run (:data:`sapabench.victims.train.STEPS` or ``auto``);
    ``yes``: run a suite of more than :data:`CELL_CAP` cells (refused otherwise, before any work).

    Crafting and cells are streamed (:class:`sapabench.benchmark.executor.Graph`): a cell starts once its
    own poison is crafted. Only this process writes the results store, each result as it
    arrives, so a killed run loses at most the tasks in flight.
    """
    say = log or (lambda message: print(message, file=sys.stderr))
    executor = executor or LocalExecutor()
    resolved = executor.resolve_device(device)
    size = resolve_pack(pack, resolved)
    resolve_step(train_step, resolved)  # bad values fail here, before anything is written
    planned = suite.planned_cells()  # counted, not expanded: a suite of a million cells is refused at once
    if planned > CELL_CAP and not yes:
        raise ConfigError(
            f"suite {suite.name!r} plans {planned} cells, more than {CELL_CAP}: check its grids and craft_seeds, "
            "or pass --yes to run it"
        )
    plan = plan_claims(suite)  # ... and so does a pre-registered claim the design cannot decide
    undecidable = undecidable_claims(suite)
    # within the cap the cells are expanded anyway: say their number (grids that share clean victims
    # count them once), not the upper bound that guarded the cap
    say(f"suite {suite.name}: plans {len(suite.cells())} cells and {len(suite.poisons())} poison set(s)")
    out = Path(out).resolve()  # poison folders are absolute paths, valid wherever a task runs
    # marking_interrupts: a plugin's KeyboardInterrupt fails its cells; the user's Ctrl-C stops the run
    with exclusive(out), marking_interrupts():  # a second run into the same folder is refused, not interleaved
        store = ResultsStore(out)  # a folder holding another program's database is refused here, untouched
        previous = store.get_meta("suite")
        if previous is not None and previous != suite.name:
            raise ConfigError(f"{out} holds results of suite {previous!r}, not {suite.name!r}; choose another --out")
        registered = None if plan is None else json.dumps(plan.record(), sort_keys=True)
        earlier = store.get_meta(CLAIMS_PLAN)
        if previous is not None and earlier is not None and registered is not None and earlier != registered:
            was, now_looks = json.loads(earlier).get("looks"), json.loads(registered).get("looks")
            if was != now_looks:
                raise ConfigError(
                    f"{out} was planned with looks at {was} poisons and the suite now plans {now_looks}: adding poisons "
                    "to a planned run outside a look it declared is refused (it would be optional stopping); choose "
                    "another --out, or declare the looks in the suite's [claims] looks before any data"
                )
        if previous is not None and earlier != registered:
            raise ConfigError(
                f"{out} was run with other pre-registered claims ({store.get_meta(CLAIMS_PLAN) or 'none'}); a plan cannot "
                "change once results exist: choose another --out"
            )
        seeding = store.get_meta(VICTIM_SEEDING)
        if previous is not None and (seeding or SHARED) != suite.victim_seeds:
            # folders from before victim seeds were nested recorded no rule: theirs was "shared"
            raise ConfigError(
                f"{out} was run with {seeding or SHARED} victim seeds and suite {suite.name!r} now uses "
                f"{suite.victim_seeds} ones: resuming would mix the two designs, so it is refused; choose another --out, "
                f'or set victim_seeds = "{seeding or SHARED}" in the suite to finish the folder under its own rule'
            )
        if store.done_without_epsilon("dp-sgd"):
            # before 2026-12-06 "dp-sgd" was batch clipping (now gradient-shaping): never mix it with DP-SGD
            raise ConfigError(
                f"{out} holds dp-sgd cells of the batch-clipping defense that 'dp-sgd' named before 2026-12-06 (now "
                "'gradient-shaping'); resuming would mix it with DP-SGD under one name: choose another --out"
            )
        own_folder(out / "poisons", "poisons folder")  # after the checks: a refused run adds nothing
        store.set_meta("suite", suite.name)
        store.set_meta(VICTIM_SEEDING, suite.victim_seeds)
        store.set_meta("suite_source", suite.source)
        if registered is not None:
            store.set_meta(CLAIMS_PLAN, registered)
        source = source or DataSource(suite.dataset)
        if source.name != suite.dataset:
            raise ConfigError(f"data source {source.name!r} does not match the suite's dataset {suite.dataset!r}")
        cached_dataset(source)  # a missing or corrupt dataset fails here, before anything runs
        device = str(resolved)
        started, t0 = now(), time.perf_counter()

        numerics = resolve_numerics(suite.precision, suite.memory_format, resolved)
        craft_numerics = resolve_numerics(suite.craft_precision, suite.craft_memory_format, resolved)
        cells = suite.cells(numerics, craft_numerics)
        store.fill_settings({c.key: (c.poison.resolved_preset, dict(c.poison.options)) for c in cells if c.poison})
        done = store.done_keys()
        pending = [c for c in cells if c.key not in done]
        say(
            f"suite {suite.name}: {len(cells) - len(pending)} of {len(cells)} cells already done, {len(pending)} to run "
            f"({executor.name} executor, device {device}, victims in {numerics.label}, "
            f"crafting in {craft_numerics.label} where the attack supports it"
            + (f", {size} per pack" if size > 1 else "")
            + f") -> {out}"
        )
        if plan is not None:
            powers = "; ".join(
                f"{cid}: delta {100 * pw['delta']:.1f} points, design power {100 * pw['held_at_delta']:.0f}% at delta "
                f"(HELD), {100 * pw['below_at_zero']:.0f}% at 0 (BELOW)"
                for cid, pw in plan.power.items()
            )
            say(
                f"pre-registered: {', '.join(plan.primary)} (Holm-Shaffer at alpha {plan.alpha:g}, looks at "
                f"{', '.join(map(str, plan.looks))} poisons){'; ' + powers if powers else ''}; other results are shown, "
                "not tested"
            )
        if undecidable:
            few = ", ".join(f"{cid} ({n} poison{'s' if n > 1 else ''})" for cid, n in undecidable[:3])
            more = f" and {len(undecidable) - 3} more" if len(undecidable) > 3 else ""
            say(
                f"note: {len(undecidable)} claim(s) this suite measures cannot be decided by its design, whatever the "
                f"results: {few}{more}; a claim replicates over craft seeds (the exact two-sided floor with n poisons "
                "is 2^(1-n)): list more craft_seeds to test them"
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
            run=run_cells,
            craft_failed=craft_lost,
            run_failed=cell_lost,
            parents=to_craft,
            known=crafted,
            children=packs_of([CellTask(c, source, device, deterministic, train_step) for c in pending], size),
        )

        bar = Progress(len(pending), enabled=progress)
        failed = 0
        device_s = 0.0
        try:
            for finished in executor.stream(graph):
                record = finished.result
                if finished.kind == CRAFT:
                    device_s += record.task_s or 0.0
                    store.put_poison(to_craft[finished.item].spec, record)
                    if record.status == DONE:
                        say(f"  crafted {finished.item} in {record.craft_s:.1f} s")
                    else:
                        say(f"  FAILED to craft {finished.item}: {record.error}")
                    continue
                tasks = finished.item.tasks
                # a lost task gives one record (no seconds), which stands for each of its cells
                records = record if isinstance(record, list) else [record] * len(tasks)
                device_s += sum(r.task_s or 0.0 for r in records)
                for task, rec in zip(tasks, records, strict=True):
                    cell = task.cell
                    store.put_trial(cell, rec)
                    failed += rec.status == FAILED
                    bar.update(f"{cell.attack} {cell.recipe} {cell.arch} seed {cell.trial_seed}", rec)
                    if rec.status == FAILED:
                        say(f"  cell {cell.key} failed: {rec.error}")
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

        write_leaderboard(out, say)
        return RunReport(len(cells), len(cells) - len(pending), len(pending), failed, wall, out, device_s)
