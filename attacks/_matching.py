"""Gradient matching (Geiping et al. 2021), shared by Witches' Brew and Sleeper Agent.

Poisons x_p + delta (with their clean labels) are optimised so that the training gradient they
induce points along the attacker's objective gradient::

    min_delta  1 - cos( grad_theta CE(f(aug(x_p + delta)), y_p),  grad_theta Q )

with signed Adam steps, a step-down schedule at 3/8, 5/8, 7/8 of the run, differentiable
augmentation inside the loop, and restarts keeping the lowest loss. ``grad_theta Q`` comes from
:func:`attacks.sapa.objective_gradient`, so the SAPA variants change it and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia.augmentation as K
import torch
from torch import Tensor, nn

from attacks.base import SurrogateConfig, check_positive_ints, project, random_delta
from attacks.sapa import trainable
from core.errors import ConfigError


@dataclass(frozen=True)
class MatchingConfig(SurrogateConfig):
    """Gradient-matching settings.

    Attributes:
        steps: optimisation steps per restart (paper: 250).
        restarts: random restarts; the lowest final loss wins (paper: 8).
        lr: Adam step size as a fraction of eps (paper: 0.1).
        augment_shift: differentiable random translation, as a fraction of the image side
            (paper: 1/4, plus flips where the dataset allows them); 0 turns augmentation off.
    """

    steps: int = 250
    restarts: int = 8
    lr: float = 0.1
    augment_shift: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "steps", "restarts")
        if not 0 < self.lr <= 10:
            raise ConfigError(f"invalid lr={self.lr!r}: a fraction of eps in (0, 10]")
        if not 0 <= self.augment_shift < 0.5:
            raise ConfigError(f"invalid augment_shift={self.augment_shift!r}: a fraction of the side in [0, 0.5)")


def differentiable_augment(shift: float, flip: bool) -> nn.Module | None:
    if shift <= 0 and not flip:
        return None
    ops: list[nn.Module] = []
    if flip:
        ops.append(K.RandomHorizontalFlip(p=0.5))
    if shift > 0:
        ops.append(K.RandomAffine(degrees=0.0, translate=(shift, shift), p=1.0, padding_mode="zeros"))
    return K.AugmentationSequential(*ops)


def _flat_norm(tensors: list[Tensor]) -> Tensor:
    return torch.sqrt(sum((t * t).sum() for t in tensors))  # type: ignore[arg-type]


def matching_loss(
    model: nn.Module, x: Tensor, y: Tensor, target_grad: list[Tensor], target_norm: Tensor, augment: nn.Module | None
) -> Tensor:
    """``1 - cos(grad_theta CE(f(aug(x)), y), target_grad)``, differentiable in ``x``."""
    params = trainable(model)
    inputs = augment(x) if augment is not None else x
    loss = nn.functional.cross_entropy(model(inputs), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    dot = sum((g * t).sum() for g, t in zip(grads, target_grad, strict=True))
    return 1 - dot / (_flat_norm(list(grads)) * target_norm + 1e-12)


def brew(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    target_grad: list[Tensor],
    cfg: MatchingConfig,
    flip: bool,
    generator: torch.Generator,
    steps: int | None = None,
    init: Tensor | None = None,
) -> tuple[Tensor, float]:
    """Optimise perturbations of poisons ``x`` (labels ``y``) to match ``target_grad``.

    Runs ``cfg.restarts`` restarts of ``steps`` (default ``cfg.steps``) signed-Adam steps and
    returns the perturbation with the lowest final matching loss (measured without
    augmentation) and that loss. ``init`` continues from a given perturbation (one restart).
    """
    model.eval()
    steps = steps or cfg.steps
    augment = differentiable_augment(cfg.augment_shift, flip)
    target_norm = _flat_norm(target_grad)
    best, best_loss = None, float("inf")
    for _ in range(1 if init is not None else cfg.restarts):
        delta = project(init, x, cfg.eps) if init is not None else random_delta(x, cfg.eps, generator)
        delta = delta.clone().requires_grad_(True)
        opt = torch.optim.Adam([delta], lr=cfg.lr * cfg.eps)
        milestones = sorted({int(steps * f) for f in (3 / 8, 5 / 8, 7 / 8)} - {0})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
        for _ in range(steps):
            loss = matching_loss(model, x + delta, y, target_grad, target_norm, augment)
            (grad,) = torch.autograd.grad(loss, delta)
            delta.grad = grad.sign()
            opt.step()
            sched.step()
            with torch.no_grad():
                delta.copy_(project(delta, x, cfg.eps))
        final = float(matching_loss(model, x + delta.detach(), y, target_grad, target_norm, None).detach())
        if final < best_loss:
            best, best_loss = delta.detach().clone(), final
    assert best is not None
    return best, best_loss
