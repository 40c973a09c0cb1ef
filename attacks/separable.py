"""Synthetic linearly separable noise (Yu et al. 2022)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks._noise import NoiseConfig, scale
from attacks._untargeted import perturbed_subset
from attacks.base import Attack, CraftContext, Crafted, project, register_attack
from core.errors import ConfigError
from core.threats import ThreatModel


@dataclass(frozen=True)
class SeparableConfig(NoiseConfig):
    """Separable-noise settings (adds to :class:`NoiseConfig`).

    Attributes:
        patch: side of the blocks the pattern is built from: a Gaussian pattern of side
            ``ceil(side / patch)`` is up-sampled by repeating each value over a patch x patch
            block (the authors' low-dimensional points expanded into image space; 8 on CIFAR).
    """

    patch: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.patch, int) or self.patch < 1:
            raise ConfigError(f"invalid patch={self.patch!r}: a positive integer (pixels)")


def class_patterns(
    num_classes: int, shape: tuple[int, int, int], patch: int, generator: torch.Generator
) -> torch.Tensor:
    """One synthetic pattern per class, (num_classes, C, H, W): Gaussian values on a grid of
    patch x patch blocks, each repeated over its block."""
    c, h, w = shape
    low = torch.randn((num_classes, c, -(-h // patch), -(-w // patch)), generator=generator)
    return low.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :h, :w].contiguous()


@register_attack("separable", description="synthetic linearly separable noise (Yu et al. 2022)")
class Separable(Attack):
    """Availability poisoning by synthetic, linearly separable noise (Yu et al., KDD 2022).

    Threat model: untargeted, clean-label; metric: the victim's clean test accuracy (lower =
    stronger). No surrogate: the noise is a shortcut the victim learns instead of the content.

    eps / budget: every poison gets its class's pattern, scaled to eps (L_inf) or to an L2
    radius and clipped to eps; ``budget`` is the fraction of the training set poisoned.

    Objective: none to optimise: one random pattern per class (Gaussian patch blocks, see
    :func:`class_patterns`), so the perturbations alone separate the classes.

    Options (paper preset): eps 8/255, budget 1.0, norm linf, patch 8.

    Example::

        poison = create_attack("separable", dataset="digits").run(load_dataset("digits"), seed=0)
    """

    threat = "untargeted"
    Config = SeparableConfig
    presets = {
        "paper": dict(eps=8 / 255, budget=1.0, patch=8),
        "embedded": dict(eps=32 / 255, budget=1.0, patch=4),
        "smoke": dict(eps=8 / 255, budget=0.5, patch=4),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        cfg: SeparableConfig = self.config  # type: ignore[assignment]
        ds = ctx.dataset
        indices, x, y = perturbed_subset(ctx, cfg)
        shape = tuple(ds.train_x.shape[1:])
        patterns = scale(class_patterns(ds.num_classes, shape, cfg.patch, ctx.generator), cfg).to(ctx.device)  # type: ignore[arg-type]
        delta = project(patterns[y], x, cfg.eps)
        return Crafted(
            indices=indices, delta=delta, threat=ThreatModel("untargeted"), extra={"patterns": ds.num_classes}
        )
