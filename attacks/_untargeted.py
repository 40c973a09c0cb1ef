"""Shared plumbing of the sample-wise untargeted attacks (Error-Min, Error-Max)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from sapabench.attacks.base import AttackConfig, CraftContext, budget_indices, project


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def pgd_perturb(
    model: nn.Module, x: Tensor, y: Tensor, delta: Tensor, eps: float, step: float, steps: int, sign: float
) -> Tensor:
    """``steps`` signed-gradient steps on ``delta`` that move CE(f(x + delta), y) in direction
    ``sign`` (+1 maximise, -1 minimise), projected to the eps ball and the pixel range."""
    delta = delta.detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = project(delta.detach() + sign * step * grad.sign(), x, eps).detach()
    return delta


@torch.no_grad()
def per_sample_loss(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    return torch.cat(
        [
            nn.functional.cross_entropy(model(x[i : i + batch_size]), y[i : i + batch_size], reduction="none")
            for i in range(0, len(x), batch_size)
        ]
    )


def perturbed_subset(ctx: CraftContext, cfg: AttackConfig) -> tuple[Tensor, Tensor, Tensor]:
    """The budget's share of the training set (any class): its indices, images and labels."""
    ds = ctx.dataset
    indices = budget_indices(ctx, cfg, None)
    idx = indices.to(ctx.device)
    return indices, ds.train_x[idx], ds.train_y[idx]
