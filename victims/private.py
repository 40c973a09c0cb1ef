"""Per-example gradient clipping and Gaussian noise: the DP-SGD step (Abadi et al., CCS 2016).

:class:`PerExampleClipping` is a gradient transform the trainer recognises: instead of one
backward pass over the batch, it takes every example's gradient (``torch.func``: ``vmap`` of
``grad`` over a functional call of the model), scales each to L2 norm at most ``clip``, sums them,
adds N(0, (noise_multiplier * clip)^2) to every coordinate and divides by the batch size. As in
Opacus, BatchNorm (which mixes the examples of a batch, so no example has a gradient of its own)
is replaced by GroupNorm in the victim (:func:`without_batchnorm`), and recipes that mix examples
or perturb the weights (MixUp, SAM) or re-draw examples (adversarial training) are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from sapabench.core.errors import ConfigError


@dataclass(frozen=True)
class PerExampleClipping:
    """The DP-SGD step's parameters: each example's gradient clipped to ``clip`` (L2, over every
    trained parameter), noise of standard deviation ``noise_multiplier * clip`` on the sum."""

    clip: float
    noise_multiplier: float

    def __post_init__(self) -> None:
        if not self.clip > 0 or not self.noise_multiplier > 0:
            raise ConfigError(
                f"DP-SGD needs clip > 0 and noise_multiplier > 0 (got clip={self.clip}, "
                f"noise_multiplier={self.noise_multiplier}); without noise nothing is private"
            )

    def __call__(self, params: Sequence[nn.Parameter]) -> None:
        raise TypeError("per-example clipping runs inside the trainer's step, not on a batch gradient")


def without_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm2d replaced by a GroupNorm of as many channels (at most 32
    groups, a divisor of the channels), in place; the example-wise normalisation DP-SGD needs."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            groups = max(g for g in range(1, min(32, c) + 1) if c % g == 0)
            setattr(model, name, nn.GroupNorm(groups, c, affine=child.affine))
        else:
            without_batchnorm(child)
    return model


def per_example_gradients(
    model: nn.Module,
    params: Sequence[nn.Parameter],
    x: Tensor,
    y: Tensor,
    criterion: Callable[[Tensor, Tensor], Tensor],
) -> tuple[list[Tensor], Tensor]:
    """Every example's gradient of ``criterion(model(x_i), y_i)`` for each of ``params`` (shape
    ``(batch, *p.shape)``) and the examples' losses."""
    names = {id(p): n for n, p in model.named_parameters()}
    trained = {names[id(p)]: p.detach() for p in params}
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in trained}
    buffers = dict(model.named_buffers())

    def loss(weights: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, ({**weights, **fixed}, buffers), (xi.unsqueeze(0),))
        return criterion(out, yi.unsqueeze(0))

    grads, losses = vmap(grad_and_value(loss), in_dims=(None, 0, 0))(trained, x, y)
    return [grads[names[id(p)]] for p in params], losses


def clip_and_noise(
    per_example: Sequence[Tensor], clip: float, noise_multiplier: float, generator: torch.Generator | None = None
) -> list[Tensor]:
    """The DP-SGD gradient: each example's gradient (over all tensors together) scaled to L2 norm
    at most ``clip``, summed, plus N(0, (noise_multiplier * clip)^2) per coordinate, over the batch size."""
    batch = per_example[0].shape[0]
    norms = torch.sqrt(sum(g.reshape(batch, -1).float().pow(2).sum(1) for g in per_example))  # type: ignore[arg-type]
    scale = (clip / (norms + 1e-12)).clamp(max=1.0)
    out = []
    for g in per_example:
        summed = (g.float() * scale.view(-1, *([1] * (g.dim() - 1)))).sum(0)
        noise = torch.randn(summed.shape, generator=generator, device=summed.device) * (noise_multiplier * clip)
        out.append(((summed + noise) / batch).to(g.dtype))
    return out
