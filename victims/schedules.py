"""Learning-rate schedules as multipliers of the base lr, evaluated once per optimizer step."""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("step", "cosine", "cyclic", "constant")


def lr_multiplier(schedule: str, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """A function of the global step index giving the factor applied to the base lr.

    - ``step``: the paper's schedule, x0.1 at 1/2 and again at 3/4 of training (epochs 80 and
      120 of 160).
    - ``cosine``: half a cosine from 1 to 0 over all steps.
    - ``cyclic``: one triangular cycle, linear from 0 up to 1 over the first 40% of steps,
      then linearly down to 0 (the cyclic schedule of the paper's Figure 1).
    - ``constant``: 1 throughout.
    """
    total = max(1, epochs * steps_per_epoch)
    if schedule == "step":
        milestones = (epochs // 2, (3 * epochs) // 4)

        def step(i: int) -> float:
            epoch = i // max(1, steps_per_epoch)
            return 0.1 ** sum(epoch >= m for m in milestones if m > 0)

        return step
    if schedule == "cosine":
        return lambda i: 0.5 * (1.0 + math.cos(math.pi * min(i, total) / total))
    if schedule == "cyclic":
        peak = 0.4 * total

        def cyclic(i: int) -> float:
            t = min(i + 1, total)
            return t / peak if t <= peak else max(0.0, (total - t) / (total - peak))

        return cyclic
    if schedule == "constant":
        return lambda i: 1.0
    raise ValueError(f"unknown schedule {schedule!r}")
