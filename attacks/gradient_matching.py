"""Witches' Brew gradient matching and its SAPA version."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sapabench.attacks._draws import draw_target
from sapabench.attacks._head import HEAD_EPOCHS, head_trajectory, parse_head_epochs
from sapabench.attacks._matching import MatchingConfig, brew, ensemble_extra
from sapabench.attacks.base import Attack, CraftContext, Crafted, Member, budget_indices, register_attack
from sapabench.attacks.sapa import objective_gradient
from sapabench.attacks.surrogate import SurrogateSpec
from sapabench.core.errors import ConfigError
from sapabench.core.threats import ThreatModel
from sapabench.victims.archs import Victim

MATCH_MODES = ("full", "head-trajectory")


@dataclass(frozen=True)
class GradientMatchingConfig(MatchingConfig):
    """Witches' Brew settings: :class:`sapabench.attacks._matching.MatchingConfig` and what is matched.

    Attributes:
        match: ``full`` (default, the paper's): the whole surrogate's gradient at its trained
            weights. ``head-trajectory``: for victims that train only a fresh head on a frozen
            extractor (the ``linear`` protocol), the head's gradient only, averaged over
            snapshots of a fresh head trained on the surrogate's frozen features
            (:mod:`sapabench.attacks._head`; forest's transfer scenario with Huang et al.'s
            re-initialisation). Against ``linear`` victims whose extractor is the surrogate this
            is white-box, as the victim's label says.
        head_epochs: the snapshots of ``head-trajectory``: epochs of the fresh head's training,
            comma-separated (0: its initialisation).
    """

    match: str = "full"
    head_epochs: str = HEAD_EPOCHS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.match not in MATCH_MODES:
            raise ConfigError(f"invalid match={self.match!r}: one of {', '.join(MATCH_MODES)}")
        if parse_head_epochs(self.head_epochs) is None:
            raise ConfigError(
                f"invalid head_epochs={self.head_epochs!r}: comma-separated epochs in [0, 1000], e.g. {HEAD_EPOCHS!r}"
            )


@register_attack(
    "gradient-matching", description="Witches' Brew gradient matching (Geiping et al. 2021)", sapa_twin=True
)
class GradientMatching(Attack):
    """Witches' Brew (Geiping et al., ICLR 2021), with SAPA (He et al., 2023) as ``sapa-gradient-matching``.

    Threat model: targeted, clean-label. One test image (``target_index``, drawn from the seed)
    should be classified as ``adversarial_class`` (drawn, different from its label) by a victim
    re-trained from scratch on the poisoned set.

    eps / budget: each poison's L_inf perturbation is at most ``eps`` (pixel units); at most
    ``budget`` x N training images, all drawn from the adversarial class, are perturbed.

    Objective: ``Q = CE(f(x_target), adversarial_class)``; the poisons' training gradient is
    matched to ``grad Q`` (cosine). SAPA takes ``grad Q`` at ``theta* + v_hat`` instead of
    ``theta*``, ``v_hat = rho grad Q / ||grad Q||`` (Algorithm 2 of the SAPA paper).

    Ensemble and re-initialisation (``ensemble`` K, ``reinit`` R): the poisons match K x R
    clean surrogates at once (:mod:`sapabench.attacks._matching`); SAPA takes each one's own v_hat.

    ``match="head-trajectory"`` matches only the head's gradient over a fresh head's training
    trajectory, for ``linear``-protocol victims (:class:`GradientMatchingConfig`); the default
    ``full`` is the paper's attack.

    Options (paper preset): eps 16/255, budget 0.01, steps 250, restarts 8, lr 0.1 (x eps),
    augment_shift 0.25, rho 0.05, surrogate ResNet-18 / sgd, ensemble 1, reinit 1.

    Example::

        attack = create_attack("sapa-gradient-matching", dataset="digits")
        poison = attack.run(load_dataset("digits"), seed=0)
    """

    threat = "targeted"
    Config = GradientMatchingConfig
    presets = {
        "paper": dict(
            eps=16 / 255,
            budget=0.01,
            steps=250,
            restarts=8,
            lr=0.1,
            augment_shift=0.25,
            surrogate=SurrogateSpec("resnet18", "sgd"),
        ),
        "embedded": dict(
            eps=64 / 255,
            budget=0.10,
            steps=120,
            restarts=1,
            lr=0.1,
            augment_shift=0.125,
            surrogate=SurrogateSpec("convnet", "sgd"),
        ),
        "smoke": dict(
            eps=16 / 255,
            budget=0.05,
            steps=3,
            restarts=1,
            lr=0.1,
            augment_shift=0.125,
            surrogate=SurrogateSpec("convnet", "sgd", epochs=1),
        ),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        cfg: GradientMatchingConfig = self.config  # type: ignore[assignment]
        ds = ctx.dataset
        target = draw_target(ctx)
        target_index, true_class, adversarial_class = target.index, target.true_class, target.adversarial_class
        indices = budget_indices(ctx, cfg, adversarial_class)
        members = cfg.members(ctx)

        x_target = ds.test_x[target_index : target_index + 1]
        y_adv = torch.tensor([adversarial_class], device=ctx.device)
        models = self._matched(cfg, ctx, members)
        target_grads, v_norms = [], []
        for model in models:  # for SAPA: each matched model's own v_hat
            model.eval()

            def objective(m: nn.Module = model) -> torch.Tensor:
                return nn.functional.cross_entropy(m(x_target), y_adv)

            grad, sapa = objective_gradient(model, objective, self.rho)
            target_grads.append(grad)
            v_norms.append(sapa.v_norm)
        idx = indices.to(ctx.device)
        delta, loss = brew(
            models, ds.train_x[idx], ds.train_y[idx], target_grads, cfg, ds.flip_invariant, ctx.generator
        )
        return Crafted(
            indices=indices,
            delta=delta,
            threat=ThreatModel("targeted", target_index=target_index, adversarial_class=adversarial_class),
            extra={
                "matching_loss": loss,
                "target_true_class": true_class,
                "sapa_v_norm": v_norms[0],
                **ensemble_extra(members, v_norms[:: len(models) // len(members)]),
                **({"match": cfg.match, "sapa_v_norms_per_snapshot": v_norms} if cfg.match != "full" else {}),
            },
        )

    @staticmethod
    def _matched(cfg: GradientMatchingConfig, ctx: CraftContext, members: list[Member]) -> list[Victim]:
        """The models whose gradients the poisons match: each surrogate (``full``), or each
        surrogate's fresh-head snapshots (``head-trajectory``)."""
        if cfg.match == "full":
            return [m.model for m in members]
        epochs = parse_head_epochs(cfg.head_epochs)
        assert epochs is not None  # the config checked it
        return [snap for m in members for snap in head_trajectory(m, cfg.surrogate, ctx.dataset, epochs, ctx.device)]
