"""The two records a leaderboard folder keeps beside its entry files, read for the page's header.

- ``runs.json``: every ``sapabench run`` into the folder (when it started, executor and
  concurrency, wall and device seconds, cells and failures), written by ``benchmark.entries``,
  and the claims the suite pre-registered (``claims``: primary claim ids and alpha), if any.
- ``claims.json``: the verdicts of the last ``sapabench claims`` on the folder (each claim's
  verdict, family and correction, the paper's numbers, the measured statistics as one line of
  text, the raw and adjusted p-value, its floor and the design's power), with the digest of the entries it was checked against (:func:`entries_digest`), so a
  page rendered from other entries says the verdicts are stale instead of showing them as
  current.

Both are JSON and validated on load: a field missing or of the wrong type, or a verdict outside
held/failed/inconclusive/untested, is refused with the file, the field and the command that
rewrites it.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from sapabench.core.errors import ConfigError
from sapabench.core.files import read_json
from sapabench.leaderboard.schema import EntryError

RUNS_FILE = "runs.json"
CLAIMS_FILE = "claims.json"
CLAIMS_FORMAT = "sapabench-claims"
CLAIMS_VERSION = 5  # 2: two-sided p, correction, adjusted p, proxy labels; 3: families, plan, power; 4: datasets;
# 5: below the paper (delta, interval, p_below), design power before the data instead of power for the measured effect
VERDICT_TEXT = {
    "held": "held",
    "held+below": "held, below the paper",
    "below": "below the paper",
    "failed": "failed",
    "inconclusive": "inconclusive",
    "untested": "untested",
}
"""A claim's verdicts, in the order views count them, and how every view words them."""
VERDICTS = tuple(VERDICT_TEXT)
NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))

# field -> accepted types, for one run of runs.json and one verdict of claims.json
RUN_SPEC: dict[str, tuple[type, ...]] = {
    "started_at": (str,),
    "wall_s": NUMBER,
    "device_s": NUMBER,
    "device": (str,),
    "cells": (int,),
    "failed": (int,),
    "executor": (str,),
}
# optional run fields (runs recorded before they existed lack them): field -> accepted types
RUN_OPTIONAL: dict[str, tuple[type, ...]] = {"concurrency": (int,), "threads_per_task": (int,)}
VERDICT_SPEC: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "kind": (str,),
    "table": (str,),
    "verdict": (str,),
    "paper": (str,),
    "summary": (str,),
    "p_value": OPTIONAL_NUMBER,
    "p_floor": OPTIONAL_NUMBER,
    "p_adjusted": OPTIONAL_NUMBER,
    "power": OPTIONAL_NUMBER,
    "decided_on": (str,),
    "label": (str,),
    "family": (str,),
    "paper_dataset": (str, type(None)),
    "tested_on": (str, type(None)),
}
FAMILIES = ("primary", "secondary", "cost")
# optional verdict fields (claims rows carry them; cost rows do not): field -> accepted types
VERDICT_OPTIONAL: dict[str, tuple[type, ...]] = {
    "interval": (list, type(None)),
    "gain": OPTIONAL_NUMBER,
    "delta": OPTIONAL_NUMBER,
    "p_below": OPTIONAL_NUMBER,
    "p_below_adjusted": OPTIONAL_NUMBER,
    "below_bound": OPTIONAL_NUMBER,
    "design_power": (dict, type(None)),
    "poisons": (int, type(None)),
    "victims_per_poison": OPTIONAL_NUMBER,
    "poisons_needed": (int, type(None)),
}


def twin_dataset(verdict: dict[str, Any]) -> str | None:
    """The dataset a recorded verdict was tested on where it is not its paper row's (the embedded
    twins on digits of CIFAR-10 rows), else None."""
    tested, paper = verdict["tested_on"], verdict["paper_dataset"]
    return tested if tested is not None and paper is not None and tested != paper else None


def entries_digest(entries: list[dict[str, Any]]) -> str:
    """One sha256 for a set of entries (of their own content hashes, order-free)."""
    return hashlib.sha256("\n".join(sorted(e["content_sha256"] for e in entries)).encode()).hexdigest()


def _read(path: str | Path, fix: str) -> Any:
    """The JSON document at ``path``, or None when there is no such file."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return read_json(path)
    except ConfigError as err:
        raise EntryError(f"{err}; {fix}") from None


def _check(
    obj: Any,
    spec: dict[str, tuple[type, ...]],
    where: str,
    fix: str,
    optional: dict[str, tuple[type, ...]] | None = None,
) -> None:
    if not isinstance(obj, dict):
        raise EntryError(f"{where} must be a JSON object; {fix}")
    for key, types in {**spec, **(optional or {})}.items():
        if key not in obj:
            if key in spec:
                raise EntryError(f"{where}: missing field {key!r}; {fix}")
            continue
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise EntryError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}; {fix}")
        if isinstance(value, float) and not math.isfinite(value):
            raise EntryError(f"{where}: field {key!r} must be finite; {fix}")


PLAN_SHAPE = "an object with a non-empty list 'primary' of claim ids and a number 'alpha' in (0, 1)"


def _is_plan(obj: Any) -> bool:
    """Whether ``obj`` is a pre-registered plan as runs.json and claims.json record it."""
    if not isinstance(obj, dict) or not isinstance(obj.get("primary"), list) or not obj["primary"]:
        return False
    alpha = obj.get("alpha")
    return (
        all(isinstance(c, str) for c in obj["primary"])
        and isinstance(alpha, NUMBER)
        and not isinstance(alpha, bool)
        and 0 < alpha < 1
    )


def load_runs(path: str | Path) -> dict[str, Any] | None:
    """``runs.json`` validated, or None when the folder has none (entries rendered on their own)."""
    fix = "it is written by `sapabench run`; re-run the suite's command (finished cells are kept) to rewrite it"
    data = _read(path, fix)
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise EntryError(f"{path}: must be an object with a list 'runs'; {fix}")
    if "claims" in data and not _is_plan(data["claims"]):
        raise EntryError(f"{path}: 'claims' must be {PLAN_SHAPE}; {fix}")
    for i, run in enumerate(data["runs"]):
        _check(run, RUN_SPEC, f"{path}: runs[{i}]", fix, RUN_OPTIONAL)
        if min(run["wall_s"], run["device_s"], run["cells"], run["failed"]) < 0 or run["failed"] > run["cells"]:
            raise EntryError(f"{path}: runs[{i}]: seconds and counts must be >= 0, failed <= cells; {fix}")
    return data


def load_claims_record(path: str | Path) -> dict[str, Any] | None:
    """``claims.json`` validated, or None when claims were not checked on this folder."""
    fix = "re-run `sapabench claims --results RESULTS` to rewrite it, or delete it"
    data = _read(path, fix)
    if data is None:
        return None
    head = {
        "format": (str,),
        "version": (int,),
        "alpha": NUMBER,
        "entries_sha256": (str,),
        "test": (str,),
        "correction": (str,),
    }
    _check(data, {**head, "verdicts": (list,)}, str(path), fix)
    if data["format"] != CLAIMS_FORMAT or data["version"] != CLAIMS_VERSION:
        raise EntryError(
            f"{path}: not a {CLAIMS_FORMAT} v{CLAIMS_VERSION} record (format {data['format']!r} v{data['version']}); {fix}"
        )
    if not 0 < data["alpha"] < 1:
        raise EntryError(f"{path}: alpha must lie in (0, 1); {fix}")
    if data.get("plan") is not None and not _is_plan(data["plan"]):
        raise EntryError(f"{path}: plan must be null or {PLAN_SHAPE}; {fix}")
    for i, v in enumerate(data["verdicts"]):
        where = f"{path}: verdicts[{i}]"
        _check(v, VERDICT_SPEC, where, fix, VERDICT_OPTIONAL)
        if v["verdict"] not in VERDICTS:
            raise EntryError(f"{where}: verdict {v['verdict']!r} is not one of {', '.join(VERDICTS)}; {fix}")
        if v["family"] not in FAMILIES:
            raise EntryError(f"{where}: family {v['family']!r} is not one of {', '.join(FAMILIES)}; {fix}")
        for key in ("p_value", "p_floor", "p_adjusted", "power", "p_below", "p_below_adjusted"):
            if v.get(key) is not None and not 0 <= v[key] <= 1:
                raise EntryError(f"{where}: {key} must lie in [0, 1]; {fix}")
        if v["verdict"] in ("held", "held+below", "failed") and v["p_value"] is None:
            raise EntryError(f"{where}: a {v['verdict']} verdict needs its p_value; {fix}")
    return data
