"""The defining property of each baseline of the paper's Tables 1-3, on tiny data."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from sapabench.attacks import create_attack
from sapabench.attacks._features import block_features, penultimate
from sapabench.attacks.autoregressive import ar_filters, ar_noise
from sapabench.attacks.clean_label_backdoor import stamp
from sapabench.attacks.hidden_trigger import greedy_pairs
from sapabench.attacks.metapoison import unrolled_adversarial_loss
from sapabench.attacks.surrogate import get_surrogate
from sapabench.core.errors import ConfigError


def _surrogate(poison, dataset):
    from sapabench.attacks.surrogate import SurrogateSpec

    spec = SurrogateSpec(**{k: poison.config["surrogate"][k] for k in ("arch", "recipe", "epochs")})
    return get_surrogate(spec, dataset, poison.seed, torch.device("cpu"))[0].eval()


@pytest.mark.parametrize("name", ["poison-frogs", "bullseye-polytope"])
def test_feature_collision_moves_the_poisons_features_to_the_target(tiny_digits, name):
    trained = {"arch": "convnet", "recipe": "sgd"}  # the embedded surrogate (the 1-epoch one has tiny features)
    poison = create_attack(name, dataset="digits", preset="smoke", steps=40, surrogate=trained).run(tiny_digits, seed=0)
    model = _surrogate(poison, tiny_digits)
    base = tiny_digits.train_x[poison.indices]
    t = tiny_digits.test_x[poison.threat.target_index : poison.threat.target_index + 1]
    with torch.no_grad():
        f_t, before, after = penultimate(model, t), penultimate(model, base), penultimate(model, base + poison.delta)
    if name == "poison-frogs":  # every poison collides with the target on its own
        d0, d1 = (before - f_t).pow(2).sum(1), (after - f_t).pow(2).sum(1)
        assert float(d1.mean()) < 0.8 * float(d0.mean())
    else:  # the poisons' mean feature (the polytope's centre) moves onto the target
        d0, d1 = (before.mean(0) - f_t[0]).norm(), (after.mean(0) - f_t[0]).norm()
        assert float(d1) < 0.8 * float(d0)
    assert (tiny_digits.train_y[poison.indices] == poison.threat.adversarial_class).all()


def test_block_features_end_with_the_penultimate_features(tiny_digits):
    from sapabench.victims.archs import build_model

    model = build_model("convnet", tiny_digits).eval()
    blocks = block_features(model, tiny_digits.train_x[:3])
    assert len(blocks) == 6 and torch.equal(blocks[-1], penultimate(model, tiny_digits.train_x[:3]))


def test_metapoison_differentiates_through_the_unrolled_sgd_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    x = torch.randn(5, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    y, x_t, y_adv = torch.tensor([0, 1, 2, 0, 1]), torch.randn(1, 1, 2, 2, dtype=torch.float64), torch.tensor([2])
    # Without an unrolled step the target's loss does not depend on the batch at all ...
    assert unrolled_adversarial_loss(model, params, x, y, x_t, y_adv, 0, 0.5).grad_fn is not None
    (zero,) = torch.autograd.grad(
        unrolled_adversarial_loss(model, params, x, y, x_t, y_adv, 0, 0.5), x, allow_unused=True
    )
    assert zero is None
    # ... with K = 2 it does, and the meta-gradient equals the finite difference.
    loss = unrolled_adversarial_loss(model, params, x, y, x_t, y_adv, 2, 0.5)
    (grad,) = torch.autograd.grad(loss, x)
    assert float(grad.abs().max()) > 1e-4
    direction = torch.randn_like(x)
    h = 1e-6
    plus = unrolled_adversarial_loss(model, params, x + h * direction, y, x_t, y_adv, 2, 0.5)
    minus = unrolled_adversarial_loss(model, params, x - h * direction, y, x_t, y_adv, 2, 0.5)
    assert float((plus - minus).detach() / (2 * h)) == pytest.approx(float((grad * direction).sum()), rel=1e-5)


def test_class_wise_separable_noise_is_one_pattern_per_class(tiny_digits):
    gray = replace(tiny_digits, train_x=torch.full_like(tiny_digits.train_x, 0.5))  # nothing is clipped
    poison = create_attack("separable", dataset="digits", preset="smoke", noise="class-wise").run(gray, seed=0)
    labels = gray.train_y[poison.indices]
    patterns = []
    for c in labels.unique():
        rows = poison.delta[labels == c]
        assert torch.equal(rows, rows[:1].expand_as(rows))  # every image of the class: the same pattern
        patterns.append(rows[0])
        assert float(rows.abs().max()) == pytest.approx(poison.eps, rel=1e-5)  # scaled to eps (L_inf)
    assert len({tuple(p.flatten().tolist()) for p in patterns}) == len(patterns)  # one per class, all different


def test_separable_noise_is_a_point_per_image_linearly_separable_by_class(tiny_digits):
    """The authors' synthetic noise: every image its own point of its class's cluster, expanded to
    patch blocks; a linear classifier separates the perturbations alone by class."""
    from sklearn.svm import LinearSVC

    gray = replace(tiny_digits, train_x=torch.full_like(tiny_digits.train_x, 0.5))
    poison = create_attack("separable", dataset="digits", preset="smoke", budget=1.0).run(gray, seed=0)
    labels, delta = gray.train_y[poison.indices], poison.delta
    assert len({tuple(d.flatten().tolist()) for d in delta}) == len(delta)  # sample-wise, not per class
    blocks = delta.unfold(2, 4, 4).unfold(3, 4, 4)  # patch 4 (smoke): constant over each 4 x 4 block
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))
    assert float(delta.abs().max()) <= poison.eps + 1e-6
    svm = LinearSVC(C=10.0, max_iter=20000).fit(delta.flatten(1).numpy(), labels.numpy())
    assert svm.score(delta.flatten(1).numpy(), labels.numpy()) == 1.0
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    assert (
        LinearSVC(C=10.0, max_iter=20000)
        .fit(delta.flatten(1).numpy(), shuffled.numpy())
        .score(delta.flatten(1).numpy(), shuffled.numpy())
        < 0.9
    )  # the separation is by class, not by having more dimensions than images


def test_autoregressive_noise_follows_its_filters(tiny_digits):
    g = torch.Generator().manual_seed(0)
    filters = ar_filters(2, 1, 3, g)
    assert float(filters[..., -1, -1].abs().max()) == 0 and torch.allclose(
        filters.abs().sum((-2, -1)), torch.ones(2, 1, dtype=torch.float64)
    )
    gray = replace(tiny_digits, train_x=torch.full_like(tiny_digits.train_x, 0.5))
    poison = create_attack("autoregressive", dataset="digits", preset="smoke").run(gray, seed=0)
    recorded = torch.tensor(poison.extra["filters"], dtype=torch.float64)
    labels = gray.train_y[poison.indices]
    for i in range(0, len(labels), 17):
        d = poison.delta[i, 0].double()
        a = recorded[int(labels[i]), 0]
        # every pixel past the first two rows and columns is its filter applied to its window
        for r in range(2, d.shape[0]):
            for c in range(2, d.shape[1]):
                assert float(d[r, c]) == pytest.approx(float((d[r - 2 : r + 1, c - 2 : c + 1] * a).sum()), abs=1e-5)
    start = torch.randn(3, 1, 6, 6, generator=g)
    noise = ar_noise(filters[0], start)
    assert noise.shape == (3, 1, 4, 4)


def test_backdoor_and_targeted_baselines_share_their_goal_with_the_sapa_attacks(tiny_digits):
    def goal(name):
        return create_attack(name, dataset="digits", preset="smoke", steps=1).run(tiny_digits, seed=3)

    gm = goal("gradient-matching")
    for name in ["poison-frogs", "bullseye-polytope", "metapoison"]:
        assert goal(name).threat == gm.threat  # same target, same adversarial class: paired by craft seed
    sa = goal("sleeper-agent")
    for name in ["hidden-trigger", "clean-label-backdoor"]:
        p = goal(name)
        assert (p.threat.source_class, p.threat.target_class, p.threat.trigger_seed) == (
            sa.threat.source_class,
            sa.threat.target_class,
            sa.threat.trigger_seed,
        )
        assert torch.equal(p.trigger, sa.trigger)
        assert (tiny_digits.train_y[p.indices] == p.threat.target_class).all()


def test_hidden_trigger_pairs_each_poison_with_its_own_closest_source():
    d = torch.tensor([[0.1, 0.2, 5.0], [0.05, 3.0, 4.0]])
    assert greedy_pairs(d).tolist() == [1, 0]  # (1, 0) is the closest pair, so poison 0 takes source 1
    with pytest.raises(ValueError):
        greedy_pairs(torch.zeros(3, 2))


def test_clean_label_backdoor_stamps_its_trigger_within_eps():
    x = torch.full((2, 1, 8, 8), 0.5)
    trigger = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    out = stamp(torch.zeros_like(x), x, trigger, 0.05, 0.1)
    assert torch.allclose(out[:, 0, -2:, -2:], torch.tensor([[0.05, -0.05], [-0.05, 0.05]]).expand(2, 2, 2))
    assert float(out[:, :, :-2].abs().max()) == 0
    with pytest.raises(ConfigError, match="amplitude"):
        create_attack("clean-label-backdoor", dataset="digits", preset="smoke", amplitude=0.5)
