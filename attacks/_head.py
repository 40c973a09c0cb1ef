"""Head-trajectory surrogates: what a ``linear``-protocol victim trains, seen by the attacker.

A ``linear`` victim freezes a clean pretrained feature extractor and trains only a freshly
initialised head (:mod:`sapabench.victims.protocols`). Matching the whole surrogate's gradient at its
trained weights aims at a model the victim never has: the victim's head starts from a new
initialisation and moves through a short training trajectory. Geiping et al.'s transfer setting
(forest's ``scenario='transfer'``: only the trainable parameters enter the matched gradient) and
Huang et al.'s re-initialisation (MetaPoison, 2020: poisons that work across the trajectory of
fresh models) together give the protocol-aware variant built here: the surrogate's extractor,
frozen, with a fresh head trained on the clean set, snapshotted at a few epochs of its training.
Each snapshot's trainable parameters are the head's only, so the matching loss and SAPA's
``v_hat`` live in the space of weights the victim trains.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from sapabench.attacks.base import Member
from sapabench.attacks.surrogate import SurrogateSpec
from sapabench.core.datasets import ImageDataset
from sapabench.victims.archs import Victim
from sapabench.victims.protocols import get_protocol
from sapabench.victims.train import Trainer

HEAD_EPOCHS = "0,1,2,4,6"
"""The default snapshots of the fresh head's clean training: its initialisation, then epochs."""

HEAD_SEED_OFFSET = 7919
"""Offsets a member's seed for its fresh head, so the head never reuses the surrogate's own
initialisation draws (a victim's head is not the surrogate's)."""


def parse_head_epochs(text: object) -> tuple[int, ...] | None:
    """``"0,1,2,4,6"`` as sorted distinct epochs, or None if the text is not such a list."""
    if not isinstance(text, str):
        return None
    try:
        epochs = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        return None
    if not epochs or epochs[0] < 0 or epochs[-1] > 1000:
        return None
    return tuple(epochs)


def head_trajectory(
    member: Member, spec: SurrogateSpec, dataset: ImageDataset, epochs: Sequence[int], device: torch.device
) -> list[Victim]:
    """Snapshots (eval mode) of a fresh head trained with the surrogate's recipe on the clean
    set on top of ``member``'s frozen extractor, after each of ``epochs`` epochs (0: the fresh
    initialisation). The schedule is the recipe's over ``max(epochs)`` epochs, as a victim that
    trains its head that long; only the head's parameters require gradients."""
    last = max(epochs)
    recipe = spec.train_recipe().with_train(epochs=max(1, last))
    start = {k: v.detach().clone() for k, v in member.model.state_dict().items()}
    seed = member.seed + HEAD_SEED_OFFSET
    torch.manual_seed(seed)  # the fresh head's initialisation (the caller's RNG is seeded and restored)
    trainer = Trainer(member.arch, recipe, dataset, None, seed, device, protocol=get_protocol("linear"), start=start)
    snapshots = []
    for epoch in range(last + 1):
        if epoch in epochs:
            snapshots.append(copy.deepcopy(trainer.model).eval())
        if epoch < last:
            trainer.run_epoch()
    return snapshots
