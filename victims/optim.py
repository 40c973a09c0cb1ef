"""The victims' optimisers as tensor-only updates that a captured CUDA graph can hold.

``torch.optim.SGD`` turns a tensor learning rate into a Python number (a host synchronisation)
and bakes a float one into a graph, so a schedule could not change it between replays. These
updates read the learning rate from a one-element tensor on the device that the trainer fills
before every step, and keep their state (momentum, Adam's moments and step count) in tensors
allocated once. They compute PyTorch's own update rules (coupled L2 weight decay, dampening 0,
no Nesterov; Adam without AMSGrad), checked against ``torch.optim`` in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class SGDUpdate:
    """SGD with momentum: ``d = g + wd * p; buf = momentum * buf + d; p -= lr * buf``."""

    def __init__(self, params: Sequence[Tensor], momentum: float, weight_decay: float) -> None:
        self.params = list(params)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.bufs = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def __call__(self, grads: Sequence[Tensor], lr: Tensor) -> None:
        d = torch._foreach_add(list(grads), self.params, alpha=self.weight_decay) if self.weight_decay else list(grads)
        if self.momentum:
            torch._foreach_mul_(self.bufs, self.momentum)
            torch._foreach_add_(self.bufs, d)
            d = self.bufs
        torch._foreach_sub_(self.params, torch._foreach_mul(d, lr))


class AdamUpdate:
    """Adam (Kingma & Ba) with coupled L2 weight decay, as ``torch.optim.Adam``'s defaults."""

    def __init__(
        self,
        params: Sequence[Tensor],
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        device = self.params[0].device if self.params else None
        self.t = torch.zeros((), device=device)

    @torch.no_grad()
    def __call__(self, grads: Sequence[Tensor], lr: Tensor) -> None:
        b1, b2 = self.betas
        g = torch._foreach_add(list(grads), self.params, alpha=self.weight_decay) if self.weight_decay else list(grads)
        self.t.add_(1)
        torch._foreach_lerp_(self.m, g, 1 - b1)
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, g, g, value=1 - b2)
        step_size = lr / (1 - torch.pow(b1, self.t))
        root_bias2 = torch.sqrt(1 - torch.pow(b2, self.t))
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, root_bias2)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_sub_(self.params, torch._foreach_mul(torch._foreach_div(self.m, denom), step_size))


Update = SGDUpdate | AdamUpdate
