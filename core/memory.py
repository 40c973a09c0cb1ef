"""What autograd holds for backward: the memory a graph costs, measured on any device.

:func:`peak_saved_bytes` counts the tensors autograd saves for backward while they are alive (a
graph keeps them until it is back-propagated or dropped). Unlike a device's allocator
statistics it works on CPU too, and it isolates the part of memory that grows with the number
of images held in one graph (what bounded-memory objectives must keep flat).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class _Saved:
    def __init__(self, tensor: torch.Tensor, state: dict[str, int]) -> None:
        self.tensor, self.state = tensor, state
        self.nbytes = tensor.numel() * tensor.element_size()
        state["live"] += self.nbytes
        state["peak"] = max(state["peak"], state["live"])

    def __del__(self) -> None:
        self.state["live"] -= self.nbytes


def peak_saved_bytes(fn: Callable[[], Any]) -> int:
    """The most bytes autograd held saved for backward at any one time while ``fn()`` ran
    (parameters saved by reference count too: a constant per graph)."""
    state = {"live": 0, "peak": 0}
    with torch.autograd.graph.saved_tensors_hooks(lambda t: _Saved(t, state), lambda s: s.tensor):
        fn()
    return state["peak"]
