"""Gradient matching (Geiping et al. 2021), shared by Witches' Brew and Sleeper Agent.

Poisons x_p + delta (with their clean labels) are optimised so that the training gradient they
induce points along the attacker's objective gradient::

    min_delta  1 - cos( grad_theta CE(f(aug(x_p + delta)), y_p),  grad_theta Q )

with signed Adam steps, a step-down schedule at 3/8, 5/8, 7/8 of the run, differentiable
augmentation inside the loop, and restarts keeping the lowest loss. ``grad_theta Q`` comes from
:func:`sapabench.attacks.sapa.objective_gradient`, so the SAPA variants change it and nothing else.

Ensemble and re-initialisation (E&R; Huang et al. 2020, Geiping et al. 2021): with ``ensemble``
K architectures and ``reinit`` R initialisations of each, the poisons match K x R clean
surrogates at once. Every step's loss is the mean of the K x R matching losses, each against its
own surrogate's ``grad_theta Q`` (for SAPA: each taken at that surrogate's own theta + v_hat),
as the original E&R code's ensemble victim averages every model at every step (no sampling of
one member per step). K = R = 1 is the single-surrogate attack exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import kornia.augmentation as K
import torch
from torch import Tensor, nn

from sapabench.attacks.base import (
    MAX_MEMBERS,
    CraftContext,
    Member,
    SurrogateConfig,
    check_positive_ints,
    project,
    random_delta,
)
from sapabench.attacks.sapa import trainable
from sapabench.core.errors import ConfigError
from sapabench.victims.archs import ARCHS

ENSEMBLE_ARCHS = "resnet18,vgg11,mobilenetv2,resnet50"
"""Architectures an ensemble adds after the surrogate's own, in order (the paper's victims)."""


@dataclass(frozen=True)
class MatchingConfig(SurrogateConfig):
    """Gradient-matching settings.

    Attributes:
        steps: optimisation steps per restart (paper: 250).
        restarts: random restarts; the lowest final loss wins (paper: 8).
        lr: Adam step size as a fraction of eps (paper: 0.1).
        augment_shift: differentiable random translation, as a fraction of the image side
            (paper: 1/4, plus flips where the dataset allows them); 0 turns augmentation off.
        ensemble: K, the surrogate architectures of ensemble-and-re-initialisation (E&R): the
            surrogate's own, then ``ensemble_archs`` in order, cycled when K is larger (1: none).
        reinit: R, clean initialisations (seeds) per architecture (1: none).
        ensemble_archs: comma-separated architectures after the surrogate's (it is skipped
            there if listed).
    """

    steps: int = 250
    restarts: int = 8
    lr: float = 0.1
    augment_shift: float = 0.25
    ensemble: int = 1
    reinit: int = 1
    ensemble_archs: str = ENSEMBLE_ARCHS

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "steps", "restarts", "ensemble", "reinit")
        for name in ("ensemble", "reinit"):
            if getattr(self, name) > MAX_MEMBERS:
                raise ConfigError(f"invalid {name}={getattr(self, name)!r}: at most {MAX_MEMBERS}")
        if not isinstance(self.ensemble_archs, str) or not self.extra_archs():
            raise ConfigError(
                f"invalid ensemble_archs={self.ensemble_archs!r}: comma-separated architectures, e.g. {ENSEMBLE_ARCHS!r}"
            )
        for arch in self.extra_archs():
            ARCHS.entry(arch)  # unknown names fail with a did-you-mean
        if not 0 < self.lr <= 10:
            raise ConfigError(f"invalid lr={self.lr!r}: a fraction of eps in (0, 10]")
        if not 0 <= self.augment_shift < 0.5:
            raise ConfigError(f"invalid augment_shift={self.augment_shift!r}: a fraction of the side in [0, 0.5)")

    def extra_archs(self) -> list[str]:
        return [a.strip() for a in self.ensemble_archs.split(",") if a.strip()]

    def member_archs(self) -> list[str]:
        """The K architectures of the ensemble: the surrogate's, then ``ensemble_archs`` (without
        the surrogate's) in order, cycled when K exceeds them (as the original E&R code cycles its
        list of nets); a repeated architecture is a different member by its seed."""
        others = [a for a in self.extra_archs() if a != self.surrogate.arch] or [self.surrogate.arch]
        return [self.surrogate.arch, *(others[k % len(others)] for k in range(self.ensemble - 1))]

    def members(self, ctx: CraftContext) -> list[Member]:
        """The K x R clean surrogates (cached; member (0, 0) is the craft seed's own)."""
        return ctx.ensemble(self.surrogate, self.member_archs(), self.reinit)


def ensemble_extra(members: Sequence[Member], v_norms: Sequence[float]) -> dict[str, object]:
    """What a poison records about an E&R ensemble (nothing for a single surrogate)."""
    if len(members) == 1:
        return {}
    return {
        "ensemble_members": [{"arch": m.arch, "seed": m.seed} for m in members],
        "sapa_v_norms_per_member": list(v_norms),
    }


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


@dataclass(frozen=True)
class Targets:
    """The surrogates the poisons match (one for a single surrogate, K x R for E&R), each with
    its own target gradient ``grad_theta Q`` and that gradient's norm."""

    models: Sequence[nn.Module]
    grads: Sequence[list[Tensor]]
    norms: Sequence[Tensor]

    @classmethod
    def of(cls, models: Sequence[nn.Module], grads: Sequence[list[Tensor]]) -> Targets:
        return cls(models, grads, [_flat_norm(g) for g in grads])

    def _losses(self, x: Tensor, y: Tensor, augment: nn.Module | None) -> Iterator[Tensor]:
        """Each member's matching loss over the number of members, built lazily (one
        augmentation draw per member)."""
        for m, g, n in zip(self.models, self.grads, self.norms, strict=True):
            yield matching_loss(m, x, y, g, n, augment) / len(self.models)

    def loss(self, x: Tensor, y: Tensor, augment: nn.Module | None) -> Tensor:
        """The E&R objective: the mean of the members' matching losses."""
        return sum(self._losses(x, y, augment))  # type: ignore[return-value]

    def input_grad(self, x: Tensor, y: Tensor, augment: nn.Module | None) -> Tensor:
        """The gradient of :meth:`loss` in ``x``, one member's graph at a time (the peak memory
        of one surrogate, not K x R)."""
        return sum(torch.autograd.grad(term, x)[0] for term in self._losses(x, y, augment))  # type: ignore[return-value]


class Brew:
    """One perturbation of poisons ``x`` being optimised by gradient matching: signed Adam with
    the step-down schedule at 3/8, 5/8, 7/8 of ``total_steps``, projected onto the eps ball.

    :meth:`run` may be called several times with different models and target gradients (Sleeper
    Agent re-trains its surrogate between calls); the optimiser state and the schedule carry on
    across calls, as in the authors' code, instead of restarting with every model. It takes the
    ensemble's models with one target gradient each (a single surrogate: lists of one).
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
        self,
        models: Sequence[nn.Module],
        y: Tensor,
        target_grads: Sequence[list[Tensor]],
        augment: nn.Module | None,
        steps: int,
    ) -> float:
        """``steps`` more steps against ``models`` and their ``target_grads``; returns the mean
        matching loss afterwards (measured without augmentation)."""
        for model in models:
            model.eval()
        targets = Targets.of(models, target_grads)
        delta = self.delta
        for _ in range(steps):
            grad = targets.input_grad(self.x + delta, y, augment)
            delta.grad = grad.sign()
            self.optimizer.step()
            self.schedule.step()
            with torch.no_grad():
                delta.copy_(project(delta, self.x, self.cfg.eps))
        return float(targets.loss(self.x + delta.detach(), y, None).detach())


def brew_restarts(
    models: Sequence[nn.Module],
    x: Tensor,
    y: Tensor,
    target_grads: Sequence[list[Tensor]],
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
        loss = candidate.run(models, y, target_grads, augment, steps)
        if loss < best_loss:
            best, best_loss = candidate, loss
    assert best is not None
    return best, best_loss


def brew(
    models: Sequence[nn.Module],
    x: Tensor,
    y: Tensor,
    target_grads: Sequence[list[Tensor]],
    cfg: MatchingConfig,
    flip: bool,
    generator: torch.Generator,
) -> tuple[Tensor, float]:
    """Optimise perturbations of poisons ``x`` (labels ``y``) to match each surrogate's target
    gradient: the perturbation of the best of ``cfg.restarts`` restarts of ``cfg.steps`` steps,
    and its mean matching loss."""
    augment = differentiable_augment(cfg.augment_shift, flip)
    best, loss = brew_restarts(models, x, y, target_grads, cfg, augment, generator, cfg.steps, cfg.steps)
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
