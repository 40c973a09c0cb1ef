"""The defense interface: a fourth peer of data, victims and attacks.

Three kinds:

- data-level (:class:`DataDefense`): inspects or purifies the (possibly poisoned) training set
  before training and returns the indices it keeps and, for purification, transformed images;
- training-level (:class:`TrainingDefense`): changes how the victim trains, through the recipe
  it trains with and/or a gradient transform the trainer applies before every optimiser step;
- model-level (:class:`ModelDefense`): trains the victim itself, in phases of its own, and may
  repair the trained model (anti-backdoor learning, fine-pruning, early stopping), using a small
  held-out split of clean images the defender holds.

A defense is a class (a dataclass whose fields are its options) registered in
:data:`DEFENSES` with :func:`register_defense` (``sapabench list defenses``); third-party
packages register through the ``sapabench.defenses`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from sapabench.core.errors import ConfigError
from sapabench.core.names import RANDOM_LIKE
from sapabench.core.numerics import FP32, Numerics
from sapabench.core.registry import Registry
from sapabench.victims.recipes import Recipe
from sapabench.victims.train import GradientTransform, TrainResult, VictimSpec


@dataclass(frozen=True)
class Filtered:
    """What a data-level defense returns: the kept training indices, and (purification) the
    images to train on in their place (``None`` = the inputs, unchanged)."""

    kept: Tensor
    images: Tensor | None = None
    defender_s: float = 0.0  # seconds the defender's own model took to train (0: it has none)


@dataclass(frozen=True)
class DefenseContext:
    """What a data-level defense may use: the training data as the victim would see it (poisons
    included, unknown to the defender), the architecture, recipe and numerics the victim will be
    trained with, a seed and the device."""

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
    numerics: Numerics = FP32


class Defense(ABC):
    """Base class of every defense; subclass :class:`DataDefense` or :class:`TrainingDefense`.
    ``name`` is set by :func:`register_defense`."""

    kind: ClassVar[str]
    name: ClassVar[str] = ""

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, **vars(self)}


class DataDefense(Defense):
    kind = "data"
    removes: ClassVar[bool] = True  # a filter (it removes images); purification keeps every image

    @abstractmethod
    def filter(self, ctx: DefenseContext) -> Filtered:
        """Which training images to keep (and what to train on for purification)."""


class ControlFilter(DataDefense):
    """A control of the harness's own (``defenses.controls``): a data filter that is told which
    images are poisoned. Only this package's classes are; a plugin subclass is refused."""

    def filter(self, ctx: DefenseContext) -> Filtered:
        raise TypeError(f"{self.name!r} is a control: apply it with apply_defense, which knows the poisons")

    @abstractmethod
    def control(self, ctx: DefenseContext, poisoned: Tensor) -> Filtered:
        """Which images to keep, knowing the poisoned training indices (empty on clean data)."""


CONTROLS_MODULE = "sapabench.defenses.controls"
"""Where the controls live (``defenses.controls``): only its classes are told the poisons."""


def filtered(defense: DataDefense, ctx: DefenseContext, poisoned: Tensor) -> Filtered:
    """What a data defense keeps of ``ctx``: a control is told the ``poisoned`` indices (only the
    harness's own controls; a plugin subclassing :class:`ControlFilter` is refused), any other
    filter sees the data alone."""
    if isinstance(defense, ControlFilter):
        if type(defense).__module__ != CONTROLS_MODULE:
            raise ConfigError(
                f"defense {defense.name!r} subclasses ControlFilter, which only the harness's own controls "
                "may (they are told the poisons); subclass DataDefense"
            )
        return defense.control(ctx, poisoned)
    return defense.filter(ctx)


class TrainingDefense(Defense):
    """Changes training: override :meth:`recipe`, :meth:`gradient_transform`, or both."""

    kind = "training"

    def recipe(self, base: Recipe) -> Recipe:
        """The recipe to train the victim with, given the cell's recipe (default: unchanged)."""
        return base

    def gradient_transform(self) -> GradientTransform | None:
        """Applied to the gradients before every optimiser step (default: none)."""
        return None

    def for_training(self, recipe: Recipe, num_train: int) -> TrainingDefense:
        """This defense for a victim of ``recipe`` (epochs and batch size resolved) on
        ``num_train`` images (default: itself; DP-SGD with a privacy target: its noise multiplier
        for those steps)."""
        return self

    def stats(self, recipe: Recipe, num_train: int) -> dict[str, float]:
        """What the defense reports of a victim trained with ``recipe`` (epochs and batch size
        resolved) on ``num_train`` images, known before training (DP-SGD: its privacy spent)."""
        return {}


HELDOUT_FRACTION = 0.05
"""The share of the training set a model-level defense holds out as its clean split by default
(BackdoorBench gives its defenses 5 % clean training data)."""


@dataclass(frozen=True)
class ModelContext:
    """What a model-level defense may use: the victim as the cell would train it (``spec``: its
    dataset is the training set as given, poisons applied and unknown to the defender, minus the
    held-out split), the defender's clean held-out images (``heldout_x``/``heldout_y``: clean
    versions of the held-out training images, which the victim does not train on; they stand for
    clean data the defender collected itself), the device and how steps run."""

    spec: VictimSpec
    heldout_x: Tensor
    heldout_y: Tensor
    device: torch.device
    step: str = "auto"


@dataclass(frozen=True)
class Repaired:
    """What a model-level defense returns: the trained (repaired) victim, the training indices of
    ``ctx.spec``'s dataset it set aside as suspected poisons (``None``: it flags none), and the
    statistics it reports (keys of ``benchmark.trial.DEFENSE_STATS``)."""

    result: TrainResult
    removed: Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)


MODEL_STATS = ("pruned", "stopped_epoch", "peak_test_accuracy")
"""What a model-level defense may report of itself (beside the harness's own measures): units
pruned (fine-pruning), the epoch its checkpoint comes from and the peak test accuracy over its
epochs (early stopping)."""


class ModelDefense(Defense):
    """Trains the victim itself: implement :meth:`train`. ``heldout_fraction`` of the training set
    (seeded by the victim's seed) is held out as the defender's clean split."""

    kind = "model"
    heldout_fraction: float = HELDOUT_FRACTION

    @abstractmethod
    def train(self, ctx: ModelContext) -> Repaired:
        """Train (and repair) the victim of ``ctx.spec``."""


def _random_twin(name: str) -> bool:
    """Register ``random-like-F`` on first use for a filter ``F`` that has none yet (a plugin's):
    every filter can be measured against its random twin (``defenses.controls``)."""
    of = name.removeprefix(RANDOM_LIKE)
    if of == name or of not in DEFENSES:
        return False
    factory = DEFENSES.entry(of).factory
    if not (isinstance(factory, type) and issubclass(factory, DataDefense)) or issubclass(factory, ControlFilter):
        return False
    if not factory.removes:
        return False
    from sapabench.defenses.controls import register_random_twin

    register_random_twin(of)
    return True


DEFENSES: Registry[Defense] = Registry("defense", plugin_group="sapabench.defenses", derive=_random_twin)
D = TypeVar("D", bound=type[Defense])


def register_defense(name: str, *, description: str | None = None) -> Callable[[D], D]:
    """Class decorator: register defense class ``cls`` as ``name`` (its options are the class's
    constructor arguments, so ``DEFENSES.create(name, **options)`` builds it).

    ``description`` (default: the class docstring's first line) is shown by ``sapabench list
    defenses``. Example::

        @register_defense("median-filter", description="purification by a 3x3 median filter")
        @dataclass
        class MedianFilter(DataDefense):
            kernel: int = 3
    """

    def decorator(cls: D) -> D:
        if not (isinstance(cls, type) and issubclass(cls, (DataDefense, TrainingDefense, ModelDefense))):
            raise TypeError(
                f"register_defense({name!r}) decorates a DataDefense, TrainingDefense or ModelDefense subclass, "
                f"not {cls!r}"
            )
        if cls.__dict__.get("name"):
            raise TypeError(f"defense class {cls.__name__} is already registered as {cls.name!r}")
        cls.name = name
        DEFENSES.register(name, description=description)(cls)
        return cls

    return decorator
