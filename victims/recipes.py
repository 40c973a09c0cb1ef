"""Victim training recipes: typed frozen configs and the registry that names them.

A :class:`Recipe` is data: the optimiser/schedule settings (:class:`TrainConfig`) plus the
recipe's own knobs (CutOut size, MixUp, SAM radius, PGD adversarial training). Registered
recipes (``sapabench list recipes``): ``sgd``, ``adam``, ``cutout``, ``mixup``, ``sam``,
``adversarial``. Epochs and batch size left unset (None) take the dataset's protocol (the
paper's 160 epochs x batch 128 on CIFAR/SVHN, a small-data preset on ``digits``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from sapabench.core.checks import in_range, positive
from sapabench.core.errors import ConfigError
from sapabench.core.registry import Registry
from sapabench.victims.schedules import SCHEDULES

OPTIMIZERS = ("sgd", "adam")


MAX_EPOCHS = 10_000
"""The most epochs a recipe trains (the paper trains 160 to 200): a bound on what a file may ask for."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every recipe.

    Attributes:
        epochs: training epochs; None takes the dataset's default.
        batch_size: minibatch size; None takes the dataset's default.
        lr: base learning rate (the schedule multiplies it).
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty coefficient.
        schedule: one of ``step`` (x0.1 at 1/2 and 3/4), ``cosine``, ``cyclic``, ``constant``.
        optimizer: ``sgd`` or ``adam``.
        augment: random crop (and flip where the dataset allows it) on every batch.
    """

    epochs: int | None = None
    batch_size: int | None = None
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"
    optimizer: str = "sgd"
    augment: bool = True

    def __post_init__(self) -> None:
        if self.epochs is not None:
            positive("epochs", self.epochs, integer=True, flag="--epochs", maximum=MAX_EPOCHS)
        if self.batch_size is not None:
            positive("batch_size", self.batch_size, integer=True, flag="--batch-size", maximum=1 << 16)
        positive("lr", self.lr, flag="--lr")
        in_range("momentum", self.momentum, 0.0, 0.999, flag="--momentum")
        in_range("weight_decay", self.weight_decay, 0.0, 1.0, flag="--weight-decay")
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"invalid schedule={self.schedule!r}: choose one of {', '.join(SCHEDULES)} (set --schedule)"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"invalid optimizer={self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")

    @classmethod
    def make(cls, recipe: str, defaults: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
        """Recipe defaults updated by user ``overrides``; unknown option names are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"recipe {recipe!r} has no option {', '.join(repr(u) for u in unknown)}; "
                f"its options are: {', '.join(sorted(known))}"
            )
        return cls(**{**defaults, **{k: v for k, v in overrides.items() if v is not None}})


@dataclass(frozen=True)
class AdversarialConfig:
    """PGD adversarial training (Madry et al. 2018): train on L_inf PGD examples only.

    Attributes:
        eps: L_inf radius in [0, 1] pixel units (8/255 by default).
        step: PGD step size (2/255).
        steps: PGD iterations (7, Madry's CIFAR setting).
    """

    eps: float = 8 / 255
    step: float = 2 / 255
    steps: int = 7

    def __post_init__(self) -> None:
        in_range(
            "adversarial eps", self.eps, 0.0, 1.0, flag="--adv-eps", hint=" (pixels are in [0, 1]; 8/255 = 0.0314)"
        )
        in_range("adversarial step", self.step, 0.0, 1.0, flag="--adv-step", hint=" (e.g. 2/255)")
        positive("adversarial steps", self.steps, integer=True, flag="--adv-steps")


@dataclass(frozen=True)
class Recipe:
    """A complete, named training recipe: how a victim is trained, nothing else (defenses that
    change training, such as DP-SGD, hook into :class:`sapabench.victims.train.Trainer` instead). Build one
    with ``RECIPES.create(name, **options)``."""

    name: str
    train: TrainConfig = field(default_factory=TrainConfig)
    cutout_size: int | None = None
    cutout: bool = False
    mixup: bool = False
    sam_rho: float | None = None
    adversarial: AdversarialConfig | None = None

    def __post_init__(self) -> None:
        if self.cutout_size is not None:
            positive("cutout_size", self.cutout_size, integer=True, flag="--cutout-size")
        if self.sam_rho is not None:
            positive("sam_rho", self.sam_rho, flag="--sam-rho")

    def with_train(self, **overrides: Any) -> Recipe:
        """The same recipe with some :class:`TrainConfig` fields replaced (None = keep)."""
        return replace(self, train=TrainConfig.make(self.name, vars(self.train), overrides))

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of every setting, for logs and provenance."""
        out: dict[str, Any] = {"name": self.name, **vars(self.train)}
        if self.cutout:
            out["cutout_size"] = self.cutout_size
        if self.mixup:
            out["mixup_alpha"] = 1.0
        if self.sam_rho is not None:
            out["sam_rho"] = self.sam_rho
        if self.adversarial is not None:
            out["adversarial"] = vars(self.adversarial)
        return out


RECIPES: Registry[Recipe] = Registry("recipe")

_SGD = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, optimizer="sgd")


@RECIPES.register("sgd", description="SGD lr 0.1, momentum 0.9, wd 5e-4, step schedule, crop(+flip) (paper protocol)")
def sgd(**train: Any) -> Recipe:
    """Plain SGD with the paper's protocol."""
    return Recipe("sgd", TrainConfig.make("sgd", _SGD, train))


@RECIPES.register("adam", description="Adam lr 1e-3, wd 5e-4, step schedule, crop(+flip)")
def adam(**train: Any) -> Recipe:
    """Adam instead of SGD, everything else as ``sgd``."""
    return Recipe("adam", TrainConfig.make("adam", dict(lr=1e-3, weight_decay=5e-4, optimizer="adam"), train))


@RECIPES.register("cutout", description="sgd + CutOut (one zeroed square of half the image side per image)")
def cutout(size: int | None = None, **train: Any) -> Recipe:
    """SGD with CutOut; ``size`` is the square's side in pixels (default half the image side)."""
    return Recipe("cutout", TrainConfig.make("cutout", _SGD, train), cutout_size=size, cutout=True)


@RECIPES.register("mixup", description="sgd + MixUp (alpha 1: lambda ~ U(0, 1))")
def mixup(**train: Any) -> Recipe:
    """SGD with MixUp on every batch."""
    return Recipe("mixup", TrainConfig.make("mixup", _SGD, train), mixup=True)


@RECIPES.register("sam", description="SGD wrapped in Sharpness-Aware Minimization, rho 0.05")
def sam(rho: float = 0.05, **train: Any) -> Recipe:
    """SAM (Foret et al.) around the ``sgd`` recipe's optimizer."""
    return Recipe("sam", TrainConfig.make("sam", _SGD, train), sam_rho=rho)


@RECIPES.register("adversarial", description="PGD adversarial training (Madry): L_inf eps 8/255, step 2/255, 7 steps")
def adversarial(eps: float = 8 / 255, step: float = 2 / 255, steps: int = 7, **train: Any) -> Recipe:
    """SGD on PGD adversarial examples; ``eps``/``step`` in [0, 1] pixel units."""
    return Recipe(
        "adversarial", TrainConfig.make("adversarial", _SGD, train), adversarial=AdversarialConfig(eps, step, steps)
    )
