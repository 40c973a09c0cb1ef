"""The SAPA step: v_hat has norm rho, points along g, the weights come back bit-identical,
and the gradient it yields differs from the plain one. (The public reference code fails the
first check: its perturbation is silently zero.)"""

import pytest
import torch
from torch import nn

from attacks.sapa import objective_gradient, trainable, worst_case_weights
from victims.archs import build_model


@pytest.fixture()
def setup(tiny_digits):
    torch.manual_seed(0)
    model = build_model("convnet", tiny_digits).eval()
    x, y = tiny_digits.test_x[:1], torch.tensor([3])

    def objective():
        return nn.functional.cross_entropy(model(x), y)

    return model, objective


def _flat(ts):
    return torch.cat([t.flatten() for t in ts if t is not None])


@pytest.mark.parametrize("rho", [0.01, 0.05, 0.5])
def test_v_hat_has_norm_rho_and_points_along_g(setup, rho):
    model, objective = setup
    g = torch.autograd.grad(objective(), trainable(model))
    with worst_case_weights(model, objective, rho) as rec:
        v = _flat(rec.v_hat)
    assert float(v.norm()) == pytest.approx(rho, rel=1e-5) and rec.v_norm == pytest.approx(rho, rel=1e-5)
    assert float(v.norm()) > 0
    cos = torch.nn.functional.cosine_similarity(v, _flat(g), dim=0)
    assert float(cos) == pytest.approx(1.0, abs=1e-5)


def test_weights_are_moved_inside_and_bit_identical_after(setup):
    model, objective = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with worst_case_weights(model, objective, 0.05) as rec:
        inside = _flat([p.detach() for p in trainable(model)])
        moved = inside - _flat([before[k] for k, _ in model.named_parameters()])
        assert torch.allclose(moved, _flat(rec.v_hat), atol=1e-6)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_weights_are_restored_even_when_the_block_raises(setup):
    model, objective = setup
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError), worst_case_weights(model, objective, 0.05):
        raise RuntimeError("boom")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_sapa_gradient_is_the_gradient_at_the_perturbed_point_and_differs(setup):
    model, objective = setup
    plain, rec0 = objective_gradient(model, objective, None)
    sapa, rec = objective_gradient(model, objective, 0.05)
    assert rec0.v_norm == 0.0 and rec.v_norm == pytest.approx(0.05, rel=1e-5)
    assert not torch.allclose(_flat(plain), _flat(sapa))
    # recompute by hand: theta + rho g/||g||
    params = trainable(model)
    g = _flat(plain)
    with torch.no_grad():
        saved = [p.clone() for p in params]
        offset = 0
        for p in params:
            n = p.numel()
            p.add_(0.05 * g[offset : offset + n].view_as(p) / g.norm())
            offset += n
    expected = torch.autograd.grad(objective(), params)
    with torch.no_grad():
        for p, s in zip(params, saved, strict=True):
            p.copy_(s)
    assert torch.allclose(_flat(sapa), _flat(expected), atol=1e-5)


def test_baseline_path_leaves_weights_untouched(setup):
    model, objective = setup
    before = [p.detach().clone() for p in model.parameters()]
    with worst_case_weights(model, objective, None) as rec:
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert rec.v_hat == [] and rec.v_norm == 0.0
