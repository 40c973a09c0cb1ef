"""Apply a defense to one victim's training: what it trains on, with which recipe and gradient
transform, and how well a data-level filter found the poisons."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from sapabench.core.datasets import ImageDataset, PoisonLike
from sapabench.core.errors import ConfigError
from sapabench.core.numerics import FP32, Numerics
from sapabench.core.runtime import seeded
from sapabench.defenses.base import DataDefense, Defense, DefenseContext, TrainingDefense, filtered
from sapabench.victims.recipes import Recipe
from sapabench.victims.train import GradientTransform


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


def filter_stats(kept: Tensor, n: int, poison_indices: Tensor | None) -> dict[str, Any]:
    """Removed count, and precision/recall of the removed images against the true poisons."""
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
        return Defended(
            dataset, poison, trained, defense.gradient_transform(), defense.stats(resolved, dataset.num_train)
        )
    if not isinstance(defense, DataDefense):
        raise ConfigError(f"defense {defense.name!r} is neither a data-level nor a training-level defense")
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
    if (
        kept.ndim != 1
        or (len(kept) and (int(kept.min()) < 0 or int(kept.max()) >= len(x)))
        or len(torch.unique(kept)) != len(kept)
    ):
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
    stats = filter_stats(kept, len(x), None if poison is None else poisoned)
    if out.images is not None and stats["removed"] == 0:  # pure purification: nothing was filtered
        stats = {"removed": 0}
    defender_s = float(out.defender_s) if isinstance(out.defender_s, (int, float)) else 0.0
    stats.update(defense_s=time.perf_counter() - t0, defender_s=max(0.0, defender_s))
    return Defended(defended, None, recipe, None, stats)
