"""Victims: the architecture zoo, training recipes and ``train_victim``.

Public surface: ``ARCHS`` and ``build_model`` (architectures), ``RECIPES`` and :class:`Recipe`
(how a victim is trained), :func:`train_victim` / :class:`Trainer` (training one victim, with an
optional :data:`GradientTransform` hook for training-level defenses), :func:`train_packed`
(several victims at once on one GPU), and the evaluation
helpers :func:`accuracy` / :func:`predict`.
"""

from sapabench.core.names import STEPS
from sapabench.victims.archs import ARCHS, Victim, build_model
from sapabench.victims.recipes import RECIPES, AdversarialConfig, Recipe, TrainConfig
from sapabench.victims.train import (
    EpochStats,
    GradientTransform,
    Trainer,
    TrainResult,
    TrainTiming,
    VictimSpec,
    accuracy,
    predict,
    train_packed,
    train_victim,
)

__all__ = [
    "ARCHS",
    "RECIPES",
    "STEPS",
    "AdversarialConfig",
    "EpochStats",
    "GradientTransform",
    "Recipe",
    "TrainConfig",
    "TrainResult",
    "TrainTiming",
    "Trainer",
    "Victim",
    "VictimSpec",
    "accuracy",
    "build_model",
    "predict",
    "train_packed",
    "train_victim",
]
