"""Clean-trained surrogates: the model an attack crafts against.

A surrogate is a clean training run (:class:`sapabench.victims.pretrained.CleanRun`) seeded with the craft
seed, cached on disk as safetensors by :func:`sapabench.victims.pretrained.clean_model`, so a baseline
attack and its SAPA variant crafted with the same seed share one surrogate, and a ``linear`` or
``finetune`` victim whose pretrained source is ``surrogate`` starts from that very model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sapabench.core.datasets import ImageDataset
from sapabench.core.errors import ConfigError
from sapabench.core.numerics import FP32, Numerics
from sapabench.victims.archs import Victim
from sapabench.victims.pretrained import CleanRun, clean_model
from sapabench.victims.recipes import Recipe


@dataclass(frozen=True)
class SurrogateSpec:
    """Which clean model an attack crafts against. ``epochs=None``: the dataset's default."""

    arch: str = "convnet"
    recipe: str = "sgd"
    epochs: int | None = None

    def __post_init__(self) -> None:
        try:
            self.run(0)  # the clean run checks the names and the epochs
        except ConfigError as err:
            raise ConfigError(f"surrogate: {err}") from None

    def train_recipe(self) -> Recipe:
        """The recipe the surrogate is trained with (epochs None: the dataset's default)."""
        return self.run(0).train_recipe()

    def run(self, seed: int, arch: str | None = None, numerics: Numerics = FP32) -> CleanRun:
        """The clean run of this surrogate with ``seed`` (of architecture ``arch`` if given),
        trained in ``numerics``."""
        return CleanRun(arch or self.arch, self.recipe, self.epochs, seed, numerics)


def get_surrogate(
    spec: SurrogateSpec,
    dataset: ImageDataset,
    seed: int,
    device: torch.device,
    use_cache: bool = True,
    numerics: Numerics = FP32,
) -> tuple[Victim, dict[str, Any]]:
    """A clean-trained surrogate in eval mode with its description (accuracy, seed, cache key),
    trained in ``numerics`` (the attack's crafting numerics) and cached per numerics."""
    return clean_model(spec.run(seed, numerics=numerics), dataset, device, use_cache)
