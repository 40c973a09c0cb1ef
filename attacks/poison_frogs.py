"""Poison Frogs feature collision (Shafahi et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sapabench.attacks._draws import draw_target
from sapabench.attacks._features import penultimate
from sapabench.attacks.base import (
    Attack,
    CraftContext,
    Crafted,
    ModelConfig,
    budget_indices,
    check_positive_ints,
    project,
    register_attack,
)
from sapabench.attacks.surrogate import SurrogateSpec
from sapabench.core.errors import ConfigError
from sapabench.core.threats import ThreatModel


@dataclass(frozen=True)
class PoisonFrogsConfig(ModelConfig):
    """Poison Frogs settings.

    Attributes:
        steps: forward-backward splitting iterations (1,000 at most in the paper).
        lr: the forward (gradient) step size lambda, in pixel units per unit of gradient.
        beta0: the proximity weight before scaling: beta = beta0 * (2048 / D_input)^2 as in the
            paper (2048 = InceptionV3's feature size), which is 0.25 there.
        watermark: opacity of the target blended into each base at the start (0.3).
    """

    steps: int = 1000
    lr: float = 0.01
    beta0: float = 0.25
    watermark: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "steps")
        if not 0 < self.lr <= 100:
            raise ConfigError(f"invalid lr={self.lr!r}: a step size in (0, 100]")
        if not self.beta0 >= 0:
            raise ConfigError(f"invalid beta0={self.beta0!r}: must be >= 0")
        if not 0 <= self.watermark < 1:
            raise ConfigError(f"invalid watermark={self.watermark!r}: an opacity in [0, 1)")


@register_attack("poison-frogs", description="Poison Frogs feature collision (Shafahi et al. 2018)")
class PoisonFrogs(Attack):
    """Poison Frogs (Shafahi et al., NeurIPS 2018): penultimate-layer feature collision.

    Threat model: targeted, clean-label. The target test image (drawn from the seed exactly as
    gradient matching draws it, so the two are paired by craft seed) should be classified as
    ``adversarial_class``. Built for transfer learning (a victim that re-trains a head on the
    surrogate's frozen features); report it there (``linear`` / ``finetune`` protocols) and from
    scratch.

    eps / budget: each poison stays within ``eps`` (L_inf) of its base image; at most
    ``budget`` x N base images, all from the adversarial class.

    Objective: each poison x with base b solves ``min ||f(x) - f(t)||^2 + beta ||x - b||^2``
    (f the surrogate's penultimate features, t the target) by the paper's forward-backward
    splitting: a gradient step ``x <- x - lr grad ||f(x) - f(t)||^2``, then the proximal step
    ``x <- (x + lr beta b) / (1 + lr beta)``, then the projection onto the eps ball and the
    pixel range. Start: the watermark ``x = watermark t + (1 - watermark) b`` (projected).

    Options (paper preset): eps 16/255, budget 0.01, steps 1000, lr 0.01, beta0 0.25,
    watermark 0.3, surrogate ResNet-18 / sgd.

    Example::

        poison = create_attack("poison-frogs", dataset="digits").run(load_dataset("digits"), seed=0)
    """

    threat = "targeted"
    Config = PoisonFrogsConfig
    presets = {
        "paper": dict(
            eps=16 / 255, budget=0.01, steps=1000, lr=0.01, beta0=0.25, surrogate=SurrogateSpec("resnet18", "sgd")
        ),
        "embedded": dict(
            eps=64 / 255, budget=0.10, steps=300, lr=0.01, beta0=0.25, surrogate=SurrogateSpec("convnet", "sgd")
        ),
        "smoke": dict(
            eps=16 / 255, budget=0.05, steps=3, lr=0.01, beta0=0.25, surrogate=SurrogateSpec("convnet", "sgd", epochs=1)
        ),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        cfg: PoisonFrogsConfig = self.config  # type: ignore[assignment]
        ds = ctx.dataset
        target = draw_target(ctx)
        indices = budget_indices(ctx, cfg, target.adversarial_class)
        model = ctx.surrogate(cfg.surrogate).eval()
        base = ds.train_x[indices.to(ctx.device)]
        x_t = ds.test_x[target.index : target.index + 1]
        with torch.no_grad():
            f_t = penultimate(model, x_t)
        beta = cfg.beta0 * (2048 / base[0].numel()) ** 2
        x = base + project(cfg.watermark * (x_t - base), base, cfg.eps)
        distance = _distances(model, x, f_t)
        start = distance.detach()
        for _ in range(cfg.steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(_distances(model, x, f_t).sum(), x)
            with torch.no_grad():
                x = x - cfg.lr * grad  # forward step on the feature distance
                x = (x + cfg.lr * beta * base) / (1 + cfg.lr * beta)  # backward (proximal) step
                x = base + project(x - base, base, cfg.eps)
        with torch.no_grad():
            distance = _distances(model, x, f_t)
        return Crafted(
            indices=indices,
            delta=(x - base).detach(),
            threat=ThreatModel("targeted", target_index=target.index, adversarial_class=target.adversarial_class),
            extra={
                "target_true_class": target.true_class,
                "feature_distance_start": float(start.mean()),
                "feature_distance": float(distance.mean()),
                "beta": beta,
            },
        )


def _distances(model: torch.nn.Module, x: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Each poison's squared feature distance to the target, ``||f(x_i) - f(t)||^2``."""
    return (penultimate(model, x) - f_t).pow(2).sum(1)
