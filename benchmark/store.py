"""The results database: one SQLite file per output folder, one row per cell and per poison.

Every finished cell (or failed cell, with its error) is committed at once, so a run killed
mid-way loses at most the cell in flight, and re-running the same command skips finished cells.

This module is the only place that knows the tables' columns. A cells row is the cell's
identity (:func:`_cell_columns`) beside its :class:`~sapabench.benchmark.trial.TrialRecord`, one column
per record field of the same name; a poisons row holds a
:class:`~sapabench.benchmark.trial.CraftRecord` the same way. Databases written by older versions are
migrated when opened: seconds columns renamed to ``*_s``, later columns added.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sapabench.benchmark.suite import Cell, PoisonSpec, Setting
from sapabench.benchmark.trial import CraftRecord, TrialRecord
from sapabench.core.errors import ConfigError

DB_FILE = "results.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS poisons (
    key TEXT PRIMARY KEY, attack TEXT NOT NULL, craft_seed INTEGER NOT NULL, status TEXT NOT NULL,
    path TEXT, sha256 TEXT, craft_s REAL, threat TEXT, eps REAL, budget REAL, error TEXT,
    surrogates_s REAL, task_s REAL, device TEXT, host TEXT, finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, suite TEXT NOT NULL, attack TEXT NOT NULL, dataset TEXT NOT NULL,
    surrogate TEXT NOT NULL, arch TEXT NOT NULL, recipe TEXT NOT NULL, defense TEXT NOT NULL,
    craft_seed INTEGER, trial_seed INTEGER NOT NULL, status TEXT NOT NULL,
    threat TEXT, metric_name TEXT, metric REAL, clean_accuracy REAL, eps REAL, budget REAL,
    craft_s REAL, train_s REAL, eval_s REAL, images_per_s REAL, peak_memory_mb REAL,
    poison_key TEXT, poison_sha256 TEXT, victim TEXT, provenance TEXT, error TEXT,
    defense_removed INTEGER, defense_precision REAL, defense_recall REAL, preset TEXT, options TEXT,
    diagnostics TEXT, precision TEXT, memory_format TEXT, protocol TEXT, pretrained TEXT,
    surrogates_s REAL, task_s REAL, device TEXT, host TEXT, defense_s REAL, defender_s REAL,
    defense_epsilon REAL, defense_delta REAL, defense_heldout INTEGER, defense_pruned REAL,
    defense_stopped_epoch REAL, defense_peak_test_accuracy REAL, defense_class_removed INTEGER,
    defense_class_precision REAL, craft_precision TEXT, craft_memory_format TEXT,
    finished_at TEXT NOT NULL
);
"""
# Older databases: (table, old column, new column) renamed, then (table, column, type) added.
_RENAMED = (
    ("poisons", "craft_seconds", "craft_s"),
    ("cells", "craft_seconds", "craft_s"),
    ("cells", "train_seconds", "train_s"),
    ("cells", "eval_seconds", "eval_s"),
)
_ADDED = (
    ("cells", "preset", "TEXT"),
    ("cells", "options", "TEXT"),
    ("cells", "diagnostics", "TEXT"),
    ("cells", "precision", "TEXT"),  # NULL (rows from before numerics existed) reads as fp32
    ("cells", "memory_format", "TEXT"),
    ("cells", "protocol", "TEXT"),  # NULL (rows from before protocols existed) reads as scratch
    ("cells", "pretrained", "TEXT"),
    ("poisons", "surrogates_s", "REAL"),  # NULL (rows from before it was recorded) reads as 0 s
    ("cells", "surrogates_s", "REAL"),
    # NULL (rows from before they were recorded): the device is read from the provenance, the host unknown
    ("poisons", "task_s", "REAL"),
    ("poisons", "device", "TEXT"),
    ("poisons", "host", "TEXT"),
    ("cells", "task_s", "REAL"),
    ("cells", "device", "TEXT"),
    ("cells", "host", "TEXT"),
    # NULL (rows from before they were recorded, or no data-level defense): no defense time
    ("cells", "defense_s", "REAL"),
    ("cells", "defender_s", "REAL"),
    ("cells", "defense_epsilon", "REAL"),  # DP-SGD's privacy spent (NULL: no such defense)
    ("cells", "defense_delta", "REAL"),
    # NULL (rows from before they were recorded, or no model-level defense)
    ("cells", "defense_class_removed", "INTEGER"),
    ("cells", "defense_class_precision", "REAL"),
    ("cells", "defense_heldout", "INTEGER"),
    ("cells", "defense_pruned", "REAL"),
    ("cells", "defense_stopped_epoch", "REAL"),
    ("cells", "defense_peak_test_accuracy", "REAL"),
    ("cells", "craft_precision", "TEXT"),  # NULL (rows from before crafting numerics existed) reads as fp32
    ("cells", "craft_memory_format", "TEXT"),
)
RUNS = "runs"  # meta key: a JSON list, one object per `sapabench run` invocation
_JSON_COLUMNS = ("victim", "options", "provenance", "diagnostics")
_RECORD_FIELDS = tuple(f.name for f in fields(TrialRecord))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StoredTrial:
    """One finished or failed cell read back: its setting, seeds, poison and record."""

    setting: Setting
    craft_seed: int | None
    trial_seed: int
    poison_key: str | None
    record: TrialRecord


def _cell_columns(cell: Cell) -> dict[str, Any]:
    poison = cell.poison
    return {
        "key": cell.key,
        "suite": cell.suite,
        "attack": cell.attack,
        "dataset": cell.dataset,
        "surrogate": cell.setting.surrogate_label,
        "arch": cell.arch,
        "recipe": cell.recipe,
        "defense": cell.defense,
        "craft_seed": cell.craft_seed,
        "trial_seed": cell.trial_seed,
        "victim": dict(cell.victim),
        "poison_key": None if poison is None else poison.key,
        "preset": None if poison is None else poison.resolved_preset,
        "options": None if poison is None else dict(poison.options),
        "precision": cell.numerics.precision,
        "memory_format": cell.numerics.memory_format,
        "protocol": cell.protocol,
        "pretrained": cell.pretrained,
        "craft_precision": None if poison is None else poison.numerics.precision,
        "craft_memory_format": None if poison is None else poison.numerics.memory_format,
    }


def _stored_trial(row: dict[str, Any]) -> StoredTrial:
    if row["craft_seed"] is not None and row["preset"] is None:
        raise ConfigError(
            f"{row['attack']} {row['arch']} {row['recipe']}: results written by an older sapabench lack the attack "
            "preset; re-run the same sapabench run command once (it fills them in) or use a new --out"
        )
    setting = Setting.read(row["attack"], row["defense"], row)
    record = TrialRecord(
        **{k: row[k] for k in _RECORD_FIELDS if k != "diagnostics"}, diagnostics=row["diagnostics"] or {}
    )
    return StoredTrial(setting, row["craft_seed"], row["trial_seed"], row["poison_key"], record)


CLAIMS_PLAN = "claims_plan"
"""The meta key of the claims a run pre-registered (JSON: primary claim ids, alpha, correction)."""
VICTIM_SEEDING = "victim_seeding"
"""The meta key of how the folder's victims are seeded (``benchmark.suite.victim_seed``);
folders from before it was recorded used ``shared`` seeds."""


APPLICATION = "sapabench-results"
"""The identity every results database carries in its ``meta`` table (key ``application``)."""
STORE_VERSION = 2
"""The results database layout this version writes: 1 carried no identity (recognised by its
tables), 2 carries ``application`` and ``store_version`` in ``meta``. A newer one is refused."""
_OUR_TABLES = {"meta", "poisons", "cells"}
_CELL_IDENTITY = {"key", "suite", "attack", "trial_seed", "status", "finished_at"}


FILE_SYSTEM_ERRORS = {
    "database or disk is full": "the disk is full: free some space and run the same command again (finished results "
    "are kept)",
    "readonly database": "the folder or the database is read-only: choose a writable --out or fix its permissions",
    "unable to open database file": "the database cannot be opened (a read-only, missing or inaccessible folder): "
    "choose a writable --out or fix its permissions",
    "disk i/o error": "the disk reported an I/O error: check the disk and run the same command again (finished "
    "results are kept)",
}
"""SQLite's messages for failures of the file system, not of the database: said as such, never
as a corrupt or foreign database (which could make a user delete good results)."""


def file_system_fault(err: sqlite3.Error) -> str | None:
    """What a SQLite error says about the file system, or None where it is about the database."""
    text = str(err).lower()
    return next((fix for marker, fix in FILE_SYSTEM_ERRORS.items() if marker in text), None)


def _not_ours(path: Path, why: str, err: sqlite3.Error | None = None) -> ConfigError:
    fault = None if err is None else file_system_fault(err)
    if fault is not None:
        return ConfigError(f"{path}: {fault}")
    return ConfigError(
        f"{path} is not a sapabench results database ({why}); it was left untouched: choose another --out"
    )


def check_identity(path: Path) -> None:
    """Refuse, without writing a byte, a database that is not this harness's (another program's,
    corrupt) or that a newer sapabench wrote. Opened read-only."""
    if path.is_symlink() or not path.is_file():
        raise _not_ours(path, "a link or not a regular file")
    try:
        with closing(sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            foreign = sorted(tables - _OUR_TABLES)
            if foreign:
                raise _not_ours(path, f"it has other tables: {', '.join(foreign[:5])}")
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
            if meta.get("application") not in (None, APPLICATION):
                raise _not_ours(path, f"it belongs to {str(meta['application'])[:60]!r}")
            if meta.get("application") is None and tables:  # version 1: recognised by its cells table
                columns = {r[1] for r in con.execute("PRAGMA table_info(cells)")}
                if not columns >= _CELL_IDENTITY:
                    raise _not_ours(path, "its tables are not sapabench's")
            version = meta.get("store_version", "1")
    except sqlite3.DatabaseError as err:
        raise _not_ours(path, str(err), err) from None
    if not str(version).isdigit() or int(version) > STORE_VERSION:
        raise ConfigError(
            f"{path} was written by a newer sapabench (results layout {str(version)[:20]}, this one reads up to "
            f"{STORE_VERSION}); upgrade sapabench or choose another --out"
        )


class ResultsStore:
    """Thin wrapper over the SQLite file; each write is its own committed transaction."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"{self.folder} is a file, not a run folder; choose another --out")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_FILE
        if self.path.exists() or self.path.is_symlink():
            check_identity(self.path)
        try:
            with closing(self._connect()) as con, con:
                con.executescript(SCHEMA)
                self._migrate(con)
                con.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("application", APPLICATION), ("store_version", str(STORE_VERSION))],
                )
        except sqlite3.DatabaseError as err:
            raise _not_ours(self.path, str(err), err) from None

    @staticmethod
    def _migrate(con: sqlite3.Connection) -> None:
        def columns(table: str) -> set[str]:
            return {r["name"] for r in con.execute(f"PRAGMA table_info({table})")}

        for table, old, new in _RENAMED:
            if old in columns(table):
                con.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
        for table, column, kind in _ADDED:
            if column not in columns(table):
                con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def _insert(self, table: str, values: dict[str, Any]) -> None:
        """Insert a row, or update the row of the same key unless that one is done and this one
        is not: a finished result is never replaced by a failed attempt (a concurrent or late
        writer, a retry that failed)."""
        encoded = {k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v) for k, v in values.items()}
        cols = [*encoded, "finished_at"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "key")
        with closing(self._connect()) as con, con:
            con.execute(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT(key) DO UPDATE SET {updates} WHERE {table}.status != 'done' OR excluded.status = 'done'",
                [*encoded.values(), now()],
            )

    # meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    def set_meta(self, key: str, value: str) -> None:
        with closing(self._connect()) as con, con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def runs(self) -> list[dict[str, Any]]:
        """Every run into this folder (its provenance: executor, concurrency, wall and device
        seconds), oldest first."""
        text = self.get_meta(RUNS)
        return [] if text is None else json.loads(text)

    def add_run(self, run: dict[str, Any]) -> None:
        with closing(self._connect()) as con, con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (RUNS,)).fetchone()
            runs = [] if row is None else json.loads(row["value"])
            con.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (RUNS, json.dumps([*runs, run], sort_keys=True)),
            )

    # poisons ------------------------------------------------------------------------------
    def poison(self, key: str) -> CraftRecord | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM poisons WHERE key = ?", (key,)).fetchone()
        return None if row is None else CraftRecord(**{f.name: row[f.name] for f in fields(CraftRecord)})

    def put_poison(self, spec: PoisonSpec, record: CraftRecord) -> None:
        self._insert(
            "poisons", {"key": spec.key, "attack": spec.attack, "craft_seed": spec.craft_seed, **asdict(record)}
        )

    # cells --------------------------------------------------------------------------------
    def done_keys(self) -> set[str]:
        with closing(self._connect()) as con:
            return {r["key"] for r in con.execute("SELECT key FROM cells WHERE status = 'done'")}

    def put_trial(self, cell: Cell, record: TrialRecord) -> None:
        """Commit one cell's outcome (replacing an earlier attempt of the same cell, unless that
        one finished and this one did not)."""
        self._insert("cells", {**_cell_columns(cell), **asdict(record)})

    def fill_settings(self, settings: dict[str, tuple[str, dict[str, Any]]]) -> int:
        """Give rows written before the ``preset``/``options`` columns existed their values
        (cell key -> (preset, options), from the suite that made them); returns how many."""
        with closing(self._connect()) as con, con:
            missing = [
                r["key"] for r in con.execute("SELECT key FROM cells WHERE poison_key IS NOT NULL AND preset IS NULL")
            ]
            todo = [(settings[k][0], json.dumps(settings[k][1], sort_keys=True), k) for k in missing if k in settings]
            con.executemany("UPDATE cells SET preset = ?, options = ? WHERE key = ?", todo)
        return len(todo)

    def done_without_epsilon(self, defense: str) -> int:
        """Finished cells of ``defense`` that recorded no privacy spent: ``dp-sgd`` cells of before
        2026-12-06, when the name meant batch clipping."""
        with closing(self._connect()) as con:
            query = "SELECT COUNT(*) FROM cells WHERE status = 'done' AND defense = ? AND defense_epsilon IS NULL"
            return int(con.execute(query, (defense,)).fetchone()[0])

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """The cells table as dicts (JSON columns decoded), ordered by cell key."""
        query = "SELECT * FROM cells" + (" WHERE status = ?" if status else "") + " ORDER BY key"
        with closing(self._connect()) as con:
            rows = [dict(r) for r in con.execute(query, (status,) if status else ())]
        for row in rows:
            for k in _JSON_COLUMNS:
                if row.get(k):
                    try:
                        row[k] = json.loads(row[k])
                    except (TypeError, ValueError, RecursionError):
                        raise self._corrupt(row, f"its {k} is not JSON") from None
            if row["status"] == "done" and not all(
                isinstance(row[k], (int, float)) and math.isfinite(row[k]) for k in ("metric", "clean_accuracy")
            ):
                raise self._corrupt(row, "a finished cell without a finite metric")
        return rows

    def _corrupt(self, row: dict[str, Any], why: str) -> ConfigError:
        return ConfigError(
            f"{self.path}: results row {str(row.get('key'))[:80]} is corrupt ({why}); it was not written by sapabench "
            "as it stands: restore the file or choose another --out"
        )

    def trials(self, status: str = "done") -> Iterator[StoredTrial]:
        """The cells of ``status``, typed: setting, seeds, poison key and record."""
        return (_stored_trial(row) for row in self.rows(status))
