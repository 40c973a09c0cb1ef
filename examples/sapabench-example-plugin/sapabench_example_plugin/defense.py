"""``median-filter``: purify every training image with a k x k median filter (kornia)."""

from __future__ import annotations

from dataclasses import dataclass

import kornia
import torch

from sapabench.defenses import ConfigError, DataDefense, DefenseContext, Filtered, register_defense


@register_defense("median-filter", description="example plugin: purification by a 3x3 median filter")
@dataclass
class MedianFilter(DataDefense):
    """k x k median filtering of every training image (a classic purification baseline)."""

    kernel: int = 3

    def __post_init__(self) -> None:
        if self.kernel not in (3, 5, 7):
            raise ConfigError(f"invalid kernel={self.kernel!r}: 3, 5 or 7")

    def filter(self, ctx: DefenseContext) -> Filtered:
        images = kornia.filters.median_blur(ctx.x, (self.kernel, self.kernel)).clamp(0, 1)
        return Filtered(torch.arange(len(ctx.x)), images)
