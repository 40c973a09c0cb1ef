"""The trial pipeline: one victim from poison to number, the same way for every command.

    craft (once per poison)        run_trial (once per victim)
    PoisonSpec --craft--> folder   folder --load + validate--> PoisonSet --defense--> training data,
                                   recipe, gradient transform --train_victim--> model --measure-->
                                   TrialRecord

``sapabench run`` crafts each poison of a suite once (:func:`craft`) and runs every cell's
:class:`Trial`; ``sapabench verify`` re-crafts and re-runs sampled trials of an entry;
``sapabench evaluate`` runs trials on a poison folder. Both functions are module-level and
take picklable arguments, so an executor can ship them to other processes, and they never
raise: a failure comes back as a record with its error.
"""

from __future__ import annotations

import hashlib
import json
import platform
import resource
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sapabench.attacks import SURROGATES_S, clean_reference, create_attack, measure, test_logits
from sapabench.benchmark.suite import Cell, PoisonSpec, checkpoint_of
from sapabench.core.atomic import replacing
from sapabench.core.datasets import DataSource, ImageDataset
from sapabench.core.errors import ConfigError
from sapabench.core.interrupts import is_user_stop
from sapabench.core.names import NO_DEFENSE, SCRATCH
from sapabench.core.numerics import FP32, Numerics
from sapabench.core.poison import PoisonSet, recorded_sha256
from sapabench.core.provenance import provenance
from sapabench.core.runtime import deterministic_algorithms, device_name, isa, resolve_device
from sapabench.core.threats import CLEAN_ACCURACY, NO_THREAT
from sapabench.defenses import DEFENSES, apply_defense
from sapabench.defenses.apply import ModelPlan, train_defended
from sapabench.victims.pretrained import (
    CleanRun,
    Weights,
    cache_dir,
    checkpoint_weights,
    clean_model,
    initial_weights,
    recorded_numerics,
    state_of,
)
from sapabench.victims.protocols import INDEPENDENT_SEED, NO_PRETRAINED, get_protocol
from sapabench.victims.recipes import RECIPES
from sapabench.victims.train import TrainResult, VictimSpec, train_packed

DONE, FAILED = "done", "failed"


def error_text(err: BaseException) -> str:
    """One line for a results row: a user error as it is, anything else with where it happened."""
    if isinstance(err, ConfigError):
        return str(err)
    tb = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(err).__name__}: {err}{where}"


@lru_cache(maxsize=4)
def cached_dataset(source: DataSource) -> ImageDataset:
    """Each process loads a dataset once, however many trials it runs on it."""
    return source.load()


def where_it_ran(device: torch.device | None = None) -> dict[str, str | None]:
    """The host and device (as :func:`sapabench.core.runtime.device_name` names it) a record was made on,
    so that timings from different machines are never averaged together."""
    return {"host": platform.node() or "unknown", "device": None if device is None else device_name(device)}


# ----------------------------------------------------------------------------------- crafting


@dataclass(frozen=True)
class PoisonRef:
    """A crafted poison set on disk, with what crafting recorded about it."""

    folder: str
    sha256: str
    craft_s: float
    surrogates_s: float = 0.0  # what its clean surrogates took to train (every ensemble member)


@dataclass(frozen=True)
class CraftTask:
    spec: PoisonSpec
    folder: str
    source: DataSource
    device: str
    deterministic: bool = False  # core.runtime.deterministic_algorithms around the crafting


@dataclass(frozen=True)
class CraftRecord:
    """The outcome of crafting one poison set (a row of the results' poisons table)."""

    status: str
    path: str | None = None
    sha256: str | None = None
    craft_s: float | None = None
    threat: str | None = None
    eps: float | None = None
    budget: float | None = None
    error: str | None = None
    surrogates_s: float | None = None
    task_s: float | None = None  # the whole crafting task (surrogates trained in it included)
    device: str | None = None
    host: str | None = None

    @property
    def poison(self) -> PoisonRef | None:
        """The crafted poison, or None when crafting failed."""
        if self.status != DONE or self.path is None or self.sha256 is None:
            return None
        return PoisonRef(self.path, self.sha256, self.craft_s or 0.0, self.surrogates_s or 0.0)


def craft(task: CraftTask) -> CraftRecord:
    """Craft, save (atomically) and describe one poison set; never raises."""
    spec = task.spec
    t0 = time.perf_counter()
    try:
        where = where_it_ran(resolve_device(task.device))
        attack = create_attack(spec.attack, dataset=spec.dataset, preset=spec.preset, **spec.overrides())
        with deterministic_algorithms(task.deterministic):
            poison = attack.run(
                cached_dataset(task.source), seed=spec.craft_seed, device=task.device, numerics=spec.numerics
            )
        folder = poison.save(task.folder)
        return CraftRecord(
            DONE,
            path=str(folder),
            sha256=recorded_sha256(folder),
            craft_s=poison.craft_s,
            surrogates_s=float(poison.extra.get(SURROGATES_S, 0.0)),
            threat=poison.threat.kind,
            eps=poison.eps,
            budget=poison.budget,
            task_s=time.perf_counter() - t0,
            **where,
        )
    except BaseException as err:  # recorded, the run goes on
        if is_user_stop(err):  # anything else a plugin raises is this task's failure
            raise
        return CraftRecord(FAILED, error=error_text(err), task_s=time.perf_counter() - t0, **where_it_ran())


# ------------------------------------------------------------------------------------ trials


@dataclass(frozen=True)
class Trial:
    """One victim to train and measure.

    Attributes:
        arch, recipe, recipe_options: the victim and how it is trained
            (``RECIPES.create(recipe, **dict(recipe_options))``).
        defense: a registered defense, or ``none``.
        seed: the victim's seed (initialisation, batch order, augmentation).
        source, device: where the data comes from and where to train.
        poison: the poison set, or None for a clean victim (metric: clean accuracy).
        train_on_poison: False trains on clean data and still measures the poison's metric
            (the clean baseline of ``sapabench evaluate``).
        numerics: the victim's precision and memory format (:mod:`sapabench.core.numerics`).
        protocol, pretrained: the victim protocol and the source of its pretrained model
            (:mod:`sapabench.victims.protocols`; :func:`start_of` turns them into starting weights).
        deterministic: train under :func:`sapabench.core.runtime.deterministic_algorithms` (recorded in
            the trial's provenance).
        train_step: how training steps run (``auto``, ``eager`` or ``graph``:
            :data:`sapabench.victims.train.STEPS`; the one used is recorded in the provenance).
    """

    arch: str
    recipe: str
    recipe_options: tuple[tuple[str, Any], ...]
    defense: str
    seed: int
    source: DataSource
    device: str
    poison: PoisonRef | None = None
    train_on_poison: bool = True
    numerics: Numerics = FP32
    protocol: str = SCRATCH
    pretrained: str = NO_PRETRAINED
    deterministic: bool = False
    train_step: str = "auto"

    @classmethod
    def of(
        cls,
        cell: Cell,
        poison: PoisonRef | None,
        source: DataSource,
        device: str,
        deterministic: bool = False,
        train_step: str = "auto",
    ) -> Trial:
        return cls(
            cell.arch,
            cell.recipe,
            cell.victim,
            cell.defense,
            cell.trial_seed,
            source,
            device,
            poison,
            numerics=cell.numerics,
            protocol=cell.protocol,
            pretrained=cell.pretrained,
            deterministic=deterministic,
            train_step=train_step,
        )


DEFENSE_STATS = {
    "removed": "defense_removed",
    "precision": "defense_precision",
    "recall": "defense_recall",
    "defense_s": "defense_s",
    "defender_s": "defender_s",
    "epsilon": "defense_epsilon",
    "delta": "defense_delta",
    "class_removed": "defense_class_removed",
    "class_precision": "defense_class_precision",
    "heldout": "defense_heldout",
    "pruned": "defense_pruned",
    "stopped_epoch": "defense_stopped_epoch",
    "peak_test_accuracy": "defense_peak_test_accuracy",
}
"""A defense's statistics (``apply_defense``'s keys) and the :class:`TrialRecord` field each is
recorded in; an entry keeps their means as ``<key>_mean`` in ``defense_stats``."""


@dataclass(frozen=True)
class TrialRecord:
    """What one trial measured (``status`` DONE) or why it failed (FAILED, with ``error``).

    The results database stores one per cell, one column per field (``benchmark.store``).
    Seconds: ``craft_s`` (of the trial's poison, without training its clean surrogates),
    ``surrogates_s`` (what those surrogates took to train, every ensemble member), ``train_s``,
    ``eval_s``; ``images_per_s`` is training throughput; ``peak_memory_mb`` the peak CUDA memory
    of the trial, or the process's peak resident memory on CPU.
    """

    status: str
    error: str | None = None
    provenance: dict[str, Any] | None = None
    threat: str | None = None
    metric_name: str | None = None
    metric: float | None = None
    clean_accuracy: float | None = None
    eps: float | None = None
    budget: float | None = None
    craft_s: float | None = None
    surrogates_s: float | None = None
    train_s: float | None = None
    eval_s: float | None = None
    images_per_s: float | None = None
    peak_memory_mb: float | None = None
    poison_sha256: str | None = None
    defense_removed: int | None = None
    defense_precision: float | None = None
    defense_recall: float | None = None
    defense_s: float | None = (
        None  # a data-level defense's seconds in this trial (its model included when trained here)
    )
    defender_s: float | None = None  # what the defender's own model took to train (shared by a poison's filters)
    defense_epsilon: float | None = None  # DP-SGD's privacy spent, (epsilon, delta)
    defense_delta: float | None = None
    defense_class_removed: int | None = None  # removed from the classes the poisons sit in (when not all)
    defense_class_precision: float | None = None  # the share of those that were poisons
    defense_heldout: int | None = None  # a model-level defense's clean held-out images
    defense_pruned: float | None = None  # fine-pruning's pruned units
    defense_stopped_epoch: float | None = None  # early stopping's chosen epoch
    defense_peak_test_accuracy: float | None = None  # the peak test accuracy over the epochs (early stopping)
    diagnostics: dict[str, float] = field(default_factory=dict)
    task_s: float | None = None  # the whole trial, as its executor task held the device
    device: str | None = None
    host: str | None = None


def start_of(trial: Trial, poison: PoisonSet | None, dataset: ImageDataset, device: torch.device) -> Weights | None:
    """The weights the trial's victim starts from under its protocol (None: a fresh init).

    ``known-init`` starts from the initial weights of the surrogate the poison was crafted
    against (its architecture must be the victim's); a clean victim has no attacker, so its
    known-init is its own seed's initialisation, the scratch victim's. A pretrained source
    ``surrogate`` is the clean run the attacker crafted against (seeded with the craft seed;
    of the victim's architecture), or for a clean victim the same run seeded with the victim's
    seed; ``independent`` a clean run seeded apart from every attacker; ``file:`` the checkpoint.
    """
    protocol = get_protocol(trial.protocol)
    surrogate = poison.surrogate if poison is not None else None
    if protocol.start == "random":
        return None
    if protocol.start == "attacker-init":
        if surrogate is None:
            return initial_weights(trial.arch, dataset, trial.seed)
        if surrogate.get("arch") != trial.arch:
            raise ConfigError(
                f"protocol known-init re-runs the surrogate's initialisation: the victim must be the surrogate's "
                f"architecture ({surrogate.get('arch')}), not {trial.arch}; use scratch for other victims"
            )
        return initial_weights(trial.arch, dataset, int(surrogate["seed"]))
    ckpt = checkpoint_of(trial.pretrained)
    if ckpt is not None:
        return checkpoint_weights(ckpt, trial.arch, dataset)
    if trial.pretrained == "independent":
        run = CleanRun(trial.arch, seed=INDEPENDENT_SEED + trial.seed)
    elif surrogate and "seed" in surrogate:  # model-free attacks (separable noise ...) record none
        run = CleanRun(
            trial.arch,
            surrogate.get("recipe", "sgd"),
            surrogate.get("epochs"),
            int(surrogate["seed"]),
            recorded_numerics(surrogate),  # the attacker's clean run: trained in its crafting numerics
        )
    else:
        run = CleanRun(trial.arch, seed=trial.seed)
    model, _ = clean_model(run, dataset, torch.device("cpu"))
    return state_of(model)


def _reference_key(trial: Trial, start: Weights | None, dataset: ImageDataset, device: torch.device) -> str:
    """What a clean victim's test logits depend on: everything of the trial but the poison."""
    digest = hashlib.sha256()
    if start is not None:
        for name in sorted(start):
            digest.update(name.encode())
            digest.update(start[name].contiguous().numpy().tobytes())
    fields = [
        dataset.name,
        dataset.fingerprint,
        trial.arch,
        trial.recipe,
        json.dumps(dict(trial.recipe_options), sort_keys=True),
        trial.defense,
        trial.seed,
        trial.numerics.label,
        trial.protocol,
        digest.hexdigest(),
        device_name(device),
        isa(device),
        torch.__version__,
    ]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class _Prepared:
    """A trial up to its training: the device, the (defended) data, poison, recipe and start."""

    trial: Trial
    device: torch.device
    provenance: dict[str, Any]
    where: dict[str, str | None]
    dataset: ImageDataset
    poison: PoisonSet | None
    start: Weights | None
    spec: VictimSpec
    defense_stats: dict[str, float]
    repair: ModelPlan | None = None  # a model-level defense trains this victim itself


def _victim(
    trial: Trial, dataset: ImageDataset, poison: PoisonSet | None, start: Weights | None, device: torch.device
) -> tuple[VictimSpec, dict[str, float], ModelPlan | None]:
    """Apply the trial's defense: what its victim trains on, the defense's statistics, and the
    model-level defense that trains it (if any)."""
    recipe = RECIPES.create(trial.recipe, **dict(trial.recipe_options))
    data, grad_transform, stats, repair = dataset, None, {}, None
    if trial.defense != NO_DEFENSE:
        defense = DEFENSES.create(trial.defense)
        defended = apply_defense(defense, dataset, poison, trial.arch, recipe, trial.seed, device, trial.numerics)
        data, poison, recipe = defended.dataset, defended.poison, defended.recipe
        grad_transform, stats, repair = defended.grad_transform, defended.stats, defended.repair
    spec = VictimSpec(
        trial.arch, recipe, data, poison, trial.seed, grad_transform, trial.numerics, trial.protocol, start
    )
    return spec, stats, repair


Trained = tuple[TrainResult, dict[str, float]]
"""A trained victim and what its model-level defense reported in training (empty without one)."""


def _train(
    trial: Trial,
    dataset: ImageDataset,
    poison: PoisonSet | None,
    start: Weights | None,
    device: torch.device,
) -> Trained:
    """Apply the trial's defense and train its victim on ``dataset`` + ``poison``."""
    spec, stats, repair = _victim(trial, dataset, poison, start, device)
    result, trained = train_defended(spec, repair, device, trial.train_step)
    return result, {**stats, **trained}


def clean_logits(
    trial: Trial, dataset: ImageDataset, start: Weights | None, device: torch.device, model: nn.Module | None = None
) -> Tensor:
    """The test-set logits of the trial's victim trained on *clean* data (same seed, protocol,
    starting weights, defense and numerics): the paired reference of a targeted trial.

    Cached on disk (safetensors) by :func:`_reference_key`, so the clean victim of one seed is
    trained once for every poison that needs it; pass the clean ``model`` when it was just
    trained (a clean cell), which fills the cache.
    """
    path = cache_dir() / "clean-logits" / f"{_reference_key(trial, start, dataset, device)}.safetensors"
    if model is None and path.is_file():
        try:
            return load_file(str(path))["logits"]
        except Exception:  # a damaged cache entry is recomputed, never trusted
            pass
    if model is None:
        model = _train(trial, dataset, None, start, device)[0].model
    logits = test_logits(model, dataset.to(device).test_x).cpu().contiguous()
    with replacing(path) as tmp:
        save_file({"logits": logits}, str(tmp))
    return logits


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is the process's peak resident set (KiB on Linux), not per trial.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_trial(trial: Trial) -> TrialRecord:
    """Load the poison, apply the defense, train the victim and measure it; never raises."""
    return run_trials([trial])[0]


def run_trials(trials: Sequence[Trial]) -> list[TrialRecord]:
    """Several trials as one task, their victims trained packed (:func:`sapabench.victims.train.train_packed`)
    where they can be: one at a time on the CPU gains nothing, so packs are for CUDA, where small
    victims leave the GPU idle between kernels. Victims with a gradient transform train alone.
    A pack that runs out of GPU memory is split in halves and retried (the rows say how many
    trained together: ``packed`` in the provenance). Never raises; each trial's record is its own.
    """
    t0 = time.perf_counter()
    with deterministic_algorithms(any(t.deterministic for t in trials)):  # a run's trials share the flag
        prepared: list[_Prepared | TrialRecord] = [_prepare(t) for t in trials]
        ready = [p for p in prepared if isinstance(p, _Prepared)]
        trained: dict[int, Trained | BaseException] = {}
        for group in _packs(ready):
            trained.update(_train_pack(group))
        records = [p if isinstance(p, TrialRecord) else _finish(p, trained[id(p)]) for p in prepared]
    share = (time.perf_counter() - t0) / max(1, len(trials))
    return [replace(r, task_s=share) for r in records]


def _packs(ready: Sequence[_Prepared]) -> list[list[_Prepared]]:
    """Victims that can train together: on CUDA, without a gradient transform or a model-level defense."""
    packable = [p for p in ready if p.device.type == "cuda" and p.spec.grad_transform is None and p.repair is None]
    alone = [[p] for p in ready if p not in packable]
    return ([packable] if packable else []) + alone


def _train_pack(group: list[_Prepared]) -> dict[int, Trained | BaseException]:
    """Train ``group`` packed; on running out of GPU memory, each half again (down to one)."""
    first = group[0]
    try:
        if first.repair is not None:  # alone (_packs)
            return {id(first): train_defended(first.spec, first.repair, first.device, first.trial.train_step)}
        results = train_packed([p.spec for p in group], device=first.device, step=first.trial.train_step)
        return {id(p): (r, {}) for p, r in zip(group, results, strict=True)}
    except torch.cuda.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        if len(group) == 1:
            return {id(first): err}
        half = len(group) // 2
        return {**_train_pack(group[:half]), **_train_pack(group[half:])}
    except BaseException as err:  # a plugin's SystemExit or KeyboardInterrupt too, not the user's Ctrl-C
        if is_user_stop(err):
            raise
        return {id(p): err for p in group}


def _prepare(trial: Trial) -> _Prepared | TrialRecord:
    prov, where = None, where_it_ran()
    try:
        device = resolve_device(trial.device)
        prov, where = provenance(device), where_it_ran(device)
        dataset = cached_dataset(trial.source)
        # Loading re-validates the artifact (hash, bounds, dataset) before anything trains on it.
        poison = PoisonSet.load(trial.poison.folder, dataset) if trial.poison else None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = start_of(trial, poison, dataset, device)
        spec, stats, repair = _victim(trial, dataset, poison if trial.train_on_poison else None, start, device)
        return _Prepared(trial, device, prov, where, dataset, poison, start, spec, stats, repair)
    except BaseException as err:  # a failing trial is recorded with its error; the run goes on
        if is_user_stop(err):  # anything else a plugin raises is this task's failure
            raise
        return TrialRecord(FAILED, error=error_text(err), provenance=prov, **where)


def _finish(p: _Prepared, trained: Trained | BaseException) -> TrialRecord:
    trial, device, dataset, poison, start = p.trial, p.device, p.dataset, p.poison, p.start
    try:
        if isinstance(trained, BaseException):
            raise trained
        result, stats = trained[0], {**p.defense_stats, **trained[1]}
        prov = {**p.provenance, "train_step": result.timing.step, "packed": result.timing.packed}
        if result.timing.fallback is not None:
            prov["train_step_fallback"] = result.timing.fallback
        t0 = time.perf_counter()
        if poison is None:  # the clean accuracy train_victim measured on the (shared) test set is the metric
            threat, metric_name, metric, diagnostics = NO_THREAT, CLEAN_ACCURACY, result.clean_accuracy, {}
            eps = budget = 0.0
            clean_logits(trial, dataset, start, device, result.model)  # the reference of targeted trials
        else:
            m = measure(result.model, poison, dataset, result.clean_accuracy)
            threat, metric_name, metric, diagnostics = poison.threat.kind, m.metric, m.value, m.diagnostics
            eps, budget = poison.eps, poison.budget
            if poison.threat.kind == "targeted":  # a clean-baseline trial's own victim is its reference
                reference = clean_logits(trial, dataset, start, device, None if trial.train_on_poison else result.model)
                diagnostics = {**diagnostics, **clean_reference(reference, poison)}
        return TrialRecord(
            DONE,
            provenance=prov,
            threat=threat,
            metric_name=metric_name,
            metric=metric,
            clean_accuracy=result.clean_accuracy,
            eps=eps,
            budget=budget,
            craft_s=trial.poison.craft_s if trial.poison else 0.0,
            surrogates_s=trial.poison.surrogates_s if trial.poison else 0.0,
            train_s=result.timing.total_s,
            eval_s=time.perf_counter() - t0 + result.eval_s,
            images_per_s=result.timing.images_per_s,
            peak_memory_mb=_peak_memory_mb(device),
            poison_sha256=trial.poison.sha256 if trial.poison else None,
            **{field: stats.get(stat) for stat, field in DEFENSE_STATS.items()},
            diagnostics=diagnostics,
            **p.where,
        )
    except BaseException as err:  # a failing trial is recorded with its error; the run goes on
        if is_user_stop(err):  # anything else a plugin raises is this task's failure
            raise
        return TrialRecord(FAILED, error=error_text(err), provenance=p.provenance, **p.where)
