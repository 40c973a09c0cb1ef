"""``train_victim``: train one victim from scratch on (clean data, poison set, recipe).

The data flow is: dataset tensors -> poison applied as indices + perturbations -> per-batch
inputs (kornia crop/flip, CutOut, PGD examples for adversarial training) -> the loss (plain or
MixUp) -> the optimiser step (plain or SAM), with an optional gradient transform between the
backward pass and the step (how training-level defenses such as DP-SGD hook in) -> clean test
accuracy. Everything runs on whole tensors already on the training device.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from core.datasets import ImageDataset, PoisonLike, load_dataset
from core.errors import ConfigError
from core.numerics import FP32, Numerics
from core.runtime import check_seed, resolve_device, seeded
from victims.archs import Victim, build_model
from victims.augment import MixUp, cutout, flip_crop, mixup_loss, pgd_linf
from victims.protocols import SCRATCH, Protocol, extractor_eval, freeze_extractor, get_protocol, load_start
from victims.recipes import RECIPES, Recipe
from victims.sam import SAM
from victims.schedules import lr_multiplier

GradientTransform = Callable[[Sequence[nn.Parameter]], None]
"""Called with the model's parameters after every backward pass and before the optimiser uses
the gradients (on both passes of a SAM step); it may rewrite ``p.grad`` in place. Random draws
come from torch's global generator, which training seeds."""


@dataclass(frozen=True)
class EpochStats:
    """What one finished epoch reports to a progress callback."""

    epoch: int
    epochs: int
    loss: float
    lr: float
    epoch_s: float


@dataclass(frozen=True)
class TrainTiming:
    """Wall-clock figures of one training run (evaluation excluded)."""

    total_s: float
    epoch_s: tuple[float, ...]
    images_per_s: float
    device: str

    @property
    def mean_epoch_s(self) -> float:
        return sum(self.epoch_s) / max(1, len(self.epoch_s))


@dataclass(frozen=True)
class TrainResult:
    """A trained victim with its clean test accuracy (fraction in [0, 1]) and timing."""

    model: Victim
    clean_accuracy: float
    timing: TrainTiming
    losses: tuple[float, ...]
    recipe: Recipe
    seed: int
    eval_s: float


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """Predicted labels for ``x`` in eval mode (the model's mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    preds = torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return preds


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Fraction of ``x`` classified as ``y``."""
    return float((predict(model, x) == y).float().mean())


def _optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    cfg = recipe.train
    params = [p for p in model.parameters() if p.requires_grad]
    base: type[torch.optim.Optimizer]
    if cfg.optimizer == "adam":
        base, kw = torch.optim.Adam, dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        base, kw = torch.optim.SGD, dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if recipe.sam_rho is not None:
        return SAM(params, base, rho=recipe.sam_rho, **kw)
    return base(params, **kw)


class Trainer:
    """One victim being trained: the model, its optimiser and schedule, and the (poisoned)
    training tensors. :func:`train_victim` drives it; attacks that retrain a surrogate and the
    epoch benchmark use it directly.

    Randomness (augmentation, PGD starts) comes from torch's global generator, which the
    caller seeds; batch order comes from a private generator seeded with ``seed``.
    ``grad_transform`` (see :data:`GradientTransform`) is how a training-level defense changes
    the gradients without the recipe knowing about it. ``numerics`` is the precision and memory
    format of the arithmetic (:class:`core.numerics.Numerics`; plain fp32 by default): the model's
    weights and every batch take its memory format, and every forward pass (PGD's included) runs
    under its autocast. ``protocol`` (:mod:`victims.protocols`) says what the model starts from
    (``start``: the pretrained or attacker-initial weights, required by every protocol but
    ``scratch``) and which weights it trains.
    """

    def __init__(
        self,
        arch: str,
        recipe: Recipe,
        dataset: ImageDataset,
        poison: PoisonLike | None,
        seed: int,
        device: torch.device,
        grad_transform: GradientTransform | None = None,
        numerics: Numerics = FP32,
        protocol: Protocol | None = None,
        start: dict[str, Tensor] | None = None,
    ) -> None:
        ds = dataset.to(device)
        epochs = recipe.train.epochs or ds.default_epochs
        batch_size = recipe.train.batch_size or ds.default_batch_size
        self.protocol = protocol = protocol or get_protocol(SCRATCH)
        lr = recipe.train.lr * protocol.lr_scale
        self.recipe = recipe.with_train(epochs=epochs, batch_size=batch_size, lr=lr)
        self.dataset, self.device = ds, device
        self.train_x, self.train_y = ds.poisoned_train(poison)
        self.numerics = numerics
        model = build_model(arch, ds)
        if (start is None) != (protocol.start == "random"):
            raise ConfigError(
                f"protocol {protocol.name!r} "
                + ("needs starting weights" if start is None else "starts from a fresh initialisation")
            )
        if start is not None:
            load_start(model, start, protocol)
        if protocol.trains == "head":
            freeze_extractor(model)
        self.model = numerics.model(model.to(device))
        self._mode()
        self._shuffle = torch.Generator().manual_seed(seed)
        self._augment = flip_crop(ds.img_size, ds.flip_invariant) if self.recipe.train.augment else None
        self._erase = cutout(ds.img_size, self.recipe.cutout_size) if self.recipe.cutout else None
        self._mix = MixUp() if self.recipe.mixup else None
        self._grad_transform = grad_transform
        self.optimizer = _optimizer(self.recipe, self.model)
        steps_per_epoch = len(self._batches(torch.Generator().manual_seed(0), torch.device("cpu")))
        factor = lr_multiplier(self.recipe.train.schedule, epochs, steps_per_epoch)
        self._scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.epoch = 0

    def _mode(self) -> None:
        """Training mode; a frozen extractor stays in eval mode (its BatchNorm statistics fixed)."""
        self.model.train()
        if self.protocol.trains == "head":
            extractor_eval(self.model)

    def _batches(self, generator: torch.Generator, device: torch.device) -> list[Tensor]:
        order = torch.randperm(len(self.train_x), generator=generator).to(device)
        chunks = list(order.split(self.recipe.train.batch_size or 1))
        if len(chunks) > 1 and len(chunks[-1]) < 2:  # BatchNorm cannot train on a batch of one
            chunks.pop()
        return chunks

    def _inputs(self, x: Tensor, y: Tensor) -> Tensor:
        """The batch as the model sees it: cropped (and flipped), cut out, or adversarial."""
        if self._augment is not None:
            x = self._augment(x)
        if self._erase is not None:
            x = self._erase(x)
        x = self.numerics.inputs(x)
        adversarial = self.recipe.adversarial
        if adversarial is not None:
            with self.numerics.autocast(self.device):
                x = pgd_linf(self.model, x, y, adversarial.eps, adversarial.step, adversarial.steps)
        return x

    def _loss(self, x: Tensor, y: Tensor) -> Callable[[], Tensor]:
        """The batch's training loss as a function of the current weights (SAM evaluates it twice)."""
        criterion: Callable[[Tensor], Tensor]
        if self._mix is not None:
            x, y_a, y_b, lam = self._mix(x, y)
            criterion = partial(mixup_loss, y_a=y_a, y_b=y_b, lam=lam)
        else:
            criterion = partial(nn.functional.cross_entropy, target=y)
        x, model = self.numerics.inputs(x), self.model

        def loss() -> Tensor:
            with self.numerics.autocast(self.device):
                return criterion(model(x))

        return loss

    def _optimise(self, loss_fn: Callable[[], Tensor]) -> Tensor:
        """One optimiser step on ``loss_fn`` (two passes for SAM); returns the loss."""
        opt = self.optimizer

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            if self._grad_transform is not None:
                self._grad_transform(list(self.model.parameters()))
            return loss

        if isinstance(opt, SAM):
            return opt.step(closure)
        loss = closure()
        opt.step()
        return loss

    def _step(self, x: Tensor, y: Tensor) -> Tensor:
        self._mode()  # adversarial examples restore plain train mode after their eval-mode PGD
        loss = self._optimise(self._loss(self._inputs(x, y), y))
        self._scheduler.step()
        return loss.detach()

    def run_epoch(self) -> tuple[EpochStats, int]:
        """Train one epoch; returns its stats and the number of images processed."""
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        total = torch.zeros((), device=self.device)
        count = 0
        for idx in self._batches(self._shuffle, self.device):
            total += self._step(self.train_x[idx], self.train_y[idx]) * len(idx)
            count += len(idx)
        loss = float(total) / max(1, count)  # float() waits for the device
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.epoch += 1
        stats = EpochStats(self.epoch, self.recipe.train.epochs or 0, loss, lr, time.perf_counter() - t0)
        return stats, count


def train_victim(
    arch: str,
    recipe: str | Recipe,
    dataset: str | ImageDataset,
    poison: PoisonLike | None = None,
    seed: int = 0,
    *,
    device: str | torch.device = "auto",
    progress: Callable[[EpochStats], None] | None = None,
    grad_transform: GradientTransform | None = None,
    numerics: Numerics = FP32,
    protocol: str | Protocol = SCRATCH,
    start: dict[str, Tensor] | None = None,
) -> TrainResult:
    """Train a fresh ``arch`` victim with ``recipe`` on ``dataset`` (+ ``poison``) and test it.

    Args:
        arch: architecture name (``sapabench list archs``).
        recipe: recipe name (defaults) or a :class:`Recipe` (e.g. ``RECIPES.create("sgd", epochs=5)``).
        dataset: dataset name (defaults) or an :class:`ImageDataset`.
        poison: a poison set applied as indices + perturbations on the clean training tensors.
        seed: seeds initialisation, batch order and augmentation; the same seed gives the same
            accuracy on CPU. The caller's global RNG state is left untouched.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: called after every epoch with its :class:`EpochStats`.
        grad_transform: rewrites the gradients before every optimiser step (a training-level
            defense such as DP-SGD; see :data:`GradientTransform`).
        numerics: precision and memory format of training (plain fp32 by default; the commands
            resolve ``auto`` with :func:`core.numerics.resolve_numerics`). Testing is in fp32.
        protocol: the victim protocol (``sapabench list protocols``; default ``scratch``).
        start: the weights the protocol starts from (:mod:`victims.pretrained`), for every
            protocol but ``scratch``.

    Returns:
        The trained model (eval mode) with its clean test accuracy and timing.

    Example:
        >>> res = train_victim("convnet", "sgd", "digits", seed=0)   # doctest: +SKIP
        >>> res.clean_accuracy, res.timing.total_s                   # doctest: +SKIP
    """
    check_seed(seed)
    dev = resolve_device(device)
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    rec = RECIPES.create(recipe) if isinstance(recipe, str) else recipe

    with seeded(seed, dev):
        proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
        trainer = Trainer(arch, rec, ds, poison, seed, dev, grad_transform, numerics, proto, start)
        losses: list[float] = []
        epoch_s: list[float] = []
        seen = 0
        for _ in range(trainer.recipe.train.epochs or 0):
            stats, count = trainer.run_epoch()
            seen += count
            losses.append(stats.loss)
            epoch_s.append(stats.epoch_s)
            if progress is not None:
                progress(stats)
        model = trainer.model.eval()
        t0 = time.perf_counter()
        acc = accuracy(model, trainer.dataset.test_x, trainer.dataset.test_y)
        eval_s = time.perf_counter() - t0

    train_s = sum(epoch_s)
    timing = TrainTiming(train_s, tuple(epoch_s), seen / train_s if train_s > 0 else 0.0, str(dev))
    return TrainResult(model, acc, timing, tuple(losses), trainer.recipe, seed, eval_s)
