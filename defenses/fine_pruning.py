"""Fine-pruning (Liu, Dolan-Gavitt and Garg, RAID 2018): a backdoor lives in units that clean
inputs leave dormant, so prune them, then fine-tune on clean data.

The victim trains as the cell says (on the training set minus the defender's clean split); on
the clean split, the units of its penultimate layer (the inputs of its last linear layer) are
pruned in increasing order of their mean activation, one at a time, for as long as the clean
split's accuracy stays at or above ``min_accuracy_ratio`` of the unpruned model's; the pruned
model then fine-tunes on the clean split for ``finetune_epochs`` at ``finetune_lr`` times the
recipe's learning rate, its pruned units held at zero.

What differs from the original: it prunes the last convolutional layer's channels; here the
penultimate layer's units are pruned, which are those channels in the harness's convolutional
victims (global pooling follows the last convolution) and the last hidden layer elsewhere
(MLP, ViT's class token), so one rule serves every architecture. The accuracy threshold is the
defender's choice in the original (it stops before the accuracy drops); 0.9 of the unpruned
accuracy here. The clean split is 5 % of the training set (BackdoorBench's default share).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from sapabench.core.checks import in_range, open_fraction, positive
from sapabench.defenses.base import HELDOUT_FRACTION, ModelContext, ModelDefense, Repaired, register_defense
from sapabench.defenses.filters import last_linear, penultimate_features
from sapabench.defenses.phases import Phases, dataset_of, recipe_of, with_train_set


def prune_count(
    features: np.ndarray, weight: np.ndarray, bias: np.ndarray, y: np.ndarray, ratio: float
) -> tuple[int, np.ndarray]:
    """How many of the least active units to prune (and their order, least active first): the
    most for which the accuracy of every smaller pruning stays at or above ``ratio`` of the
    unpruned accuracy, each pruning's accuracy computed exactly from the features."""
    order = np.argsort(features.mean(axis=0), kind="stable")
    mask = np.ones(features.shape[1])
    base = float(((features @ weight.T + bias).argmax(1) == y).mean())
    pruned = 0
    for unit in order[:-1]:  # at least one unit stays
        mask[unit] = 0.0
        acc = float((((features * mask) @ weight.T + bias).argmax(1) == y).mean())
        if acc < ratio * base:
            break
        pruned += 1
    return pruned, order


def hold_pruned(layer: nn.Linear, keep: Tensor) -> None:
    """Zero the pruned inputs of ``layer`` on every forward pass (fine-tuning cannot revive them)."""
    layer.register_forward_pre_hook(lambda mod, inp: (inp[0] * keep.to(inp[0].dtype),))


@register_defense(
    "fine-pruning",
    description="model: prune the penultimate units clean data leaves dormant, fine-tune on clean data (Liu et al. 2018)",
)
@dataclass
class FinePruning(ModelDefense):
    """Fine-pruning (see the module docstring for the rule and what differs).

    Args:
        min_accuracy_ratio: pruning stops before the clean split's accuracy falls below this
            share of the unpruned model's.
        finetune_epochs: epochs of fine-tuning on the clean split.
        finetune_lr: the fine-tuning learning rate, as a multiple of the recipe's.
        heldout_fraction: the share of the training set the defender holds clean.
    """

    min_accuracy_ratio: float = 0.9
    finetune_epochs: int = 10
    finetune_lr: float = 0.1
    heldout_fraction: float = HELDOUT_FRACTION

    def __post_init__(self) -> None:
        open_fraction("fine-pruning min_accuracy_ratio", self.min_accuracy_ratio)
        positive("fine-pruning finetune_epochs", self.finetune_epochs, integer=True, maximum=1000)
        in_range("fine-pruning finetune_lr", self.finetune_lr, 0.0, 10.0)
        open_fraction("fine-pruning heldout_fraction", self.heldout_fraction)

    def train(self, ctx: ModelContext) -> Repaired:
        data, recipe = dataset_of(ctx).to(ctx.device), recipe_of(ctx)
        phases = Phases(ctx)
        phases.trainer(recipe, data)
        for _ in range(recipe.train.epochs or 1):
            phases.epoch()
        assert phases.current is not None
        model = phases.current.model
        layer = last_linear(model)
        feats = penultimate_features(model, ctx.heldout_x)
        w = layer.weight.detach().double().cpu().numpy()
        b = np.zeros(w.shape[0]) if layer.bias is None else layer.bias.detach().double().cpu().numpy()
        count, order = prune_count(feats, w, b, ctx.heldout_y.cpu().numpy(), self.min_accuracy_ratio)
        keep = torch.ones(w.shape[1], device=ctx.device)
        keep[torch.from_numpy(order[:count]).to(ctx.device)] = 0.0
        clean = with_train_set(data, ctx.heldout_x, ctx.heldout_y, "fine-pruning-clean")
        tuning = recipe.with_train(epochs=self.finetune_epochs, lr=self.finetune_lr * recipe.train.lr)
        hold_pruned(last_linear(phases.trainer(tuning, clean).model), keep)
        for _ in range(self.finetune_epochs):
            phases.epoch()
        return Repaired(phases.result(), stats={"pruned": float(count)})
