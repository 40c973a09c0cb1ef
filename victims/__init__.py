"""Victims: the architecture zoo, training recipes and ``train_victim``.

Public surface: ``ARCHS`` and ``build_model`` (architectures), ``RECIPES`` and :class:`Recipe`
(how a victim is trained), :func:`train_victim` / :class:`Trainer` (training one victim, with an
optional :data:`GradientTransform` hook for training-level defenses), and the evaluation
helpers :func:`accuracy` / :func:`predict`.
"""

from victims.archs import ARCHS, Victim, build_model
from victims.recipes import RECIPES, AdversarialConfig, Recipe, TrainConfig
from victims.sam import SAM
from victims.train import (
    EpochStats,
    GradientTransform,
    Trainer,
    TrainResult,
    TrainTiming,
    accuracy,
    predict,
    train_victim,
)

__all__ = [
    "ARCHS",
    "RECIPES",
    "SAM",
    "AdversarialConfig",
    "EpochStats",
    "GradientTransform",
    "Recipe",
    "TrainConfig",
    "TrainResult",
    "TrainTiming",
    "Trainer",
    "Victim",
    "accuracy",
    "build_model",
    "predict",
    "train_victim",
]
