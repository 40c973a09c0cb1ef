"""The SAPA step, written once (He et al., "Sharpness-Aware Data Poisoning Attack", eq. 11-12).

Every SAPA attack replaces the surrogate weights theta* by the worst case theta* + v_hat while it
takes the gradient its base attack needs, with::

    v_hat = rho * g / ||g||_2,   g = grad_theta Q(theta*)

and restores theta* bit-exactly afterwards. The base attacks run the same code with ``rho=None``
(no perturbation), so a SAPA attack and its baseline differ by exactly this step.

The public reference code takes g from ``.grad`` of a deep-copied model, which ``deepcopy`` does
not carry: its v_hat is silently zero. Here g comes from ``torch.autograd.grad`` directly and
the step records v_hat's norm so tests (and logs) can check it is rho.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from core.sharpness import perturbed_weights, worst_case_direction


@dataclass
class SapaRecord:
    """What one SAPA step did: the direction's norm, and v_hat itself (for tests)."""

    rho: float | None
    v_norm: float = 0.0
    grad_norm: float = 0.0
    v_hat: list[Tensor | None] = field(default_factory=list)


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@contextmanager
def worst_case_weights(model: nn.Module, objective: Callable[[], Tensor], rho: float | None) -> Iterator[SapaRecord]:
    """Inside the block the model's weights are ``theta + v_hat`` (SAPA) or ``theta`` (``rho=None``).

    Args:
        model: the surrogate.
        objective: computes the scalar Q whose worst case SAPA takes (the adversarial objective
            for targeted/backdoor attacks, the training loss on x + delta for untargeted ones).
        rho: the radius (0.05 in the paper), or None for the plain base attack.
    """
    record = SapaRecord(rho)
    if rho is None:
        yield record
        return
    params = trainable(model)
    grads = torch.autograd.grad(objective(), params, allow_unused=True)
    v_hat = worst_case_direction(grads, rho)
    record.grad_norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads if g is not None])))
    record.v_norm = float(torch.linalg.vector_norm(torch.stack([v.norm() for v in v_hat if v is not None])))
    record.v_hat = v_hat
    with perturbed_weights(params, v_hat):
        yield record


def objective_gradient(
    model: nn.Module, objective: Callable[[], Tensor], rho: float | None
) -> tuple[list[Tensor], SapaRecord]:
    """``grad_theta Q`` at theta (``rho=None``) or at theta + v_hat (SAPA, eq. 12), detached."""
    with worst_case_weights(model, objective, rho) as record:
        params = trainable(model)
        grads = torch.autograd.grad(objective(), params, allow_unused=True)
        out = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads, strict=True)]
    return out, record
