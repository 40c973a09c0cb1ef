"""Apply a defense to one victim's training: what it trains on, with which recipe and gradient
transform, and how well a data-level filter found the poisons."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from sapabench.core.datasets import ImageDataset, PoisonLike, load_dataset
from sapabench.core.errors import ConfigError
from sapabench.core.numerics import FP32, Numerics
from sapabench.core.runtime import seeded
from sapabench.defenses.base import (
    MODEL_STATS,
    DataDefense,
    Defense,
    DefenseContext,
    ModelContext,
    ModelDefense,
    Repaired,
    TrainingDefense,
    filtered,
)
from sapabench.victims.recipes import Recipe
from sapabench.victims.train import GradientTransform, TrainResult, VictimSpec, accuracy, train_packed


@dataclass(frozen=True)
class Defended:
    """What to train on: the dataset, the poison still to apply (None when a data-level defense
    already applied and filtered it), the recipe, the gradient transform (training-level
    defenses) and the filter's statistics."""

    dataset: ImageDataset
    poison: PoisonLike | None
    recipe: Recipe
    grad_transform: GradientTransform | None
    stats: dict[str, Any]
    repair: ModelPlan | None = None  # a model-level defense trains the victim itself (train_defended)


@dataclass(frozen=True)
class ModelPlan:
    """A model-level defense about to train its victim: the defense, the defender's clean held-out
    split, and where the poisons are in the defended training set (for its statistics only: the
    defense is never told)."""

    defense: ModelDefense
    heldout_x: Tensor
    heldout_y: Tensor
    poisoned: Tensor


def heldout_split(n: int, fraction: float, seed: int) -> Tensor:
    """The training indices held out as a model-level defense's clean split: ``fraction`` of
    ``range(n)`` (at least 2; none for 0), drawn with a generator of the victim's seed (sorted)."""
    count = 0 if fraction == 0 else max(2, round(fraction * n))
    g = torch.Generator().manual_seed(
        int.from_bytes(hashlib.sha256(f"heldout:{seed}".encode()).digest()[:8], "little") >> 1
    )
    return torch.randperm(n, generator=g)[:count].sort().values


def distinct_indices(indices: Tensor, n: int) -> bool:
    """Whether ``indices`` (int64, on the CPU) is one-dimensional, in ``[0, n)`` and without repeats:
    what a defense's kept or set-aside training indices must be."""
    if indices.ndim != 1:
        return False
    in_range = not len(indices) or (int(indices.min()) >= 0 and int(indices.max()) < n)
    return in_range and len(torch.unique(indices)) == len(indices)


def filter_stats(kept: Tensor, n: int, poison_indices: Tensor | None, labels: Tensor | None = None) -> dict[str, Any]:
    """Removed count, and precision/recall of the removed images against the true poisons; with
    the training ``labels``, where the poisons sit in some classes only (a targeted or backdoor
    poison), the removed images of those classes (``class_removed``) and the share of them that
    were poisons (``class_precision``): whether a filter looks in the right place."""
    removed = torch.ones(n, dtype=torch.bool)
    removed[kept.cpu()] = False
    stats: dict[str, Any] = {"removed": int(removed.sum())}
    if poison_indices is not None and len(poison_indices):
        is_poison = torch.zeros(n, dtype=torch.bool)
        is_poison[poison_indices.cpu()] = True
        hits = int((removed & is_poison).sum())
        if stats["removed"]:
            stats["precision"] = hits / stats["removed"]
        stats["recall"] = hits / int(is_poison.sum())
        if labels is not None:
            y = labels.cpu()
            in_classes = torch.isin(y, torch.unique(y[is_poison]))
            if not bool(in_classes.all()):
                stats["class_removed"] = int((removed & in_classes).sum())
                if stats["class_removed"]:
                    stats["class_precision"] = hits / stats["class_removed"]
    return stats


def apply_defense(
    defense: Defense,
    dataset: ImageDataset,
    poison: PoisonLike | None,
    arch: str,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    numerics: Numerics = FP32,
) -> Defended:
    """How the victim of ``recipe`` trains on ``dataset`` + ``poison`` under ``defense``; a data
    filter's defender model trains in the victim's ``numerics``. The statistics of a data-level
    defense: removed, precision, recall (against the true poisons), ``defense_s`` (the whole
    defense in this call) and ``defender_s`` (what its own model took to train, once per poison)."""
    if isinstance(defense, TrainingDefense):
        trained = defense.recipe(recipe)
        resolved = trained.with_train(
            epochs=trained.train.epochs or dataset.default_epochs,
            batch_size=trained.train.batch_size or dataset.default_batch_size,
        )
        defense = defense.for_training(resolved, dataset.num_train)
        return Defended(
            dataset, poison, trained, defense.gradient_transform(), defense.stats(resolved, dataset.num_train)
        )
    if isinstance(defense, ModelDefense):
        return _hold_out(defense, dataset, poison, recipe, seed, device)
    if not isinstance(defense, DataDefense):
        raise ConfigError(f"defense {defense.name!r} is not a data-level, training-level or model-level defense")
    t0 = time.perf_counter()
    ds = dataset.to(device)
    x, y = ds.poisoned_train(poison)
    ctx = DefenseContext(
        x, y, ds.num_classes, arch, recipe, seed, device, ds.name, ds.mean, ds.std, ds.flip_invariant, numerics
    )
    poisoned = torch.zeros(0, dtype=torch.int64) if poison is None else torch.as_tensor(poison.indices).cpu()
    with seeded(seed, device):
        out = filtered(defense, ctx, poisoned)
    kept = torch.as_tensor(out.kept, dtype=torch.int64).cpu()
    if not distinct_indices(kept, len(x)):
        raise ConfigError(
            f"defense {defense.name!r} returned invalid kept indices (need distinct indices in [0, {len(x)}))"
        )
    if len(kept) < 2:
        raise ConfigError(f"defense {defense.name!r} removed (almost) every training image")
    images = x[kept.to(device)] if out.images is None else out.images[kept.to(out.images.device)].to(device)
    if images.shape != (len(kept), *x.shape[1:]) or not torch.isfinite(images).all():
        raise ConfigError(
            f"defense {defense.name!r} returned images of shape {tuple(images.shape)}, expected {(len(kept), *x.shape[1:])}"
        )
    if float(images.min()) < 0 or float(images.max()) > 1:
        raise ConfigError(f"defense {defense.name!r} returned pixels outside [0, 1]")
    defended = replace(
        ds, name=f"{ds.name}+{defense.name}", train_x=images.contiguous(), train_y=y[kept.to(device)], fingerprint=""
    )
    stats = filter_stats(kept, len(x), None if poison is None else poisoned, y)
    if out.images is not None and stats["removed"] == 0:  # pure purification: nothing was filtered
        stats = {"removed": 0}
    defender_s = float(out.defender_s) if isinstance(out.defender_s, (int, float)) else 0.0
    stats.update(defense_s=time.perf_counter() - t0, defender_s=max(0.0, defender_s))
    return Defended(defended, None, recipe, None, stats)


def _hold_out(
    defense: ModelDefense,
    dataset: ImageDataset,
    poison: PoisonLike | None,
    recipe: Recipe,
    seed: int,
    device: torch.device,
) -> Defended:
    """A model-level defense's victim: the training set as given (poison applied) minus the held-out
    split, whose clean images the defender holds."""
    ds = dataset.to(device)
    x, y = ds.poisoned_train(poison)
    fraction = defense.heldout_fraction
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction < 0.5:
        raise ConfigError(
            f"defense {defense.name!r}: invalid heldout_fraction={fraction!r}: must be in [0, 0.5), e.g. 0.05"
        )
    held = heldout_split(len(x), float(fraction), seed)
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[held] = False
    kept = torch.nonzero(keep).flatten()
    poisoned = torch.zeros(0, dtype=torch.int64)
    if poison is not None and len(poison.indices):
        is_poison = torch.zeros(len(x), dtype=torch.bool)
        is_poison[torch.as_tensor(poison.indices).cpu()] = True
        poisoned = torch.nonzero(is_poison[kept]).flatten()  # positions in the defended training set
    on = kept.to(device)
    defended = replace(ds, name=f"{ds.name}+{defense.name}", train_x=x[on].contiguous(), train_y=y[on], fingerprint="")
    plan = ModelPlan(defense, ds.train_x[held.to(device)], ds.train_y[held.to(device)], poisoned)
    return Defended(defended, None, recipe, None, {"heldout": len(held)}, plan)


def train_defended(
    spec: VictimSpec, plan: ModelPlan | None, device: torch.device, step: str = "auto"
) -> tuple[TrainResult, dict[str, float]]:
    """Train the victim of ``spec``: plainly, or (``plan``) by its model-level defense, whose
    result is checked and measured by the harness: its set-aside images against the poisons
    (removed, precision, recall), its own statistics, and ``defense_s`` (the defended training's
    seconds, victim included). The clean accuracy is measured here, never taken from the defense."""
    if plan is None:
        return train_packed([spec], device=device, step=step)[0], {}
    name, t0 = plan.defense.name, time.perf_counter()
    with seeded(spec.seed, device):
        out = plan.defense.train(ModelContext(spec, plan.heldout_x, plan.heldout_y, device, step))
    if not isinstance(out, Repaired) or not isinstance(out.result, TrainResult):
        raise ConfigError(f"defense {name!r} returned {type(out).__name__}, not a Repaired holding a TrainResult")
    data = load_dataset(spec.dataset) if isinstance(spec.dataset, str) else spec.dataset
    stats: dict[str, float] = {}
    if out.removed is not None:
        removed = torch.as_tensor(out.removed, dtype=torch.int64).cpu().flatten()
        n = data.num_train
        if not distinct_indices(removed, n):
            raise ConfigError(
                f"defense {name!r} set aside invalid training indices (need distinct indices in [0, {n}))"
            )
        keep = torch.ones(n, dtype=torch.bool)
        keep[removed] = False
        stats.update(
            filter_stats(torch.nonzero(keep).flatten(), n, plan.poisoned if len(plan.poisoned) else None, data.train_y)
        )
    for key, value in out.stats.items():
        if key not in MODEL_STATS or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"defense {name!r} reported {key}={value!r}: a model-level defense reports {', '.join(MODEL_STATS)} "
                "as finite non-negative numbers"
            )
        stats[key] = float(value)
    model = out.result.model.eval()
    test = data.to(device)
    result = replace(out.result, clean_accuracy=accuracy(model, test.test_x, test.test_y))
    stats["defense_s"] = time.perf_counter() - t0
    return result, stats
