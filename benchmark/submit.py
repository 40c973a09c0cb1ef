"""``sapabench submit``: run the standard suite for one attack or defense into a submission folder.

The standard suites use the protocol of the built-in ``default`` and ``defenses`` suites, so a
submission's entries sit beside the built-in ones on equal terms:

- an attack runs against every victim recipe (sgd, adam, cutout, mixup, sam, adversarial) on
  convnet victims, together with its SAPA twin or baseline when one is registered (``X`` and
  ``sapa-X``), plus clean victims as the reference;
- a defense runs against the default attacks (and clean data), each with and without it.

The ``smoke`` profile is the same shape at seconds-long scale (one recipe, 1-epoch victims,
2 trials) for trying the workflow. A submission folder holds the generated ``suite.toml``, the
run's results, poisons and leaderboard (entries carry provenance and the sha256 of every poison
they were computed from), and ``submission.json``, a manifest of the submitted entry files and
their content hashes, which ``sapabench verify`` checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sapabench.attacks import ATTACKS, create_attack
from sapabench.benchmark.entries import entries_dir
from sapabench.benchmark.store import now
from sapabench.benchmark.suite import Suite, load_suite
from sapabench.core.atomic import write_json, write_text
from sapabench.core.datasets import DATASETS
from sapabench.core.errors import ConfigError
from sapabench.core.names import CLEAN, EMBEDDED_DATASET, NO_DEFENSE, ORACLE_FILTER, RANDOM_LIKE, is_sapa, twin_name
from sapabench.core.provenance import VERSION, git_commit
from sapabench.defenses import DEFENSES, ControlFilter, DataDefense
from sapabench.leaderboard.schema import load_entry

SUITE_FILE = "suite.toml"
MANIFEST_FILE = "submission.json"
KINDS = ("attack", "defense")


@dataclass(frozen=True)
class Profile:
    """The protocol of a standard suite."""

    description: str
    trials: int
    recipes: tuple[str, ...]
    attack_panel: tuple[str, ...]  # attacks a defense is evaluated against
    epochs_on_digits: int
    preset_on_digits: str
    defense_craft_seeds: tuple[int, ...] = (0,)  # poisons a defense is decided over (victims nested in them)
    defense_clean_trials: int = 0  # clean victims with and without the defense (its clean cost); 0: trials


PROFILES = {
    "standard": Profile(
        "the default suite's protocol: convnet victims, 3 trials, 6 epochs on digits",
        trials=3,
        recipes=("sgd", "adam", "cutout", "mixup", "sam", "adversarial"),
        attack_panel=("sleeper-agent", "sapa-sleeper-agent", "error-min", "sapa-error-min"),
        epochs_on_digits=6,
        preset_on_digits="embedded",
        # the defenses suite's design: 12 poisons x 1 victim per attack, 12 clean victims per arm
        defense_craft_seeds=tuple(range(12)),
        defense_clean_trials=12,
    ),
    "smoke": Profile(
        "seconds-long: the sgd recipe, 1-epoch victims, 2 trials, the smoke attack preset",
        trials=2,
        recipes=("sgd",),
        attack_panel=("error-max", "sapa-error-max"),
        epochs_on_digits=1,
        preset_on_digits="smoke",
    ),
}


def twin(attack: str) -> str | None:
    """The registered SAPA variant of a baseline attack, or the baseline of a SAPA attack."""
    other = twin_name(attack)
    return other if other in ATTACKS else None


def _budget(attack: str, dataset: str, preset: str | None) -> float:
    return float(create_attack(attack, dataset=dataset, preset=preset).config.budget)


def standard_suite(kind: str, name: str, profile: str = "standard", dataset: str = EMBEDDED_DATASET) -> str:
    """The TOML text of the standard suite for submitting attack or defense ``name``."""
    if kind not in KINDS:
        raise ConfigError(f"unknown submission kind {kind!r}; choose attack or defense")
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    DATASETS.entry(dataset)
    p = PROFILES[profile]
    if kind == "attack":
        if name == CLEAN:
            raise ConfigError("'clean' is the reference, not an attack to submit")
        ATTACKS.entry(name)
        pair = sorted({name, twin(name) or name}, key=lambda a: (is_sapa(a), a))
        attacks, recipes, defenses = pair, p.recipes, [NO_DEFENSE]
    else:
        DEFENSES.entry(name)
        attacks, recipes, defenses = list(p.attack_panel), p.recipes[:1], [NO_DEFENSE, name]
    defending = kind == "defense" and p.defense_clean_trials > 0
    submitted = DEFENSES.create(name) if defending else None
    if isinstance(submitted, DataDefense) and submitted.removes and not isinstance(submitted, ControlFilter):
        # what removing as many images at random does, and the ceiling of any filter
        defenses += [f"{RANDOM_LIKE}{name}", ORACLE_FILTER]
    design = p.description
    if defending:
        design = (
            f"{len(p.defense_craft_seeds)} poisons x 1 victim per attack, victims nested in poisons, "
            f"{p.defense_clean_trials} clean victims per arm, {p.epochs_on_digits} epochs on digits"
        )
    lines = [
        f'name = "submit-{kind}-{name}"',
        f'description = "Standard {kind} submission of {name} ({profile} profile: {design})."',
        f'dataset = "{dataset}"',
        f"trials = {1 if defending else p.trials}",
        "trial_seed = 100",
        f"craft_seeds = {json.dumps(list(p.defense_craft_seeds if kind == 'defense' else (0,)))}",
        "clean_baseline = true",
    ]
    if dataset == EMBEDDED_DATASET:
        lines += [f'preset = "{p.preset_on_digits}"', "", "[victim]", f"epochs = {p.epochs_on_digits}"]
    oracle = ORACLE_FILTER in defenses
    preset = p.preset_on_digits if dataset == EMBEDDED_DATASET else None
    partial = [a for a in attacks if not oracle or _budget(a, dataset, preset) < 1.0]
    grids = [
        (partial, defenses),
        ([a for a in attacks if a not in partial], [d for d in defenses if d != ORACLE_FILTER]),
    ]
    for grid_attacks, grid_defenses in grids:  # the oracle only where the poison leaves clean images to keep
        if grid_attacks:
            lines += [
                "",
                "[[grid]]",
                f"attacks = {json.dumps(grid_attacks)}",
                f"recipes = {json.dumps(list(recipes))}",
                'archs = ["convnet"]',
                f"defenses = {json.dumps(grid_defenses)}",
            ]
    if defending:  # clean victims under every arm: the defense's cost with no attack, paired by seed
        lines += [
            "",
            "[[grid]]",
            'attacks = ["clean"]',
            f"recipes = {json.dumps(list(recipes))}",
            'archs = ["convnet"]',
            f"trials = {p.defense_clean_trials}",
            f"defenses = {json.dumps(defenses)}",
        ]
    return "\n".join(lines) + "\n"


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def prepare(kind: str, name: str, out: str | Path, profile: str = "standard", dataset: str = EMBEDDED_DATASET) -> Path:
    """Write the submission's ``suite.toml`` into ``out`` (or check that the one there is the
    same, so an interrupted submission resumes); returns its path."""
    text = standard_suite(kind, name, profile, dataset)
    out = Path(out)
    path = out / SUITE_FILE
    if path.exists():
        if path.read_text() != text:
            raise ConfigError(f"{out} holds a submission of another suite ({path}); choose another --out")
        return path
    write_text(path, text)
    return path


def write_manifest(kind: str, name: str, profile: str, out: str | Path) -> dict[str, Any]:
    """List the submission's entry files with their content hashes in ``submission.json``."""
    out = Path(out)
    entries = []
    for path in sorted(entries_dir(out).glob("*.json")):
        e = load_entry(path)
        submitted = e["defense"] == name if kind == "defense" else e["attack"] != CLEAN
        entries.append(
            {
                "file": path.name,
                "entry_id": e["entry_id"],
                "attack": e["attack"],
                "defense": e["defense"],
                "role": "submitted" if submitted else "reference",
                "content_sha256": e["content_sha256"],
            }
        )
    manifest = {
        "kind": kind,
        "name": name,
        "profile": profile,
        "suite_sha256": _sha256_text((out / SUITE_FILE).read_text()),
        "sapabench_version": VERSION,
        "git_commit": git_commit(),
        "written_at": now(),
        "entries": entries,
    }
    write_json(out / MANIFEST_FILE, manifest)
    return manifest


def submission_suite(out: str | Path) -> Suite:
    return load_suite(str(Path(out) / SUITE_FILE))
