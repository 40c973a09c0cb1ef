"""The defense interface: a fourth peer of data, victims and attacks.

Two kinds:

- data-level (:class:`DataDefense`): inspects or purifies the (possibly poisoned) training set
  before training and returns the indices it keeps and, for purification, transformed images;
- training-level (:class:`TrainingDefense`): changes how the victim trains (returns the recipe
  to train with).

Registered in :data:`DEFENSES` (``sapabench list defenses``); third-party packages register
through the ``sapabench.defenses`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from benchmark.registry import Registry
from victims.recipes import Recipe


@dataclass(frozen=True)
class Filtered:
    """What a data-level defense returns: the kept training indices, and (purification) the
    images to train on in their place (``None`` = the inputs, unchanged)."""

    kept: Tensor
    images: Tensor | None = None


@dataclass(frozen=True)
class DefenseContext:
    """What a data-level defense may use: the training data as the victim would see it (poisons
    included, unknown to the defender), the architecture and recipe the victim will be trained
    with, a seed and the device."""

    x: Tensor
    y: Tensor
    num_classes: int
    arch: str
    recipe: Recipe
    seed: int
    device: torch.device
    dataset_name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip_invariant: bool


class Defense(ABC):
    """Base class of every defense; subclass :class:`DataDefense` or :class:`TrainingDefense`."""

    kind: ClassVar[str]

    def __init__(self, name: str) -> None:
        self.name = name

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, **{k: v for k, v in vars(self).items() if k != "name"}}


class DataDefense(Defense):
    kind = "data"

    @abstractmethod
    def filter(self, ctx: DefenseContext) -> Filtered:
        """Which training images to keep (and what to train on for purification)."""


class TrainingDefense(Defense):
    kind = "training"

    @abstractmethod
    def recipe(self, base: Recipe) -> Recipe:
        """The recipe to train the victim with, given the cell's recipe."""


DEFENSES: Registry[Defense] = Registry("defense", plugin_group="sapabench.defenses")
