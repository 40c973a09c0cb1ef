"""Ensemble and re-initialisation (E&R) for the gradient-matching family."""

import pytest
import torch
from torch import nn

from sapabench.attacks import ConfigError, CraftContext, create_attack
from sapabench.attacks._draws import draw_target
from sapabench.attacks._matching import Targets, _flat_norm, differentiable_augment, matching_loss
from sapabench.attacks.base import budget_indices, member_seed, project, random_delta
from sapabench.attacks.sapa import trainable
from sapabench.benchmark.suite import parse_suite
from sapabench.core.runtime import seeded
from sapabench.victims.archs import build_model

CPU = torch.device("cpu")


def _single_surrogate_gradient_matching(ds, seed, cfg):
    """Witches' Brew against one surrogate, written out without any ensemble code: the
    reference the E&R path must reproduce bit for bit at K = R = 1."""
    ctx = CraftContext(ds, seed, torch.Generator().manual_seed(seed), CPU)
    with seeded(seed, CPU):
        target = draw_target(ctx)
        indices = budget_indices(ctx, cfg, target.adversarial_class)
        model = ctx.surrogate(cfg.surrogate).eval()
        x_t = ds.test_x[target.index : target.index + 1]
        q = nn.functional.cross_entropy(model(x_t), torch.tensor([target.adversarial_class]))
        target_grad = [g.detach() for g in torch.autograd.grad(q, trainable(model))]
        norm = _flat_norm(target_grad)
        x, y = ds.train_x[indices], ds.train_y[indices]
        augment = differentiable_augment(cfg.augment_shift, ds.flip_invariant)
        delta = random_delta(x, cfg.eps, ctx.generator).requires_grad_(True)
        optimizer = torch.optim.Adam([delta], lr=cfg.lr * cfg.eps)
        milestones = sorted({int(cfg.steps * f) for f in (3 / 8, 5 / 8, 7 / 8)} - {0})
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
        for _ in range(cfg.steps):
            (grad,) = torch.autograd.grad(matching_loss(model, x + delta, y, target_grad, norm, augment), delta)
            delta.grad = grad.sign()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                delta.copy_(project(delta, x, cfg.eps))
    return indices, delta.detach()


def test_one_architecture_one_initialisation_is_exactly_the_single_surrogate_poison(tiny_digits):
    attack = create_attack("gradient-matching", dataset="digits", preset="smoke", ensemble=1, reinit=1, steps=4)
    poison = attack.run(tiny_digits, seed=3)
    indices, delta = _single_surrogate_gradient_matching(tiny_digits, 3, attack.config)
    assert torch.equal(poison.indices, indices)
    assert torch.equal(poison.delta, delta)
    assert "ensemble_members" not in poison.extra and "members" not in poison.surrogate


def _models_and_targets(ds):
    models, grads = [], []
    for i, arch in enumerate(("convnet", "lenet", "mlp")):
        torch.manual_seed(i)
        model = build_model(arch, ds).eval()
        loss = nn.functional.cross_entropy(model(ds.test_x[:4]), ds.test_y[:4].roll(1))
        grads.append([g.detach() for g in torch.autograd.grad(loss, trainable(model))])
        models.append(model)
    return models, grads


def test_the_ensemble_objective_is_the_mean_of_the_members_objectives(tiny_digits):
    models, grads = _models_and_targets(tiny_digits)
    norms = [_flat_norm(g) for g in grads]
    x = (tiny_digits.train_x[:6] + 0.01).clamp(0, 1).requires_grad_(True)
    y = tiny_digits.train_y[:6]
    each = [matching_loss(m, x, y, g, n, None) for m, g, n in zip(models, grads, norms, strict=True)]
    targets = Targets.of(models, grads)
    mean = targets.loss(x, y, None)
    assert len({round(float(v.detach()), 4) for v in each}) == 3  # the members disagree ...
    torch.testing.assert_close(mean, torch.stack(each).mean())  # ... and the objective is their mean
    (expected,) = torch.autograd.grad(torch.stack(each).mean(), x)
    torch.testing.assert_close(targets.input_grad(x, y, None), expected)


def test_members_are_cached_by_architecture_and_initialisation_seed(tiny_digits):
    make = dict(dataset="digits", preset="smoke", ensemble=2, reinit=2, ensemble_archs="lenet,convnet")
    first = create_attack("gradient-matching", **make).run(tiny_digits, seed=5)
    members = first.surrogate["members"]
    expected = [("convnet", 0, 0), ("convnet", 0, 1), ("lenet", 1, 0), ("lenet", 1, 1)]
    assert [(m["arch"], m["seed"]) for m in members] == [(a, member_seed(5, k, r)) for a, k, r in expected]
    assert len({m["cache_key"] for m in members}) == 4
    for m in members:  # the cache key names the architecture and the seed
        assert f"/{m['arch']}-" in m["cache_key"] and m["cache_key"].endswith(f"-s{m['seed']}")
    assert first.extra["ensemble_members"] == [{"arch": m["arch"], "seed": m["seed"]} for m in members]
    assert first.config["ensemble"] == 2 and first.config["reinit"] == 2  # recorded in the artifact
    # The surrogates' cost is every member's training time, whether trained now or cached.
    assert first.extra["surrogates_train_s"] == pytest.approx(sum(m["train_s"] for m in members))
    again = create_attack("sapa-gradient-matching", **make).run(tiny_digits, seed=5)
    assert again.extra["surrogate_train_s_excluded"] == 0.0  # every member came from the cache
    assert again.extra["surrogates_train_s"] == pytest.approx(first.extra["surrogates_train_s"])
    # SAPA takes each member's own worst-case direction, of norm rho.
    assert again.extra["sapa_v_norms_per_member"] == pytest.approx([0.05] * 4, rel=1e-4)


def test_sleeper_agent_retrains_every_member(tiny_digits):
    poison = create_attack(
        "sapa-sleeper-agent", dataset="digits", preset="smoke", ensemble=2, ensemble_archs="mlp", retrainings=1
    ).run(tiny_digits, seed=1)
    assert [m["arch"] for m in poison.extra["ensemble_members"]] == ["convnet", "mlp"]
    assert poison.extra["sapa_v_norms"] == pytest.approx([0.05] * 4, rel=1e-4)  # 2 stages x 2 members


def test_member_architectures_cycle_and_skip_the_surrogates_own():
    attack = create_attack("gradient-matching", dataset="digits", ensemble=5, ensemble_archs="convnet,lenet,mlp")
    assert attack.config.member_archs() == ["convnet", "lenet", "mlp", "lenet", "mlp"]
    paper = create_attack("gradient-matching", dataset="cifar10", ensemble=4)
    assert paper.config.member_archs() == ["resnet18", "vgg11", "mobilenetv2", "resnet50"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ensemble": 0}, "ensemble=0"),
        ({"reinit": 17}, "reinit=17: at most 16"),
        ({"ensemble_archs": "lenet,resnet9"}, "resnet9"),
        ({"ensemble_archs": ""}, "comma-separated architectures"),
    ],
)
def test_bad_ensemble_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        create_attack("sleeper-agent", dataset="digits", **options)


def test_a_grid_sweeps_listed_options():
    suite = parse_suite(
        """
name = "sweep"
dataset = "digits"
preset = "smoke"
craft_seeds = [0]

[[grid]]
attacks = ["gradient-matching"]
recipes = ["sgd"]
archs = ["convnet"]
options = { ensemble = [1, 2, 4], reinit = 1, ensemble_archs = "lenet,mlp" }

[[grid]]
attacks = ["gradient-matching"]
recipes = ["sgd"]
archs = ["convnet"]
options = { ensemble = [1, 2], reinit = [2] }
"""
    )
    swept = sorted((dict(p.options)["ensemble"], dict(p.options)["reinit"]) for p in suite.poisons())
    assert swept == [(1, 1), (1, 2), (2, 1), (2, 2), (4, 1)]
    with pytest.raises(ConfigError, match="sweeps an empty list"):
        parse_suite(
            'name = "x"\ndataset = "digits"\n[[grid]]\nattacks = ["gradient-matching"]\nrecipes = ["sgd"]\n'
            'archs = ["convnet"]\noptions = { ensemble = [] }\n'
        )
