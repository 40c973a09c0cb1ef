"""Sharpness-Aware Minimization (Foret et al., ICLR 2021) as a two-step optimizer wrapper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from core.sharpness import worst_case_direction


class SAM(torch.optim.Optimizer):
    """Wraps a base optimizer: ascend to ``w + rho g/||g||``, take the gradient there, step from ``w``.

    Usage::

        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
        loss_fn().backward(); opt.first_step()     # gradient at w, move to w + e(w)
        loss_fn().backward(); opt.second_step()    # gradient at w + e(w), restore w, base step

    or ``opt.step(closure)`` with a closure that zeroes grads, computes the loss and calls backward.
    """

    def __init__(
        self, params: Any, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05, **kwargs: Any
    ) -> None:
        if not rho > 0:
            raise ValueError(f"SAM rho must be > 0, got {rho}")
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def first_step(self) -> None:
        # One global norm over every parameter, as in Foret et al.'s reference implementation.
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        rho = self.param_groups[0]["rho"]
        for p, e in zip(params, worst_case_direction([p.grad for p in params], rho), strict=True):
            self.state[p]["w"] = p.detach().clone()
            p.add_(e)
        self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if "w" in self.state[p]:
                    p.copy_(self.state[p].pop("w"))
        self.base_optimizer.step()

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise ValueError("SAM.step needs a closure that recomputes the loss and calls backward()")
        loss = closure()
        self.first_step()
        with torch.enable_grad():
            closure()
        self.second_step()
        return loss
