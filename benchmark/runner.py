"""``sapabench run``: expand a suite into cells, craft each poison once, train and measure every
victim, record each cell in the results database as it finishes, then write the leaderboard.

Data flow of one cell: dataset -> attack.craft (once per poison key, saved as an artifact) ->
poison artifact (re-loaded and validated) -> victim.train -> metrics -> results row ->
leaderboard entry -> rendered tables and plots.
"""

from __future__ import annotations

import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, TextIO

import torch

from benchmark.errors import ConfigError
from benchmark.executor import Executor, LocalExecutor
from benchmark.store import ResultsStore
from benchmark.suite import CLEAN, NO_DEFENSE, Cell, PoisonSpec, Suite


@dataclass(frozen=True)
class DataSource:
    """How workers load the suite's dataset (picklable)."""

    name: str
    data_root: str | None = None
    download: bool = False
    verify_checksums: bool = True

    def kwargs(self) -> dict[str, Any]:
        from benchmark.datasets import _LAYOUTS

        if self.name in _LAYOUTS:
            return dict(data_root=self.data_root, download=self.download, verify_checksums=self.verify_checksums)
        return {}


@lru_cache(maxsize=4)
def _dataset(source: DataSource) -> Any:
    from benchmark.datasets import load_dataset

    return load_dataset(source.name, **source.kwargs())


@dataclass(frozen=True)
class CraftTask:
    spec: PoisonSpec
    folder: str
    source: DataSource
    device: str


@dataclass(frozen=True)
class CellTask:
    cell: Cell
    poison_folder: str | None
    poison_craft_seconds: float | None
    poison_sha256: str | None
    source: DataSource
    device: str


def _error_text(err: BaseException) -> str:
    if isinstance(err, ConfigError):
        return str(err)
    tb = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(err).__name__}: {err}{where}"


def craft_poison(task: CraftTask) -> dict[str, Any]:
    """Executor function: craft, save (atomically) and describe one poison set; never raises."""
    from attacks import create_attack
    from attacks.artifact import recorded_sha256

    spec = task.spec
    try:
        attack = create_attack(spec.attack, dataset=spec.dataset, preset=spec.preset, **spec.overrides())
        poison = attack.run(_dataset(task.source), seed=spec.craft_seed, device=task.device)
        folder = poison.save(task.folder)
        return {"status": "done", "path": str(folder), "sha256": recorded_sha256(folder),
                "craft_seconds": poison.craft_seconds, "threat": poison.threat.kind, "eps": poison.eps,
                "budget": poison.budget}  # fmt: skip
    except Exception as err:  # recorded, the run goes on
        return {"status": "failed", "error": _error_text(err)}


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is the process's peak resident set (KiB on Linux), not per cell.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_cell(task: CellTask) -> dict[str, Any]:
    """Executor function: train and measure one victim; returns its results row; never raises."""
    from attacks.artifact import PoisonSet
    from attacks.metrics import measure
    from benchmark.provenance import provenance
    from victims.recipes import RECIPES
    from victims.train import resolve_device, train_victim

    cell = task.cell
    row: dict[str, Any] = {
        "key": cell.key, "suite": cell.suite, "attack": cell.attack, "dataset": cell.dataset,
        "surrogate": cell.surrogate, "arch": cell.arch, "recipe": cell.recipe, "defense": cell.defense,
        "craft_seed": cell.craft_seed, "trial_seed": cell.trial_seed, "victim": dict(cell.victim),
        "poison_key": None if cell.poison is None else cell.poison.key,
        "preset": None if cell.poison is None else cell.poison.resolved_preset,
        "options": None if cell.poison is None else dict(cell.poison.options),
    }  # fmt: skip
    try:
        device = resolve_device(task.device)
        row["provenance"] = provenance(device)
        dataset = _dataset(task.source)
        if cell.poison is not None and task.poison_folder is None:
            raise RuntimeError("its poison set could not be crafted (see the poisons table)")
        poison = PoisonSet.load(task.poison_folder, dataset) if task.poison_folder else None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        recipe = RECIPES.create(cell.recipe, **dict(cell.victim))
        train_data, train_poison = dataset, poison
        if cell.defense != NO_DEFENSE:
            from defenses import DEFENSES
            from defenses.apply import apply_defense

            defended = apply_defense(DEFENSES.create(cell.defense), dataset, poison, cell.arch, recipe, cell.trial_seed, device)
            train_data, train_poison, recipe = defended.dataset, defended.poison, defended.recipe
            row.update(defense_removed=defended.stats.get("removed"), defense_precision=defended.stats.get("precision"),
                       defense_recall=defended.stats.get("recall"))  # fmt: skip
        result = train_victim(cell.arch, recipe, train_data, poison=train_poison, seed=cell.trial_seed, device=device)
        t0 = time.perf_counter()
        if poison is None:  # the clean accuracy train_victim measured on the (shared) test set is the metric
            clean = result.clean_accuracy
            metric_name, metric, threat, eps, budget, sha = "clean_accuracy", clean, "none", 0.0, 0.0, None
        else:
            m = measure(result.model, poison, dataset, result.clean_accuracy)
            metric_name, metric, clean = m.metric, m.value, m.clean_accuracy
            threat, eps, budget = poison.threat.kind, poison.eps, poison.budget
            sha = task.poison_sha256  # PoisonSet.load checked the file against the hash in its JSON
        eval_s = time.perf_counter() - t0 + result.eval_s
        row.update(
            status="done", threat=threat, metric_name=metric_name, metric=metric, clean_accuracy=clean, eps=eps,
            budget=budget, craft_seconds=task.poison_craft_seconds or 0.0, train_seconds=result.timing.total_s,
            eval_seconds=eval_s, images_per_s=result.timing.images_per_s, peak_memory_mb=_peak_memory_mb(device),
            poison_sha256=sha,
        )  # fmt: skip
    except Exception as err:  # a failing cell is recorded with its error; the run goes on
        row.update(status="failed", error=_error_text(err))
    return row


# --------------------------------------------------------------------------------- progress


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@dataclass
class Progress:
    total: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    enabled: bool = True

    def update(self, label: str, row: dict[str, Any]) -> None:
        self.done += 1
        self.failed += row.get("status") == "failed"
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        width = 24
        filled = int(width * self.done / max(1, self.total))
        result = f"{row['metric']:.3f}" if row.get("status") == "done" else "FAILED"
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
    seconds: float
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
) -> RunReport:
    """Run every unfinished cell of ``suite`` into ``out`` (resumable) and write its leaderboard."""
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
    from victims.train import resolve_device

    device = str(resolve_device(device))
    _dataset(source)  # a missing or corrupt dataset fails here, before anything runs
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()

    cells = suite.cells()
    store.fill_settings({c.key: (c.poison.resolved_preset, dict(c.poison.options)) for c in cells if c.poison})
    done = store.done_keys()
    pending = [c for c in cells if c.key not in done]
    say(f"suite {suite.name}: {len(cells)} cells, {len(cells) - len(pending)} already done, {len(pending)} to run "
        f"({executor.name} executor, device {device}) -> {out}")  # fmt: skip

    needed = {c.poison.key: c.poison for c in pending if c.poison is not None}
    poison_folders: dict[str, tuple[str | None, float | None, str | None]] = {}
    to_craft = []
    for key, spec in needed.items():
        rec = store.poison(key)
        folder = out / "poisons" / key
        if rec is not None and rec.status == "done" and rec.path and Path(rec.path).is_dir():
            poison_folders[key] = (rec.path, rec.craft_seconds, rec.sha256)
        else:
            to_craft.append(CraftTask(spec, str(folder), source, device))
    if to_craft:
        say(f"crafting {len(to_craft)} poison set(s)")
    for task, res in executor.map(craft_poison, to_craft):
        spec = task.spec
        store.put_poison(spec.key, spec.attack, spec.craft_seed, res["status"],
                         **{k: v for k, v in res.items() if k != "status"})  # fmt: skip
        if res["status"] == "done":
            poison_folders[spec.key] = (res["path"], res["craft_seconds"], res["sha256"])
            say(f"  crafted {spec.key} in {res['craft_seconds']:.1f} s")
        else:
            poison_folders[spec.key] = (None, None, None)
            say(f"  FAILED to craft {spec.key}: {res['error']}")

    tasks = []
    for c in pending:
        folder, craft_s, sha = poison_folders.get(c.poison.key, (None, None, None)) if c.poison else (None, None, None)
        tasks.append(CellTask(c, folder, craft_s, sha, source, device))
    bar = Progress(len(tasks), enabled=progress)
    failed = 0
    for task, row in executor.map(run_cell, tasks):
        store.put_cell(row)
        failed += row["status"] == "failed"
        c = task.cell
        bar.update(f"{c.attack} {c.recipe} {c.arch} seed {c.trial_seed}", row)
        if row["status"] == "failed":
            say(f"  cell {c.key} failed: {row['error']}")

    from leaderboard.build import write_leaderboard

    write_leaderboard(out)
    return RunReport(len(cells), len(cells) - len(pending), len(pending), failed, time.perf_counter() - t0, out)


__all__ = ["CLEAN", "DataSource", "RunReport", "run_suite"]
