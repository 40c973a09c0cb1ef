import dataclasses
import itertools

import pytest
import torch
from torch import nn

from sapabench.core.errors import ConfigError
from sapabench.core.sharpness import perturbed_weights, worst_case_direction
from sapabench.victims.augment import pgd_linf
from sapabench.victims.recipes import RECIPES, AdversarialConfig, TrainConfig
from sapabench.victims.schedules import lr_multiplier


def test_all_design_card_recipes_are_registered():
    assert set(RECIPES.list()) >= {"sgd", "adam", "cutout", "mixup", "sam", "adversarial"}


def test_recipe_defaults_follow_the_papers():
    assert RECIPES.create("sgd").train == TrainConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="step")
    assert RECIPES.create("adam").train.optimizer == "adam"
    assert RECIPES.create("sam").sam_rho == 0.05
    adv = RECIPES.create("adversarial").adversarial
    assert adv == AdversarialConfig(eps=8 / 255, step=2 / 255, steps=7)
    assert RECIPES.create("mixup").mixup and RECIPES.create("cutout").cutout


@pytest.mark.parametrize(
    ("recipe", "options", "message"),
    [
        ("sgd", {"lr": 0}, r"invalid lr=0: must be a positive number \(set --lr\)"),
        ("sgd", {"lr": -0.1}, r"invalid lr"),
        ("sgd", {"epochs": 0}, r"invalid epochs=0: must be a positive integer of at most 10000 \(set --epochs\)"),
        ("sgd", {"epochs": -2}, r"invalid epochs"),
        ("sgd", {"epochs": 2.5}, r"invalid epochs"),
        ("sgd", {"batch_size": 0}, r"invalid batch_size=0.*--batch-size"),
        ("sgd", {"schedule": "linear"}, r"schedule.*step, cosine, cyclic, constant"),
        ("sgd", {"momentum": 1.5}, r"momentum"),
        ("sgd", {"rho": 0.1}, r"recipe 'sgd' has no option 'rho'"),
        ("adversarial", {"eps": 1.5}, r"adversarial eps=1.5: must be in \[0, 1\].*--adv-eps"),
        ("adversarial", {"eps": -0.01}, r"adversarial eps"),
        ("adversarial", {"steps": 0}, r"adversarial steps"),
        ("sam", {"rho": 0}, r"sam_rho"),
        ("cutout", {"size": 0}, r"cutout_size"),
    ],
)
def test_bad_options_are_refused_naming_the_field(recipe, options, message):
    with pytest.raises(ConfigError, match=message):
        RECIPES.create(recipe, **options)


def test_configs_are_frozen():
    cfg = RECIPES.create("sgd")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_step_schedule_is_the_papers():
    f = lr_multiplier("step", epochs=160, steps_per_epoch=10)
    assert f(79 * 10 + 9) == 1.0 and f(80 * 10) == pytest.approx(0.1)
    assert f(119 * 10) == pytest.approx(0.1) and f(120 * 10) == pytest.approx(0.01)


def test_cosine_and_cyclic_schedules():
    cos = lr_multiplier("cosine", epochs=10, steps_per_epoch=10)
    assert cos(0) == 1.0 and cos(50) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0, abs=1e-12)
    cyc = lr_multiplier("cyclic", epochs=10, steps_per_epoch=10)
    values = [cyc(i) for i in range(100)]
    peak = max(range(100), key=values.__getitem__)
    assert values[peak] == pytest.approx(1.0) and 35 <= peak <= 45 and values[-1] == pytest.approx(0.0)
    assert all(a <= b for a, b in itertools.pairwise(values[: peak + 1]))


def test_worst_case_direction_has_norm_rho_along_the_gradient():
    g = [torch.randn(3, 4), None, torch.randn(5)]
    v = worst_case_direction(g, 0.05)
    assert v[1] is None
    flat_g = torch.cat([g[0].flatten(), g[2].flatten()])
    flat_v = torch.cat([v[0].flatten(), v[2].flatten()])
    assert float(flat_v.norm()) == pytest.approx(0.05, rel=1e-5)
    assert float(torch.nn.functional.cosine_similarity(flat_g, flat_v, dim=0)) == pytest.approx(1.0, abs=1e-6)
    assert all(float(t.abs().sum()) == 0 for t in worst_case_direction([torch.zeros(3)], 0.05) if t is not None)


def test_perturbed_weights_restores_bit_exactly():
    torch.manual_seed(0)
    lin = nn.Linear(7, 3)
    before = [p.detach().clone() for p in lin.parameters()]
    vs = [torch.randn_like(p) * 0.37 for p in lin.parameters()]
    with perturbed_weights(list(lin.parameters()), vs):
        assert not torch.equal(lin.weight, before[0])
    assert all(torch.equal(p, b) for p, b in zip(lin.parameters(), before, strict=True))


def test_pgd_stays_in_the_eps_ball_and_pixel_range():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(10, 1, 4, 4), torch.randint(0, 3, (10,))
    adv = pgd_linf(model, x, y, eps=8 / 255, step=2 / 255, steps=5)
    assert float((adv - x).abs().max()) <= 8 / 255 + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    ce = nn.functional.cross_entropy
    with torch.no_grad():
        assert float(ce(model(adv), y)) > float(ce(model(x), y))
    model.train()
    pgd_linf(model, x, y, eps=8 / 255, step=2 / 255, steps=1)
    assert model.training  # the attack runs in eval mode and restores the caller's mode
