"""Error-minimising noise (unlearnable examples) and its SAPA version."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sapabench.attacks._untargeted import batches, perturbed_subset, pgd_perturb
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
from sapabench.victims.archs import build_model
from sapabench.victims.train import accuracy


@dataclass(frozen=True)
class ErrorMinConfig(SurrogateConfig):
    """Error-Min settings (Huang et al. 2021; SAPA paper appendix C.3).

    Attributes:
        model_steps: M, model SGD steps on x + delta per round (10).
        pgd_steps: T, perturbation steps per batch per round (20).
        step_fraction: alpha as a fraction of eps (1/10).
        max_rounds: E, rounds at most (100).
        stop_accuracy: stop once the model's accuracy on x + delta exceeds this (0.99).
        batch_size: minibatch for model and perturbation steps (128). (One perturbation batch of
            the whole digits set was measured slower than batches of 128, in fp32 and in bf16:
            docs/measurements/2026-12-06-crafting.md.)
        model_lr: SGD learning rate of the model steps (0.1, momentum 0.9, wd 5e-4).
        train_on: with a budget below 1, what the model steps, SAPA's loss and the stopping
            accuracy use: ``full`` (default; Algorithm 1: the whole training set, the poisoned
            share perturbed and the rest clean) or ``subset`` (the poisoned share only, how
            sapabench crafted before 2026-11-24). With budget 1 both are the same.
    """

    model_steps: int = 10
    pgd_steps: int = 20
    step_fraction: float = 0.1
    max_rounds: int = 100
    stop_accuracy: float = 0.99
    batch_size: int = 128
    model_lr: float = 0.1
    train_on: str = "full"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, "model_steps", "pgd_steps", "max_rounds", "batch_size")
        if not 0 < self.step_fraction <= 1:
            raise ConfigError(f"invalid step_fraction={self.step_fraction!r}: in (0, 1]")
        if not 0 < self.stop_accuracy <= 1:
            raise ConfigError(f"invalid stop_accuracy={self.stop_accuracy!r}: in (0, 1]")
        if self.train_on not in ("full", "subset"):
            raise ConfigError(f"invalid train_on={self.train_on!r}: full or subset")


@register_attack(
    "error-min", description="error-minimising noise / unlearnable examples (Huang et al. 2021)", sapa_twin=True
)
class ErrorMin(Attack):
    """Unlearnable examples, sample-wise (Huang et al., ICLR 2021), with SAPA as ``sapa-error-min``.

    Threat model: untargeted, clean-label; the metric is the re-trained victim's clean test
    accuracy (lower = stronger).

    eps / budget: L_inf bound per image; the fraction of the training set perturbed (1.0 in the
    paper, i.e. every image).

    Objective: the bilevel min-min problem. Each round trains a freshly initialised surrogate
    for ``model_steps`` steps on x + delta, then takes ``pgd_steps`` signed steps *minimising*
    CE(f(x + delta), y) for every batch; it stops when the surrogate's accuracy on x + delta
    exceeds ``stop_accuracy``. SAPA (Algorithm 1): before the delta steps of each round, move the
    model to theta + v_hat, v_hat = rho g / ||g||, g the gradient of the training loss on x + delta.

    Options (paper preset): eps 8/255, budget 1.0, M 10, T 20, alpha eps/10, E 100, rho 0.05,
    surrogate ResNet-18.

    Example::

        poison = create_attack("sapa-error-min", dataset="digits").run(load_dataset("digits"), seed=0)
    """

    threat = "untargeted"
    Config = ErrorMinConfig
    crafts_in_numerics = True
    presets = {
        "paper": dict(
            eps=8 / 255,
            budget=1.0,
            model_steps=10,
            pgd_steps=20,
            step_fraction=0.1,
            max_rounds=100,
            batch_size=128,
            surrogate=SurrogateSpec("resnet18", "sgd"),
        ),
        "embedded": dict(
            eps=32 / 255,
            budget=1.0,
            model_steps=10,
            pgd_steps=10,
            step_fraction=0.2,
            max_rounds=20,
            batch_size=128,
            surrogate=SurrogateSpec("convnet", "sgd"),
        ),
        "smoke": dict(
            eps=8 / 255,
            budget=0.5,
            model_steps=2,
            pgd_steps=2,
            step_fraction=0.2,
            max_rounds=1,
            batch_size=128,
            surrogate=SurrogateSpec("convnet", "sgd", epochs=1),
        ),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        cfg: ErrorMinConfig = self.config  # type: ignore[assignment]
        ds = ctx.dataset
        indices, x, y = perturbed_subset(ctx, cfg)
        # Min-min starts from a randomly initialised surrogate, not a trained one.
        model = ctx.numerics.wrapped(build_model(cfg.surrogate.arch, ds).to(ctx.device))
        ctx.surrogate_info.update(arch=cfg.surrogate.arch, trained="from scratch inside the attack", cached=True)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.model_lr, momentum=0.9, weight_decay=5e-4)
        delta = random_delta(x, cfg.eps, ctx.generator)
        step = cfg.step_fraction * cfg.eps
        # What the model trains on: the whole training set with the poisoned share perturbed
        # (Algorithm 1), or the poisoned share alone (``subset``; the same set at budget 1).
        whole = cfg.train_on == "full" and len(indices) < ds.num_train
        train_x, train_y = (ds.train_x, ds.train_y) if whole else (x, y)
        idx = indices.to(ctx.device)

        def training_delta() -> torch.Tensor:
            if not whole:
                return delta
            full = torch.zeros_like(train_x)
            full[idx] = delta
            return full

        stream = iter(())
        rounds, train_acc, v_norms = 0, 0.0, []
        for rounds in range(1, cfg.max_rounds + 1):
            model.train()  # 1. M model steps on the perturbed data
            current = training_delta()
            for _ in range(cfg.model_steps):
                b = next(stream, None)
                if b is None:
                    stream = iter(list(batches(len(train_x), cfg.batch_size, ctx.generator)))
                    b = next(stream)
                b = b.to(ctx.device)
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(train_x[b] + current[b]), train_y[b]).backward()
                opt.step()
            model.eval()
            # 2. SAPA: theta + v_hat maximising the training loss on the training set (base: theta).
            objective = lambda d=current: mean_loss_terms(model, train_x, train_y, delta=d)  # noqa: E731
            with worst_case_weights(model, objective, self.rho) as sapa:
                v_norms.append(sapa.v_norm)
                # 3. T error-minimising steps on every batch, against the (perturbed) model.
                for b in batches(len(x), cfg.batch_size):
                    b = b.to(ctx.device)
                    delta[b] = pgd_perturb(model, x[b], y[b], delta[b], cfg.eps, step, cfg.pgd_steps, sign=-1.0)
            train_acc = accuracy(model, train_x + training_delta(), train_y)
            ctx.log(f"error-min round {rounds}: surrogate accuracy on x+delta {train_acc:.4f}")
            if train_acc > cfg.stop_accuracy:
                break
        return Crafted(
            indices=indices,
            delta=delta,
            threat=ThreatModel("untargeted"),
            extra={"rounds": rounds, "final_train_accuracy": train_acc, "sapa_v_norms": v_norms},
        )
