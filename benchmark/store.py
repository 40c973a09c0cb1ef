"""The results database: one SQLite file per output folder, one row per cell.

Every finished cell (or failed cell, with its error) is committed at once, so a run killed
mid-way loses at most the cell in flight, and re-running the same command skips finished cells.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from benchmark.errors import ConfigError

DB_FILE = "results.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS poisons (
    key TEXT PRIMARY KEY, attack TEXT NOT NULL, craft_seed INTEGER NOT NULL, status TEXT NOT NULL,
    path TEXT, sha256 TEXT, craft_seconds REAL, threat TEXT, eps REAL, budget REAL, error TEXT,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, suite TEXT NOT NULL, attack TEXT NOT NULL, dataset TEXT NOT NULL,
    surrogate TEXT NOT NULL, arch TEXT NOT NULL, recipe TEXT NOT NULL, defense TEXT NOT NULL,
    craft_seed INTEGER, trial_seed INTEGER NOT NULL, status TEXT NOT NULL,
    threat TEXT, metric_name TEXT, metric REAL, clean_accuracy REAL, eps REAL, budget REAL,
    craft_seconds REAL, train_seconds REAL, eval_seconds REAL, images_per_s REAL, peak_memory_mb REAL,
    poison_key TEXT, poison_sha256 TEXT, victim TEXT, provenance TEXT, error TEXT,
    defense_removed INTEGER, defense_precision REAL, defense_recall REAL, preset TEXT, options TEXT,
    finished_at TEXT NOT NULL
);
"""
CELL_COLUMNS = (
    "key", "suite", "attack", "dataset", "surrogate", "arch", "recipe", "defense", "craft_seed", "trial_seed",
    "status", "threat", "metric_name", "metric", "clean_accuracy", "eps", "budget", "craft_seconds",
    "train_seconds", "eval_seconds", "images_per_s", "peak_memory_mb", "poison_key", "poison_sha256", "victim",
    "provenance", "error", "defense_removed", "defense_precision", "defense_recall", "preset", "options",
)  # fmt: skip


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class PoisonRecord:
    key: str
    status: str
    path: str | None
    sha256: str | None
    craft_seconds: float | None
    error: str | None


class ResultsStore:
    """Thin wrapper over the SQLite file; each write is its own committed transaction."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_FILE
        try:
            with closing(self._connect()) as con, con:
                con.executescript(SCHEMA)
                have = {r["name"] for r in con.execute("PRAGMA table_info(cells)")}
                for column in ("preset", "options"):  # added after the first release; older rows hold NULL
                    if column not in have:
                        con.execute(f"ALTER TABLE cells ADD COLUMN {column} TEXT")
        except sqlite3.DatabaseError as err:
            raise ConfigError(f"{self.path} is not a sapabench results database ({err}); choose another --out") from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        return con

    # meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    def set_meta(self, key: str, value: str) -> None:
        with closing(self._connect()) as con, con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # poisons ------------------------------------------------------------------------------
    def poison(self, key: str) -> PoisonRecord | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM poisons WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return PoisonRecord(row["key"], row["status"], row["path"], row["sha256"], row["craft_seconds"], row["error"])

    def put_poison(self, key: str, attack: str, craft_seed: int, status: str, **fields: Any) -> None:
        cols = ["key", "attack", "craft_seed", "status", *fields, "finished_at"]
        values = [key, attack, craft_seed, status, *fields.values(), now()]
        with closing(self._connect()) as con, con:
            con.execute(
                f"INSERT OR REPLACE INTO poisons ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values
            )

    # cells --------------------------------------------------------------------------------
    def done_keys(self) -> set[str]:
        with closing(self._connect()) as con:
            return {r["key"] for r in con.execute("SELECT key FROM cells WHERE status = 'done'")}

    def put_cell(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(CELL_COLUMNS)
        if unknown:
            raise ValueError(f"unknown cell columns {sorted(unknown)}")
        values = {k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v) for k, v in row.items()}
        cols = [*values, "finished_at"]
        with closing(self._connect()) as con, con:
            con.execute(
                f"INSERT OR REPLACE INTO cells ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [*values.values(), now()],
            )

    def fill_settings(self, settings: dict[str, tuple[str, dict[str, Any]]]) -> int:
        """Give rows written before the ``preset``/``options`` columns existed their values
        (cell key -> (preset, options), from the suite that made them); returns how many."""
        with closing(self._connect()) as con, con:
            missing = [r["key"] for r in con.execute("SELECT key FROM cells WHERE poison_key IS NOT NULL AND preset IS NULL")]
            todo = [(settings[k][0], json.dumps(settings[k][1], sort_keys=True), k) for k in missing if k in settings]
            con.executemany("UPDATE cells SET preset = ?, options = ? WHERE key = ?", todo)
        return len(todo)

    def cells(self, status: str | None = None) -> Iterator[dict[str, Any]]:
        query = "SELECT * FROM cells" + (" WHERE status = ?" if status else "") + " ORDER BY key"
        with closing(self._connect()) as con:
            rows = con.execute(query, (status,) if status else ()).fetchall()
        for r in rows:
            d = dict(r)
            for k in ("victim", "provenance", "options"):
                if d.get(k):
                    d[k] = json.loads(d[k])
            yield d
