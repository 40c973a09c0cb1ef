"""``random-noise``: sample-wise uniform random noise at the L_inf bound, the control baseline of
the unlearnable-examples literature (Huang et al. 2021 report it barely hurts accuracy)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.artifact import ThreatModel
from attacks.base import ATTACKS, Attack, AttackConfig, CraftContext, Crafted, budget_count, pick_indices, project
from attacks.surrogate import SurrogateSpec


@dataclass(frozen=True)
class RandomNoiseConfig(AttackConfig):
    """Random noise has no options beyond eps and budget."""


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
        "paper": dict(eps=8 / 255, budget=1.0, surrogate=SurrogateSpec()),
        "embedded": dict(eps=32 / 255, budget=1.0, surrogate=SurrogateSpec()),
        "smoke": dict(eps=8 / 255, budget=0.5, surrogate=SurrogateSpec()),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        ds = ctx.dataset
        indices = pick_indices(ds.train_y, None, budget_count(self.config, ds.num_train), ctx.generator)
        x = ds.train_x[indices.to(ctx.device)]
        noise = (torch.rand(x.shape, generator=ctx.generator) * 2 - 1).to(x) * self.config.eps
        return Crafted(indices=indices, delta=project(noise, x, self.config.eps), threat=ThreatModel("untargeted"))


@ATTACKS.register("random-noise", description="example plugin: sample-wise uniform random noise at eps [untargeted]")
def random_noise(dataset: str = "digits", preset: str | None = None, **overrides: object) -> Attack:
    """Sample-wise random noise (example plugin)."""
    from attacks.base import build_config, preset_for

    return RandomNoise("random-noise", build_config(RandomNoise, preset or preset_for(dataset), overrides), sapa=False)
