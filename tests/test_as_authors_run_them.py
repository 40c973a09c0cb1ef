"""Each baseline crafts as its authors' code does, and SAPA takes its worst case on the attack's
own objective; the earlier behaviour stays reachable by a named option."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import attacks.error_max as error_max
import attacks.error_min as error_min
import attacks.sleeper_agent as sleeper_agent
from attacks import create_attack


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
    from attacks.base import random_delta
    from attacks.surrogate import get_surrogate

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
    from attacks.sapa import worst_case_weights
    from core.sharpness import RESNET18_INIT_NORM
    from victims.archs import build_model

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
