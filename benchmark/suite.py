"""Benchmark suites: TOML files that expand into cells.

A cell is one victim trained and measured: (attack, dataset, surrogate, victim arch, recipe,
defense, craft seed, trial seed). Poison sets are keyed by (attack, its config, dataset,
craft seed) so each is crafted once and reused by every victim that needs it.

Suite file format (see ``benchmark/suites/*.toml``)::

    name = "default"
    description = "..."
    dataset = "digits"          # a registered dataset
    trials = 3                  # victims per poison and setting (and clean victims per setting)
    trial_seed = 100
    victim_seeds = "nested"     # nested: each poison's victims get their own seeds, derived from
                                # (trial_seed, craft seed, victim index) and shared by every attack
                                # crafted with that seed (SAPA and its base stay paired); shared:
                                # every poison's victims are trial_seed, trial_seed + 1, ... (the
                                # rule of run folders made before 2026-12)
    craft_seeds = [0]           # poison sets per attack (targets / class pairs / noise draws)
    preset = "embedded"         # attack preset (default: by dataset)
    clean_baseline = true       # also train clean victims for every (arch, recipe)

    [victim]                    # victim training overrides for every cell (e.g. epochs = 8)
    epochs = 8
    precision = "auto"          # fp32, bf16 or auto (bf16 where the device does it in hardware)
    memory_format = "auto"      # contiguous, channels_last or auto (see core.numerics)

    [craft]                     # how attacks that support it craft (docs/performance.md, "Crafting numerics")
    precision = "auto"          # fp32, bf16 or auto (resolved like the victims'; part of each poison's key)
    memory_format = "auto"

    [resources]                 # optional, for --executor ray (flags override): per task
    cpus_per_task = 1           # CPU cores (and torch threads)
    gpus_per_victim = 0.25      # GPU share of a victim (0.25 packs four on a GPU)
    gpus_per_craft = 1          # GPU share of a crafting task (default: gpus_per_victim)
    max_retries = 3             # retries of a task whose worker was lost

    [[grid]]                    # cartesian product of its lists
    attacks = ["error-min", "sapa-error-min"]
    recipes = ["sgd", "adam"]
    archs = ["convnet"]
    surrogate = "convnet"       # optional: the surrogate architecture
    defenses = ["none"]         # optional
    options = { eps = 0.1 }     # optional attack overrides; a list sweeps: { ensemble = [1, 2, 4] }
    craft_seeds = [0, 1, 2]     # optional: this grid's craft seeds (default: the suite's)
    trials = 1                  # optional: this grid's victims per setting (default: the suite's)
    victim = { epochs = 2 }     # optional: this grid's victim overrides, over the suite's [victim]
    protocols = ["scratch"]     # optional victim protocols (``sapabench list protocols``)
    pretrained = "surrogate"    # finetune/linear start: surrogate, independent, or a .safetensors path
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sapabench.attacks import ATTACKS, crafting_numerics, create_attack
from sapabench.benchmark.executor import RESOURCE_KEYS, Resources
from sapabench.core.datasets import DATASETS
from sapabench.core.errors import ConfigError
from sapabench.core.files import decode_text, parse_toml, read_bytes
from sapabench.core.names import (
    AUTO,
    CLEAN,
    MEMORY_FORMATS,
    NESTED,
    NO_DEFENSE,
    NO_POISON,
    PRECISIONS,
    PRESET_SURROGATE,
    PRESETS,
    SCRATCH,
    SHARED,
    VICTIM_SEEDINGS,
    default_preset,
    file_name,
)
from sapabench.core.numerics import FP32, Numerics
from sapabench.core.runtime import MAX_SEED
from sapabench.defenses import DEFENSES
from sapabench.victims.archs import ARCHS
from sapabench.victims.pretrained import Checkpoint
from sapabench.victims.protocols import FILE_PREFIX, NO_PRETRAINED, PRETRAINED_SOURCES, PROTOCOLS, get_protocol
from sapabench.victims.recipes import RECIPES

MAX_COUNT = 10_000
"""The most trials, and the most craft seeds, a suite may list (per grid)."""

SUITE_KEYS = {
    "name",
    "description",
    "dataset",
    "trials",
    "trial_seed",
    "craft_seeds",
    "preset",
    "clean_baseline",
    "victim",
    "grid",
    "resources",
    "claims",
    "victim_seeds",
    "craft",
}
CLAIMS_KEYS = {"primary", "alpha", "looks"}
"""A suite's ``[claims]``: the claims it pre-registers (``primary``: ids of the claims file,
decided with Holm's correction over them; ``benchmark.claims.plan_claims`` checks each can be
decided before anything runs), their family-wise ``alpha`` (default: the claims file's) and
``looks``: the numbers of poisons at which ``sapabench claims`` may decide them (increasing, the
last one the design's poisons; default: that one alone), each at the alpha an O'Brien-Fleming
type spending function gives it (:func:`sapabench.core.stats.spent_alpha`)."""


def victim_seed(seeding: str, trial_seed: int, craft_seed: int | None, index: int) -> int:
    """The seed of victim ``index`` of a poison crafted with ``craft_seed`` (None: clean data).

    ``shared``: ``trial_seed + index`` for every poison (victims of different poisons share their
    initialisation and data order, so a victim-seed effect never averages out over poisons).
    ``nested``: a seed derived from (trial_seed, craft seed, index) by SHA-256, different for
    every poison and the same for every attack crafted with that seed, so a SAPA attack and its
    base keep their victims paired within a poison; clean victims keep ``trial_seed + index``.
    """
    if seeding == SHARED or craft_seed is None:
        return trial_seed + index
    digest = hashlib.sha256(f"victim/{trial_seed}/{craft_seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % MAX_SEED


GRID_KEYS = {
    "attacks",
    "recipes",
    "archs",
    "surrogate",
    "defenses",
    "options",
    "protocols",
    "pretrained",
    "craft_seeds",
    "trials",
    "victim",
}
RECIPE_KEYS = {"epochs", "batch_size", "lr"}
NUMERICS_KEYS = {"precision": PRECISIONS, "memory_format": MEMORY_FORMATS}
VICTIM_KEYS = RECIPE_KEYS | set(NUMERICS_KEYS)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _digest(obj: Any) -> str:
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()[:16]


def _spec_fields(spec: PoisonSpec) -> dict[str, Any]:
    """What a poison's key hashes: its fields, without plain fp32 numerics (poisons crafted
    before crafting numerics existed keep their keys)."""
    d = asdict(spec)
    if spec.numerics == FP32:
        d.pop("numerics")
    return d


@dataclass(frozen=True)
class PoisonSpec:
    """One poison set to craft. (Its fields are hashed into ``key``, which names the poison in
    results databases: changing them would orphan every existing run folder.)"""

    attack: str
    dataset: str
    preset: str | None
    surrogate: str | None
    options: tuple[tuple[str, Any], ...]
    craft_seed: int
    numerics: Numerics = FP32  # what the attack crafts in (attacks.crafting_numerics)

    @property
    def key(self) -> str:
        # the attack's name is data (a plugin's may hold any character): file_name keeps it a name
        return file_name(f"{self.attack}-s{self.craft_seed}-{_digest(_spec_fields(self))}")

    @property
    def resolved_preset(self) -> str:
        """The attack preset in effect (a suite without ``preset`` uses the dataset's)."""
        return self.preset or default_preset(self.dataset)

    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.options)
        if self.surrogate is not None:
            out["surrogate"] = {"arch": self.surrogate, "recipe": "sgd"}
        return out


@dataclass(frozen=True)
class Cell:
    """One victim to train and measure. (Its fields are hashed into ``key``, by which a re-run
    finds finished cells: changing them would make old runs start over.)"""

    suite: str
    attack: str
    dataset: str
    arch: str
    recipe: str
    defense: str
    trial_seed: int
    victim: tuple[tuple[str, Any], ...]
    poison: PoisonSpec | None
    numerics: Numerics = FP32
    protocol: str = SCRATCH
    pretrained: str = NO_PRETRAINED

    @property
    def key(self) -> str:
        d = asdict(self)
        d.pop("suite")
        if self.numerics == FP32:  # cells from before numerics existed keep their keys
            d.pop("numerics")
        if self.poison is not None:  # ... and so do cells of poisons crafted in plain fp32
            d["poison"] = _spec_fields(self.poison)
        if self.protocol == SCRATCH:  # ... and so do cells from before protocols existed
            d.pop("protocol")
            d.pop("pretrained")
        return _digest(d)

    @property
    def craft_seed(self) -> int | None:
        return None if self.poison is None else self.poison.craft_seed

    @property
    def setting(self) -> Setting:
        """The cell without its seeds: the leaderboard entry it belongs to."""
        p = self.poison
        return Setting(
            self.suite,
            self.attack,
            self.defense,
            self.dataset,
            self.arch,
            self.recipe,
            self.victim,
            None if p is None else p.resolved_preset,
            None if p is None else p.surrogate,
            () if p is None else p.options,
            self.numerics,
            self.protocol,
            self.pretrained,
            FP32 if p is None else p.numerics,
        )


def _read_numerics(fields: Mapping[str, Any], prefix: str) -> Numerics:
    """The numerics a results row or an entry records under ``{prefix}precision`` and
    ``{prefix}memory_format`` (absent or null: plain fp32, written before they were recorded)."""
    return Numerics(
        fields.get(f"{prefix}precision") or FP32.precision, fields.get(f"{prefix}memory_format") or FP32.memory_format
    )


@dataclass(frozen=True)
class Setting:
    """What one leaderboard entry aggregates: every trial of one attack (with one defense) in one
    setting; a :class:`Cell` without its craft and trial seeds, with the preset resolved.

    ``preset`` is None for clean data; ``surrogate`` is the suite's surrogate architecture, or
    None for the one of the attack's preset. Results rows and entries write these two as
    :attr:`surrogate_label` and ``preset or NO_POISON``; :meth:`read` reads them back.
    ``numerics`` is the victims' precision and memory format (rows and entries: ``precision``
    and ``memory_format``; those written before numerics existed read back as plain fp32).
    ``protocol`` and ``pretrained`` are the victim protocol and where its pretrained model comes
    from (read back as ``scratch`` / ``none`` from rows and entries older than protocols).
    ``craft_numerics`` is what the poisons were crafted in (rows and entries: ``craft_precision``
    and ``craft_memory_format``; plain fp32 for clean data and for those written before).
    """

    suite: str
    attack: str
    defense: str
    dataset: str
    arch: str
    recipe: str
    victim: tuple[tuple[str, Any], ...]
    preset: str | None
    surrogate: str | None
    options: tuple[tuple[str, Any], ...]
    numerics: Numerics = FP32
    protocol: str = SCRATCH
    pretrained: str = NO_PRETRAINED
    craft_numerics: Numerics = FP32

    @property
    def surrogate_label(self) -> str:
        return NO_POISON if self.preset is None else (self.surrogate or PRESET_SURROGATE)

    @classmethod
    def read(cls, attack: str, defense: str, fields: Mapping[str, Any]) -> Setting:
        """The setting written as ``fields`` (a results row, or an entry's ``setting``: the same
        names) for ``attack`` and ``defense``. Rows write clean data's preset and options as
        None, entries as ``NO_POISON`` and ``{}``; both read back the same."""
        label = fields["surrogate"]
        return cls(
            suite=fields["suite"],
            attack=attack,
            defense=defense,
            dataset=fields["dataset"],
            arch=fields["arch"],
            recipe=fields["recipe"],
            victim=tuple(sorted(fields["victim"].items())),
            preset=None if fields["preset"] in (None, NO_POISON) else fields["preset"],
            surrogate=None if label in (NO_POISON, PRESET_SURROGATE) else label,
            options=tuple(sorted((fields["options"] or {}).items())),
            numerics=_read_numerics(fields, ""),
            protocol=fields.get("protocol") or SCRATCH,
            pretrained=fields.get("pretrained") or NO_PRETRAINED,
            craft_numerics=_read_numerics(fields, "craft_"),
        )

    @property
    def entry_id(self) -> str:
        """The id of the setting's entry: a digest of everything that tells settings apart."""
        key = [
            self.suite,
            self.attack,
            self.defense,
            self.dataset,
            self.arch,
            self.recipe,
            self.surrogate_label,
            json.dumps(dict(self.victim), sort_keys=True),
            self.preset or NO_POISON,
            json.dumps(dict(self.options), sort_keys=True),
        ]
        if self.numerics != FP32:  # entries from before numerics existed keep their ids
            key += [self.numerics.precision, self.numerics.memory_format]
        if self.protocol != SCRATCH:  # ... and so do entries from before protocols existed
            key += [self.protocol, self.pretrained]
        if self.craft_numerics != FP32:  # ... and from before crafting numerics existed
            key += ["craft", self.craft_numerics.precision, self.craft_numerics.memory_format]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    def cell(self, craft_seed: int | None, trial_seed: int) -> Cell:
        """The cell of this setting with these seeds (``craft_seed`` None for clean data)."""
        poison = None
        if craft_seed is not None:
            poison = PoisonSpec(
                self.attack, self.dataset, self.preset, self.surrogate, self.options, craft_seed, self.craft_numerics
            )
        return Cell(
            self.suite,
            self.attack,
            self.dataset,
            self.arch,
            self.recipe,
            self.defense,
            trial_seed,
            self.victim,
            poison,
            self.numerics,
            self.protocol,
            self.pretrained,
        )


@dataclass(frozen=True)
class Grid:
    attacks: tuple[str, ...]
    recipes: tuple[str, ...]
    archs: tuple[str, ...]
    surrogate: str | None = None
    defenses: tuple[str, ...] = (NO_DEFENSE,)
    options: tuple[tuple[str, Any], ...] = ()
    protocols: tuple[str, ...] = (SCRATCH,)
    pretrained: str = PRETRAINED_SOURCES[0]
    craft_seeds: tuple[int, ...] | None = None  # None: the suite's
    trials: int | None = None  # None: the suite's
    victim: tuple[tuple[str, Any], ...] = ()  # over the suite's [victim]

    def pretrained_of(self, protocol: str) -> str:
        """What a victim of ``protocol`` in this grid starts from (``none`` unless pretrained)."""
        return self.pretrained if get_protocol(protocol).needs_pretrained else NO_PRETRAINED


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    dataset: str
    trials: int
    trial_seed: int
    craft_seeds: tuple[int, ...]
    preset: str | None
    clean_baseline: bool
    victim: tuple[tuple[str, Any], ...]
    grids: tuple[Grid, ...]
    source: str = ""
    precision: str = AUTO
    memory_format: str = AUTO
    resources: tuple[tuple[str, Any], ...] = ()  # the suite's [resources] (benchmark.executor.Resources)
    primary_claims: tuple[str, ...] = ()  # [claims] primary: pre-registered claim ids
    claims_alpha: float | None = None  # [claims] alpha (None: the claims file's)
    claims_looks: tuple[int, ...] = ()  # [claims] looks (empty: the design's poisons alone)
    victim_seeds: str = NESTED  # how victims are seeded (victim_seed)
    craft_precision: str = AUTO  # [craft]: what attacks craft in, resolved like the victims'
    craft_memory_format: str = AUTO

    def cells(self, numerics: Numerics = FP32, craft: Numerics = FP32) -> list[Cell]:
        """Every cell of the suite, in a stable order, without duplicates, its victims trained
        with ``numerics`` (the suite's ``precision`` and ``memory_format`` resolved on the device
        that runs it: :func:`sapabench.core.numerics.resolve_numerics`) and its poisons crafted
        in ``craft`` where the attack crafts in numerics (``[craft]``, resolved the same way)."""
        seen: dict[str, Cell] = {}
        for grid in self.grids:
            for defense, protocol in itertools.product(grid.defenses, grid.protocols):
                for arch in grid.archs:
                    for recipe in grid.recipes:
                        names = ([CLEAN] if self.clean_baseline else []) + list(grid.attacks)
                        trials = grid.trials or self.trials
                        victim = tuple(sorted({**dict(self.victim), **dict(grid.victim)}.items()))
                        for attack in names:
                            seeds = [None] if attack == CLEAN else list(grid.craft_seeds or self.craft_seeds)
                            crafted_in = FP32 if attack == CLEAN else crafting_numerics(attack, craft)
                            for craft_seed in seeds:
                                poison = None
                                if craft_seed is not None:
                                    poison = PoisonSpec(
                                        attack,
                                        self.dataset,
                                        self.preset,
                                        grid.surrogate,
                                        grid.options,
                                        craft_seed,
                                        crafted_in,
                                    )
                                for t in range(trials):
                                    cell = Cell(
                                        self.name,
                                        attack,
                                        self.dataset,
                                        arch,
                                        recipe,
                                        defense,
                                        victim_seed(self.victim_seeds, self.trial_seed, craft_seed, t),
                                        victim,
                                        poison,
                                        numerics,
                                        protocol,
                                        grid.pretrained_of(protocol),
                                    )
                                    seen.setdefault(cell.key, cell)
        return list(seen.values())

    def poisons(self, craft: Numerics = FP32) -> list[PoisonSpec]:
        """Every poison set the suite crafts (in ``craft`` where the attack crafts in
        numerics), once each, in the order of its cells (without expanding the cells)."""
        out: dict[str, PoisonSpec] = {}
        for grid in self.grids:
            for attack in grid.attacks:
                if attack == CLEAN:
                    continue
                crafted_in = crafting_numerics(attack, craft)
                for craft_seed in grid.craft_seeds or self.craft_seeds:
                    spec = PoisonSpec(
                        attack, self.dataset, self.preset, grid.surrogate, grid.options, craft_seed, crafted_in
                    )
                    out.setdefault(spec.key, spec)
        return list(out.values())

    def planned_cells(self) -> int:
        """How many cells the suite plans, counted without expanding them (an upper bound on
        :meth:`cells`, which drops duplicates across grids)."""
        total = 0
        for grid in self.grids:
            per_victim = (1 if self.clean_baseline else 0) + len(grid.attacks) * len(
                grid.craft_seeds or self.craft_seeds
            )
            settings = len(grid.defenses) * len(grid.protocols) * len(grid.archs) * len(grid.recipes)
            total += settings * per_victim * (grid.trials or self.trials)
        return total


def pretrained_label(source: Any) -> str:
    """A grid's or the command line's pretrained source as cells record it: ``surrogate``,
    ``independent``, or ``file:<absolute path>@<sha256>`` for a checkpoint (pinned now, so a
    file changed before its trials run is refused)."""
    if not isinstance(source, str) or not source:
        raise ConfigError(
            f"pretrained must be {' or '.join(PRETRAINED_SOURCES)} or a .safetensors path, got {source!r}"
        )
    if source in PRETRAINED_SOURCES:
        return source
    ckpt = Checkpoint.pin(source)
    return f"{FILE_PREFIX}{ckpt.path}@{ckpt.sha256}"


def checkpoint_of(label: str) -> Checkpoint | None:
    """The checkpoint a ``file:`` pretrained label pins (None for the other sources)."""
    if not label.startswith(FILE_PREFIX):
        return None
    path, _, sha = label[len(FILE_PREFIX) :].rpartition("@")
    return Checkpoint(path, sha)


# ------------------------------------------------------------------------------- loading


def builtin_suites() -> dict[str, str]:
    """Suite name -> one-line description, for ``sapabench list suites``."""
    out = {}
    for entry in resources.files("sapabench.benchmark.suites").iterdir():
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text())
            out[entry.name[:-5]] = str(data.get("description", "")).strip().splitlines()[0]
    return dict(sorted(out.items()))


def swept_options(options: dict[str, Any]) -> list[dict[str, Any]]:
    """A grid's attack options with every list value swept: one options table per combination of
    the listed values (``{ensemble = [1, 2], reinit = 1}`` -> ``ensemble`` 1 and 2), in order."""
    for key, value in options.items():
        if isinstance(value, list) and not value:
            raise ConfigError(f"option {key!r} sweeps an empty list; give one value or a non-empty list")
    keys = list(options)
    values = [v if isinstance(v, list) else [v] for v in options.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a user's suite file by path; validated before anything runs."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.exists():
            raise ConfigError(f"suite file {path} does not exist")
        # a link the user made to their own suite is followed; what it names must be a regular file
        text, source = decode_text(read_bytes(path.resolve(), "suite file"), str(path), "suite"), str(path)
    else:
        builtin = builtin_suites()
        if name_or_path not in builtin:
            close = difflib.get_close_matches(name_or_path, list(builtin), n=2)
            hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"known: {', '.join(builtin)}"
            raise ConfigError(f"unknown suite {name_or_path!r}; {hint} (or pass a path to a .toml file)")
        text = (resources.files("sapabench.benchmark.suites") / f"{name_or_path}.toml").read_text()
        source = f"{name_or_path}.toml"
    return parse_suite(text, source)


def _line_of(text: str, needle: str, after: int = 0) -> int:
    """1-based line number of the first line (from line ``after``) holding ``needle``."""
    for i, line in enumerate(text.splitlines()[after:], start=after + 1):
        if needle in line:
            return i
    return 0


def parse_suite(text: str, source: str = "<suite>") -> Suite:
    """The suite in TOML ``text`` (from ``source``), with every name and option checked, so that
    a bad suite is refused (naming the line) before anything runs."""

    def fail(message: str, needle: str | None = None, after: int = 0) -> ConfigError:
        line = _line_of(text, needle, after) if needle else 0
        where = f"{source}, line {line}" if line else source
        return ConfigError(f"{where}: {message}")

    data = parse_toml(text, source, "suite")
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}; known keys: {', '.join(sorted(SUITE_KEYS))}", unknown[0])
    for key in ("name", "dataset", "grid"):
        if key not in data:
            raise fail(f"missing required key {key!r}")

    # A grid's own keys are looked for after its [[grid]] header, so errors name its line.
    grid_lines = [i for i, line in enumerate(text.splitlines()) if line.strip() == "[[grid]]"]

    def integer(
        key: str,
        default: int | None,
        minimum: int,
        table: dict[str, Any] = data,
        after: int = 0,
        maximum: int = MAX_COUNT,
    ) -> Any:
        value = table.get(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise fail(f"{key} must be an integer from {minimum} to {maximum}, got {value!r}", key, after)
        return value

    def craft_seeds(table: dict[str, Any], default: list[int] | None, after: int = 0) -> tuple[int, ...] | None:
        seeds = table.get("craft_seeds", default)
        if seeds is None:
            return None
        if not isinstance(seeds, list) or not seeds or not all(type(s) is int and 0 <= s <= MAX_SEED for s in seeds):
            raise fail(f"craft_seeds must be a non-empty list of integers from 0 to {MAX_SEED}", "craft_seeds", after)
        if len(seeds) > MAX_COUNT:
            raise fail(f"craft_seeds lists {len(seeds)} seeds, more than {MAX_COUNT}", "craft_seeds", after)
        if len(set(seeds)) != len(seeds):
            raise fail(f"craft_seeds lists a seed twice: {seeds[:20]}", "craft_seeds", after)
        return tuple(seeds)

    name = data["name"]
    if not isinstance(name, str) or not name or len(name) > 100 or file_name(name) != name:
        raise fail(
            f"suite name {name!r} must be 1-100 letters, digits, '.', '_', '+' or '-', not starting with '.' "
            "(it names the run folder runs/NAME)",
            "name",
        )
    dataset = data["dataset"]
    if dataset not in DATASETS:
        raise fail(DATASETS.unknown_message(str(dataset)), f'"{dataset}"')
    seeds = craft_seeds(data, [0])
    victim = data.get("victim", {})
    if not isinstance(victim, dict) or set(victim) - VICTIM_KEYS:
        bad = sorted(set(victim) - VICTIM_KEYS) if isinstance(victim, dict) else ["victim"]
        raise fail(f"unknown victim option {bad[0]!r}; known: {', '.join(sorted(VICTIM_KEYS))}", bad[0])
    victim = dict(victim)

    def checked_numerics(table: dict[str, Any], what: str) -> dict[str, str]:
        """A table's precision and memory format (auto where unset), each one of its choices."""
        out = {key: table.get(key, AUTO) for key in NUMERICS_KEYS}
        for key, choices in NUMERICS_KEYS.items():
            if out[key] not in (AUTO, *choices):
                raise fail(f"{what} {key} must be one of {', '.join((AUTO, *choices))}, got {out[key]!r}", key)
        return out

    numerics = checked_numerics(victim, "victim")
    for key in NUMERICS_KEYS:
        victim.pop(key, None)
    craft = data.get("craft", {})
    if not isinstance(craft, dict) or set(craft) - set(NUMERICS_KEYS):
        bad = sorted(set(craft) - set(NUMERICS_KEYS)) if isinstance(craft, dict) else ["craft"]
        raise fail(f"unknown craft option {bad[0]!r}; known: {', '.join(sorted(NUMERICS_KEYS))}", bad[0])
    craft_numerics = checked_numerics(craft, "craft")
    resources = data.get("resources", {})
    if not isinstance(resources, dict) or set(resources) - set(RESOURCE_KEYS):
        bad = sorted(set(resources) - set(RESOURCE_KEYS)) if isinstance(resources, dict) else ["resources"]
        raise fail(f"unknown resources option {bad[0]!r}; known: {', '.join(RESOURCE_KEYS)}", bad[0])
    try:
        Resources(**resources)
    except ConfigError as err:
        raise fail(f"resources: {err}", "resources") from None
    claims = data.get("claims", {})
    if not isinstance(claims, dict) or set(claims) - CLAIMS_KEYS:
        bad = sorted(set(claims) - CLAIMS_KEYS) if isinstance(claims, dict) else ["claims"]
        raise fail(f"unknown claims option {bad[0]!r}; known: {', '.join(sorted(CLAIMS_KEYS))}", bad[0])
    primary = claims.get("primary", [])
    if not isinstance(primary, list) or not all(isinstance(c, str) and c for c in primary) or (claims and not primary):
        raise fail("claims primary must be a non-empty list of claim ids", "primary")
    if len(set(primary)) != len(primary):
        raise fail(f"claims primary lists a claim twice: {primary}", "primary")
    claims_alpha = claims.get("alpha")
    if claims_alpha is not None and (
        isinstance(claims_alpha, bool) or not isinstance(claims_alpha, (int, float)) or not 0 < claims_alpha < 1
    ):
        raise fail(f"claims alpha must be a number in (0, 1), got {claims_alpha!r}", "alpha")
    looks = claims.get("looks", [])
    if not isinstance(looks, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in looks):
        raise fail("claims looks must be a list of numbers of poisons, e.g. [6, 10]", "looks")
    if looks and (looks[0] < 2 or any(b <= a for a, b in itertools.pairwise(looks))):
        raise fail(f"claims looks must increase from at least 2 poisons, got {looks}", "looks")
    victim_seeds = data.get("victim_seeds", NESTED)
    if victim_seeds not in VICTIM_SEEDINGS:
        raise fail(f"victim_seeds must be {NESTED!r} or {SHARED!r}, got {victim_seeds!r}", "victim_seeds")
    preset = data.get("preset")
    if preset is not None and preset not in PRESETS:
        raise fail(f"unknown preset {preset!r}; choose {', '.join(PRESETS[:-1])} or {PRESETS[-1]}", "preset")

    grids = []
    raw_grids = data["grid"]
    if not isinstance(raw_grids, list) or not raw_grids:
        raise fail("grid must be one or more [[grid]] tables", "grid")
    for n, g in enumerate(raw_grids):
        header = grid_lines[n] if n < len(grid_lines) else 0
        unknown = sorted(set(g) - GRID_KEYS)
        if unknown:
            raise fail(f"unknown grid key {unknown[0]!r}; known: {', '.join(sorted(GRID_KEYS))}", unknown[0])
        lists = {}
        for key, registry in (("attacks", ATTACKS), ("recipes", RECIPES), ("archs", ARCHS)):
            values = g.get(key)
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise fail(f"grid {key} must be a non-empty list of names", key)
            for v in values:
                if v not in registry and not (key == "attacks" and v == CLEAN):
                    raise fail(registry.unknown_message(v), f'"{v}"')
            lists[key] = tuple(values)
        surrogate = g.get("surrogate")
        if surrogate is not None and surrogate not in ARCHS:
            raise fail(ARCHS.unknown_message(str(surrogate)), f'"{surrogate}"')
        defenses = g.get("defenses", [NO_DEFENSE])
        if not isinstance(defenses, list) or not defenses or not all(isinstance(d, str) for d in defenses):
            raise fail("grid defenses must be a non-empty list of names", "defenses")
        for d in defenses:
            if d != NO_DEFENSE and d not in DEFENSES:
                raise fail(DEFENSES.unknown_message(d) + f' (or "{NO_DEFENSE}")', f'"{d}"')
        options = g.get("options", {})
        if not isinstance(options, dict):
            raise fail("grid options must be a table of attack options", "options")
        try:
            sweep = swept_options(options)
        except ConfigError as err:
            raise fail(str(err), "options") from None
        protocols = g.get("protocols", [SCRATCH])
        if not isinstance(protocols, list) or not protocols or not all(isinstance(p, str) for p in protocols):
            raise fail("grid protocols must be a non-empty list of names", "protocols")
        for p in protocols:
            if p not in PROTOCOLS:
                raise fail(PROTOCOLS.unknown_message(p), f'"{p}"')
        try:
            pretrained = pretrained_label(g.get("pretrained", PRETRAINED_SOURCES[0]))
        except ConfigError as err:
            raise fail(str(err), "pretrained") from None
        grid_victim = g.get("victim", {})
        if not isinstance(grid_victim, dict) or set(grid_victim) - RECIPE_KEYS:
            bad = sorted(set(grid_victim) - RECIPE_KEYS) if isinstance(grid_victim, dict) else ["victim"]
            raise fail(
                f"unknown grid victim option {bad[0]!r}; known: {', '.join(sorted(RECIPE_KEYS))}", bad[0], header
            )
        grids += [
            Grid(
                lists["attacks"],
                lists["recipes"],
                lists["archs"],
                surrogate,
                tuple(defenses),
                tuple(sorted(combination.items())),
                tuple(protocols),
                pretrained,
                craft_seeds(g, None, header),
                integer("trials", None, 1, g, header),
                tuple(sorted(grid_victim.items())),
            )
            for combination in sweep
        ]

    suite = Suite(
        name=str(data["name"]),
        description=str(data.get("description", "")).strip(),
        dataset=dataset,
        trials=integer("trials", 3, 1),
        trial_seed=integer("trial_seed", 100, 0, maximum=MAX_SEED),
        craft_seeds=seeds,  # type: ignore[arg-type]
        preset=preset,
        clean_baseline=bool(data.get("clean_baseline", True)),
        victim=tuple(sorted(victim.items())),
        grids=tuple(grids),
        source=source,
        resources=tuple(sorted(resources.items())),
        primary_claims=tuple(primary),
        claims_alpha=None if claims_alpha is None else float(claims_alpha),
        claims_looks=tuple(looks),
        victim_seeds=victim_seeds,
        **numerics,
        **{f"craft_{key}": value for key, value in craft_numerics.items()},
    )
    # Build every attack config and recipe now, so bad options fail before anything runs (a
    # config does not depend on the craft seed: one check per attack and options).
    checked = {
        json.dumps([attack, g.surrogate, g.options], sort_keys=True, default=str): PoisonSpec(
            attack, suite.dataset, suite.preset, g.surrogate, g.options, (g.craft_seeds or suite.craft_seeds)[0]
        )
        for g in suite.grids
        for attack in g.attacks
        if attack != CLEAN
    }
    for spec in checked.values():
        try:
            create_attack(spec.attack, dataset=spec.dataset, preset=spec.preset, **spec.overrides())
        except ConfigError as err:
            raise fail(f"attack {spec.attack!r}: {err}", f'"{spec.attack}"') from None
    for grid in suite.grids:
        for recipe in grid.recipes:
            try:
                RECIPES.create(recipe, **{**dict(suite.victim), **dict(grid.victim)})
            except ConfigError as err:
                raise fail(f"recipe {recipe!r}: {err}", "victim") from None
    return suite
