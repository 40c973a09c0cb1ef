"""Training-level defenses: gradient shaping (batch clipping + noise), and robust recipes used as defenses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from sapabench.core.checks import in_range, positive
from sapabench.defenses.base import TrainingDefense, register_defense
from sapabench.victims.recipes import RECIPES, Recipe
from sapabench.victims.train import GradientTransform


@register_defense(
    "gradient-shaping",
    description="training: clip each batch gradient to 1.0 and add N(0, (0.01 * 1.0)^2) noise (Hong et al. 2020)",
)
@dataclass
class GradientShaping(TrainingDefense):
    """Per-batch gradient clipping to ``clip`` and Gaussian noise ``noise * clip`` on every
    gradient entry at every step (Hong et al., 2020: gradient shaping against poisoning).

    Not DP-SGD: the whole batch's gradient is clipped, not each example's, and no privacy is
    accounted (registered as ``dp-sgd`` before 2026-12-06; that name now says so)."""

    clip: float = 1.0
    noise: float = 0.01

    def __post_init__(self) -> None:
        positive("dp clip", self.clip)
        in_range("dp noise", self.noise, 0.0, 100.0)

    def gradient_transform(self) -> GradientTransform:
        clip, scale = self.clip, self.noise * self.clip

        def shape(params: Sequence[nn.Parameter]) -> None:
            with_grad = [p for p in params if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(with_grad, clip)
            for p in with_grad:
                p.grad.add_(torch.randn_like(p.grad), alpha=scale)  # type: ignore[union-attr]

        return shape


class RecipeDefense(TrainingDefense):
    """Train the victim with the registered recipe of the defense's name (its defaults),
    keeping the cell's epochs and batch size."""

    def recipe(self, base: Recipe) -> Recipe:
        own = RECIPES.create(self.name)
        return replace(own, train=replace(own.train, epochs=base.train.epochs, batch_size=base.train.batch_size))


def _as_defense(recipe: str) -> str:
    return f"training: the {recipe!r} recipe as a defense ({RECIPES.entry(recipe).description})"


@register_defense("adversarial", description=_as_defense("adversarial"))
class AdversarialTraining(RecipeDefense):
    """PGD adversarial training (Madry et al.) as a defense."""


@register_defense("mixup", description=_as_defense("mixup"))
class MixUpTraining(RecipeDefense):
    """MixUp training as a defense."""


@register_defense("cutout", description=_as_defense("cutout"))
class CutOutTraining(RecipeDefense):
    """CutOut training as a defense."""


@register_defense("sam", description=_as_defense("sam"))
class SAMTraining(RecipeDefense):
    """Sharpness-Aware Minimization as a defense."""
