"""The leaderboard entry: one versioned JSON document per result, validated on load.

An entry holds the attack (and defense), the setting (with the attack preset and options, so the
poison can be re-crafted), the metric over its trials (mean, standard error, the trial values
themselves), clean accuracy, timings and provenance (the craft and trial seed of every trial
value, the sha256 of the poison crafted with each craft seed), plus a sha256 of its own content.
``sapabench verify`` re-runs a sample of the trials from exactly these fields. Loading refuses
an entry whose fields are missing or mistyped, whose numbers are out of range or inconsistent
with its trial values, or whose hash does not match.

Versions: 10 records the numerics the poisons were crafted in (``setting.craft_precision``,
``setting.craft_memory_format``; read as plain fp32 from older entries, the only crafting
numerics there was); 9 records how each device's training steps ran (``timings.devices.*.train_steps``:
trials per step mode, ``eager`` or ``graph`` (a captured CUDA graph); read as all ``eager`` from
older entries, the only mode there was); 8 records timings per device (``timings.devices``: trials, hosts and per-victim
averages of each device; the top-level averages are null when more than one device took part,
so timings of different machines are never averaged) and the devices the poisons were crafted
on (``timings.craft_devices``; read as one device and no craft devices from older entries); 7 records what the poisons' clean surrogates took to train (``timings.surrogates_s``,
every ensemble member; ``craft_s`` excludes it; read as 0 in older entries, which did not record
it); 6 records the resolved attack configuration and the deterministic mode; 5 records the victim protocol (``setting.protocol``, ``setting.pretrained``) and
continuous measures beside the metric with their paired clean references (``measures``: the
adversarial margin of targeted attacks); 4 records the victims' numerics (``setting.precision``, ``setting.memory_format``)
and the instruction set of the kernels (``provenance.isa``); 3 named seconds ``*_s``
(``timings.craft_s``, ``train_s_mean``, ``eval_s_mean``, ``total_s``). Entries of versions 2
to 4 are still read: their own content hash is checked, then they are upgraded in memory
(:func:`upgrade`; their victims were trained from scratch, and before version 4 in plain fp32
with the instruction set unrecorded).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from sapabench.core.errors import ConfigError
from sapabench.core.files import read_json
from sapabench.core.names import MEMORY_FORMATS, NO_POISON, PRECISIONS, PRESETS, SCRATCH, STEPS, is_sapa
from sapabench.core.numerics import FP32, Numerics
from sapabench.core.runtime import MANY_THREADS, UNKNOWN_ISA, cpu_threads
from sapabench.core.stats import mean_se
from sapabench.core.threats import ADVERSARIAL_MARGIN, NO_THREAT, THREATS
from sapabench.victims.protocols import NO_PRETRAINED, PROTOCOLS
from sapabench.victims.recipes import RECIPES

SCHEMA_VERSION = 10
READABLE_VERSIONS = (2, 3, 4, 5, 6, 7, 8, 9, SCHEMA_VERSION)
PER_DEVICE = ("train_s_mean", "eval_s_mean", "images_per_s", "peak_memory_mb")
DEVICE_FIELDS = ("trials", "hosts", "train_steps", *PER_DEVICE)
OPTIONAL_FLOAT = (float, type(None))  # a spec type: a number, or null
MEASURES = (ADVERSARIAL_MARGIN,)
MEASURE_FIELDS = ("values", "clean_values", "mean", "se", "clean_mean", "clean_se", "shift_mean", "shift_se")
# version 2 -> 3: the timings' seconds fields renamed
_V2_TIMINGS = {
    "craft_seconds": "craft_s",
    "train_seconds_mean": "train_s_mean",
    "eval_seconds_mean": "eval_s_mean",
    "total_seconds": "total_s",
}

# field -> type (a dict is a nested spec)
SPEC: dict[str, Any] = {
    "schema_version": int,
    "entry_id": str,
    "attack": str,
    "base_attack": str,
    "sapa": bool,
    "defense": str,
    "setting": {
        "suite": str,
        "dataset": str,
        "arch": str,
        "recipe": str,
        "surrogate": str,
        "threat": str,
        "eps": float,
        "budget": float,
        "victim": dict,
        "preset": str,
        "options": dict,
        "precision": str,
        "memory_format": str,
        "protocol": str,
        "pretrained": str,
        "craft_precision": str,
        "craft_memory_format": str,
        "attack_config": dict,
    },
    "metric": {"name": str, "higher_is_stronger": bool, "mean": float, "se": float, "trials": int, "values": list},
    "measures": dict,
    "clean_accuracy": {"mean": float, "se": float},
    "defense_stats": dict,
    "timings": {
        "craft_s": float,
        "surrogates_s": float,
        "train_s_mean": OPTIONAL_FLOAT,
        "eval_s_mean": OPTIONAL_FLOAT,
        "total_s": float,
        "images_per_s": OPTIONAL_FLOAT,
        "peak_memory_mb": OPTIONAL_FLOAT,
        "devices": dict,
        "craft_devices": list,
    },
    "provenance": {
        "sapabench_version": str,
        "git_commit": str,
        "torch": str,
        "timm": str,
        "device": str,
        "isa": str,
        "deterministic": bool,
        "craft_seeds": list,
        "trial_seeds": list,
        "poison_sha256": list,
        "cell_seeds": list,
    },
    "content_sha256": str,
}
ENTRY_THREATS = (*THREATS, NO_THREAT)


def json_schema() -> dict[str, Any]:
    """The entry format as a JSON Schema (draft 2020-12) document, for tools outside sapabench.

    :func:`validate` checks more than the schema can say (mean and SE recomputed from the
    values, the content hash).
    """

    def convert(spec: dict[str, Any]) -> dict[str, Any]:
        names = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}
        names[OPTIONAL_FLOAT] = ["number", "null"]  # type: ignore[index]
        props = {k: convert(v) if isinstance(v, dict) else {"type": names[v]} for k, v in spec.items()}
        return {"type": "object", "properties": props, "required": list(spec), "additionalProperties": False}

    out = convert(SPEC)
    out["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    out["properties"]["setting"]["properties"]["threat"] = {"enum": list(ENTRY_THREATS)}
    out["properties"]["setting"]["properties"]["precision"] = {"enum": list(PRECISIONS)}
    out["properties"]["setting"]["properties"]["memory_format"] = {"enum": list(MEMORY_FORMATS)}
    out["properties"]["setting"]["properties"]["craft_precision"] = {"enum": list(PRECISIONS)}
    out["properties"]["setting"]["properties"]["craft_memory_format"] = {"enum": list(MEMORY_FORMATS)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"sapabench leaderboard entry v{SCHEMA_VERSION}",
        **out,
    }


MAX_ENTRY_BYTES = 1 << 20
"""The largest entry file read (an entry of a thousand trials is about 100 kB)."""
MAX_THREADS = 1024
"""The most CPU threads an entry may say it ran with (verify re-runs with that count)."""


class EntryError(ConfigError):
    """A leaderboard entry that is malformed or was tampered with."""


def content_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with its ``content_sha256`` set (validated)."""
    out = dict(entry)
    out["content_sha256"] = content_hash(out)
    validate(out)
    return out


def _check_types(obj: Any, spec: dict[str, Any], path: str, where: str) -> None:
    if not isinstance(obj, dict):
        raise EntryError(f"{where}: {path or 'entry'} must be a JSON object")
    missing = [k for k in spec if k not in obj]
    if missing:
        raise EntryError(f"{where}: missing field {path + missing[0]!r}")
    extra = [k for k in obj if k not in spec]
    if extra:
        raise EntryError(f"{where}: unknown field {path + extra[0]!r}")
    for key, typ in spec.items():
        value = obj[key]
        if isinstance(typ, dict):
            _check_types(value, typ, f"{path}{key}.", where)
            continue
        if typ == OPTIONAL_FLOAT:
            if value is None:
                continue
            typ = float
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            if typ is float
            else (isinstance(value, typ) and (typ is bool or not isinstance(value, bool)))
        )
        if not ok:
            raise EntryError(f"{where}: field {path + key!r} must be {typ.__name__}, got {type(value).__name__}")
        if typ is float and not math.isfinite(value):
            raise EntryError(f"{where}: field {path + key!r} must be finite")


def upgrade(entry: Any, where: str = "entry") -> Any:
    """An entry of an older readable version as the current version (resealed), after checking
    its own content hash; any other document unchanged (:func:`validate` judges it)."""
    version = entry.get("schema_version") if isinstance(entry, dict) else None
    if version not in READABLE_VERSIONS or version == SCHEMA_VERSION:
        return entry
    if entry.get("content_sha256") != content_hash(entry):
        raise EntryError(f"{where}: content_sha256 does not match the entry (edited after it was written?)")
    out = dict(entry)
    for field in ("timings", "setting", "provenance"):
        if not isinstance(out.get(field), dict):
            raise EntryError(f"{where}: field {field!r} must be dict")
    if version == 2:
        out["timings"] = {_V2_TIMINGS.get(k, k): v for k, v in out["timings"].items()}
    if version in (2, 3):  # every victim was trained in plain fp32; the instruction set was not recorded
        out["setting"] = {**out["setting"], "precision": FP32.precision, "memory_format": FP32.memory_format}
        out["provenance"] = {**out["provenance"], "isa": UNKNOWN_ISA}
    if version in (2, 3, 4):  # every victim was trained from scratch; no continuous measures were kept
        out["setting"] = {**out["setting"], "protocol": SCRATCH, "pretrained": NO_PRETRAINED}
        out["measures"] = {}
    if version in (2, 3, 4, 5):
        # versions 2 to 5 recorded only the overridden attack options (the resolved config is
        # unknown) and had no deterministic mode
        out["setting"] = {**out["setting"], "attack_config": {}}
        out["provenance"] = {**out["provenance"], "deterministic": False}
    if version in (2, 3, 4, 5, 6):
        out["timings"] = {**out["timings"], "surrogates_s": 0.0}  # not recorded before version 7
    # before version 10 every poison was crafted in plain fp32
    out["setting"] = {
        **out["setting"],
        "craft_precision": FP32.precision,
        "craft_memory_format": FP32.memory_format,
    }
    timings = out["timings"]
    if version < 8:  # before version 8 every trial of an entry was taken as the recorded device's, hosts unrecorded
        trials = out.get("metric", {}).get("trials")
        device = {"trials": trials, "hosts": [], **{k: timings.get(k) for k in PER_DEVICE}}
        timings = {**timings, "devices": {str(out["provenance"].get("device")): device}, "craft_devices": []}
    devices = timings.get("devices")
    if version < 9 and isinstance(devices, dict):  # before version 9 every step ran eagerly
        devices = {
            name: {**d, "train_steps": {"eager": d.get("trials")}} if isinstance(d, dict) else d
            for name, d in devices.items()
        }
        timings = {**timings, "devices": devices}
    out["timings"] = timings
    out["schema_version"] = SCHEMA_VERSION
    out["content_sha256"] = content_hash(out)
    return out


def validate(entry: Any, where: str = "entry") -> dict[str, Any]:
    """Check an entry completely; returns it, or raises :class:`EntryError` naming the problem."""
    if isinstance(entry, dict) and entry.get("schema_version") != SCHEMA_VERSION:
        raise EntryError(
            f"{where}: schema_version {entry.get('schema_version')!r} is not {SCHEMA_VERSION} "
            "(load older entries with load_entry, which upgrades them)"
        )
    _check_types(entry, SPEC, "", where)
    m, setting = entry["metric"], entry["setting"]
    values = m["values"]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise EntryError(f"{where}: metric.values must be a non-empty list of numbers")
    if m["trials"] != len(values):
        raise EntryError(f"{where}: metric.trials is {m['trials']} but there are {len(values)} values")
    if not all(0.0 <= v <= 1.0 for v in values) or not 0 <= m["mean"] <= 1:
        raise EntryError(f"{where}: metric values must be fractions in [0, 1]")
    mean, se = mean_se(values)
    if abs(mean - m["mean"]) > 1e-9 or abs(se - m["se"]) > 1e-9:
        raise EntryError(f"{where}: metric.mean/se ({m['mean']}, {m['se']}) do not match its values ({mean}, {se})")
    if setting["threat"] not in ENTRY_THREATS:
        raise EntryError(f"{where}: setting.threat {setting['threat']!r} is not one of {', '.join(ENTRY_THREATS)}")
    if not 0 <= setting["eps"] <= 1 or not 0 <= setting["budget"] <= 1:
        raise EntryError(f"{where}: setting.eps and setting.budget must lie in [0, 1]")
    try:
        Numerics(setting["precision"], setting["memory_format"])
        Numerics(setting["craft_precision"], setting["craft_memory_format"])
    except ConfigError as err:
        raise EntryError(f"{where}: setting: {err}") from None
    if not 0 <= entry["clean_accuracy"]["mean"] <= 1:
        raise EntryError(f"{where}: clean_accuracy.mean must lie in [0, 1]")
    try:  # what a re-run would train: a registered recipe with options in range (epochs bounded)
        RECIPES.create(setting["recipe"], **setting["victim"])
    except (ConfigError, TypeError) as err:
        raise EntryError(f"{where}: setting.recipe/victim: {' '.join(str(err).split())}") from None
    cpu = cpu_threads(entry["provenance"]["device"])
    if cpu is not None and not 1 <= cpu[1] <= MAX_THREADS:
        count = "a million or more" if cpu[1] >= MANY_THREADS else cpu[1]
        raise EntryError(f"{where}: provenance.device names {count} threads, not 1 to {MAX_THREADS}")
    _check_timings(entry, where)
    for key, value in entry["defense_stats"].items():
        top = DEFENSE_STAT_MAXIMA.get(key)
        if top is None or not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= top:
            if top is None:
                raise EntryError(
                    f"{where}: defense_stats.{key} is not a defense statistic; known: "
                    + ", ".join(_stat_range(k) for k in DEFENSE_STAT_MAXIMA)
                )
            raise EntryError(f"{where}: defense_stats.{key} must be a number: {_stat_range(key)}")  # NaN too
    _check_measures(entry, where)
    _check_seeds(entry, where)
    if entry["sapa"] != is_sapa(entry["attack"]):
        raise EntryError(f"{where}: sapa flag does not match the attack name {entry['attack']!r}")
    if entry["content_sha256"] != content_hash(entry):
        raise EntryError(f"{where}: content_sha256 does not match the entry (edited after it was written?)")
    return entry


MAX_SECONDS = 1e8
"""The most seconds any timing of an entry may record (three years): a larger one is an edit,
and 1e308 overflowed the crafting-time plot's axis."""

MAX_LOGIT = 1e4
"""The largest adversarial margin (in logits) an entry may record: +/-1e308 overflowed to inf
in its mean."""
MAX_COUNT = 1e9
"""The most images a defense may report removing."""
MAX_EPSILON = 1e6
"""The largest privacy loss an entry may record (DP-SGD's epsilon; past a few hundred it means
nothing, and an overflowing value is an edit)."""
DEFENSE_STAT_MAXIMA = {
    "removed_mean": MAX_COUNT,
    "precision_mean": 1.0,
    "recall_mean": 1.0,
    "defense_s_mean": MAX_SECONDS,
    "defender_s_mean": MAX_SECONDS,
    "epsilon_mean": MAX_EPSILON,
    "delta_mean": 1.0,
    "class_removed_mean": MAX_COUNT,
    "class_precision_mean": 1.0,
    "heldout_mean": MAX_COUNT,
    "pruned_mean": MAX_COUNT,
    "stopped_epoch_mean": MAX_COUNT,
    "peak_test_accuracy_mean": 1.0,
}
"""The statistics ``defense_stats`` may hold, each with its largest value (and 0 the smallest):
a data filter's removed images, precision and recall against the true poisons (and, where the poisons
sit in some classes only, its removed images of those classes and their precision), the seconds the
defense took in a trial and what its own model took to train, DP-SGD's (epsilon, delta), a
model-level defense's held-out clean images, fine-pruning's pruned units, early stopping's
chosen epoch and the peak test accuracy over its epochs."""


def _stat_range(key: str) -> str:
    """``key`` with its range as the error messages give it: ``recall_mean (fractions in [0, 1])``."""
    top = DEFENSE_STAT_MAXIMA[key]
    if top == 1.0:
        return f"{key} (fractions in [0, 1])"
    unit = " s" if key.endswith("_s_mean") else " images" if key in _IMAGE_COUNTS else ""
    return f"{key} (0 to {top:g}{unit})"


_IMAGE_COUNTS = ("removed_mean", "class_removed_mean", "heldout_mean")


def _check_timings(entry: dict[str, Any], where: str) -> None:
    """Seconds non-negative; per-device averages that add up to the trials, and top-level
    averages that are the one device's, or null when several devices took part."""
    t = entry["timings"]
    numbers = [v for k, v in t.items() if k not in ("devices", "craft_devices") and v is not None]
    devices = t["devices"]
    if not devices:
        raise EntryError(f"{where}: timings.devices must name at least one device")
    for name, d in devices.items():
        if not isinstance(d, dict) or sorted(d) != sorted(DEVICE_FIELDS):
            raise EntryError(f"{where}: timings.devices.{name} must have exactly the fields {', '.join(DEVICE_FIELDS)}")
        if not isinstance(d["trials"], int) or isinstance(d["trials"], bool) or d["trials"] < 1:
            raise EntryError(f"{where}: timings.devices.{name}.trials must be a positive integer")
        if not isinstance(d["hosts"], list) or not all(isinstance(h, str) for h in d["hosts"]):
            raise EntryError(f"{where}: timings.devices.{name}.hosts must be a list of host names")
        steps = d["train_steps"]
        if (
            not isinstance(steps, dict)
            or not set(steps) <= set(STEPS)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in steps.values())
            or sum(steps.values()) != d["trials"]
        ):
            raise EntryError(
                f"{where}: timings.devices.{name}.train_steps must count that device's trials by step mode "
                f"({' or '.join(STEPS)}), adding up to its trials"
            )
        for k in PER_DEVICE:
            v = d[k]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise EntryError(f"{where}: timings.devices.{name}.{k} must be a finite number")
            numbers.append(v)
    if any(not 0 <= v <= MAX_SECONDS for v in numbers):
        raise EntryError(f"{where}: timings must be seconds from 0 to {MAX_SECONDS:g}")
    if sum(d["trials"] for d in devices.values()) != entry["metric"]["trials"]:
        raise EntryError(f"{where}: timings.devices' trials do not add up to metric.trials")
    one = next(iter(devices.values())) if len(devices) == 1 else None
    for k in PER_DEVICE:
        expected = None if one is None else one[k]
        if (t[k] is None) != (expected is None) or (expected is not None and abs(t[k] - expected) > 1e-9):
            raise EntryError(
                f"{where}: timings.{k} must be the one device's average, or null when several devices took part "
                "(timings of different devices are never averaged)"
            )
    if not all(isinstance(c, str) for c in t["craft_devices"]):
        raise EntryError(f"{where}: timings.craft_devices must be a list of device names")


def measure_summary(values: list[float], clean_values: list[float]) -> dict[str, Any]:
    """A continuous measure over the trials with its paired clean references: both means, and
    the mean per-trial shift (measure minus its own clean reference)."""
    mean, se = mean_se(values)
    clean_mean, clean_se = mean_se(clean_values)
    shift_mean, shift_se = mean_se([v - c for v, c in zip(values, clean_values, strict=True)])
    return {
        "values": values,
        "clean_values": clean_values,
        "mean": mean,
        "se": se,
        "clean_mean": clean_mean,
        "clean_se": clean_se,
        "shift_mean": shift_mean,
        "shift_se": shift_se,
    }


def _check_measures(entry: dict[str, Any], where: str) -> None:
    setting = entry["setting"]
    if setting["protocol"] not in PROTOCOLS:
        raise EntryError(f"{where}: setting.protocol: {PROTOCOLS.unknown_message(setting['protocol'])}")
    for name, m in entry["measures"].items():
        if name not in MEASURES:
            raise EntryError(f"{where}: measures.{name} is not one of {', '.join(MEASURES)}")
        if not isinstance(m, dict) or sorted(m) != sorted(MEASURE_FIELDS):
            raise EntryError(f"{where}: measures.{name} must have exactly the fields {', '.join(MEASURE_FIELDS)}")
        values, clean = m["values"], m["clean_values"]
        numbers = [*values, *clean]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= MAX_LOGIT for v in numbers):
            raise EntryError(
                f"{where}: measures.{name} values must be numbers from -{MAX_LOGIT:g} to {MAX_LOGIT:g} logits"
            )
        if len(values) != entry["metric"]["trials"] or len(clean) != len(values):
            raise EntryError(f"{where}: measures.{name} needs one value and one clean value per trial")
        expected = measure_summary(values, clean)
        if any(abs(expected[k] - m[k]) > 1e-9 for k in MEASURE_FIELDS[2:]):
            raise EntryError(f"{where}: measures.{name} means/SEs do not match its values")


def _is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_seeds(entry: dict[str, Any], where: str) -> None:
    """Seeds and poison hashes must say exactly which trial each value came from."""
    prov, setting = entry["provenance"], entry["setting"]
    crafts, trials, hashes, cells = prov["craft_seeds"], prov["trial_seeds"], prov["poison_sha256"], prov["cell_seeds"]
    for name, seeds in (("craft_seeds", crafts), ("trial_seeds", trials)):
        if not all(_is_seed(s) for s in seeds) or seeds != sorted(set(seeds)):
            raise EntryError(f"{where}: provenance.{name} must be sorted distinct non-negative integers")
    clean = setting["threat"] == NO_THREAT
    if (setting["preset"] == NO_POISON) != clean or (not clean and setting["preset"] not in PRESETS):
        raise EntryError(f"{where}: setting.preset must be one of {', '.join(PRESETS)} ({NO_POISON!r} for clean data)")
    if clean != (not crafts):
        raise EntryError(f"{where}: provenance.craft_seeds must be empty exactly for clean-data entries")
    if len(hashes) != len(crafts) or not all(isinstance(h, str) and len(h) == 64 for h in hashes):
        raise EntryError(f"{where}: provenance.poison_sha256 needs one sha256 (64 hex digits) per craft seed")
    if len(cells) != entry["metric"]["trials"]:
        raise EntryError(
            f"{where}: provenance.cell_seeds has {len(cells)} items for {entry['metric']['trials']} trials"
        )
    for item in cells:
        ok = (
            isinstance(item, list)
            and len(item) == 2
            and item[1] in trials
            and (item[0] in crafts if not clean else item[0] is None)
        )
        if not ok:
            raise EntryError(
                f"{where}: provenance.cell_seeds item {item!r} is not [craft seed, trial seed] of this entry"
            )
    if len({tuple(c) for c in cells}) != len(cells):
        raise EntryError(f"{where}: provenance.cell_seeds lists a trial twice")


def load_entry(path: str | Path) -> dict[str, Any]:
    """The validated entry in ``path`` (an older version's upgraded to the current version)."""
    path = Path(path)
    try:
        data = read_json(path, "entry", MAX_ENTRY_BYTES)
    except ConfigError as err:
        raise EntryError(str(err)) from None
    return validate(upgrade(data, str(path)), str(path))


def load_entries(folder: str | Path) -> list[dict[str, Any]]:
    """Every ``*.json`` entry in ``folder``, validated, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} holds no leaderboard entries (run sapabench run first)")
    return sorted((load_entry(p) for p in sorted(folder.glob("*.json"))), key=sort_key)


def sort_key(e: dict[str, Any]) -> tuple:
    s = e["setting"]
    return (s["dataset"], s["threat"], e["base_attack"], s["arch"], s["recipe"], e["defense"], e["sapa"], e["entry_id"])
