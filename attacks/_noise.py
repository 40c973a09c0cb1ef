"""Shared plumbing of the surrogate-free untargeted attacks (Separable, Autoregressive): the
norm options and the scaling of a noise pattern to the budget."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sapabench.attacks.base import AttackConfig
from sapabench.core.errors import ConfigError

NORMS = ("linf", "l2")


@dataclass(frozen=True)
class NoiseConfig(AttackConfig):
    """Settings of synthetic (model-free) noise.

    Attributes:
        norm: ``linf`` scales each pattern so its largest pixel is eps; ``l2`` scales it to L2
            norm ``l2_radius`` (then clipped to eps: every poison of the harness is L_inf-bounded).
        l2_radius: the L2 radius of ``norm = "l2"`` in pixel units (the authors use 1.0 on
            CIFAR-10's 3x32x32 images).
    """

    norm: str = "linf"
    l2_radius: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm not in NORMS:
            raise ConfigError(f"invalid norm={self.norm!r}: {' or '.join(NORMS)}")
        if not (isinstance(self.l2_radius, (int, float)) and self.l2_radius > 0):
            raise ConfigError(f"invalid l2_radius={self.l2_radius!r}: must be > 0")


def scale(noise: torch.Tensor, cfg: NoiseConfig) -> torch.Tensor:
    """Each pattern of ``noise`` (N, C, H, W) scaled to the budget (a positive factor per
    pattern, so its shape is kept), before the eps / pixel-range projection."""
    flat = noise.flatten(1)
    if cfg.norm == "linf":
        size = flat.abs().amax(1)
        factor = cfg.eps / size.clamp_min(1e-12)
    else:
        factor = cfg.l2_radius / flat.norm(dim=1).clamp_min(1e-12)
    return noise * factor.view(-1, 1, 1, 1)
