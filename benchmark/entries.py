"""Leaderboard entries from a run's results, and the trials an entry came from.

A run folder holds ``results.sqlite`` and ``leaderboard/``: ``leaderboard/entries/*.json`` (one
sealed entry per :class:`~sapabench.benchmark.suite.Setting`) and the renderings of those files. This
module is the only one that maps results to entries (:func:`build_entries`) and entries back
to cells (:func:`entry_cells`); ``leaderboard`` validates and renders entry files.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sapabench.attacks import create_attack
from sapabench.benchmark.store import CLAIMS_PLAN, VICTIM_SEEDING, ResultsStore, StoredTrial
from sapabench.benchmark.suite import Cell, Setting
from sapabench.benchmark.trial import DEFENSE_STATS, TrialRecord
from sapabench.core.atomic import write_json
from sapabench.core.names import CLEAN, NO_POISON, base_name, file_name, is_sapa
from sapabench.core.owned import own_folder, replace_owned
from sapabench.core.runtime import UNKNOWN_ISA
from sapabench.core.stats import mean_se
from sapabench.core.threats import ADVERSARIAL_MARGIN, CLEAN_PREFIX, higher_is_stronger
from sapabench.leaderboard.records import RUNS_FILE
from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import PER_DEVICE, SCHEMA_VERSION, measure_summary, seal

LEADERBOARD = "leaderboard"
ENTRIES = "entries"


def board_dir(results: str | Path) -> Path:
    """Where a run folder's leaderboard lives."""
    return Path(results) / LEADERBOARD


def entries_dir(results: str | Path) -> Path:
    """Where a run folder's entry files live."""
    return board_dir(results) / ENTRIES


def attack_config(s: Setting) -> dict[str, Any]:
    """The attack's resolved config (preset, options and every default), as its poisons record
    it; empty for clean data."""
    if s.attack == CLEAN:
        return {}
    attack = create_attack(s.attack, dataset=s.dataset, preset=s.preset, **dict(s.options))
    return json.loads(json.dumps(attack.recorded_config()))  # as the poison's JSON holds it


def _setting_fields(s: Setting, threat: str, eps: float, budget: float) -> dict[str, Any]:
    return {
        "suite": s.suite,
        "dataset": s.dataset,
        "arch": s.arch,
        "recipe": s.recipe,
        "surrogate": s.surrogate_label,
        "threat": threat,
        "eps": float(eps),
        "budget": float(budget),
        "victim": dict(s.victim),
        "preset": s.preset or NO_POISON,
        "options": dict(s.options),
        "precision": s.numerics.precision,
        "memory_format": s.numerics.memory_format,
        "protocol": s.protocol,
        "pretrained": s.pretrained,
        "craft_precision": s.craft_numerics.precision,
        "craft_memory_format": s.craft_numerics.memory_format,
        "attack_config": attack_config(s),
    }


def entry_setting(entry: dict[str, Any]) -> Setting:
    """The setting an entry was built from (the inverse of :func:`_setting_fields`)."""
    return Setting.read(entry["attack"], entry["defense"], entry["setting"])


def entry_cells(entry: dict[str, Any]) -> list[Cell]:
    """The cells the entry's trial values came from, aligned with ``metric.values``."""
    setting = entry_setting(entry)
    return [setting.cell(craft_seed, trial_seed) for craft_seed, trial_seed in entry["provenance"]["cell_seeds"]]


def _poison_hashes(trials: list[StoredTrial], where: str) -> tuple[list[int], list[str]]:
    """Craft seeds and, aligned with them, the sha256 of the poison each was crafted into."""
    by_seed: dict[int, set[str]] = defaultdict(set)
    for t in trials:
        if t.craft_seed is not None:
            by_seed[t.craft_seed].add(t.record.poison_sha256 or "")
    seeds = sorted(by_seed)
    for seed in seeds:
        if len(by_seed[seed]) != 1 or "" in by_seed[seed]:
            raise ValueError(f"{where}: craft seed {seed} has no single poison hash ({sorted(by_seed[seed])})")
    return seeds, [next(iter(by_seed[s])) for s in seeds]


def _measures(records: list[TrialRecord]) -> dict[str, Any]:
    """Continuous measures beside the metric (targeted: the adversarial margin), with the paired
    clean reference of every trial, when every trial recorded them."""
    out = {}
    name = ADVERSARIAL_MARGIN
    if all(name in r.diagnostics and CLEAN_PREFIX + name in r.diagnostics for r in records):
        values = [float(r.diagnostics[name]) for r in records]
        clean = [float(r.diagnostics[CLEAN_PREFIX + name]) for r in records]
        out[name] = measure_summary(values, clean)
    return out


def _device_of(record: TrialRecord) -> str:
    return record.device or (record.provenance or {}).get("device") or "unknown"


def _step_of(record: TrialRecord) -> str:
    """How the record's training steps ran (rows from before steps were recorded: eager)."""
    return (record.provenance or {}).get("train_step") or "eager"


def _timings(trials: list[StoredTrial], craft_devices: list[str]) -> dict[str, Any]:
    """Crafting and training seconds: totals over the entry's poisons and victims, and the
    per-victim averages per device (never averaged across devices: with more than one device,
    the top-level averages are null and ``devices`` holds them)."""
    records = [t.record for t in trials]
    craft = sum({t.poison_key: t.record.craft_s or 0.0 for t in trials if t.poison_key}.values())
    surrogates = sum({t.poison_key: t.record.surrogates_s or 0.0 for t in trials if t.poison_key}.values())
    by_device: dict[str, list[TrialRecord]] = defaultdict(list)
    for r in records:
        by_device[_device_of(r)].append(r)
    devices = {
        name: {
            "trials": len(rs),
            "hosts": sorted({r.host for r in rs if r.host}),
            "train_steps": dict(sorted(Counter(_step_of(r) for r in rs).items())),
            "train_s_mean": sum(r.train_s for r in rs) / len(rs),  # type: ignore[misc]
            "eval_s_mean": sum(r.eval_s for r in rs) / len(rs),  # type: ignore[misc]
            "images_per_s": sum(r.images_per_s for r in rs) / len(rs),  # type: ignore[misc]
            "peak_memory_mb": max(r.peak_memory_mb for r in rs),  # type: ignore[type-var]
        }
        for name, rs in sorted(by_device.items())
    }
    one = next(iter(devices.values())) if len(devices) == 1 else None
    return {
        "craft_s": float(craft),
        "surrogates_s": float(surrogates),
        **{k: (None if one is None else one[k]) for k in PER_DEVICE},
        "total_s": float(craft + sum(r.train_s for r in records) + sum(r.eval_s for r in records)),  # type: ignore[misc]
        "devices": devices,
        "craft_devices": craft_devices,
    }


def _entry(setting: Setting, trials: list[StoredTrial], craft_devices: list[str]) -> dict[str, Any]:
    trials = sorted(trials, key=lambda t: (t.craft_seed if t.craft_seed is not None else -1, t.trial_seed))
    records = [t.record for t in trials]
    first = records[0]
    values = [float(r.metric) for r in records]  # type: ignore[arg-type]
    mean, se = mean_se(values)
    clean_mean, clean_se = mean_se([float(r.clean_accuracy) for r in records])  # type: ignore[arg-type]
    prov = first.provenance or {}
    craft_seeds, hashes = _poison_hashes(trials, f"{setting.attack} {setting.arch} {setting.recipe}")
    defense_stats = {}
    for stat, field in DEFENSE_STATS.items():
        vals = [getattr(r, field) for r in records if getattr(r, field) is not None]
        if vals:
            defense_stats[f"{stat}_mean"] = sum(vals) / len(vals)
    threat = first.threat or ""
    return seal(
        {
            "schema_version": SCHEMA_VERSION,
            "entry_id": setting.entry_id,
            "attack": setting.attack,
            "base_attack": base_name(setting.attack),
            "sapa": is_sapa(setting.attack),
            "defense": setting.defense,
            "setting": _setting_fields(setting, threat, first.eps or 0.0, first.budget or 0.0),
            "metric": {
                "name": first.metric_name,
                "higher_is_stronger": higher_is_stronger(threat),
                "mean": mean,
                "se": se,
                "trials": len(values),
                "values": values,
            },
            "measures": _measures(records),
            "clean_accuracy": {"mean": clean_mean, "se": clean_se},
            "defense_stats": defense_stats,
            "timings": _timings(trials, craft_devices),
            "provenance": {
                "sapabench_version": prov["sapabench_version"],
                "git_commit": prov["git_commit"],
                "torch": prov["torch"],
                "timm": prov["timm"],
                "device": " + ".join(sorted({_device_of(r) for r in records})),
                "isa": prov.get("isa", UNKNOWN_ISA),
                "deterministic": all((r.provenance or {}).get("deterministic", False) for r in records),
                "craft_seeds": craft_seeds,
                "trial_seeds": sorted({t.trial_seed for t in trials}),
                "poison_sha256": hashes,
                "cell_seeds": [[t.craft_seed, t.trial_seed] for t in trials],
            },
        }
    )


def build_entries(store: ResultsStore) -> list[dict[str, Any]]:
    """One sealed entry per setting over its finished cells."""
    # Keyed by the entry id, not the Setting: option values may be tables (unhashable).
    groups: dict[str, list[StoredTrial]] = defaultdict(list)
    for trial in store.trials():
        groups[trial.setting.entry_id].append(trial)
    poison_devices: dict[str, str] = {}
    for trials in groups.values():
        for t in trials:
            if t.poison_key and t.poison_key not in poison_devices:
                record = store.poison(t.poison_key)
                poison_devices[t.poison_key] = (record.device if record else None) or "unknown"
    return [
        _entry(trials[0].setting, trials, sorted({poison_devices[t.poison_key] for t in trials if t.poison_key}))
        for trials in groups.values()
    ]


def write_entries(store: ResultsStore, folder: Path) -> tuple[list[Path], list[Path]]:
    """Write every entry of ``store`` into ``folder``, removing the entries it wrote earlier and
    no longer produces (:mod:`sapabench.core.owned`: never a file it did not write); returns the entries
    written and the files in ``folder`` it left alone."""
    own_folder(folder.parent, "leaderboard folder")
    own_folder(folder, "entries folder")
    wanted = []
    for e in build_entries(store):
        s = e["setting"]
        path = folder / file_name(e["attack"], s["arch"], s["recipe"], e["defense"], e["entry_id"], suffix=".json")
        write_json(path, e)
        wanted.append(path)
    foreign = replace_owned(folder, wanted)
    return sorted(wanted), foreign


def write_leaderboard(results: str | Path, log: Callable[[str], None] | None = None) -> Path:
    """Write entries from ``results/results.sqlite`` and render them into ``results/leaderboard``,
    with ``runs.json``: every run into the folder (executor, concurrency, wall and device seconds).
    Files in the entries folder that the run did not write are kept and rendered with its own;
    ``log`` is told about them."""
    store = ResultsStore(results)
    _, foreign = write_entries(store, entries_dir(results))
    if foreign and log is not None:
        names = ", ".join(p.name for p in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        log(
            f"note: {entries_dir(results)} holds {len(foreign)} file(s) this run did not write ({names}); they are kept "
            "and rendered beside the run's entries: move them out if they do not belong"
        )
    runs: dict[str, Any] = {"suite": store.get_meta("suite"), "runs": store.runs()}
    if store.get_meta("suite") is not None:
        runs["victim_seeds"] = store.get_meta(VICTIM_SEEDING) or "shared"
    plan = store.get_meta(CLAIMS_PLAN)
    if plan is not None:
        runs["claims"] = json.loads(plan)
    write_json(board_dir(results) / RUNS_FILE, runs)
    render(entries_dir(results), board_dir(results))  # after runs.json: the page's header reads it
    return board_dir(results)
