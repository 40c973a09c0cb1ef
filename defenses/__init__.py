"""Defenses against data poisoning, and everything a defense author needs, importable from
here (``from sapabench.defenses import ...``).

Registered (``sapabench list defenses``): spectral-signatures, spectre, activation-clustering,
deep-knn, jpeg, grayscale (data-level); dp-sgd, gradient-shaping, adversarial, mixup, cutout, sam
(training-level); abl, fine-pruning, early-stopping (model-level); and the controls
oracle-filter and random-like-F for every built-in filter F (``defenses.controls``).

To write a defense: a dataclass (its fields are the options) subclassing :class:`DataDefense`
(implement ``filter(ctx: DefenseContext) -> Filtered``), :class:`TrainingDefense` (override
``recipe(base) -> Recipe`` and/or ``gradient_transform() -> GradientTransform``) or
:class:`ModelDefense` (implement ``train(ctx: ModelContext) -> Repaired``), decorated with
:func:`register_defense`. Errors: :class:`ConfigError`.
"""

from sapabench.core.errors import ConfigError
from sapabench.defenses import (  # noqa: F401  (registration)
    abl,
    controls,
    dp_sgd,
    early_stopping,
    filters,
    fine_pruning,
    purification,
    spectre,
    training,
)
from sapabench.defenses.apply import Defended, apply_defense, filter_stats
from sapabench.defenses.base import (
    DEFENSES,
    ControlFilter,
    DataDefense,
    Defense,
    DefenseContext,
    Filtered,
    ModelContext,
    ModelDefense,
    Repaired,
    TrainingDefense,
    register_defense,
)
from sapabench.victims.recipes import Recipe
from sapabench.victims.train import GradientTransform

__all__ = [
    "DEFENSES",
    "ConfigError",
    "ControlFilter",
    "DataDefense",
    "Defended",
    "Defense",
    "DefenseContext",
    "Filtered",
    "GradientTransform",
    "ModelContext",
    "ModelDefense",
    "Recipe",
    "Repaired",
    "TrainingDefense",
    "apply_defense",
    "filter_stats",
    "register_defense",
]
