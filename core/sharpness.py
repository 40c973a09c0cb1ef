"""The worst-case weight perturbation shared by SAM training (victims) and the SAPA step (attacks).

``v_hat = rho * g / ||g||_2`` (Foret et al. 2021, eq. 2; SAPA paper eq. 11 with p = 2), applied
to the weights only while a gradient is taken, then undone by copying the saved weights back,
so the model comes back bit-identical (subtracting v_hat again would not, in floating point).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

RESNET18_INIT_NORM = 102.85
"""||theta|| of a CIFAR-10 ResNet-18 (the paper's surrogate) at initialisation: 102.78-102.92
over seeds 0-2 (``victims.archs.build_model``, 2026-11-24); the reference of ``rho_scale =
"resnet18"``."""
RHO_SCALES = ("absolute", "resnet18")


@dataclass(frozen=True)
class Radius:
    """SAPA's radius as configured: ``rho`` itself (``absolute``) or ``rho`` relative to a
    ResNet-18's weight norm (``resnet18``: rho x ||theta|| / :data:`RESNET18_INIT_NORM`)."""

    rho: float
    scale: str = "absolute"

    def at(self, params: Sequence[Tensor]) -> float:
        """The radius for the weights ``params`` that SAPA perturbs."""
        if self.scale == "absolute":
            return float(self.rho)
        return float(self.rho) * float(global_norm(params)) / RESNET18_INIT_NORM


def global_norm(tensors: Sequence[Tensor]) -> Tensor:
    """The 2-norm of ``tensors`` taken together, as a tensor (no host synchronisation)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.detach(), 2) for t in tensors]), 2)


def worst_case_direction(grads: Sequence[Tensor | None], rho: float) -> list[Tensor | None]:
    """``rho * g / ||g||_2`` over all tensors of ``grads`` together (None entries stay None).

    A zero gradient gives a zero perturbation rather than NaNs.
    """
    if rho < 0:
        raise ValueError(f"rho must be >= 0, got {rho}")
    present = [g for g in grads if g is not None]
    if not present:
        return [None for _ in grads]
    norm = global_norm(present)
    # No host synchronisation (a captured CUDA graph holds this): a zero norm selects zero.
    scale = torch.where(norm > 0, rho / norm, torch.zeros_like(norm))
    return [None if g is None else g.detach() * scale for g in grads]


@contextmanager
def perturbed_weights(params: Sequence[nn.Parameter], vs: Sequence[Tensor | None]) -> Iterator[None]:
    """Inside the block, ``p <- p + v`` for each parameter; afterwards the exact old values."""
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p, v in zip(params, vs, strict=True):
                if v is not None:
                    p.add_(v)
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
