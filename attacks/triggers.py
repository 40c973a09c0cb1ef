"""Backdoor triggers: a small patch pasted into images."""

from __future__ import annotations

import torch
from torch import Tensor

from sapabench.core.threats import FIXED_PLACEMENTS, paste_fixed


def make_trigger(channels: int, side: int, generator: torch.Generator) -> Tensor:
    """A random high-contrast binary patch (C, side, side), drawn from ``generator``."""
    return (torch.rand((channels, side, side), generator=generator) > 0.5).float()


def apply_trigger(x: Tensor, trigger: Tensor, placement: str, generator: torch.Generator | None = None) -> Tensor:
    """``x`` with ``trigger`` pasted over it: at a uniform random position per image
    (``placement='random'``, positions drawn from ``generator``), in the bottom-right corner
    (``corner``) or in all four (``four-corners``)."""
    if placement in FIXED_PLACEMENTS:
        return paste_fixed(x, trigger, placement)
    n, _, h, w = x.shape
    ph, pw = trigger.shape[-2:]
    out = x.clone()
    patch = trigger.to(x.device, x.dtype)
    if placement != "random":
        raise ValueError(f"unknown trigger placement {placement!r}")
    rows = torch.randint(0, h - ph + 1, (n,), generator=generator).tolist()
    cols = torch.randint(0, w - pw + 1, (n,), generator=generator).tolist()
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        out[i, :, r : r + ph, c : c + pw] = patch
    return out
