"""Clean-Label Backdoor (Turner et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sapabench.attacks._draws import draw_backdoor
from sapabench.attacks._untargeted import batches, pgd_perturb
from sapabench.attacks.base import (
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
from sapabench.attacks.surrogate import SurrogateSpec
from sapabench.core.errors import ConfigError
from sapabench.core.threats import ThreatModel, paste_fixed


@dataclass(frozen=True)
class CleanLabelConfig(ModelConfig):
    """Clean-Label Backdoor settings.

    Attributes:
        steps: PGD steps making the poisons hard (20).
        step_size: PGD step in pixel units (2/255).
        trigger_style: how the trigger goes onto the poisons. ``full-contrast`` (default, as
            Turner et al.'s code does): its pixels are set to 0 or 1 over the adversarial image,
            outside the eps ball (eps bounds the adversarial perturbation; the poison's threat
            model records the trigger as ``stamped`` and it is pasted when the poison is
            applied). ``eps``: stamped inside the eps ball at +/- ``amplitude`` (how sapabench
            crafted before 2026-11-24; the whole poison within eps).
        amplitude: ``eps`` style only: each trigger pixel moves the image by +/- amplitude, at
            most eps; None (default): eps.
        corners: 1 (bottom-right) or 4 (every corner, Turner et al.'s variant that survives
            flips and crops); the test-time trigger goes where the poisons carry it.
        patch_fraction: trigger side as a fraction of the image side (0.25, as Sleeper Agent's).
        batch_size: images per PGD batch.
    """

    steps: int = 20
    step_size: float = 2 / 255
    amplitude: float | None = None
    patch_fraction: float = 0.25
    batch_size: int = 256
    trigger_style: str = "full-contrast"
    corners: int = 1

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
        if self.trigger_style not in ("full-contrast", "eps"):
            raise ConfigError(f"invalid trigger_style={self.trigger_style!r}: full-contrast or eps")
        if self.corners not in (1, 4):
            raise ConfigError(f"invalid corners={self.corners!r}: 1 or 4")
        if self.amplitude is not None and self.trigger_style != "eps":
            raise ConfigError("amplitude applies to trigger_style='eps' only (a full-contrast trigger is 0/1)")

    @property
    def placement(self) -> str:
        return "corner" if self.corners == 1 else "four-corners"


def stamp(
    delta: torch.Tensor,
    x: torch.Tensor,
    trigger: torch.Tensor,
    amplitude: float,
    eps: float,
    placement: str = "corner",
) -> torch.Tensor:
    """``delta`` with the trigger stamped at ``placement`` (bottom-right or every corner) at
    ``amplitude``: each trigger pixel replaces the perturbation there by ``+amplitude`` (white)
    or ``-amplitude`` (black), then the whole is clipped to the eps ball and the pixel range."""
    signed = amplitude * (2 * trigger.to(delta) - 1)
    return project(paste_fixed(delta, signed, placement), x, eps)


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
    pasted at full contrast (its pixels 0 or 1) in the bottom-right corner or in all four
    (``corners``), as Turner et al.'s code does: outside the eps ball, which bounds the
    adversarial part. ``trigger_style="eps"`` keeps the whole poison within eps instead (the
    reduced-amplitude stamp sapabench used before).

    Options (paper preset): eps 16/255, budget 0.01, steps 20, step 2/255, full-contrast trigger in 1 corner,
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
        if cfg.trigger_style == "eps":
            amplitude = cfg.eps if cfg.amplitude is None else cfg.amplitude
            delta = stamp(delta, x, goal.trigger, amplitude, cfg.eps, cfg.placement)
        return Crafted(
            indices=indices,
            delta=delta,
            trigger=goal.trigger,
            threat=ThreatModel(
                "backdoor",
                source_class=goal.source_class,
                target_class=goal.target_class,
                trigger_placement=cfg.placement,
                trigger_seed=goal.trigger_seed,
                stamped=cfg.trigger_style == "full-contrast",
            ),
            extra={"surrogate_error_on_poisons": hard},
        )
