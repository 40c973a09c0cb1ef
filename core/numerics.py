"""How a victim's arithmetic is done: its precision and memory format, resolved per device.

A :class:`Numerics` is part of what a number was measured with: results rows, leaderboard
entries and exact verification record it, and ``verify`` re-runs an entry in its own numerics.

- ``precision``: ``fp32``, or ``bf16`` (autocast: convolutions and matrix products in bfloat16,
  reductions and the optimiser's weights in fp32; no loss scaling is needed for bfloat16).
- ``memory_format``: ``contiguous`` (NCHW) or ``channels_last`` (NHWC) for the model's weights
  and its image batches.

``auto`` (the default of every suite and command) resolves by :func:`resolve_numerics`, from
measurements recorded in docs/performance.md, "Precision and speed": bf16 only where the device does it
in hardware (a CUDA GPU with bf16, a CPU with AVX-512 bf16 or AMX; detected, never assumed), and
channels-last wherever bf16 is used and on CPUs, where oneDNN's NHWC convolutions are faster.

Attacks craft in numerics too (``craft_precision`` / ``craft_memory_format``, resolved by the
same rule; measured in docs/performance.md, "Crafting numerics"): :meth:`Numerics.wrapped` gives
the surrogate whose every forward pass runs in them, while the perturbation stays fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sapabench.core.errors import ConfigError
from sapabench.core.names import AUTO, MEMORY_FORMATS, PRECISIONS


@dataclass(frozen=True)
class Numerics:
    """A victim's or a crafting's precision and memory format, resolved (see the module
    docstring). Its errors name no flag: a command validates its flags itself, and a value read
    from a file reaches here through a caller that names the file and field."""

    precision: str = "fp32"
    memory_format: str = "contiguous"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"invalid precision={self.precision!r}: a resolved precision is {' or '.join(PRECISIONS)}"
                f" ({AUTO} is resolved first, by resolve_numerics)"
            )
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(
                f"invalid memory_format={self.memory_format!r}: a resolved memory format is "
                f"{' or '.join(MEMORY_FORMATS)} ({AUTO} is resolved first, by resolve_numerics)"
            )

    @property
    def label(self) -> str:
        """Short form for tables and logs: ``fp32``, ``bf16``, ``fp32+cl``, ``bf16+cl``."""
        return self.precision + ("+cl" if self.channels_last else "")

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"

    def model(self, model: nn.Module) -> nn.Module:
        """``model`` with its weights in this memory format (in place)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def inputs(self, x: Tensor) -> Tensor:
        """An image batch in this memory format."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    @contextlib.contextmanager
    def autocast(self, device: torch.device, cache: bool = True) -> Iterator[None]:
        """The block's forward passes in this precision (fp32: unchanged). ``cache=False``
        re-casts the weights at every use (the same values; what a captured CUDA graph needs)."""
        if self.precision == "fp32":
            yield
            return
        with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache):
            yield

    def wrapped(self, model: nn.Module) -> nn.Module:
        """``model`` (its weights in this memory format, in place) behind a module whose every
        forward pass takes its inputs in this memory format, runs in this precision and returns
        fp32 outputs: what an attack's surrogate computes with. fp32 contiguous: ``model`` itself.

        Autocast is entered and left around each forward pass, never around a whole loop: its
        cache of bf16 weight copies lives as long as the autocast block, so weights changed in
        place between two passes (an optimiser's step, SAPA's theta + v_hat and its restore)
        would otherwise be read from a stale copy."""
        if self == FP32:
            return model
        return InNumerics(self.model(model), self)


class InNumerics(nn.Module):
    """A model whose forward passes run in given numerics (:meth:`Numerics.wrapped`); its
    parameters, buffers and train/eval mode are the wrapped model's."""

    def __init__(self, model: nn.Module, numerics: Numerics) -> None:
        super().__init__()
        self.inner = model
        self.numerics = numerics

    def forward(self, x: Tensor) -> Tensor:
        device = x.device
        with self.numerics.autocast(device):
            out = self.inner(self.numerics.inputs(x))
        return out.float()


FP32 = Numerics()
"""Plain fp32 in NCHW: what every result before numerics existed was measured with."""


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` does bfloat16 arithmetic in hardware: a CUDA GPU that supports it
    natively (Ampere or newer), or a CPU with AVX-512 bf16 or AMX tiles. Elsewhere autocast would
    emulate bf16 and run slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def resolve_numerics(precision: str, memory_format: str, device: torch.device) -> Numerics:
    """The numerics to train with on ``device``; ``auto`` fields resolve as the module says."""
    if precision == AUTO:
        precision = "bf16" if fast_bf16(device) else "fp32"
    if memory_format == AUTO:
        memory_format = "channels_last" if precision == "bf16" or device.type == "cpu" else "contiguous"
    return Numerics(precision, memory_format)
