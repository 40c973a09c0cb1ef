"""Anti-backdoor learning (ABL; Li et al., NeurIPS 2021): a backdoor is learned faster than the
clean task, so the training examples a model fits first are the suspects.

Three phases on the training set as given:

1. isolation: train under the local gradient ascent loss ``sign(L - gamma) * L`` (the batch's
   mean cross-entropy ``L`` is held near ``gamma``: once fitted below it, examples are pushed
   back up, so the clean task stays unfitted while a backdoor, learned faster, is fitted) for
   ``isolation_epochs`` at the recipe's learning rate, constant;
2. isolate the ``isolation_ratio`` of the training set with the lowest loss under that model;
3. go on training the same model on the rest for the recipe's epochs (its schedule), then
   unlearn the isolated examples: ``unlearning_epochs`` epochs of gradient ascent on their
   cross-entropy at ``unlearning_lr`` times the recipe's learning rate.

The original's defaults are kept: isolation ratio 0.01, gamma 0.5, 20 isolation epochs, 5
unlearning epochs at learning rate 5e-4 against 0.1 (a ratio of 0.005). What differs: after
isolation the victim trains for the recipe's epochs (the original fine-tunes for 60, the rest of
its 100-epoch budget), so the defense costs ``isolation_epochs + unlearning_epochs`` epochs more
than the plain victim (its ``defense_s`` says how long); the optimiser and augmentation are the
recipe's, and the optimiser's state starts afresh at each phase (as the original's separate
scripts do). The isolated examples are
reported as the defense's removed images (precision and recall against the true poisons): they
leave the training set after isolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sapabench.core.checks import in_range, open_fraction, positive
from sapabench.defenses.base import ModelContext, ModelDefense, Repaired, register_defense
from sapabench.defenses.phases import Phases, dataset_of, per_example_loss, recipe_of, with_train_set


@register_defense(
    "abl",
    description="model: anti-backdoor learning, isolate the 1 % fitted first, train without them, unlearn them (Li et al. 2021)",
)
@dataclass
class AntiBackdoorLearning(ModelDefense):
    """Anti-backdoor learning (see the module docstring for the phases and what differs).

    Args:
        isolation_ratio: the share of the training set isolated as suspects.
        gamma: the loss level local gradient ascent holds the isolation model's loss at.
        isolation_epochs: epochs of training under local gradient ascent before isolating.
        isolation_lr: the isolation learning rate, as a multiple of the recipe's (the
            original isolates at its training rate, 0.1).
        unlearning_epochs: epochs of gradient ascent on the isolated examples.
        unlearning_lr: the unlearning learning rate, as a multiple of the recipe's.
        heldout_fraction: ABL needs no clean split (0).
    """

    isolation_ratio: float = 0.01
    gamma: float = 0.5
    isolation_epochs: int = 20
    isolation_lr: float = 1.0
    unlearning_epochs: int = 5
    unlearning_lr: float = 0.005
    heldout_fraction: float = 0.0

    def __post_init__(self) -> None:
        open_fraction("abl isolation_ratio", self.isolation_ratio)
        in_range("abl gamma", self.gamma, 0.0, 100.0)
        positive("abl isolation_epochs", self.isolation_epochs, integer=True, maximum=1000)
        in_range("abl isolation_lr", self.isolation_lr, 1e-6, 10.0)
        positive("abl unlearning_epochs", self.unlearning_epochs, integer=True, maximum=1000)
        in_range("abl unlearning_lr", self.unlearning_lr, 1e-6, 10.0)

    def train(self, ctx: ModelContext) -> Repaired:
        data, recipe = dataset_of(ctx).to(ctx.device), recipe_of(ctx)
        epochs, isolating = recipe.train.epochs or 1, self.isolation_epochs
        phases = Phases(ctx)
        gamma = self.gamma

        def local_ascent(loss: Tensor) -> Tensor:
            return torch.sign(loss - gamma) * loss

        phases.trainer(
            recipe.with_train(epochs=isolating, lr=self.isolation_lr * recipe.train.lr, schedule="constant"),
            data,
            local_ascent,
        )
        for _ in range(isolating):
            phases.epoch()
        assert phases.current is not None
        losses = per_example_loss(phases.current.model, data.train_x, data.train_y)
        count = max(1, math.floor(self.isolation_ratio * data.num_train))
        isolated = np.sort(np.argsort(losses, kind="stable")[:count])
        on = torch.from_numpy(np.setdiff1d(np.arange(data.num_train), isolated)).to(ctx.device)
        phases.trainer(recipe, with_train_set(data, data.train_x[on], data.train_y[on], "abl-rest"))
        for _ in range(epochs):
            phases.epoch()
        suspects = torch.from_numpy(isolated).to(ctx.device)
        isolated_set = with_train_set(data, data.train_x[suspects], data.train_y[suspects], "abl-isolated")
        unlearning = recipe.with_train(
            epochs=self.unlearning_epochs, lr=self.unlearning_lr * recipe.train.lr, schedule="constant"
        )
        phases.trainer(unlearning, isolated_set, torch.neg)
        for _ in range(self.unlearning_epochs):
            phases.epoch()
        return Repaired(phases.result(), torch.from_numpy(isolated))
