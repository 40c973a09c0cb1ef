"""Sleeper Agent hidden-trigger backdoor and its SAPA version."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from sapabench.attacks._draws import draw_backdoor
from sapabench.attacks._matching import (
    Brew,
    MatchingConfig,
    brew_restarts,
    differentiable_augment,
    ensemble_extra,
    gradient_norms,
)
from sapabench.attacks.base import Attack, CraftContext, Crafted, budget_count, pick_indices, register_attack
from sapabench.attacks.sapa import mean_loss_terms, objective_gradient
from sapabench.attacks.surrogate import SurrogateSpec
from sapabench.attacks.triggers import apply_trigger
from sapabench.core.errors import ConfigError
from sapabench.core.threats import TRIGGER_PLACEMENTS, ThreatModel
from sapabench.victims.train import train_victim

SELECTIONS = ("gradient-norm", "random", "gradient-norm-first")


@dataclass(frozen=True)
class SleeperConfig(MatchingConfig):
    """Sleeper Agent settings (adds to :class:`MatchingConfig`).

    Attributes:
        retrainings: how often the surrogate is re-trained from scratch on the current poisoned
            set during crafting (paper: every 50 of 250 steps, i.e. 4 times).
        patch_fraction: trigger side as a fraction of the image side (8 px of 32 = 0.25).
        placement: where the trigger goes at crafting and test time (``random``, ``corner`` or
            ``four-corners``).
        selection: which target-class images become poisons: ``gradient-norm`` (those with the
            largest training-gradient norm, averaged over the surrogates of an E&R ensemble as
            the original's ``select_poisons`` does; one surrogate: its own norm), ``random``, or
            ``gradient-norm-first`` (the norm on member (0, 0) alone, how sapabench selected for
            E&R before 2026-11-24; the same as ``gradient-norm`` without E&R).
    """

    retrainings: int = 4
    patch_fraction: float = 0.25
    placement: str = "random"
    selection: str = "gradient-norm"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.retrainings, int) or self.retrainings < 0:
            raise ConfigError(f"invalid retrainings={self.retrainings!r}: a non-negative integer")
        if not 0 < self.patch_fraction <= 0.5:
            raise ConfigError(f"invalid patch_fraction={self.patch_fraction!r}: in (0, 0.5]")
        if self.placement not in TRIGGER_PLACEMENTS:
            raise ConfigError(f"invalid placement={self.placement!r}: one of {', '.join(TRIGGER_PLACEMENTS)}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"invalid selection={self.selection!r}: {' or '.join(SELECTIONS)}")


@dataclass
class _Poison:
    indices: torch.Tensor
    delta: torch.Tensor
    labels: None = None


@register_attack(
    "sleeper-agent", description="Sleeper Agent hidden-trigger backdoor (Souri et al. 2022)", sapa_twin=True
)
class SleeperAgent(Attack):
    """Sleeper Agent (Souri et al., NeurIPS 2022), with SAPA as ``sapa-sleeper-agent``.

    Threat model: hidden-trigger backdoor, clean-label. Test images of ``source_class`` carrying
    the trigger patch should be classified as ``target_class`` (both drawn from the seed);
    poisons carry no trigger, only an imperceptible perturbation.

    eps / budget: L_inf bound per poison; at most ``budget`` x N images of the target class.

    Objective: ``Q = mean CE(f(x_source + trigger), target_class)`` over the source-class training
    images; gradient matching as in Witches' Brew, with the surrogate re-trained from scratch
    on the poisoned data ``retrainings`` times during crafting. As in the authors' code, one
    signed-Adam optimiser and one step-down schedule (x0.1 at 3/8, 5/8, 7/8 of all ``steps``)
    run across every retraining stage: a retraining changes the model, not the optimisation of
    the perturbations. The poisons are the target-class training images with the largest
    training-gradient norm on the clean surrogate (``selection = "gradient-norm"``, Souri et
    al. section 4), not a random draw. SAPA recomputes ``v_hat = rho grad Q / ||grad Q||`` after
    every retraining and matches ``grad Q`` at ``theta + v_hat`` (Algorithm 3 of the SAPA paper).

    Ensemble and re-initialisation (``ensemble`` K, ``reinit`` R): the poisons match K x R clean
    surrogates at once, and every retraining re-trains each of them (member (k, r) with its own
    seed + 1000 x stage), so E&R pays K x R times the retraining; the poisons are the ones
    with the largest gradient norm averaged over the K x R members. ``sapa_v_norms`` lists every stage's
    members in order.

    Options (paper preset): eps 16/255, budget 0.01, steps 250, restarts 1 (8 at the start in
    some runs; restarts compete in the first stage only), retrainings 4, patch 8x8 at random
    positions, gradient-norm selection, rho 0.05.

    Example::

        poison = create_attack("sleeper-agent", dataset="digits").run(load_dataset("digits"), seed=0)
    """

    threat = "backdoor"
    Config = SleeperConfig
    presets = {
        "paper": dict(
            eps=16 / 255,
            budget=0.01,
            steps=250,
            restarts=1,
            lr=0.1,
            augment_shift=0.25,
            retrainings=4,
            patch_fraction=0.25,
            surrogate=SurrogateSpec("resnet18", "sgd"),
        ),
        "embedded": dict(
            eps=64 / 255,
            budget=0.10,
            steps=120,
            restarts=1,
            lr=0.1,
            augment_shift=0.125,
            retrainings=2,
            patch_fraction=0.25,
            surrogate=SurrogateSpec("convnet", "sgd"),
        ),
        "smoke": dict(
            eps=16 / 255,
            budget=0.05,
            steps=4,
            restarts=1,
            lr=0.1,
            augment_shift=0.125,
            retrainings=1,
            patch_fraction=0.25,
            surrogate=SurrogateSpec("convnet", "sgd", epochs=1),
        ),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        cfg: SleeperConfig = self.config  # type: ignore[assignment]
        ds = ctx.dataset
        goal = draw_backdoor(ctx, cfg.patch_fraction)
        source_class, target_class, trigger, trigger_seed = (
            goal.source_class,
            goal.target_class,
            goal.trigger,
            goal.trigger_seed,
        )
        count = budget_count(cfg, ds.num_train)
        members = cfg.members(ctx)
        models = [m.model for m in members]
        if cfg.selection.startswith("gradient-norm"):  # averaged over the members (or member (0, 0) only)
            pool = torch.nonzero(ds.train_y.cpu() == target_class).flatten()
            x_pool, y_pool = ds.train_x[pool.to(ctx.device)], ds.train_y[pool.to(ctx.device)]
            scored = models[:1] if cfg.selection == "gradient-norm-first" else models
            norms = torch.stack([gradient_norms(m, x_pool, y_pool).cpu() for m in scored]).mean(0)
            indices = pool[norms.argsort(descending=True, stable=True)[:count]].sort().values
        else:
            indices = pick_indices(ds.train_y, target_class, count, ctx.generator)
        idx = indices.to(ctx.device)
        x_p, y_p = ds.train_x[idx], ds.train_y[idx]
        source = ds.train_x[ds.train_y == source_class]
        patched = apply_trigger(source, trigger, cfg.placement, ctx.generator)
        y_target = torch.full((len(patched),), target_class, device=ctx.device)
        augment = differentiable_augment(cfg.augment_shift, ds.flip_invariant)

        # Step counts between retrainings: floor(steps / (R + 1)), the last stage takes the rest.
        stage = cfg.steps // (cfg.retrainings + 1)
        stages = [stage] * cfg.retrainings + [cfg.steps - stage * cfg.retrainings]
        state: Brew | None = None
        loss, v_norms = float("nan"), []
        for i, steps in enumerate(stages):
            if i > 0:  # re-train every surrogate from scratch on the current poisoned data
                assert state is not None
                poison = _Poison(indices, state.delta.detach().cpu())
                models = [
                    train_victim(
                        m.arch,
                        cfg.surrogate.train_recipe(),
                        ds,
                        poison=poison,
                        seed=m.seed + 1000 * i,
                        device=ctx.device,
                    ).model
                    for m in members
                ]
            target_grads = []
            for model in models:
                model.eval()

                def objective(m: nn.Module = model) -> Iterator[torch.Tensor]:
                    return mean_loss_terms(m, patched, y_target)  # every source image, one chunk at a time

                grad, sapa = objective_gradient(model, objective, self.rho)
                target_grads.append(grad)
                v_norms.append(sapa.v_norm)
            if state is None:  # restarts compete over the first stage; the winner carries on
                state, loss = brew_restarts(
                    models, x_p, y_p, target_grads, cfg, augment, ctx.generator, steps, cfg.steps
                )
            elif steps > 0:
                loss = state.run(models, y_p, target_grads, augment, steps)
        assert state is not None
        delta = state.delta.detach().clone()
        return Crafted(
            indices=indices,
            delta=delta,
            trigger=trigger,
            threat=ThreatModel(
                "backdoor",
                source_class=source_class,
                target_class=target_class,
                trigger_placement=cfg.placement,
                trigger_seed=trigger_seed,
            ),
            extra={
                "matching_loss": loss,
                "sapa_v_norms": v_norms,
                "retrainings": cfg.retrainings,
                "selection": cfg.selection,
                **ensemble_extra(members, v_norms[: len(members)]),
            },
        )
