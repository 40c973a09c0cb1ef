"""``random-noise``: sample-wise uniform random noise at the L_inf bound, the control baseline of
the unlearnable-examples literature (Huang et al. 2021 report it barely hurts accuracy)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sapabench.attacks import (
    Attack,
    AttackConfig,
    CraftContext,
    Crafted,
    ThreatModel,
    budget_count,
    pick_indices,
    project,
    register_attack,
)


@dataclass(frozen=True)
class RandomNoiseConfig(AttackConfig):
    """Random noise has no options beyond eps and budget (and no surrogate)."""


@register_attack("random-noise", description="example plugin: sample-wise uniform random noise at eps")
class RandomNoise(Attack):
    """Sample-wise random noise (control baseline of Huang et al., ICLR 2021).

    Threat model: untargeted, clean-label; metric: the victim's clean test accuracy.

    eps / budget: each perturbation is uniform in [-eps, eps]; ``budget`` x N images are perturbed.

    Objective: none; no surrogate is used, so there is no SAPA version.

    Options: eps (8/255 paper, 32/255 embedded), budget 1.0.

    Example::

        create_attack("random-noise").run(load_dataset("digits"), seed=0)
    """

    threat = "untargeted"
    Config = RandomNoiseConfig
    presets = {
        "paper": dict(eps=8 / 255, budget=1.0),
        "embedded": dict(eps=32 / 255, budget=1.0),
        "smoke": dict(eps=8 / 255, budget=0.5),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        ds = ctx.dataset
        indices = pick_indices(ds.train_y, None, budget_count(self.config, ds.num_train), ctx.generator)
        x = ds.train_x[indices.to(ctx.device)]
        noise = (torch.rand(x.shape, generator=ctx.generator) * 2 - 1).to(x) * self.config.eps
        return Crafted(indices=indices, delta=project(noise, x, self.config.eps), threat=ThreatModel("untargeted"))
