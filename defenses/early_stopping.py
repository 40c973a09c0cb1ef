"""Early stopping on a held-out clean split, against availability poisons: an unlearnable or
error-maximising poison makes the victim fit its shortcut over the epochs, so the checkpoint of
best held-out accuracy may keep what the clean features taught it first.

The victim trains as the cell says (on the training set minus the defender's clean split),
its held-out accuracy measured after every epoch; training stops once ``patience`` epochs pass
without a better held-out accuracy, and the victim is the checkpoint of the best epoch (the
earliest of equals). Also reported: the peak *test* accuracy over the epochs trained, the figure
Sandoval-Segura et al. argue an availability poison should be judged by (it takes the test set's word on the epoch, so it is an
upper bound on what early stopping can reach, never used to choose).

What differs from common practice: the split is 5 % of the training set, drawn with the victim's
seed (a defender would collect its own clean data; the victim does not train on it); patience
counts epochs of the recipe, whose learning-rate schedule is not shortened when training stops.
"""

from __future__ import annotations

from dataclasses import dataclass

from sapabench.core.checks import open_fraction, positive
from sapabench.defenses.base import HELDOUT_FRACTION, ModelContext, ModelDefense, Repaired, register_defense
from sapabench.defenses.phases import Phases, dataset_of, recipe_of
from sapabench.victims.train import accuracy


@register_defense(
    "early-stopping",
    description="model: keep the epoch of best accuracy on a 5 % clean held-out split; reports the peak test accuracy over epochs",
)
@dataclass
class EarlyStopping(ModelDefense):
    """Early stopping on a clean held-out split (see the module docstring).

    Args:
        patience: epochs without a better held-out accuracy before training stops.
        heldout_fraction: the share of the training set the defender holds clean.
    """

    patience: int = 5
    heldout_fraction: float = HELDOUT_FRACTION

    def __post_init__(self) -> None:
        positive("early-stopping patience", self.patience, integer=True, maximum=100_000)
        open_fraction("early-stopping heldout_fraction", self.heldout_fraction)

    def train(self, ctx: ModelContext) -> Repaired:
        data, recipe = dataset_of(ctx).to(ctx.device), recipe_of(ctx)
        phases = Phases(ctx)
        model = phases.trainer(recipe, data).model
        best, best_epoch, peak_test, since = -1.0, 0, 0.0, 0
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for epoch in range(1, (recipe.train.epochs or 1) + 1):
            phases.epoch()
            held = accuracy(model, ctx.heldout_x, ctx.heldout_y)
            peak_test = max(peak_test, accuracy(model, data.test_x, data.test_y))
            if held > best:
                best, best_epoch, since = held, epoch, 0
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since += 1
                if since >= self.patience:
                    break
        model.load_state_dict(state)
        return Repaired(phases.result(), stats={"stopped_epoch": float(best_epoch), "peak_test_accuracy": peak_test})
