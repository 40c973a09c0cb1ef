"""A leaderboard folder with entries of two threat models, two datasets, two recipes and a
defended entry, plus ``runs.json`` and ``claims.json``: what the page tests render."""

from __future__ import annotations

import json
from pathlib import Path

from sapabench.core.atomic import write_json
from sapabench.leaderboard.records import CLAIMS_FILE, CLAIMS_FORMAT, CLAIMS_VERSION, RUNS_FILE, entries_digest
from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import seal
from tests._entries import make_entry

TARGETED = dict(threat="targeted", metric="success_rate", higher=True)


def page_entries() -> list[dict]:
    cells = [[c, 100 + v] for c in range(3) for v in range(2)]
    out = [
        make_entry("error-min", (0.70, 0.72, 0.74, 0.71, 0.73, 0.75), cells=cells, craft_s=20.0),
        make_entry("sapa-error-min", (0.50, 0.52, 0.54, 0.51, 0.53, 0.55), cells=cells, craft_s=24.0),
        make_entry("error-min", (0.60, 0.62, 0.64, 0.61, 0.63, 0.65), recipe="adam", cells=cells, craft_s=20.0),
        make_entry("sapa-error-min", (0.40, 0.42, 0.44, 0.41, 0.43, 0.45), recipe="adam", cells=cells, craft_s=24.0),
        make_entry("error-min", (0.80, 0.81, 0.82), dataset="cifar10", preset="paper", craft_s=90.0),
        make_entry("sapa-error-min", (0.85, 0.84, 0.83), dataset="cifar10", preset="paper", craft_s=99.0),
        make_entry(
            "gradient-matching",
            (0.0, 1.0, 0.0, 0.0, 1.0, 0.0),
            cells=cells,
            margin=([-1.0, 0.5, -2.0, -1.5, 0.2, -0.7], [-5.0, -4.0, -6.0, -5.5, -4.5, -6.5]),
            craft_s=30.0,
            **TARGETED,
        ),
        make_entry(
            "sapa-gradient-matching",
            (1.0, 1.0, 0.0, 1.0, 1.0, 0.0),
            cells=cells,
            margin=([1.0, 0.5, -1.0, 0.4, 0.9, -0.3], [-5.0, -4.0, -6.0, -5.5, -4.5, -6.5]),
            craft_s=41.0,
            **TARGETED,
        ),
    ]
    for e in out[4:6]:  # the ids make_entry gives do not name the dataset
        e["entry_id"] += "-cifar10"
    defended = []
    for attack, values in (
        ("sapa-error-min", (0.66, 0.68, 0.70, 0.67, 0.69, 0.71)),  # the filter helps more against SAPA
        ("error-min", (0.62, 0.64, 0.66, 0.63, 0.65, 0.67)),
    ):
        e = make_entry(attack, values, cells=cells, craft_s=24.0)
        e["defense"] = "spectral-signatures"
        e["entry_id"] += "-spectral"
        e["defense_stats"] = {"removed_mean": 150.0, "precision_mean": 0.4, "recall_mean": 0.3}
        defended.append(e)
    return [*(seal(e) for e in out), *(seal(e) for e in defended)]


def write_board(root: Path, claims: bool = True, stale: bool = False) -> Path:
    """Entries, runs.json and (``claims``) claims.json under ``root``, rendered; the page's path.
    ``stale``: claims.json records another set of entries than the page shows."""
    entries = page_entries()
    folder = root / "entries"
    folder.mkdir(parents=True, exist_ok=True)
    for e in entries:
        (folder / f"{e['entry_id']}.json").write_text(json.dumps(e))
    write_json(
        root / RUNS_FILE,
        {
            "suite": "pages",
            "runs": [
                {
                    "started_at": "2026-11-22T10:00:00Z",
                    "wall_s": 2447.0,
                    "device_s": 4630.5,
                    "device": "cpu",
                    "cells": 42,
                    "failed": 0,
                    "executor": "processes",
                    "concurrency": 2,
                    "threads_per_task": 1,
                }
            ],
        },
    )
    if claims:
        write_json(root / CLAIMS_FILE, claims_record(entries[:-1] if stale else entries))
    render(folder, root)
    return root / "leaderboard.html"


def claims_record(entries: list[dict]) -> dict:
    return {
        "format": CLAIMS_FORMAT,
        "version": CLAIMS_VERSION,
        "alpha": 0.05,
        "entries_sha256": entries_digest(entries),
        "test": "exact one-sided sign-flip permutation test",
        "correction": "two-sided exact p, adjusted by Holm over the pre-registered primary claims",
        "plan": {
            "primary": ["T4-sgd-error-min", "T1-gradient-matching"],
            "alpha": 0.05,
            "correction": "holm-shaffer",
            "looks": [3],
        },
        "verdicts": [
            {
                "id": "T4-sgd-error-min",
                "kind": "claim",
                "table": "Table 4",
                "verdict": "held",
                "paper": "21.7 -> 10.2",
                "summary": "digits/convnet/sgd/scratch: clean_accuracy 72.0 -> 52.0 %; paired diff +20.0 points over 3 craft seeds, "
                "p 0.1250",
                "p_value": 0.0312,
                "p_floor": 0.0312,
                "p_adjusted": 0.0312,
                "power": 0.81,
                "interval": [0.05, 0.31],
                "gain": 0.2,
                "delta": 0.046,
                "p_below": 0.875,
                "p_below_adjusted": 0.875,
                "design_power": {"held_at_delta": 0.81, "below_at_zero": 0.9, "delta": 0.046},
                "poisons": 3,
                "victims_per_poison": 1,
                "poisons_needed": None,
                "family": "primary",
                "decided_on": "metric",
                "label": "held",
                "paper_dataset": "cifar10",
                "tested_on": "digits",
            },
            {
                "id": "T1-gradient-matching",
                "kind": "claim",
                "table": "Table 1",
                "verdict": "untested",
                "paper": "73.2 -> 80.6",
                "summary": "paper 73.2 -> 80.6; no matching black-box linear results",
                "p_value": None,
                "p_floor": None,
                "p_adjusted": None,
                "power": None,
                "family": "primary",
                "decided_on": "metric",
                "label": "untested",
                "paper_dataset": "cifar10",
                "tested_on": None,
            },
        ],
    }
