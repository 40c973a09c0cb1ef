"""Leaderboard entries from the results database, and the rendered leaderboard."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from attacks.metrics import METRICS
from benchmark.atomic import write_json
from benchmark.errors import ConfigError
from benchmark.store import ResultsStore
from leaderboard.schema import NO_POISON, SCHEMA_VERSION, seal
from leaderboard.stats import mean_se

ENTRIES = "entries"
LEADERBOARD = "leaderboard"


def _group_key(row: dict[str, Any]) -> tuple:
    return (row["suite"], row["attack"], row["defense"], row["dataset"], row["arch"], row["recipe"], row["surrogate"],
            json.dumps(row["victim"], sort_keys=True), row["preset"] or NO_POISON,
            json.dumps(row["options"] or {}, sort_keys=True))  # fmt: skip


def _poison_hashes(rows: list[dict[str, Any]], where: str) -> tuple[list[int], list[str]]:
    """Craft seeds and, aligned with them, the sha256 of the poison each was crafted into."""
    by_seed: dict[int, set[str]] = defaultdict(set)
    for r in rows:
        if r["craft_seed"] is not None:
            if r["preset"] is None:
                raise ConfigError(f"{where}: results written by an older sapabench lack the attack preset; re-run the "
                                  "same sapabench run command once (it fills them in) or use a new --out")
            by_seed[r["craft_seed"]].add(r["poison_sha256"] or "")
    seeds = sorted(by_seed)
    for seed in seeds:
        if len(by_seed[seed]) != 1 or "" in by_seed[seed]:
            raise ValueError(f"{where}: craft seed {seed} has no single poison hash ({sorted(by_seed[seed])})")
    return seeds, [next(iter(by_seed[s])) for s in seeds]


def build_entries(store: ResultsStore) -> list[dict[str, Any]]:
    """One sealed entry per (attack, defense, setting) over its finished cells."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in store.cells(status="done"):
        groups[_group_key(row)].append(row)
    entries = []
    for key, rows in sorted(groups.items()):
        rows.sort(key=lambda r: (r["craft_seed"] if r["craft_seed"] is not None else -1, r["trial_seed"]))
        first = rows[0]
        attack = first["attack"]
        threat = first["threat"]
        metric_name = first["metric_name"]
        higher = METRICS[threat][1] if threat in METRICS else False
        values = [float(r["metric"]) for r in rows]
        mean, se = mean_se(values)
        cmean, cse = mean_se([float(r["clean_accuracy"]) for r in rows])
        craft_by_poison = {r["poison_key"]: r["craft_seconds"] for r in rows if r["poison_key"]}
        craft = sum(craft_by_poison.values())
        train = [r["train_seconds"] for r in rows]
        evals = [r["eval_seconds"] for r in rows]
        prov = first["provenance"]
        craft_seeds, hashes = _poison_hashes(rows, f"{attack} {first['arch']} {first['recipe']}")
        defense_stats = {}
        for col, stat in (("defense_removed", "removed_mean"), ("defense_precision", "precision_mean"),
                          ("defense_recall", "recall_mean")):  # fmt: skip
            vals = [r[col] for r in rows if r.get(col) is not None]
            if vals:
                defense_stats[stat] = sum(vals) / len(vals)
        entry_id = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
        entries.append(seal({
            "schema_version": SCHEMA_VERSION,
            "entry_id": entry_id,
            "attack": attack,
            "base_attack": attack.removeprefix("sapa-"),
            "sapa": attack.startswith("sapa-"),
            "defense": first["defense"],
            "setting": {
                "suite": first["suite"], "dataset": first["dataset"], "arch": first["arch"], "recipe": first["recipe"],
                "surrogate": first["surrogate"], "threat": threat, "eps": float(first["eps"]),
                "budget": float(first["budget"]), "victim": first["victim"], "preset": first["preset"] or NO_POISON,
                "options": first["options"] or {},
            },
            "metric": {"name": metric_name, "higher_is_stronger": higher, "mean": mean, "se": se,
                       "trials": len(values), "values": values},
            "clean_accuracy": {"mean": cmean, "se": cse},
            "defense_stats": defense_stats,
            "timings": {
                "craft_seconds": float(craft), "train_seconds_mean": sum(train) / len(train),
                "eval_seconds_mean": sum(evals) / len(evals), "total_seconds": float(craft + sum(train) + sum(evals)),
                "images_per_s": sum(r["images_per_s"] for r in rows) / len(rows),
                "peak_memory_mb": max(r["peak_memory_mb"] for r in rows),
            },
            "provenance": {
                "sapabench_version": prov["sapabench_version"], "git_commit": prov["git_commit"],
                "torch": prov["torch"], "timm": prov["timm"], "device": prov["device"],
                "craft_seeds": craft_seeds,
                "trial_seeds": sorted({r["trial_seed"] for r in rows}),
                "poison_sha256": hashes,
                "cell_seeds": [[r["craft_seed"], r["trial_seed"]] for r in rows],
            },
        }))  # fmt: skip
    return entries


def write_entries(store: ResultsStore, folder: Path) -> list[Path]:
    entries = build_entries(store)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for e in entries:
        path = folder / f"{e['attack']}--{e['setting']['arch']}--{e['setting']['recipe']}--{e['defense']}--{e['entry_id']}.json"
        write_json(path, e)
        wanted.add(path)
    for stale in folder.glob("*.json"):
        if stale not in wanted:
            stale.unlink()
    return sorted(wanted)


def write_leaderboard(results: str | Path) -> Path:
    """Write entries from ``results/results.sqlite`` and render them into ``results/leaderboard``."""
    from leaderboard.render import render

    results = Path(results)
    board = results / LEADERBOARD
    write_entries(ResultsStore(results), board / ENTRIES)
    render(board / ENTRIES, board)
    return board
