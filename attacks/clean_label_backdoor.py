"""Clean-Label Backdoor (Turner et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks._draws import draw_backdoor
from attacks._untargeted import batches, pgd_perturb
from attacks.base import (
    Attack,
    CraftContext,
    Crafted,
    ModelConfig,
    budget_indices,
    check_positive_ints,
    project,
    random_delta,
    register_attack,
)
from attacks.surrogate import SurrogateSpec
from core.errors import ConfigError
from core.threats import ThreatModel


@dataclass(frozen=True)
class CleanLabelConfig(ModelConfig):
    """Clean-Label Backdoor settings.

    Attributes:
        steps: PGD steps making the poisons hard (20).
        step_size: PGD step in pixel units (2/255).
        amplitude: the stamped trigger's amplitude on the poisons, in pixel units: each trigger
            pixel moves the image by +/- amplitude (Turner's reduced-amplitude trigger). At most
            eps, so the whole poison stays in the eps ball; None (default): eps. At test time
            the full trigger is pasted.
        patch_fraction: trigger side as a fraction of the image side (0.25, as Sleeper Agent's).
        batch_size: images per PGD batch.
    """

    steps: int = 20
    step_size: float = 2 / 255
    amplitude: float | None = None
    patch_fraction: float = 0.25
    batch_size: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "steps", "batch_size")
        if not 0 < self.step_size <= 1:
            raise ConfigError(f"invalid step_size={self.step_size!r}: pixel units in (0, 1]")
        if self.amplitude is not None and not (
            isinstance(self.amplitude, (int, float)) and 0 < self.amplitude <= self.eps + 1e-9
        ):
            raise ConfigError(
                f"invalid amplitude={self.amplitude!r}: in (0, eps={self.eps:.4f}] so the poison stays in the eps ball"
            )
        if not 0 < self.patch_fraction <= 0.5:
            raise ConfigError(f"invalid patch_fraction={self.patch_fraction!r}: in (0, 0.5]")


def stamp(delta: torch.Tensor, x: torch.Tensor, trigger: torch.Tensor, amplitude: float, eps: float) -> torch.Tensor:
    """``delta`` with the trigger stamped in the bottom-right corner at ``amplitude``: each
    trigger pixel replaces the perturbation there by ``+amplitude`` (white) or ``-amplitude``
    (black), then the whole is clipped to the eps ball and the pixel range."""
    ph, pw = trigger.shape[-2:]
    out = delta.clone()
    out[:, :, -ph:, -pw:] = amplitude * (2 * trigger.to(delta) - 1)
    return project(out, x, eps)


@register_attack("clean-label-backdoor", description="Clean-Label Backdoor (Turner et al. 2019)")
class CleanLabelBackdoor(Attack):
    """Clean-Label Backdoor (Turner, Tsipras and Madry, 2019).

    Threat model: backdoor, clean-label (class pair and trigger drawn as Sleeper Agent draws
    them: paired by craft seed). Test images of ``source_class`` with the full trigger in the
    bottom-right corner should be classified as ``target_class``.

    eps / budget: each poison within ``eps`` (L_inf) of its target-class image, trigger
    included (``amplitude <= eps``); at most ``budget`` x N images of the target class.

    Objective: make the poisons hard to learn from their content, so a victim trained on them
    leans on the trigger: PGD maximising CE(f(x + delta), y) on an adversarially trained
    surrogate (``steps`` of ``step_size`` within eps, from a random start), then the trigger
    stamped in the corner at reduced ``amplitude``. Turner et al. stamp four corners; one
    corner here, the placement every backdoor metric of the harness uses.

    Options (paper preset): eps 16/255, budget 0.01, steps 20, step 2/255, amplitude eps,
    surrogate ResNet-18 / adversarial (PGD training).

    Example::

        poison = create_attack("clean-label-backdoor", dataset="digits").run(load_dataset("digits"), seed=0)
    """

    threat = "backdoor"
    Config = CleanLabelConfig
    presets = {
        "paper": dict(
            eps=16 / 255,
            budget=0.01,
            steps=20,
            step_size=2 / 255,
            surrogate=SurrogateSpec("resnet18", "adversarial"),
        ),
        "embedded": dict(
            eps=64 / 255,
            budget=0.10,
            steps=20,
            step_size=8 / 255,
            surrogate=SurrogateSpec("convnet", "adversarial", epochs=8),
        ),
        "smoke": dict(
            eps=16 / 255,
            budget=0.05,
            steps=2,
            step_size=4 / 255,
            surrogate=SurrogateSpec("convnet", "adversarial", epochs=1),
        ),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        cfg: CleanLabelConfig = self.config  # type: ignore[assignment]
        ds = ctx.dataset
        goal = draw_backdoor(ctx, cfg.patch_fraction)
        indices = budget_indices(ctx, cfg, goal.target_class)
        model = ctx.surrogate(cfg.surrogate).eval()
        idx = indices.to(ctx.device)
        x, y = ds.train_x[idx], ds.train_y[idx]
        delta = random_delta(x, cfg.eps, ctx.generator)
        for b in batches(len(x), cfg.batch_size):
            b = b.to(ctx.device)
            delta[b] = pgd_perturb(model, x[b], y[b], delta[b], cfg.eps, cfg.step_size, cfg.steps, sign=1.0)
        with torch.no_grad():
            hard = float((model(x + delta).argmax(1) != y).float().mean())
        delta = stamp(delta, x, goal.trigger, cfg.eps if cfg.amplitude is None else cfg.amplitude, cfg.eps)
        return Crafted(
            indices=indices,
            delta=delta,
            trigger=goal.trigger,
            threat=ThreatModel(
                "backdoor",
                source_class=goal.source_class,
                target_class=goal.target_class,
                trigger_placement="corner",
                trigger_seed=goal.trigger_seed,
            ),
            extra={"surrogate_error_on_poisons": hard},
        )
