"""Controls for data filters: what a filter is measured against.

- ``oracle-filter`` removes exactly the poisoned images: the most any filter can do by removal
  (its reduction of the attack's effect is the ceiling a filter's share is measured against).
- ``random-like-F`` removes as many images as the filter ``F`` removes from each class, drawn at
  random (seeded): what removing that many images does by itself. A filter that reduces the
  attack's effect no more than its random twin found nothing; one whose clean cost is that of
  its twin pays only for the images it drops.

Armory's poisoning evaluations run both beside every filtering defense (twosixlabs/armory,
"perfect filter" and "random filter"). Controls know which images are poisoned, which no real
defense may: they implement :meth:`ControlFilter.control`, which ``defenses.base.filtered`` (what
``apply_defense`` runs) calls with the poisoned indices, and only classes of this package are
given them (a plugin subclassing :class:`ControlFilter` is refused).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from sapabench.core.errors import ConfigError
from sapabench.core.names import ORACLE_FILTER, RANDOM_LIKE
from sapabench.defenses.base import DEFENSES, ControlFilter, DefenseContext, Filtered, filtered, register_defense
from sapabench.defenses.filters import kept_indices


@register_defense(ORACLE_FILTER, description="control: removes exactly the poisoned images (the ceiling of any filter)")
@dataclass
class OracleFilter(ControlFilter):
    """Removes the poisoned images and nothing else; on clean data it removes nothing."""

    def control(self, ctx: DefenseContext, poisoned: Tensor) -> Filtered:
        if len(ctx.x) - len(poisoned) < 2:
            raise ConfigError(
                f"oracle-filter would remove all {len(ctx.x)} training images (the poison perturbs every one, budget "
                "1.0): it controls filters of poisons that perturb a part of the data only"
            )
        return Filtered(kept_indices(len(ctx.x), poisoned.cpu().numpy()))


@dataclass
class RandomLike(ControlFilter):
    """Removes, per class, as many images as the filter ``of`` removes from that class, drawn
    uniformly at random with the trial's seed (the filter runs first, on its cached defender
    model, only to count)."""

    of: ClassVar[str] = ""

    def control(self, ctx: DefenseContext, poisoned: Tensor) -> Filtered:
        counted = filtered(DEFENSES.create(self.of), ctx, poisoned)  # type: ignore[arg-type]
        n, y = len(ctx.x), ctx.y.cpu().numpy()
        removed = np.ones(n, dtype=bool)
        removed[torch.as_tensor(counted.kept).cpu().numpy()] = False
        seed = int.from_bytes(hashlib.sha256(f"{self.name}:{ctx.seed}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        remove = [
            rng.choice(np.flatnonzero(y == c), size=int((removed & (y == c)).sum()), replace=False)
            for c in range(ctx.num_classes)
        ]
        return Filtered(
            kept_indices(n, np.concatenate(remove) if remove else np.zeros(0)), defender_s=counted.defender_s
        )


def register_random_twin(of: str) -> None:
    """Register ``random-like-OF`` for the filter ``of`` (built-in filters and the oracle)."""
    name = f"{RANDOM_LIKE}{of}"
    cls = type(f"RandomLike_{of.replace('-', '_')}", (RandomLike,), {"of": of, "__module__": __name__})
    register_defense(name, description=f"control: removes as many random images per class as {of} does")(dataclass(cls))


for _filter in ("spectral-signatures", "spectre", "activation-clustering", "deep-knn", ORACLE_FILTER):
    register_random_twin(_filter)
