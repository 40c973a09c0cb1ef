"""The SAPA step, written once (He et al., "Sharpness-Aware Data Poisoning Attack", eq. 11-12).

Every SAPA attack replaces the surrogate weights theta* by the worst case theta* + v_hat while it
takes the gradient its base attack needs, with::

    v_hat = rho * g / ||g||_2,   g = grad_theta Q(theta*)

and restores theta* bit-exactly afterwards. The base attacks run the same code with ``rho=None``
(no perturbation), so a SAPA attack and its baseline differ by exactly this step.

The public reference code takes g from ``.grad`` of a deep-copied model, which ``deepcopy`` does
not carry: its v_hat is silently zero. Here g comes from ``torch.autograd.grad`` directly and
the step records v_hat's norm so tests (and logs) can check it is rho.

Objectives over large sets (the untargeted training loss over the whole training set, Sleeper
Agent's loss over every source-class image) are given as a sequence of terms whose sum is Q
(:func:`mean_loss_terms`); :func:`objective_grad` back-propagates one term at a time and sums
the gradients, so peak memory is one chunk's graph, not the set's (about 7 MB of saved
activations per CIFAR image on ResNet-18: 340 GB for 50,000 images in one graph).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sapabench.core.sharpness import Radius, perturbed_weights, worst_case_direction


@dataclass
class SapaRecord:
    """What one SAPA step did: the direction's norm, and v_hat itself (for tests)."""

    rho: float | None
    v_norm: float = 0.0
    grad_norm: float = 0.0
    v_hat: list[Tensor | None] = field(default_factory=list)


Objective = Callable[[], Tensor | Iterable[Tensor]]
"""Q as one scalar, or as scalar terms whose sum is Q (evaluated lazily, one at a time)."""

DEFAULT_CHUNK = 512
"""Images per term of :func:`mean_loss_terms` (one term's graph is what the SAPA step holds)."""


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def mean_loss_terms(
    model: nn.Module, x: Tensor, y: Tensor, chunk: int = DEFAULT_CHUNK, delta: Tensor | None = None
) -> Iterator[Tensor]:
    """The mean cross-entropy of ``model`` on ``x (+ delta)`` as per-chunk terms
    ``sum_chunk CE / n``; their sum is the mean over the whole set. Each term is built only when
    the consumer asks for it, so a consumer that back-propagates each before the next holds one
    chunk's graph at a time."""
    n = len(x)
    for i in range(0, n, chunk):
        inputs = x[i : i + chunk] if delta is None else x[i : i + chunk] + delta[i : i + chunk]
        yield nn.functional.cross_entropy(model(inputs), y[i : i + chunk], reduction="sum") / n


def objective_grad(objective: Objective, params: list[nn.Parameter]) -> list[Tensor | None]:
    """``grad_theta Q`` for ``params`` (None where Q does not depend on a parameter), one term's
    graph at a time: each term is back-propagated and freed before the next is built."""
    out = objective()
    total: list[Tensor | None] | None = None
    for term in (out,) if isinstance(out, Tensor) else out:
        grads = torch.autograd.grad(term, params, allow_unused=True)
        if total is None:
            total = list(grads)
            continue
        for i, g in enumerate(grads):
            if g is not None:
                total[i] = g if total[i] is None else total[i].add_(g)  # type: ignore[union-attr]
    if total is None:
        raise ValueError("the SAPA objective gave no terms (an empty set?)")
    return total


@contextmanager
def worst_case_weights(model: nn.Module, objective: Objective, rho: float | Radius | None) -> Iterator[SapaRecord]:
    """Inside the block the model's weights are ``theta + v_hat`` (SAPA) or ``theta`` (``rho=None``).

    Args:
        model: the surrogate.
        objective: computes the scalar Q whose worst case SAPA takes (the adversarial objective
            for targeted/backdoor attacks, the training loss on x + delta for untargeted ones),
            or yields terms summing to Q (:func:`mean_loss_terms`) for bounded memory.
        rho: the radius (0.05 in the paper), a :class:`sapabench.core.sharpness.Radius` (read against
            the perturbed weights' norm), or None for the plain base attack.
    """
    if rho is None:
        yield SapaRecord(None)
        return
    params = trainable(model)
    radius = rho.at(params) if isinstance(rho, Radius) else float(rho)
    record = SapaRecord(radius)
    grads = objective_grad(objective, params)
    v_hat = worst_case_direction(grads, radius)
    record.grad_norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads if g is not None])))
    record.v_norm = float(torch.linalg.vector_norm(torch.stack([v.norm() for v in v_hat if v is not None])))
    record.v_hat = v_hat
    with perturbed_weights(params, v_hat):
        yield record


def objective_gradient(
    model: nn.Module, objective: Objective, rho: float | Radius | None
) -> tuple[list[Tensor], SapaRecord]:
    """``grad_theta Q`` at theta (``rho=None``) or at theta + v_hat (SAPA, eq. 12), detached."""
    with worst_case_weights(model, objective, rho) as record:
        params = trainable(model)
        grads = objective_grad(objective, params)
        out = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads, strict=True)]
    return out, record
