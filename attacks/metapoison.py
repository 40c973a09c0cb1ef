"""MetaPoison (Huang et al. 2020): poisons crafted through unrolled training steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attacks._draws import draw_target
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
from attacks.sapa import trainable
from attacks.surrogate import SurrogateSpec
from core.errors import ConfigError
from core.threats import ThreatModel
from victims.archs import build_model


@dataclass(frozen=True)
class MetaPoisonConfig(ModelConfig):
    """MetaPoison settings.

    Attributes:
        steps: craft steps (Adam on the perturbations; about 60 in the paper).
        lr: Adam's step size as a fraction of eps.
        unroll: K, the SGD steps unrolled through on the poisoned batch (2).
        inner_lr: learning rate of the unrolled SGD steps (0.1).
        ensemble: M staggered surrogates (24 in the authors' quickstart).
        stagger_epochs: the surrogates' training ages are spread evenly over [0, stagger_epochs)
            epochs; a surrogate that reaches it is re-initialised.
        advance_steps: SGD minibatch steps every surrogate trains on the current poisoned data
            after each craft step.
        batch_size: the unrolled batch: poisons (at most half of it) plus clean images.
    """

    steps: int = 60
    lr: float = 0.1
    unroll: int = 2
    inner_lr: float = 0.1
    ensemble: int = 24
    stagger_epochs: int = 24
    advance_steps: int = 4
    batch_size: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "steps", "unroll", "ensemble", "stagger_epochs", "advance_steps", "batch_size")
        if self.batch_size < 2:
            raise ConfigError(f"invalid batch_size={self.batch_size!r}: at least 2 (poisons and clean images)")
        if not 0 < self.lr <= 10:
            raise ConfigError(f"invalid lr={self.lr!r}: a fraction of eps in (0, 10]")
        if not 0 < self.inner_lr <= 10:
            raise ConfigError(f"invalid inner_lr={self.inner_lr!r}: in (0, 10]")


def unrolled_adversarial_loss(
    model: nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    x_target: Tensor,
    y_adversarial: Tensor,
    unroll: int,
    inner_lr: float,
) -> Tensor:
    """``CE(f_{theta_K}(x_target), y_adversarial)`` where ``theta_K`` is ``params`` after ``unroll``
    plain SGD steps on the batch (x, y) (train-mode BatchNorm on copies of the buffers), with
    the graph kept through every step: its gradient in ``x`` is MetaPoison's meta-gradient."""
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    theta = dict(params)
    names = list(theta)
    was_training = model.training
    try:
        model.train()
        for _ in range(unroll):
            loss = nn.functional.cross_entropy(functional_call(model, (theta, buffers), (x,)), y)
            grads = torch.autograd.grad(loss, [theta[n] for n in names], create_graph=True)
            theta = {n: theta[n] - inner_lr * g for n, g in zip(names, grads, strict=True)}
        model.eval()
        out = functional_call(model, (theta, dict(model.named_buffers())), (x_target,))
    finally:
        model.train(was_training)
    return nn.functional.cross_entropy(out, y_adversarial)


@register_attack("metapoison", description="MetaPoison unrolled meta-learning (Huang et al. 2020)")
class MetaPoison(Attack):
    """MetaPoison (Huang et al., NeurIPS 2020): poisons optimised through unrolled training.

    Threat model: targeted, clean-label (target drawn as gradient matching draws it: paired by
    craft seed); built for victims trained from scratch.

    eps / budget: L_inf bound per poison; at most ``budget`` x N images of the adversarial class.

    Objective: an ensemble of ``ensemble`` surrogates at staggered training ages (spread over
    ``stagger_epochs``) is kept. Each craft step, for every surrogate: take a batch of poisons
    (x + delta, at most half the batch) and clean training images, unroll ``unroll`` SGD steps
    on it with ``torch.func`` keeping the graph, and take the target's adversarial loss
    ``CE(f(x_target), adversarial_class)`` at the unrolled weights; the gradient in delta is
    averaged over the ensemble and an Adam step taken (projected to eps and the pixel range).
    Then every surrogate trains ``advance_steps`` minibatch steps on the current poisoned data
    and one that reaches ``stagger_epochs`` is re-initialised. The colour-space (ReColorAdv)
    perturbation of the paper is left out: the threat model is the additive L_inf ball of
    every other attack here.

    Options (paper preset): eps 16/255, budget 0.01, steps 60, lr 0.1 (x eps), unroll 2,
    inner_lr 0.1, ensemble 24, stagger_epochs 24, surrogate ResNet-18.

    Example::

        poison = create_attack("metapoison", dataset="digits").run(load_dataset("digits"), seed=0)
    """

    threat = "targeted"
    Config = MetaPoisonConfig
    presets = {
        "paper": dict(
            eps=16 / 255,
            budget=0.01,
            steps=60,
            ensemble=24,
            stagger_epochs=24,
            advance_steps=16,
            surrogate=SurrogateSpec("resnet18", "sgd"),
        ),
        "embedded": dict(
            eps=64 / 255,
            budget=0.10,
            steps=20,
            ensemble=4,
            stagger_epochs=6,
            advance_steps=2,
            batch_size=64,
            surrogate=SurrogateSpec("convnet", "sgd"),
        ),
        "smoke": dict(
            eps=16 / 255,
            budget=0.05,
            steps=2,
            ensemble=2,
            stagger_epochs=1,
            advance_steps=1,
            batch_size=16,
            surrogate=SurrogateSpec("convnet", "sgd", epochs=1),
        ),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        cfg: MetaPoisonConfig = self.config  # type: ignore[assignment]
        ds = ctx.dataset
        target = draw_target(ctx)
        indices = budget_indices(ctx, cfg, target.adversarial_class)
        ctx.surrogate_info.update(
            arch=cfg.surrogate.arch,
            recipe=cfg.surrogate.recipe,
            seed=ctx.seed,
            trained=f"{cfg.ensemble} staggered surrogates trained inside the attack",
            cached=True,
        )
        idx = indices.to(ctx.device)
        x_p, y_p = ds.train_x[idx], ds.train_y[idx]
        x_t = ds.test_x[target.index : target.index + 1]
        y_adv = torch.tensor([target.adversarial_class], device=ctx.device)
        poisoned = torch.zeros(ds.num_train, dtype=torch.bool, device=ctx.device)
        poisoned[idx] = True
        clean_pool = torch.nonzero(~poisoned).flatten().cpu()
        delta = random_delta(x_p, cfg.eps, ctx.generator).requires_grad_(True)
        optimizer = torch.optim.Adam([delta], lr=cfg.lr * cfg.eps)

        per_epoch = max(1, -(-ds.num_train // cfg.batch_size))
        lifetime = cfg.stagger_epochs * per_epoch
        ensemble = [self._fresh(ctx, cfg) for _ in range(cfg.ensemble)]
        for m, member in enumerate(ensemble):  # staggered ages: member m has trained m/M of a lifetime
            self._train(ctx, cfg, member, x_p, delta.detach(), idx, (m * lifetime) // cfg.ensemble)

        n_poison = min(len(idx), cfg.batch_size // 2)
        losses = []
        for _ in range(cfg.steps):
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for member in ensemble:
                pick = torch.randperm(len(idx), generator=ctx.generator)[:n_poison].to(ctx.device)
                clean = clean_pool[
                    torch.randperm(len(clean_pool), generator=ctx.generator)[: cfg.batch_size - n_poison]
                ]
                clean = clean.to(ctx.device)
                x = torch.cat([x_p[pick] + delta[pick], ds.train_x[clean]])
                y = torch.cat([y_p[pick], ds.train_y[clean]])
                params = {k: v.detach().requires_grad_(True) for k, v in member["model"].named_parameters()}
                loss = unrolled_adversarial_loss(member["model"], params, x, y, x_t, y_adv, cfg.unroll, cfg.inner_lr)
                (loss / len(ensemble)).backward()
                total += float(loss.detach()) / len(ensemble)
            optimizer.step()
            with torch.no_grad():
                delta.copy_(project(delta, x_p, cfg.eps))
            losses.append(total)
            for i, member in enumerate(ensemble):  # every surrogate ages on the current poisoned data
                if member["age"] + cfg.advance_steps > lifetime:
                    ensemble[i] = member = self._fresh(ctx, cfg)
                self._train(ctx, cfg, member, x_p, delta.detach(), idx, cfg.advance_steps)
        return Crafted(
            indices=indices,
            delta=delta.detach(),
            threat=ThreatModel("targeted", target_index=target.index, adversarial_class=target.adversarial_class),
            extra={
                "target_true_class": target.true_class,
                "adversarial_loss_start": losses[0],
                "adversarial_loss": losses[-1],
            },
        )

    @staticmethod
    def _fresh(ctx: CraftContext, cfg: MetaPoisonConfig) -> dict:
        model = build_model(cfg.surrogate.arch, ctx.dataset).to(ctx.device)  # torch's RNG is seeded by run()
        opt = torch.optim.SGD(trainable(model), lr=cfg.inner_lr, momentum=0.9, weight_decay=5e-4)
        return {"model": model, "opt": opt, "age": 0}

    @staticmethod
    def _train(
        ctx: CraftContext, cfg: MetaPoisonConfig, member: dict, x_p: Tensor, delta: Tensor, idx: Tensor, steps: int
    ) -> None:
        """``steps`` SGD minibatch steps of ``member`` on the poisoned training set."""
        ds = ctx.dataset
        model, opt = member["model"], member["opt"]
        model.train()
        lookup = torch.full((ds.num_train,), -1, dtype=torch.long, device=ctx.device)
        lookup[idx] = torch.arange(len(idx), device=ctx.device)
        for _ in range(steps):
            b = torch.randint(ds.num_train, (cfg.batch_size,), generator=ctx.generator).to(ctx.device)
            x = ds.train_x[b].clone()
            hit = lookup[b] >= 0
            x[hit] = x_p[lookup[b][hit]] + delta[lookup[b][hit]]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), ds.train_y[b]).backward()
            opt.step()
        member["age"] += steps
        model.eval()
