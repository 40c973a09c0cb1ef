"""Training-level defenses: DP-SGD style gradient shaping, and robust recipes used as defenses."""

from __future__ import annotations

from dataclasses import dataclass, replace

from defenses.base import DEFENSES, TrainingDefense
from victims.recipes import RECIPES, DPConfig, Recipe


@dataclass
class DPSGD(TrainingDefense):
    """Per-batch gradient clipping to ``clip`` and Gaussian noise ``noise * clip`` on every step
    (Hong et al., 2020: gradient shaping against poisoning)."""

    name: str = "dp-sgd"
    clip: float = 1.0
    noise: float = 0.01

    def __post_init__(self) -> None:
        DPConfig(self.clip, self.noise)  # validates

    def recipe(self, base: Recipe) -> Recipe:
        return replace(base, name=f"{base.name}+dp-sgd", dp=DPConfig(self.clip, self.noise))


@dataclass
class RecipeDefense(TrainingDefense):
    """Train the victim with another registered recipe (its defaults), keeping the cell's
    epochs, batch size and learning-rate protocol."""

    name: str = "adversarial"

    def recipe(self, base: Recipe) -> Recipe:
        own = RECIPES.create(self.name)
        return replace(own, train=replace(own.train, epochs=base.train.epochs, batch_size=base.train.batch_size))


DEFENSES.register("dp-sgd", description="training: clip each batch gradient to 1.0 and add N(0, (0.01 * 1.0)^2) noise")(
    lambda clip=1.0, noise=0.01: DPSGD(clip=clip, noise=noise))  # fmt: skip
for _name in ("adversarial", "mixup", "cutout", "sam"):
    DEFENSES.register(_name, description=f"training: the {_name!r} recipe as a defense ({RECIPES.entry(_name).description})")(
        lambda _n=_name: RecipeDefense(name=_n))  # fmt: skip
