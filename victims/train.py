"""``train_victim``: train one victim from scratch on (clean data, poison set, recipe).

The data flow is: dataset tensors -> poison applied as indices + perturbations -> per-batch
inputs (kornia crop/flip, CutOut, PGD examples for adversarial training) -> the loss (plain or
MixUp) -> the optimiser step (plain or SAM), with an optional gradient transform between the
backward pass and the step (how training-level defenses such as gradient shaping hook in; DP-SGD's
per-example clipping, :mod:`sapabench.victims.private`, replaces the backward pass) -> clean test
accuracy. Everything runs on whole tensors already on the training device.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from sapabench.core.datasets import ImageDataset, PoisonLike, load_dataset
from sapabench.core.errors import ConfigError
from sapabench.core.names import SCRATCH, STEPS
from sapabench.core.numerics import FP32, Numerics
from sapabench.core.runtime import MAX_DERIVED_SEED, check_seed, resolve_device, seeded
from sapabench.core.sharpness import perturbed_weights, worst_case_direction
from sapabench.victims._graph import CapturedStep
from sapabench.victims.archs import Victim, build_model
from sapabench.victims.augment import (
    IDX,
    Augmentation,
    augment_batch,
    batch_sizes,
    draw_epoch,
    mix_batch,
    mixup_loss,
    pgd_linf,
)
from sapabench.victims.optim import AdamUpdate, SGDUpdate, Update
from sapabench.victims.private import PerExampleClipping, clip_and_noise, per_example_gradients, without_batchnorm
from sapabench.victims.protocols import Protocol, extractor_eval, freeze_extractor, get_protocol, load_start
from sapabench.victims.recipes import RECIPES, Recipe
from sapabench.victims.schedules import lr_multiplier

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
    """Wall-clock figures of one training run (evaluation excluded); in a pack of victims,
    this victim's share of the pack's seconds."""

    total_s: float
    epoch_s: tuple[float, ...]
    images_per_s: float
    device: str
    step: str = "eager"  # how the steps ran (STEPS); eager after a fallback
    packed: int = 1  # victims trained together (the seconds are this victim's share)
    fallback: str | None = None  # why a graph step fell back to eager

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


def _update(recipe: Recipe, params: list[nn.Parameter]) -> Update:
    cfg = recipe.train
    if cfg.optimizer == "adam":
        return AdamUpdate(params, cfg.weight_decay)
    return SGDUpdate(params, cfg.momentum, cfg.weight_decay)


def _derived_seed(seed: int, purpose: str) -> int:
    """A seed for one of a victim's private generators, apart from its other streams."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{purpose}".encode()).digest()[:8], "little") >> 1


def resolve_step(step: str, device: torch.device) -> str:
    """``auto``: ``graph`` on CUDA (measured: docs/performance.md, "Training on a GPU"), ``eager`` elsewhere."""
    if step == "auto":
        return "graph" if device.type == "cuda" else "eager"
    if step not in STEPS:
        raise ConfigError(f"invalid train step {step!r}: choose auto, {' or '.join(STEPS)} (set --train-step)")
    if step == "graph" and device.type != "cuda":
        raise ConfigError(
            f"train step 'graph' captures CUDA graphs and needs a CUDA device, not {device.type} (set --train-step eager or auto)"
        )
    return step


class Trainer:
    """One victim being trained: the model, its optimiser and schedule, and the (poisoned)
    training tensors. :func:`train_victim` drives it; attacks that retrain a surrogate, packed
    training (:func:`train_packed`) and the epoch benchmarks use it directly.

    Randomness comes from the victim's own generators, all seeded from ``seed``: the batch order
    from a CPU generator seeded with ``seed`` (the same order on every device), the epoch's
    augmentation draws (PGD starts included) from a generator on the device.
    Model initialisation draws from torch's global generator, which the caller seeds. So two
    trainers never share a random stream, which is what lets victims train packed.
    ``grad_transform`` (see :data:`GradientTransform`) is how a training-level defense changes
    the gradients without the recipe knowing about it. ``numerics`` is the precision and memory
    format of the arithmetic (:class:`sapabench.core.numerics.Numerics`; plain fp32 by default): the
    model's weights and every batch take its memory format, and every forward pass (PGD's
    included) runs under its autocast. ``protocol`` (:mod:`sapabench.victims.protocols`) says what the
    model starts from (``start``: the pretrained or attacker-initial weights, required by every
    protocol but ``scratch``) and which weights it trains. ``step`` is how each training step
    runs (:data:`STEPS`); ``loss_transform`` rewrites each batch's mean loss before the gradients
    (what a model-level defense trains with: anti-backdoor learning's flooded or reversed loss;
    the epoch's recorded loss is the transformed one). A step that cannot be captured (a
    third-party gradient transform that reads a value on the host, say) falls back to ``eager``
    and says why in :attr:`fallback`.
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
        step: str = "eager",
        loss_transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.step_mode = resolve_step(step, device)
        self._loss_transform = loss_transform
        self.fallback: str | None = None
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
        self._private = grad_transform if isinstance(grad_transform, PerExampleClipping) else None
        if self._private is not None:
            refused = [
                k
                for k, on in (
                    ("mixup", recipe.mixup),
                    ("sam", recipe.sam_rho is not None),
                    ("adversarial", recipe.adversarial is not None),
                )
                if on
            ]
            if refused:
                raise ConfigError(
                    f"DP-SGD clips each example's gradient, which the {refused[0]} recipe does not have "
                    "(it mixes examples, perturbs the weights or re-draws the examples): train with sgd or adam"
                )
            without_batchnorm(model)  # BatchNorm mixes a batch's examples: GroupNorm, as Opacus does
            if self.step_mode == "graph":
                self.step_mode, self.fallback = "eager", "per-example clipping (DP-SGD) runs eagerly"
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
        r = self.recipe
        self.augmentation = Augmentation.of(
            ds.img_size, r.train.augment, ds.flip_invariant, r.cutout_size, r.cutout, r.mixup
        )
        self._grad_transform = grad_transform
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._update = _update(self.recipe, self._params)
        self._lr = torch.zeros((), device=device)
        self._loss_sum = torch.zeros((), device=device)
        self._order = torch.Generator().manual_seed(seed)
        self._draws = torch.Generator(device).manual_seed(_derived_seed(seed, "augment"))
        self._no_noise = torch.zeros(0, device=device)
        self._sizes = batch_sizes(len(self.train_x), batch_size)
        self._factor = lr_multiplier(r.train.schedule, epochs, len(self._sizes))
        self._steps_done = 0
        self._captured: dict[int, CapturedStep] = {}
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.epoch = 0

    def _mode(self) -> None:
        """Training mode; a frozen extractor stays in eval mode (its BatchNorm statistics fixed)."""
        self.model.train()
        if self.protocol.trains == "head":
            extractor_eval(self.model)

    @property
    def lr(self) -> float:
        """The learning rate of the next step (the base rate times the schedule's factor)."""
        return self.recipe.train.lr * self._factor(self._steps_done)

    # ------------------------------------------------------------------ the step (tensors only)

    def _gradients(self, loss_fn: Callable[[], Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The loss and its gradients, rewritten by the gradient transform (as ``p.grad``)."""
        loss = loss_fn()
        grads = list(torch.autograd.grad(loss, self._params))
        if self._grad_transform is not None:
            for p, g in zip(self._params, grads, strict=True):
                p.grad = g
            self._grad_transform(list(self.model.parameters()))
            grads = [p.grad for p in self._params]  # type: ignore[misc]
            for p in self._params:
                p.grad = None
        return loss.detach(), grads

    def _step(self, ints: Tensor, lam: Tensor, noise: Tensor) -> None:
        """One training step on the batch of ``ints``: augment, (PGD from ``noise``), loss,
        gradients, update.

        Reads and writes only tensors that exist before the first step, never a value on the
        host, so the same function runs eagerly and inside a captured CUDA graph.
        """
        self._mode()  # adversarial examples restore plain train mode after their eval-mode PGD
        y = self.train_y[ints[:, IDX]]
        x = augment_batch(self.train_x[ints[:, IDX]], ints, self.augmentation)
        x = self.numerics.inputs(x)
        adversarial = self.recipe.adversarial
        cache = self.step_mode == "eager"  # autocast's weight cache cannot live in a graph
        if adversarial is not None:
            with self.numerics.autocast(self.device, cache=cache):
                x = pgd_linf(self.model, x, y, adversarial.eps, adversarial.step, adversarial.steps, noise)
        criterion: Callable[[Tensor], Tensor]
        if self.recipe.mixup:
            x, y_a, y_b, weight = mix_batch(x, y, ints, lam)
            criterion = partial(mixup_loss, y_a=y_a, y_b=y_b, lam=weight.to(x.dtype))
        else:
            criterion = partial(nn.functional.cross_entropy, target=y)
        x, model = self.numerics.inputs(x), self.model
        if self._private is not None:  # DP-SGD: each example's gradient, clipped, summed, noised
            with self.numerics.autocast(self.device, cache=cache):
                per, losses = per_example_gradients(model, self._params, x, y, nn.functional.cross_entropy)
            grads = clip_and_noise(per, self._private.clip, self._private.noise_multiplier, self._draws)
            self._update(grads, self._lr)
            self._loss_sum.add_(losses.detach().float().sum())
            return

        transform = self._loss_transform

        def loss_fn() -> Tensor:
            with self.numerics.autocast(self.device, cache=cache):
                loss = criterion(model(x))
            return loss if transform is None else transform(loss)

        loss, grads = self._gradients(loss_fn)
        if self.recipe.sam_rho is not None:
            # SAM (Foret et al.): the gradient at w + rho g/||g|| (one global norm), applied at w.
            with perturbed_weights(self._params, worst_case_direction(grads, self.recipe.sam_rho)):
                _, grads = self._gradients(loss_fn)
        self._update(grads, self._lr)
        self._loss_sum.add_(loss.float() * len(ints))

    # ------------------------------------------------------------------------------ epochs

    def _noise(self, size: int) -> Tensor:
        """The batch's PGD random start (uniform in [-1, 1]), drawn outside the step."""
        if self.recipe.adversarial is None:
            return self._no_noise
        shape = (size, *self.train_x.shape[1:])
        return torch.rand(shape, generator=self._draws, device=self.device) * 2 - 1

    def _run_step(self, ints: Tensor, lam: Tensor) -> None:
        noise = self._noise(len(ints))
        if self.step_mode == "eager":
            self._step(ints, lam, noise)
            return
        captured = self._captured.get(len(ints))
        if captured is None:
            captured = self._captured[len(ints)] = CapturedStep(self._step, self.stream)  # type: ignore[arg-type]
        try:
            captured(ints, lam, noise)
        except Exception as err:  # capture failed (a host read in the step): eager from now on
            if captured.captured:
                raise
            self.step_mode, self.fallback = "eager", f"{type(err).__name__}: {err}".splitlines()[0]
            self._captured.clear()
            self._step(ints, lam, noise)

    def epoch_steps(self) -> Iterator[int]:
        """Train one epoch step by step (yields the number of images of each step), on the
        trainer's own CUDA stream. :meth:`run_epoch` and :func:`train_packed` drive it."""
        with _on(self.stream):
            order = torch.randperm(len(self.train_x), generator=self._order)
            draws = draw_epoch(order, self.recipe.train.batch_size or 1, self.augmentation, self._draws, self.device)
            self._loss_sum.zero_()
        start = 0
        for size in self._sizes:
            with _on(self.stream):
                self._lr.fill_(self.lr)
                self._run_step(draws.ints[start : start + size], draws.lam[start : start + size])
            self._steps_done += 1
            start += size
            yield size
        self.epoch += 1

    def epoch_loss(self, images: int) -> float:
        """The mean training loss of the epoch just run (waits for the device)."""
        with _on(self.stream):
            return float(self._loss_sum) / max(1, images)

    def run_epoch(self) -> tuple[EpochStats, int]:
        """Train one epoch; returns its stats and the number of images processed."""
        t0 = time.perf_counter()
        lr = self.lr
        count = sum(self.epoch_steps())
        loss = self.epoch_loss(count)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        stats = EpochStats(self.epoch, self.recipe.train.epochs or 0, loss, lr, time.perf_counter() - t0)
        return stats, count


@contextlib.contextmanager
def _on(stream: torch.cuda.Stream | None) -> Iterator[None]:
    """``torch.cuda.stream(stream)``, but touching nothing of CUDA for a CPU trainer (None):
    torch's own context asks for the current CUDA device even then, which would start a CUDA
    context in a CPU run on a machine with a GPU."""
    if stream is None:
        yield
        return
    with torch.cuda.stream(stream):
        yield


@dataclass(frozen=True)
class VictimSpec:
    """One victim to train: everything :func:`train_victim` takes but the device and the
    progress callback (see there for each field)."""

    arch: str
    recipe: str | Recipe
    dataset: str | ImageDataset
    poison: PoisonLike | None = None
    seed: int = 0
    grad_transform: GradientTransform | None = None
    numerics: Numerics = FP32
    protocol: str | Protocol = SCRATCH
    start: dict[str, Tensor] | None = None


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
    step: str = "auto",
) -> TrainResult:
    """Train a fresh ``arch`` victim with ``recipe`` on ``dataset`` (+ ``poison``) and test it.

    Args:
        arch: architecture name (``sapabench list archs``).
        recipe: recipe name (defaults) or a :class:`Recipe` (e.g. ``RECIPES.create("sgd", epochs=5)``).
        dataset: dataset name (defaults) or an :class:`ImageDataset`.
        poison: a poison set applied as indices + perturbations on the clean training tensors.
        seed: seeds initialisation, batch order and augmentation; the same seed gives the same
            accuracy on the same platform. The caller's global RNG state is left untouched.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: called after every epoch with its :class:`EpochStats`.
        grad_transform: rewrites the gradients before every optimiser step (a training-level
            defense such as DP-SGD; see :data:`GradientTransform`).
        numerics: precision and memory format of training (plain fp32 by default; the commands
            resolve ``auto`` with :func:`sapabench.core.numerics.resolve_numerics`). Testing is in fp32.
        protocol: the victim protocol (``sapabench list protocols``; default ``scratch``).
        start: the weights the protocol starts from (:mod:`sapabench.victims.pretrained`), for every
            protocol but ``scratch``.
        step: ``auto`` (a captured CUDA graph on a GPU, eager elsewhere), ``eager`` or
            ``graph`` (:data:`STEPS`).

    Returns:
        The trained model (eval mode) with its clean test accuracy and timing.

    Example:
        >>> res = train_victim("convnet", "sgd", "digits", seed=0)   # doctest: +SKIP
        >>> res.clean_accuracy, res.timing.total_s                   # doctest: +SKIP
    """
    spec = VictimSpec(arch, recipe, dataset, poison, seed, grad_transform, numerics, protocol, start)
    return train_packed([spec], device=device, progress=progress, step=step)[0]


def train_packed(
    specs: Sequence[VictimSpec],
    *,
    device: str | torch.device = "auto",
    progress: Callable[[EpochStats], None] | None = None,
    step: str = "auto",
) -> list[TrainResult]:
    """Train several victims at once on one device, each exactly as :func:`train_victim` would
    alone (its own generators, weights and optimiser; the same numbers for the same seed).

    The victims advance one step each in turn; on a GPU each has its own CUDA stream, so their
    (captured) steps overlap and small models fill the device. A pack's training time is shared:
    each victim's ``timing`` reports the pack's seconds divided by the number of victims (its
    ``packed`` field says how many trained together), so throughput sums over the pack. Victims
    with a gradient transform train alone (a transform may draw from torch's global generator,
    which packed victims would share). ``progress`` gets the first victim's epochs.
    """
    if not specs:
        return []
    if len(specs) > 1 and any(s.grad_transform is not None for s in specs):
        raise ConfigError("victims with a gradient transform (a training-level defense) train alone, not packed")
    dev = resolve_device(device)
    trainers: list[Trainer] = []
    for spec in specs:
        check_seed(spec.seed, MAX_DERIVED_SEED)  # a member's or head's seed is derived from the user's
        ds = load_dataset(spec.dataset) if isinstance(spec.dataset, str) else spec.dataset
        rec = RECIPES.create(spec.recipe) if isinstance(spec.recipe, str) else spec.recipe
        proto = get_protocol(spec.protocol) if isinstance(spec.protocol, str) else spec.protocol
        with seeded(spec.seed, dev):  # the model's initialisation
            trainers.append(
                Trainer(
                    spec.arch,
                    rec,
                    ds,
                    spec.poison,
                    spec.seed,
                    dev,
                    spec.grad_transform,
                    spec.numerics,
                    proto,
                    spec.start,
                    step,
                )
            )
    n = len(trainers)
    losses: list[list[float]] = [[] for _ in trainers]
    seen = [0] * n
    epoch_s: list[float] = []
    with seeded(specs[0].seed, dev):  # what a gradient transform of a lone victim draws
        for epoch in range(max(t.recipe.train.epochs or 0 for t in trainers)):
            t0 = time.perf_counter()
            active = [i for i, t in enumerate(trainers) if epoch < (t.recipe.train.epochs or 0)]
            lr = trainers[0].lr
            counts = run_pack([trainers[i] for i in active])
            for i, count in zip(active, counts, strict=True):
                seen[i] += count
                losses[i].append(trainers[i].epoch_loss(count))
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            epoch_s.append((time.perf_counter() - t0) / len(active))
            if progress is not None and 0 in active:
                progress(EpochStats(epoch + 1, trainers[0].recipe.train.epochs or 0, losses[0][-1], lr, epoch_s[-1]))
    results = []
    for i, (spec, trainer) in enumerate(zip(specs, trainers, strict=True)):
        model = trainer.model.eval()
        t0 = time.perf_counter()
        acc = accuracy(model, trainer.dataset.test_x, trainer.dataset.test_y)
        eval_s = time.perf_counter() - t0
        own = tuple(epoch_s[: trainer.recipe.train.epochs or 0])
        train_s = sum(own)
        timing = TrainTiming(
            train_s, own, seen[i] / train_s if train_s > 0 else 0.0, str(dev), trainer.step_mode, n, trainer.fallback
        )
        results.append(TrainResult(model, acc, timing, tuple(losses[i]), trainer.recipe, spec.seed, eval_s))
    return results


def run_pack(trainers: Sequence[Trainer]) -> list[int]:
    """One epoch of every trainer, one step of each in turn; the images each saw."""
    steps = [t.epoch_steps() for t in trainers]
    counts = [0] * len(trainers)
    live = list(range(len(trainers)))
    while live:
        for i in list(live):
            size = next(steps[i], None)
            if size is None:
                live.remove(i)
            else:
                counts[i] += size
    return counts
