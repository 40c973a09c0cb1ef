"""Each baseline crafts as its authors' code does, and SAPA takes its worst case on the attack's
own objective; the earlier behaviour stays reachable by a named option."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sapabench.attacks.error_max as error_max
import sapabench.attacks.error_min as error_min
import sapabench.attacks.hidden_trigger as hidden_trigger
import sapabench.attacks.metapoison as metapoison
import sapabench.attacks.sleeper_agent as sleeper_agent
from sapabench.attacks import create_attack


class _Stop(Exception):
    """Ends a craft once the property under test has been observed."""


def _spy_objective(monkeypatch, module):
    """Record what SAPA's worst case is taken on: the objective's value and the data size."""
    seen = []

    def spy(model, objective, rho):
        terms = list(objective())
        seen.append(float(sum(t.detach() for t in terms)))
        raise _Stop

    monkeypatch.setattr(module, "worst_case_weights", spy)
    return seen


def test_sapa_error_max_takes_v_hat_on_the_attacks_own_loss(monkeypatch, tiny_digits):
    """With the class shift the PGD minimises CE towards (y + 1) mod C: v_hat must maximise that
    same objective (-CE towards y + 1), not CE on the true label."""
    seen = _spy_objective(monkeypatch, error_max)
    torch.manual_seed(0)
    for sapa_loss in ("attack", "true-label"):
        attack = create_attack(
            "sapa-error-max", dataset="digits", preset="smoke", class_shift=True, budget=1.0, sapa_loss=sapa_loss
        )
        with pytest.raises(_Stop):
            attack.run(tiny_digits, seed=0)
    # the same random start (seed 0) and surrogate: recompute both objectives at it
    from sapabench.attacks.base import random_delta
    from sapabench.attacks.surrogate import get_surrogate

    model = get_surrogate(attack.config.surrogate, tiny_digits, 0, torch.device("cpu"))[0].eval()
    x, y = tiny_digits.train_x, tiny_digits.train_y
    delta = random_delta(x, attack.config.eps, torch.Generator().manual_seed(0))
    with torch.no_grad():
        shifted = -float(nn.functional.cross_entropy(model(x + delta), (y + 1) % tiny_digits.num_classes))
        true_label = float(nn.functional.cross_entropy(model(x + delta), y))
    assert seen[0] == pytest.approx(shifted, rel=1e-4)  # default: the attack's own loss
    assert seen[1] == pytest.approx(true_label, rel=1e-4)  # the earlier reading, by name
    assert create_attack("error-max", dataset="digits").config.sapa_loss == "attack"


def test_error_min_with_a_partial_budget_trains_and_takes_sapa_on_the_whole_set(monkeypatch, tiny_digits):
    sizes = []

    def spy(model, x, y, *args, **kwargs):
        sizes.append(len(x))
        raise _Stop

    monkeypatch.setattr(error_min, "mean_loss_terms", spy)
    for train_on in ("full", "subset"):
        attack = create_attack("sapa-error-min", dataset="digits", preset="smoke", budget=0.5, train_on=train_on)
        with pytest.raises(_Stop):
            attack.run(tiny_digits, seed=0)
    assert sizes == [tiny_digits.num_train, tiny_digits.num_train // 2]  # Algorithm 1: D_tr; earlier: the subset


@pytest.mark.parametrize(("selection", "scored"), [("gradient-norm", 2), ("gradient-norm-first", 1)])
def test_sleeper_agent_selects_poisons_by_the_gradient_norm_averaged_over_the_ensemble(
    monkeypatch, tiny_digits, selection, scored
):
    models = []
    real = sleeper_agent.gradient_norms

    def spy(model, x, y, *args, **kwargs):
        models.append(model)
        return real(model, x, y, *args, **kwargs)

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(sleeper_agent, "gradient_norms", spy)
    monkeypatch.setattr(sleeper_agent, "differentiable_augment", stop)  # right after the selection
    attack = create_attack("sleeper-agent", dataset="digits", preset="smoke", reinit=2, selection=selection)
    with pytest.raises(_Stop):
        attack.run(tiny_digits, seed=0)
    assert len(models) == scored and len({id(m) for m in models}) == scored


@pytest.mark.parametrize("corners", [1, 4])
def test_the_clean_label_trigger_is_full_contrast_in_the_stamped_corners(tiny_digits, corners):
    attack = create_attack("clean-label-backdoor", dataset="digits", preset="smoke", corners=corners, budget=0.1)
    poison = attack.run(tiny_digits, seed=0)
    assert poison.threat.stamped and float(poison.delta.abs().max()) <= poison.eps + 1e-6  # delta within eps
    x, _ = tiny_digits.poisoned_train(poison)
    images = x[poison.indices]
    ph, pw = poison.trigger.shape[-2:]
    h, w = images.shape[-2:]
    spots = [(h - ph, w - pw)] + ([(0, 0), (0, w - pw), (h - ph, 0)] if corners == 4 else [])
    for r, c in spots:  # every stamped pixel is the trigger's 0 or 1, as Turner et al.'s code sets it
        assert torch.equal(images[:, :, r : r + ph, c : c + pw], poison.trigger.expand(len(images), -1, -1, -1))
    assert set(poison.trigger.unique().tolist()) <= {0.0, 1.0}
    if corners == 1:  # the other corners carry no trigger
        assert not torch.equal(images[:, :, :ph, :pw], poison.trigger.expand(len(images), -1, -1, -1))
    old = create_attack("clean-label-backdoor", dataset="digits", preset="smoke", trigger_style="eps", budget=0.1)
    earlier = old.run(tiny_digits, seed=0)
    assert not earlier.threat.stamped  # the earlier reading: the whole poison within eps, by name
    x_old, _ = tiny_digits.poisoned_train(earlier)
    moved = (x_old[earlier.indices] - tiny_digits.train_x[earlier.indices]).abs().max()
    assert float(moved) <= earlier.eps + 1e-6


def test_a_resnet18_relative_radius_scales_with_the_weights_sapa_perturbs(tiny_digits):
    from sapabench.attacks.sapa import worst_case_weights
    from sapabench.core.sharpness import RESNET18_INIT_NORM
    from sapabench.victims.archs import build_model

    torch.manual_seed(0)
    model = build_model("convnet", tiny_digits).eval()
    norm = float(torch.sqrt(sum((p.detach() ** 2).sum() for p in model.parameters())))
    x, y = tiny_digits.train_x[:64], tiny_digits.train_y[:64]
    attack = create_attack("sapa-error-max", dataset="digits", preset="smoke", rho_scale="resnet18")
    assert create_attack("sapa-error-max", dataset="digits", preset="smoke").rho == 0.05  # the paper's, unchanged
    with worst_case_weights(model, lambda: nn.functional.cross_entropy(model(x), y), attack.rho) as record:
        pass
    assert record.rho == pytest.approx(0.05 * norm / RESNET18_INIT_NORM, rel=1e-5)
    assert record.v_norm == pytest.approx(record.rho, rel=1e-4)  # v_hat has the scaled radius
    assert norm < 30 and record.rho < 0.05 / 3  # the embedded convnet: about a quarter of the absolute radius


@pytest.mark.parametrize("units", ["normalised", "pixel"])
def test_bullseye_steps_in_normalised_units_as_the_original(tiny_digits, units):
    attack = create_attack("bullseye-polytope", dataset="digits", preset="smoke", steps=1, ensemble=1, lr_units=units)
    poison = attack.run(tiny_digits, seed=0)
    expected = 0.04 * tiny_digits.std[0] if units == "normalised" else 0.04  # Adam's first step: lr per element
    assert float(poison.delta.abs().max()) == pytest.approx(min(expected, poison.eps), rel=1e-3)


_EARLIER_METAPOISON = dict(objective="xent-final", trajectory="poison", batches="sampled", craft_schedule="constant")


def _first_meta_gradient(monkeypatch, dataset, **options) -> torch.Tensor:
    """The meta-gradient of MetaPoison's first craft step (read at Adam's first step)."""
    seen = []

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["params"][0].grad.detach().clone())
        raise _Stop

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    attack = create_attack("metapoison", dataset="digits", preset="smoke", budget=0.3, batch_size=16, **options)
    with pytest.raises(_Stop):
        attack.run(dataset, seed=0)
    return seen[0]


def test_every_metapoison_poison_gets_a_meta_gradient_every_craft_step(monkeypatch, tiny_digits):
    """The authors run every surrogate through an epoch of batches per craft step, so every poison
    is in some batch; the earlier reading sampled at most batch_size / 2 poisons per surrogate."""
    reached = (_first_meta_gradient(monkeypatch, tiny_digits).flatten(1).abs().sum(1) > 0).float()
    assert float(reached.mean()) == 1.0
    earlier = _first_meta_gradient(monkeypatch, tiny_digits, **_EARLIER_METAPOISON).flatten(1).abs().sum(1) > 0
    assert int(earlier.sum()) <= 2 * 8 < len(earlier)  # 2 surrogates x 8 sampled poisons of 20 (tiny_digits)


def test_metapoison_averages_the_carlini_wagner_loss_over_the_unrolled_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    x, y = torch.randn(5, 1, 2, 2, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    x2, y2 = torch.randn(5, 1, 2, 2, dtype=torch.float64), torch.tensor([2, 2, 1, 0, 1])
    x_t, y_adv = torch.randn(1, 1, 2, 2, dtype=torch.float64), torch.tensor([2])
    cw = metapoison.unrolled_target_losses(model, params, [(x, y), (x2, y2)], x_t, y_adv, 0.5, "cw")
    # by hand: two plain SGD steps, the first on (x, y), the second on the next batch
    theta, margins = {k: v.detach() for k, v in params.items()}, []
    for xb, yb in ((x, y), (x2, y2)):
        th = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        loss = nn.functional.cross_entropy(torch.func.functional_call(model, th, (xb,)), yb)
        grads = torch.autograd.grad(loss, list(th.values()))
        theta = {k: v - 0.5 * g for (k, v), g in zip(th.items(), grads, strict=True)}
        z = torch.func.functional_call(model, theta, (x_t,))[0].detach()
        margins.append(float(max(z[0], z[1]) - z[2]))
    assert [float(c.detach()) for c in cw] == pytest.approx(margins, rel=1e-9)
    cfg = create_attack("metapoison", dataset="digits").config
    assert cfg.objective == "cwT" and float(metapoison.meta_objective(cfg, cw).detach()) == pytest.approx(
        sum(margins) / 2
    )
    earlier = create_attack("metapoison", dataset="digits", objective="xent-final").config
    assert float(metapoison.meta_objective(earlier, cw).detach()) == pytest.approx(margins[-1])  # the last step only
    assert float(metapoison.carlini_wagner(torch.tensor([[0.0, 500.0, 0.0]]), torch.tensor([1]))) == -100  # floored


@pytest.mark.parametrize(("trajectory", "moves_with_delta"), [("clean", False), ("poison", True)])
def test_metapoison_surrogates_follow_the_clean_trajectory(tiny_digits, trajectory, moves_with_delta):
    """The authors' surrogates take one step per batch on clean data (``-trajectory clean``): their
    weights after an epoch do not depend on the poisons; on the poisoned trajectory they do."""
    from sapabench.attacks.base import CraftContext

    attack = create_attack("metapoison", dataset="digits", preset="smoke", budget=0.3, trajectory=trajectory)
    cfg = attack.config
    idx = torch.nonzero(tiny_digits.train_y == 3).flatten()
    position = torch.full((tiny_digits.num_train,), -1, dtype=torch.long)
    position[idx] = torch.arange(len(idx))
    poisons = metapoison._Poisons(
        tiny_digits.train_x[idx], tiny_digits.train_y[idx], idx, position, torch.nonzero(position < 0).flatten()
    )
    after = []
    for scale in (0.0, 0.3):
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        ctx = CraftContext(dataset=tiny_digits, seed=0, device=torch.device("cpu"), generator=generator)
        member = attack._fresh(ctx, cfg)
        delta = torch.full_like(poisons.x, scale).requires_grad_(True)
        attack._epoch(ctx, cfg, member, poisons, delta, tiny_digits.test_x[:1], torch.tensor([5]))
        after.append(torch.cat([p.detach().flatten() for p in member["model"].parameters()]))
        assert member["age"] == -(-tiny_digits.num_train // cfg.batch_size)  # one epoch
    assert (not torch.equal(after[0], after[1])) == moves_with_delta


def test_metapoison_craft_rate_follows_the_authors_schedule():
    cfg = create_attack("metapoison", dataset="digits", preset="paper").config
    rates = [metapoison.craft_rate(cfg, s) for s in range(cfg.steps)]
    assert rates[:5] == pytest.approx([0.04, 0.16, 0.36, 0.64, 1.0])  # ((s + 1) / 5)^2
    assert rates[5:20] == [1.0] * 15 and rates[20:40] == [0.1] * 20 and rates[40:] == [0.01] * 20
    constant = create_attack("metapoison", dataset="digits", craft_schedule="constant").config
    assert {metapoison.craft_rate(constant, s) for s in range(60)} == {1.0}
    with pytest.raises(Exception, match="invalid objective='xent'"):
        create_attack("metapoison", dataset="digits", objective="xent")


@pytest.mark.parametrize(("positions", "pastes"), [("per-batch", [4, 4, 2]), ("per-step", None)])
def test_hidden_trigger_positions_are_fixed_per_batch_as_the_original(monkeypatch, tiny_digits, positions, pastes):
    """The authors paste the trigger once per batch of sources (``rand_loc``) and match those
    fixed features for every iteration; the earlier reading re-pasted it every step."""
    seen = []
    real = hidden_trigger.apply_trigger

    def spy(x, *args, **kwargs):
        seen.append(len(x))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(hidden_trigger, "apply_trigger", spy)
    attack = create_attack(
        "hidden-trigger",
        dataset="digits",
        preset="smoke",
        steps=5,
        budget=0.05,
        batch_size=4,
        trigger_positions=positions,
    )
    poison = attack.run(tiny_digits, seed=0)
    assert len(poison.indices) == 10
    sources = int((tiny_digits.train_y == poison.threat.source_class).sum())
    # per batch: one paste on as many sources as poisons; per step: on every source, each step
    assert seen == (pastes or [sources] * 5)
    assert float(poison.delta.abs().max()) <= poison.eps + 1e-6
