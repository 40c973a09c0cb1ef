"""Victims: the architecture zoo, training recipes and ``train_victim``."""

from victims.archs import ARCHS, Victim, build_model
from victims.recipes import RECIPES, AdversarialConfig, Recipe, TrainConfig
from victims.sam import SAM
from victims.train import TrainResult, TrainTiming, accuracy, predict, resolve_device, train_victim

__all__ = [
    "ARCHS",
    "RECIPES",
    "SAM",
    "AdversarialConfig",
    "Recipe",
    "TrainConfig",
    "TrainResult",
    "TrainTiming",
    "Victim",
    "accuracy",
    "build_model",
    "predict",
    "resolve_device",
    "train_victim",
]
