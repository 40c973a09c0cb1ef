"""A small valid poison set to save, load and tamper with in tests."""

import torch

from sapabench.core.poison import PoisonSet
from sapabench.core.threats import ThreatModel


def make_poison(seed: int = 0, **overrides) -> PoisonSet:
    """Four untargeted perturbations of 1 x 8 x 8 images within eps 0.1, drawn with ``seed``;
    ``overrides`` replace any field (validated like any poison: a bad one raises ConfigError)."""
    g = torch.Generator().manual_seed(seed)
    fields = dict(
        attack="error-min",
        dataset="digits",
        dataset_fingerprint="",
        num_train=10,
        image_shape=(1, 8, 8),
        indices=torch.arange(4),
        delta=(torch.rand(4, 1, 8, 8, generator=g) - 0.5) * 0.1,
        labels=None,
        eps=0.1,
        budget=1.0,
        threat=ThreatModel("untargeted"),
        trigger=None,
        config={"eps": 0.1},
        seed=seed,
        surrogate={},
        craft_s=1.0,
        sapabench_version="test",
        extra={},
    )
    return PoisonSet(**{**fields, **overrides})


def badnets(ds, count: int = 30, source: int = 1, target: int = 7, seed: int = 0) -> PoisonSet:
    """A dirty-label backdoor (Gu et al.'s BadNets) on ``ds``: ``count`` training images outside
    the target class (drawn with ``seed``) carry a 6 x 6 checkerboard in the corner and the
    target's label; its success is the source class's triggered test images read as the target."""
    from sapabench.attacks.triggers import apply_trigger

    trigger = torch.zeros(1, 6, 6)
    trigger[:, ::2, ::2] = 1.0
    trigger[:, 1::2, 1::2] = 1.0
    others = torch.nonzero(ds.train_y != target).flatten()
    g = torch.Generator().manual_seed(seed)
    idx = others[torch.randperm(len(others), generator=g)[:count]].sort().values
    x = ds.train_x[idx]
    return PoisonSet(
        attack="badnets",
        dataset=ds.name,
        dataset_fingerprint=ds.fingerprint,
        num_train=ds.num_train,
        image_shape=tuple(ds.train_x.shape[1:]),
        indices=idx,
        delta=apply_trigger(x, trigger, "corner") - x,
        labels=torch.full((count,), target),
        eps=1.0,
        budget=count / ds.num_train,
        threat=ThreatModel(
            "backdoor", source_class=source, target_class=target, trigger_placement="corner", trigger_seed=0
        ),
        trigger=trigger,
        config={},
        seed=seed,
        surrogate={},
        craft_s=0.0,
        sapabench_version="test",
        extra={},
    )
