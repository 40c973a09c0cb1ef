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


class Brew:
    """One perturbation of poisons ``x`` being optimised by gradient matching: signed Adam with
    the step-down schedule at 3/8, 5/8, 7/8 of ``total_steps``, projected onto the eps ball.

    :meth:`run` may be called several times with different models and target gradients (Sleeper
    Agent re-trains its surrogate between calls); the optimiser state and the schedule carry on
    across calls, as in the authors' code, instead of restarting with every model.
    """

    def __init__(
        self, x: Tensor, cfg: MatchingConfig, generator: torch.Generator, total_steps: int, init: Tensor | None = None
    ) -> None:
        self.x, self.cfg = x, cfg
        start = project(init, x, cfg.eps) if init is not None else random_delta(x, cfg.eps, generator)
        self.delta = start.clone().requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.delta], lr=cfg.lr * cfg.eps)
        milestones = sorted({int(total_steps * f) for f in (3 / 8, 5 / 8, 7 / 8)} - {0})
        self.schedule = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=milestones, gamma=0.1)

    def run(
        self, model: nn.Module, y: Tensor, target_grad: list[Tensor], augment: nn.Module | None, steps: int
    ) -> float:
        """``steps`` more steps against ``model`` and ``target_grad``; returns the matching loss
        afterwards (measured without augmentation)."""
        model.eval()
        target_norm = _flat_norm(target_grad)
        delta = self.delta
        for _ in range(steps):
            loss = matching_loss(model, self.x + delta, y, target_grad, target_norm, augment)
            (grad,) = torch.autograd.grad(loss, delta)
            delta.grad = grad.sign()
            self.optimizer.step()
            self.schedule.step()
            with torch.no_grad():
                delta.copy_(project(delta, self.x, self.cfg.eps))
        return float(matching_loss(model, self.x + delta.detach(), y, target_grad, target_norm, None).detach())


def brew_restarts(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    target_grad: list[Tensor],
    cfg: MatchingConfig,
    augment: nn.Module | None,
    generator: torch.Generator,
    steps: int,
    total_steps: int,
) -> tuple[Brew, float]:
    """``cfg.restarts`` brews of ``steps`` steps (each scheduled over ``total_steps``); the one
    with the lowest final matching loss and that loss."""
    best, best_loss = None, float("inf")
    for _ in range(cfg.restarts):
        candidate = Brew(x, cfg, generator, total_steps)
        loss = candidate.run(model, y, target_grad, augment, steps)
        if loss < best_loss:
            best, best_loss = candidate, loss
    assert best is not None
    return best, best_loss


def brew(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    target_grad: list[Tensor],
    cfg: MatchingConfig,
    flip: bool,
    generator: torch.Generator,
) -> tuple[Tensor, float]:
    """Optimise perturbations of poisons ``x`` (labels ``y``) to match ``target_grad``: the
    perturbation of the best of ``cfg.restarts`` restarts of ``cfg.steps`` steps, and its loss."""
    augment = differentiable_augment(cfg.augment_shift, flip)
    best, loss = brew_restarts(model, x, y, target_grad, cfg, augment, generator, cfg.steps, cfg.steps)
    return best.delta.detach().clone(), loss


def gradient_norms(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 64) -> Tensor:
    """The norm of each example's training gradient ``||grad_theta CE(f(x_i), y_i)||`` (model in
    eval mode), computed per example with ``torch.func``."""
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = dict(model.named_buffers())

    def loss(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        out = torch.func.functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(out, yi.unsqueeze(0))

    per_example = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))
    norms = []
    for i in range(0, len(x), chunk):
        grads = per_example(params, x[i : i + chunk], y[i : i + chunk])
        norms.append(torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values())))  # type: ignore[arg-type]
    return torch.cat(norms)
