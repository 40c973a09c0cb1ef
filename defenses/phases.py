"""Training in phases for model-level defenses: a :class:`~sapabench.victims.train.Trainer` of the
cell's victim on a training set and recipe of the phase's own, starting from the last phase's
weights, and the :class:`~sapabench.victims.train.TrainResult` the phases add up to."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor, nn

from sapabench.core.datasets import ImageDataset, load_dataset
from sapabench.defenses.base import ModelContext
from sapabench.victims.protocols import get_protocol
from sapabench.victims.recipes import RECIPES, Recipe
from sapabench.victims.train import Trainer, TrainResult, TrainTiming, accuracy


def dataset_of(ctx: ModelContext) -> ImageDataset:
    spec = ctx.spec
    return load_dataset(spec.dataset) if isinstance(spec.dataset, str) else spec.dataset


def recipe_of(ctx: ModelContext) -> Recipe:
    """The cell's recipe with its epochs and batch size resolved."""
    spec, data = ctx.spec, dataset_of(ctx)
    rec = RECIPES.create(spec.recipe) if isinstance(spec.recipe, str) else spec.recipe
    return rec.with_train(
        epochs=rec.train.epochs or data.default_epochs, batch_size=rec.train.batch_size or data.default_batch_size
    )


def with_train_set(data: ImageDataset, x: Tensor, y: Tensor, name: str) -> ImageDataset:
    """``data`` training on ``x``/``y`` instead (its test set kept)."""
    return replace(data, name=f"{data.name}:{name}", train_x=x.contiguous(), train_y=y, fingerprint="")


@dataclass
class Phases:
    """The phases of one defended victim, in order: each :meth:`trainer` starts from the weights
    the previous one ended with; :meth:`epoch` runs one epoch and records its seconds and loss."""

    ctx: ModelContext
    epoch_s: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    images: int = 0
    current: Trainer | None = None

    def trainer(
        self,
        recipe: Recipe,
        data: ImageDataset | None = None,
        loss_transform: Callable[[Tensor], Tensor] | None = None,
    ) -> Trainer:
        spec = self.ctx.spec
        proto = get_protocol(spec.protocol) if isinstance(spec.protocol, str) else spec.protocol
        t = Trainer(
            spec.arch,
            recipe,
            data or dataset_of(self.ctx),
            None,
            spec.seed,
            self.ctx.device,
            None,
            spec.numerics,
            proto,
            spec.start,
            self.ctx.step,
            loss_transform,
        )
        if self.current is not None:
            t.model.load_state_dict(self.current.model.state_dict())
        self.current = t
        return t

    def epoch(self) -> None:
        assert self.current is not None
        stats, count = self.current.run_epoch()
        self.epoch_s.append(stats.epoch_s)
        self.losses.append(stats.loss)
        self.images += count

    def result(self, model: nn.Module | None = None) -> TrainResult:
        """What the phases trained (``model``: the one to keep, default the last phase's)."""
        assert self.current is not None
        t, ctx = self.current, self.ctx
        model = (model or t.model).eval()
        data = dataset_of(ctx).to(ctx.device)
        t0 = time.perf_counter()
        acc = accuracy(model, data.test_x, data.test_y)
        total = sum(self.epoch_s)
        timing = TrainTiming(
            total, tuple(self.epoch_s), self.images / total if total > 0 else 0.0, str(ctx.device), t.step_mode
        )
        return TrainResult(
            model, acc, timing, tuple(self.losses), recipe_of(ctx), ctx.spec.seed, time.perf_counter() - t0
        )  # type: ignore[arg-type]


@torch.no_grad()
def per_example_loss(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> np.ndarray:
    """Each example's cross-entropy under ``model`` in eval mode, without augmentation."""
    was = model.training
    model.eval()
    out = torch.cat(
        [
            nn.functional.cross_entropy(model(x[i : i + batch_size]).float(), y[i : i + batch_size], reduction="none")
            for i in range(0, len(x), batch_size)
        ]
    )
    model.train(was)
    return out.cpu().numpy().astype(np.float64)
