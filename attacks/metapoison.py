"""MetaPoison (Huang et al. 2020): poisons crafted through unrolled training steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from sapabench.attacks._draws import draw_target
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
from sapabench.attacks.sapa import trainable
from sapabench.attacks.surrogate import SurrogateSpec
from sapabench.core.errors import ConfigError
from sapabench.core.threats import ThreatModel
from sapabench.victims.archs import build_model

OBJECTIVES = ("cwT", "xentT", "xent-final")
TRAJECTORIES = ("clean", "poison")
BATCHINGS = ("epoch", "sampled")
CRAFT_SCHEDULES = ("authors", "constant")


@dataclass(frozen=True)
class MetaPoisonConfig(ModelConfig):
    """MetaPoison settings. The defaults are the authors' code's (wronnyhuang/metapoison); the
    harness's earlier reading is ``objective="xent-final", trajectory="poison",
    batches="sampled", craft_schedule="constant", lr=0.1``.

    Attributes:
        steps: craft steps (Adam on the perturbations; the authors run 61, the paper says 60).
        lr: Adam's step size as a multiple of eps (authors: craftrate 200 with eps 8 pixel
            levels, 25).
        craft_schedule: ``authors`` (default, the authors' ``cr_schedule``): the step size warms
            up as ((step + 1) / 5)^2 over the first 5 steps and drops x10 at one third and
            again at two thirds of ``steps`` (their 20 and 40 of 61). ``constant``: the
            earlier reading.
        objective: ``cwT`` (default, the authors' ``-objective cwT``): the Carlini-Wagner loss
            max_{j != adv} z_j - z_adv (floored at -100) of the target, averaged over the
            weights after each of the ``unroll`` steps. ``xentT``: cross-entropy towards the
            adversarial class averaged the same way. ``xent-final``: cross-entropy after the
            last unrolled step only (the earlier reading).
        batches: ``epoch`` (default, the authors' ``feeddict_generator``): each craft step
            runs every surrogate through one epoch of minibatches; every batch that holds
            poisons gives them a meta-gradient (the first unrolled step on that batch with the
            poisons in place, later steps on the following batches), summed over the epoch and
            the ensemble before one Adam step, so every poison gets a meta-gradient every craft
            step. ``sampled``: the earlier reading, one batch per surrogate per step holding at
            most ``batch_size // 2`` random poisons, all ``unroll`` steps on it.
        trajectory: ``clean`` (default, the authors' ``-trajectory clean``): the surrogates
            train on clean data; ``poison``: on the current poisoned data. Under ``epoch`` the
            surrogate takes one SGD step per batch of the epoch (one epoch per craft step);
            under ``sampled`` it takes ``advance_steps`` random minibatch steps.
        unroll: K, the SGD steps unrolled through (2).
        inner_lr: learning rate of the unrolled and of the surrogates' SGD steps (0.1).
        ensemble: M staggered surrogates (24 in the authors' quickstart).
        stagger_epochs: the surrogates' training ages are spread evenly over [0, stagger_epochs)
            epochs; a surrogate that reaches it is re-initialised.
        advance_steps: under ``batches="sampled"``, the minibatch steps every surrogate trains
            after each craft step.
        batch_size: the unrolled (and the surrogates') minibatch.
    """

    steps: int = 60
    lr: float = 25.0
    craft_schedule: str = "authors"
    objective: str = "cwT"
    batches: str = "epoch"
    trajectory: str = "clean"
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
        if not 0 < self.lr <= 100:
            raise ConfigError(f"invalid lr={self.lr!r}: a multiple of eps in (0, 100] (authors: 25)")
        if not 0 < self.inner_lr <= 10:
            raise ConfigError(f"invalid inner_lr={self.inner_lr!r}: in (0, 10]")
        for name, allowed in (
            ("craft_schedule", CRAFT_SCHEDULES),
            ("objective", OBJECTIVES),
            ("batches", BATCHINGS),
            ("trajectory", TRAJECTORIES),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"invalid {name}={getattr(self, name)!r}: {' or '.join(allowed)}")


@dataclass(frozen=True)
class _Poisons:
    """The poisoned images a craft works on: their clean bases and labels, their training-set
    indices, each training image's position among them (-1: clean) and the clean images' indices."""

    x: Tensor
    y: Tensor
    idx: Tensor
    position: Tensor
    clean_pool: Tensor


def craft_rate(cfg: MetaPoisonConfig, step: int) -> float:
    """The factor on Adam's step size at craft step ``step`` (0-based): the authors'
    ``cr_schedule`` (squared warm-up over 5 steps, x0.1 at steps/3, x0.01 at 2 steps/3) or 1."""
    if cfg.craft_schedule == "constant":
        return 1.0
    drop = 1.0 if step < cfg.steps // 3 else 0.1 if step < 2 * cfg.steps // 3 else 0.01
    return min(((step + 1) / 5) ** 2, 1.0) * drop


def carlini_wagner(logits: Tensor, y_adversarial: Tensor) -> Tensor:
    """The authors' ``carlini``: mean over targets of max(max_{j != adv} z_j - z_adv, -100)."""
    adv = logits.gather(1, y_adversarial[:, None])[:, 0]
    others = logits.masked_fill(nn.functional.one_hot(y_adversarial, logits.shape[1]).bool(), float("-inf"))
    return (others.amax(1) - adv).clamp(min=-100).mean()


def unrolled_target_losses(
    model: nn.Module,
    params: dict[str, Tensor],
    batches: list[tuple[Tensor, Tensor]],
    x_target: Tensor,
    y_adversarial: Tensor,
    inner_lr: float,
    loss: str = "xent",
) -> list[Tensor]:
    """The target's adversarial loss (``xent`` or ``cw``) at the weights after each plain SGD
    step on ``batches`` in turn (train-mode BatchNorm on copies of the buffers; the target is
    read in eval mode), with the graph kept through every step: their gradient in a batch's
    images is MetaPoison's meta-gradient."""
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    theta = dict(params)
    names = list(theta)
    was_training = model.training
    out: list[Tensor] = []
    try:
        for x, y in batches:
            model.train()
            step_loss = nn.functional.cross_entropy(functional_call(model, (theta, buffers), (x,)), y)
            grads = torch.autograd.grad(step_loss, [theta[n] for n in names], create_graph=True)
            theta = {n: theta[n] - inner_lr * g for n, g in zip(names, grads, strict=True)}
            model.eval()
            logits = functional_call(model, (theta, dict(model.named_buffers())), (x_target,))
            out.append(
                carlini_wagner(logits, y_adversarial)
                if loss == "cw"
                else nn.functional.cross_entropy(logits, y_adversarial)
            )
    finally:
        model.train(was_training)
    return out


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
    plain SGD steps on the batch (x, y): the earlier reading's objective (``xent-final``)."""
    if unroll == 0:
        was_training = model.training
        try:
            model.eval()
            return nn.functional.cross_entropy(
                functional_call(model, (params, dict(model.named_buffers())), (x_target,)), y_adversarial
            )
        finally:
            model.train(was_training)
    return unrolled_target_losses(model, params, [(x, y)] * unroll, x_target, y_adversarial, inner_lr)[-1]


def meta_objective(cfg: MetaPoisonConfig, losses: list[Tensor]) -> Tensor:
    """The craft objective from the target's losses after each unrolled step."""
    return losses[-1] if cfg.objective == "xent-final" else torch.stack(losses).mean()


def add_meta_gradient(
    cfg: MetaPoisonConfig, model: nn.Module, batches: list[tuple[Tensor, Tensor]], x_t: Tensor, y_adv: Tensor
) -> float:
    """Unroll ``model`` through ``batches`` (:func:`unrolled_target_losses`, the loss ``objective``
    names), add the craft objective's gradient, divided by the ensemble size, to the perturbations
    the batches were built from, and return the objective."""
    params = {k: v.detach().requires_grad_(True) for k, v in model.named_parameters()}
    kind = "cw" if cfg.objective == "cwT" else "xent"
    loss = meta_objective(cfg, unrolled_target_losses(model, params, batches, x_t, y_adv, cfg.inner_lr, kind))
    (loss / cfg.ensemble).backward()
    return float(loss.detach())


@register_attack("metapoison", description="MetaPoison unrolled meta-learning (Huang et al. 2020)")
class MetaPoison(Attack):
    """MetaPoison (Huang et al., NeurIPS 2020): poisons optimised through unrolled training.

    Threat model: targeted, clean-label (target drawn as gradient matching draws it: paired by
    craft seed); built for victims trained from scratch.

    eps / budget: L_inf bound per poison; at most ``budget`` x N images of the adversarial class.

    Objective (the authors' code, wronnyhuang/metapoison, ``main.py``/``meta.py``): an ensemble
    of ``ensemble`` surrogates at staggered training ages (spread over ``stagger_epochs``) is kept.
    Each craft step every surrogate goes through one epoch of minibatches; for each batch that
    holds poisons, ``unroll`` SGD steps are unrolled with ``torch.func`` keeping the graph (the
    first on that batch with the poisons x + delta in place, the next on the following clean
    batches) and the target's Carlini-Wagner loss towards the adversarial class is averaged over
    the weights after each step; its gradient in delta is summed over the epoch and averaged
    over the ensemble, and one Adam step is taken with the authors' warm-up and x10 drops
    (projected to eps and the pixel range). Between batches the surrogate takes its own SGD
    step on the clean batch (``trajectory="clean"``), so it advances one epoch per craft step;
    one that reaches ``stagger_epochs`` is re-initialised. Every option names the authors'
    flag it follows; the earlier reading of this harness (one sampled batch, cross-entropy after
    step K, surrogates on poisoned data, no schedule, lr 0.1 x eps) is one option set away
    (:class:`MetaPoisonConfig`).

    Differs on purpose: the colour-space (ReColorAdv) perturbation of the paper is left out
    (the threat model is the additive L_inf ball of every other attack here); the last partial
    batch of an epoch is kept (the authors drop it, so some poisons miss a step's gradient);
    unrolled steps after the first hold clean images (the authors' comment says so, their graph
    re-inserts the first batch's poisons without gradient); the surrogates use the harness's SGD
    (momentum 0.9, weight decay 5e-4, no learning-rate warm-up) and read the target in eval mode.

    Options (paper preset): eps 16/255, budget 0.01, steps 60, lr 25 (x eps), unroll 2,
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
            batch_size=64,
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
        position = torch.full((ds.num_train,), -1, dtype=torch.long, device=ctx.device)
        position[idx] = torch.arange(len(idx), device=ctx.device)
        clean_pool = torch.nonzero(position < 0).flatten().cpu()
        poisons = _Poisons(x_p, y_p, idx, position, clean_pool)
        delta = random_delta(x_p, cfg.eps, ctx.generator).requires_grad_(True)
        optimizer = torch.optim.Adam([delta], lr=cfg.lr * cfg.eps)

        per_epoch = max(1, -(-ds.num_train // cfg.batch_size))
        lifetime = cfg.stagger_epochs * per_epoch
        ensemble = [self._fresh(ctx, cfg) for _ in range(cfg.ensemble)]
        on_poisons = cfg.trajectory == "poison" and cfg.batches == "sampled"  # the authors pre-train on clean data
        for m, member in enumerate(ensemble):  # staggered ages: member m has trained m/M of a lifetime
            self._train(ctx, cfg, member, poisons, delta.detach(), (m * lifetime) // cfg.ensemble, on_poisons)
        losses = []
        for step in range(cfg.steps):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * cfg.eps * craft_rate(cfg, step)
            optimizer.zero_grad(set_to_none=True)
            if cfg.batches == "epoch":
                total = sum(self._epoch(ctx, cfg, member, poisons, delta, x_t, y_adv) for member in ensemble)
            else:
                total = sum(self._sampled(ctx, cfg, member, poisons, delta, x_t, y_adv) for member in ensemble)
            optimizer.step()
            with torch.no_grad():
                delta.copy_(project(delta, x_p, cfg.eps))
            losses.append(total / len(ensemble))
            for i, member in enumerate(ensemble):  # every surrogate ages; one past its lifetime starts over
                if cfg.batches == "epoch":  # it trained through the epoch
                    if member["age"] >= lifetime:
                        ensemble[i] = self._fresh(ctx, cfg)
                    continue
                if member["age"] + cfg.advance_steps > lifetime:
                    ensemble[i] = member = self._fresh(ctx, cfg)
                on_poisons = cfg.trajectory == "poison"
                self._train(ctx, cfg, member, poisons, delta.detach(), cfg.advance_steps, on_poisons)
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
    def _epoch(
        ctx: CraftContext,
        cfg: MetaPoisonConfig,
        member: dict,
        poisons: _Poisons,
        delta: Tensor,
        x_t: Tensor,
        y_adv: Tensor,
    ) -> float:
        """One epoch of ``member`` as the authors' ``feeddict_generator``: every batch holding
        poisons adds its meta-gradient (divided by the ensemble size) to ``delta.grad``; the
        surrogate steps on each batch (clean or poisoned per ``trajectory``). Returns the
        objective averaged over the batches that held poisons."""
        ds = ctx.dataset
        model, opt = member["model"], member["opt"]
        order = torch.randperm(ds.num_train, generator=ctx.generator).to(ctx.device)
        batches = list(order.split(cfg.batch_size))
        if len(batches) > 1 and len(batches[-1]) < 2:  # train-mode BatchNorm needs two images
            batches[-2:] = [torch.cat(batches[-2:])]
        total, counted = 0.0, 0
        for j, b in enumerate(batches):
            pos = poisons.position[b]
            hit = pos >= 0
            x_train = ds.train_x[b]
            if hit.any():
                at = pos.clamp(min=0)
                x = torch.where(hit[:, None, None, None], poisons.x[at] + delta[at], ds.train_x[b])
                later = [batches[(j + k) % len(batches)] for k in range(1, cfg.unroll)]
                steps = [(x, ds.train_y[b])] + [(ds.train_x[c], ds.train_y[c]) for c in later]
                total, counted = total + add_meta_gradient(cfg, model, steps, x_t, y_adv), counted + 1
                if cfg.trajectory == "poison":
                    x_train = x.detach()
            model.train()
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x_train), ds.train_y[b]).backward()
            opt.step()
        member["age"] += len(batches)
        model.eval()
        return total / max(counted, 1)

    @staticmethod
    def _sampled(
        ctx: CraftContext,
        cfg: MetaPoisonConfig,
        member: dict,
        poisons: _Poisons,
        delta: Tensor,
        x_t: Tensor,
        y_adv: Tensor,
    ) -> float:
        """The earlier reading: one batch of at most ``batch_size // 2`` random poisons and clean
        images, all ``unroll`` steps on it (the surrogates train after the Adam step)."""
        ds = ctx.dataset
        n_poison = min(len(poisons.idx), cfg.batch_size // 2)
        pick = torch.randperm(len(poisons.idx), generator=ctx.generator)[:n_poison].to(ctx.device)
        pool = poisons.clean_pool
        clean = pool[torch.randperm(len(pool), generator=ctx.generator)[: cfg.batch_size - n_poison]].to(ctx.device)
        x = torch.cat([poisons.x[pick] + delta[pick], ds.train_x[clean]])
        y = torch.cat([poisons.y[pick], ds.train_y[clean]])
        return add_meta_gradient(cfg, member["model"], [(x, y)] * cfg.unroll, x_t, y_adv)

    @staticmethod
    def _fresh(ctx: CraftContext, cfg: MetaPoisonConfig) -> dict:
        model = build_model(cfg.surrogate.arch, ctx.dataset).to(ctx.device)  # torch's RNG is seeded by run()
        opt = torch.optim.SGD(trainable(model), lr=cfg.inner_lr, momentum=0.9, weight_decay=5e-4)
        return {"model": model, "opt": opt, "age": 0}

    @staticmethod
    def _train(
        ctx: CraftContext,
        cfg: MetaPoisonConfig,
        member: dict,
        poisons: _Poisons,
        delta: Tensor,
        steps: int,
        on_poisons: bool,
    ) -> None:
        """``steps`` SGD minibatch steps of ``member`` on the poisoned (or the clean) training set."""
        ds = ctx.dataset
        model, opt = member["model"], member["opt"]
        model.train()
        for _ in range(steps):
            b = torch.randint(ds.num_train, (cfg.batch_size,), generator=ctx.generator).to(ctx.device)
            x = ds.train_x[b].clone()
            if on_poisons:
                pos = poisons.position[b]
                hit = pos >= 0
                x[hit] = poisons.x[pos[hit]] + delta[pos[hit]]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), ds.train_y[b]).backward()
            opt.step()
        member["age"] += steps
        model.eval()
