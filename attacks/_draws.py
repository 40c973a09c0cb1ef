"""What a threat model's attacker draws from the craft seed, drawn the same way by every attack.

Every targeted attack draws its target (and adversarial class) first, every backdoor attack its
(source, target) class pair and trigger first, all from ``ctx.generator`` in the same order. So
two attacks crafted with the same seed attack the same target or class pair with the same
trigger, and their results are paired by craft seed (the baselines of Tables 1-2 against SAPA).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sapabench.attacks.base import CraftContext
from sapabench.attacks.triggers import make_trigger


@dataclass(frozen=True)
class Target:
    """A targeted attacker's goal: test image ``index`` (label ``true_class``) -> ``adversarial_class``."""

    index: int
    true_class: int
    adversarial_class: int


def draw_target(ctx: CraftContext) -> Target:
    """A uniformly drawn test image and an adversarial class other than its label."""
    ds = ctx.dataset
    index = ctx.randint(len(ds.test_y))
    true_class = int(ds.test_y[index])
    adversarial = (true_class + 1 + ctx.randint(ds.num_classes - 1)) % ds.num_classes
    return Target(index, true_class, adversarial)


@dataclass(frozen=True)
class Backdoor:
    """A backdoor attacker's goal: ``source_class`` images carrying ``trigger`` -> ``target_class``;
    ``trigger_seed`` seeds the test-time trigger positions."""

    source_class: int
    target_class: int
    trigger: torch.Tensor
    trigger_seed: int


def draw_backdoor(ctx: CraftContext, patch_fraction: float) -> Backdoor:
    """A (source, target) class pair, a random binary trigger of side ``patch_fraction`` x the
    image side, and the seed of its test-time positions."""
    ds = ctx.dataset
    source = ctx.randint(ds.num_classes)
    target = (source + 1 + ctx.randint(ds.num_classes - 1)) % ds.num_classes
    side = max(1, round(patch_fraction * ds.img_size))
    trigger = make_trigger(ds.in_chans, side, ctx.generator)
    return Backdoor(source, target, trigger, ctx.randint(2**31 - 1))
