"""The SAPA step: v_hat has norm rho, points along g, the weights come back bit-identical,
and the gradient it yields differs from the plain one. (The public reference code fails the
first check: its perturbation is silently zero.)"""

import pytest
import torch
from torch import nn

from sapabench.attacks.sapa import mean_loss_terms, objective_grad, objective_gradient, trainable, worst_case_weights
from sapabench.core.memory import peak_saved_bytes
from sapabench.victims.archs import build_model


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


def test_set_objectives_hold_one_chunk_in_the_graph_and_match_the_whole_set_gradient(tiny_digits):
    """The untargeted / Sleeper Agent objective over a whole set is back-propagated one chunk
    at a time, so the memory it holds does not grow with the set; its gradient is the whole
    set's. Summing the chunk losses into one scalar first (what the code did before) holds
    every chunk's graph until the end."""
    torch.manual_seed(0)
    model = build_model("convnet", tiny_digits).eval()
    params = trainable(model)
    with torch.no_grad():
        before = [p.clone() for p in params]

    def sapa_step(n, summed=False):
        x, y = tiny_digits.train_x[:n], tiny_digits.train_y[:n]
        delta = torch.full_like(x, 0.01)
        terms = lambda: mean_loss_terms(model, x, y, chunk=16, delta=delta)  # noqa: E731
        objective = (lambda: sum(terms())) if summed else terms

        def step():
            with worst_case_weights(model, objective, 0.05) as rec:
                assert rec.v_norm == pytest.approx(0.05, rel=1e-5)

        return peak_saved_bytes(step)

    small, large = sapa_step(48), sapa_step(96)
    assert small == large > 0  # flat in the set size: one chunk's graph at a time
    assert sapa_step(96, summed=True) > 1.8 * sapa_step(48, summed=True)  # the old way grows
    x, y = tiny_digits.train_x[:100], tiny_digits.train_y[:100]
    delta = torch.rand_like(x) * 0.01
    chunked = objective_grad(lambda: mean_loss_terms(model, x, y, chunk=16, delta=delta), params)
    whole = torch.autograd.grad(nn.functional.cross_entropy(model(x + delta), y), params)
    assert torch.allclose(_flat(chunked), _flat(whole), rtol=1e-4, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, params, strict=True))
