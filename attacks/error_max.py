"""Error-maximising noise (adversarial poisoning) and its SAPA version."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sapabench.attacks._untargeted import batches, per_sample_loss, perturbed_subset, pgd_perturb
from sapabench.attacks.base import (
    Attack,
    CraftContext,
    Crafted,
    SurrogateConfig,
    check_positive_ints,
    random_delta,
    register_attack,
)
from sapabench.attacks.sapa import mean_loss_terms, worst_case_weights
from sapabench.attacks.surrogate import SurrogateSpec
from sapabench.core.errors import ConfigError
from sapabench.core.threats import ThreatModel

SAPA_LOSSES = ("attack", "true-label")


def attack_objective(model: nn.Module, x: Tensor, labels: Tensor, sign: float, delta: Tensor) -> Iterator[Tensor]:
    """What error-max maximises, as per-chunk terms: ``sign x`` the mean cross-entropy of
    ``model`` on ``x + delta`` towards ``labels`` (sign +1: away from the true label; -1: towards
    the shifted class)."""
    return (sign * term for term in mean_loss_terms(model, x, labels, delta=delta))


@dataclass(frozen=True)
class ErrorMaxConfig(SurrogateConfig):
    """Error-Max settings (Fowl et al. 2021; SAPA paper Algorithm 4).

    Attributes:
        steps: PGD steps (250).
        step_scale: step size = step_scale * eps / steps (2.5, Madry's rule).
        restarts: random restarts; per image the restart with the best objective is kept (1).
        class_shift: push towards class (y + 1) mod C (Fowl et al.'s class-targeted variant)
            instead of maximising CE on the true label (the paper's eq.).
        batch_size: images per PGD batch (256; one batch of the whole digits set was measured
            slower: docs/measurements/2026-12-06-crafting.md).
        sapa_loss: the loss SAPA's ``v_hat`` maximises. ``attack`` (default): the attack's own
            objective, the one the PGD maximises (Algorithm 4: the same sum of losses is
            maximised over delta and over v), which with ``class_shift`` is the negative
            cross-entropy towards (y + 1) mod C. ``true-label``: cross-entropy on the true label
            whatever ``class_shift`` says (how sapabench crafted before 2026-11-24; kept so
            earlier entries can be reproduced). Without ``class_shift`` both are the same.
    """

    steps: int = 250
    step_scale: float = 2.5
    restarts: int = 1
    class_shift: bool = False
    batch_size: int = 256
    sapa_loss: str = "attack"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "steps", "restarts", "batch_size")
        if self.sapa_loss not in SAPA_LOSSES:
            raise ConfigError(f"invalid sapa_loss={self.sapa_loss!r}: {' or '.join(SAPA_LOSSES)}")
        if not 0 < self.step_scale <= 100:
            raise ConfigError(f"invalid step_scale={self.step_scale!r}: in (0, 100]")


@register_attack("error-max", description="error-maximising adversarial poisoning (Fowl et al. 2021)", sapa_twin=True)
class ErrorMax(Attack):
    """Adversarial poisoning (Fowl et al., NeurIPS 2021), with SAPA as ``sapa-error-max``.

    Threat model: untargeted, clean-label; the metric is the re-trained victim's clean test
    accuracy (lower = stronger).

    eps / budget: L_inf bound per image; the fraction of the training set perturbed (1.0).

    Objective: PGD on a fixed clean-trained surrogate, maximising CE(f(x + delta), y) (or, with
    ``class_shift``, minimising CE towards (y + 1) mod C). SAPA (Algorithm 4): after the random
    initialisation, move the surrogate to theta* + v_hat, v_hat = rho g / ||g|| with g the
    gradient of the attack's own objective on x + delta (the loss the PGD maximises: Algorithm
    4 maximises one sum of losses over delta and over v, so "the worst case" of v is the one
    that helps the attack's loss most), and run the PGD against theta* + v_hat.

    Options (paper preset): eps 8/255, budget 1.0, steps 250, restarts 1, rho 0.05, surrogate
    ResNet-18 / sgd.

    Example::

        poison = create_attack("error-max", dataset="digits").run(load_dataset("digits"), seed=0)
    """

    threat = "untargeted"
    Config = ErrorMaxConfig
    crafts_in_numerics = True
    presets = {
        "paper": dict(eps=8 / 255, budget=1.0, steps=250, restarts=1, surrogate=SurrogateSpec("resnet18", "sgd")),
        "embedded": dict(
            eps=32 / 255,
            budget=1.0,
            steps=100,
            restarts=1,
            class_shift=True,
            surrogate=SurrogateSpec("convnet", "sgd"),
        ),
        "smoke": dict(
            eps=8 / 255, budget=0.5, steps=3, restarts=1, surrogate=SurrogateSpec("convnet", "sgd", epochs=1)
        ),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        cfg: ErrorMaxConfig = self.config  # type: ignore[assignment]
        ds = ctx.dataset
        indices, x, y = perturbed_subset(ctx, cfg)
        model = ctx.numerics.wrapped(ctx.surrogate(cfg.surrogate)).eval()
        labels, sign = ((y + 1) % ds.num_classes, -1.0) if cfg.class_shift else (y, 1.0)
        step = cfg.step_scale * cfg.eps / cfg.steps
        # what SAPA's v_hat maximises: the attack's own loss, or (the earlier reading) the true label's CE
        v_labels, v_sign = (labels, sign) if cfg.sapa_loss == "attack" else (y, 1.0)
        best, best_score, v_norms = None, None, []
        for _ in range(cfg.restarts):
            delta = random_delta(x, cfg.eps, ctx.generator)
            objective = lambda d=delta: attack_objective(model, x, v_labels, v_sign, d)  # noqa: E731
            with worst_case_weights(model, objective, self.rho) as sapa:
                v_norms.append(sapa.v_norm)
                for b in batches(len(x), cfg.batch_size):
                    b = b.to(ctx.device)
                    delta[b] = pgd_perturb(model, x[b], labels[b], delta[b], cfg.eps, step, cfg.steps, sign)
                if cfg.restarts == 1:  # nothing to choose between: no scoring pass
                    best = delta
                    break
                score = sign * per_sample_loss(model, x + delta, labels, 512)  # higher = better for the attacker
            if best is None:
                best, best_score = delta, score
            else:
                better = score > best_score
                best = torch.where(better.view(-1, 1, 1, 1), delta, best)
                best_score = torch.maximum(score, best_score)
        assert best is not None
        return Crafted(indices=indices, delta=best, threat=ThreatModel("untargeted"), extra={"sapa_v_norms": v_norms})
