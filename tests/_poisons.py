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
