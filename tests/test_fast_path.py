"""The victims' fast path on the CPU (CI has no GPU; tests/test_gpu.py checks the CUDA side):
device-side augmentation draws and their distributions, the tensor-only optimisers against
torch.optim, SAM's step, packed training equal to training alone, and the captured step's
fallback and refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sapabench.core.errors import ConfigError
from sapabench.core.sharpness import perturbed_weights, worst_case_direction
from sapabench.victims.augment import (
    CX,
    CY,
    DX,
    DY,
    FLIP,
    IDX,
    PARTNER,
    Augmentation,
    augment_batch,
    batch_sizes,
    draw_epoch,
    mix_batch,
)
from sapabench.victims.optim import AdamUpdate, SGDUpdate
from sapabench.victims.recipes import RECIPES
from sapabench.victims.train import Trainer, VictimSpec, resolve_step, train_packed, train_victim

CPU = torch.device("cpu")
CIFAR_LIKE = Augmentation.of(32, crop=True, flip=True, cutout=None, cutout_on=True, mixup=True)


def _draws(seed: int, n: int = 20000, batch: int = 128, aug: Augmentation = CIFAR_LIKE):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return draw_epoch(order, batch, aug, torch.Generator().manual_seed(seed), CPU)


def test_augmentation_of_a_recipe_follows_the_papers_sizes():
    assert Augmentation(32, crop_pad=4, flip=True, cutout=16, mixup=True) == CIFAR_LIKE
    assert Augmentation.of(16, crop=True, flip=False, cutout=5, cutout_on=True, mixup=False).cutout == 5
    none = Augmentation.of(16, crop=False, flip=True, cutout=None, cutout_on=False, mixup=False)
    assert none.crop_pad is None and not none.flip and none.cutout is None


def test_epoch_draws_have_the_intended_distributions():
    d = _draws(0)
    n = len(d.ints)
    for col in (DY, DX):  # crop offsets uniform over 0..2 * pad (9 values at 32x32)
        counts = torch.bincount(d.ints[:, col], minlength=9).float()
        assert len(counts) == 9 and float((counts / n - 1 / 9).abs().max()) < 0.01
    assert abs(float(d.ints[:, FLIP].float().mean()) - 0.5) < 0.015
    for col in (CY, CX):  # CutOut's 16 px square placed anywhere fully inside: corners 0..16
        assert int(d.ints[:, col].min()) == 0 and int(d.ints[:, col].max()) == 16
    assert float(d.lam.min()) >= 0 and float(d.lam.max()) <= 1 and abs(float(d.lam.mean()) - 0.5) < 0.01
    start = 0
    for size in batch_sizes(n, 128):  # MixUp partners: a permutation of each batch
        partners = d.ints[start : start + size, PARTNER]
        assert sorted(partners.tolist()) == list(range(size))
        start += size
    assert sorted(d.ints[:, IDX].tolist()) == list(range(n))


def test_epoch_draws_are_seeded():
    a, b, c = _draws(0), _draws(0), _draws(1)
    assert torch.equal(a.ints, b.ints) and torch.equal(a.lam, b.lam)
    assert not torch.equal(a.ints, c.ints)


def test_no_flip_where_labels_depend_on_it_and_the_remainder_of_one_is_dropped():
    aug = Augmentation.of(16, crop=True, flip=False, cutout=None, cutout_on=False, mixup=False)
    d = _draws(0, n=129, aug=aug)
    assert len(d.ints) == 128 and int(d.ints[:, FLIP].sum()) == 0
    assert batch_sizes(129, 128) == [128] and batch_sizes(130, 128) == [128, 2] and batch_sizes(1, 64) == [1]


def test_crop_and_flip_match_padding_and_slicing_each_image():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 32, 32)
    d = _draws(3, n=64, batch=64)
    out = augment_batch(x[d.ints[:, IDX]], d.ints, Augmentation(32, crop_pad=4, flip=True))
    for i in range(64):
        img = nn.functional.pad(x[int(d.ints[i, IDX])], (4, 4, 4, 4))
        dy, dx = int(d.ints[i, DY]), int(d.ints[i, DX])
        ref = img[:, dy : dy + 32, dx : dx + 32]
        if d.ints[i, FLIP]:  # the crop, mirrored (as likely as mirroring first: offsets are symmetric)
            ref = ref.flip(2)
        assert torch.equal(out[i], ref), i


def test_cutout_zeroes_one_square_of_half_the_side_inside_the_image():
    x = torch.ones(500, 1, 16, 16)
    aug = Augmentation.of(16, crop=False, flip=False, cutout=None, cutout_on=True, mixup=False)
    d = _draws(0, n=500, batch=500, aug=aug)
    out = augment_batch(x, d.ints, aug)
    assert (out == 0).sum(dim=(1, 2, 3)).tolist() == [64] * 500  # 8x8, fully inside
    for i in range(0, 500, 50):
        cy, cx = int(d.ints[i, CY]), int(d.ints[i, CX])
        assert int(out[i, 0, cy : cy + 8, cx : cx + 8].sum()) == 0


def test_mixup_mixes_images_and_labels_consistently():
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 1, 2, 2).contiguous()
    y = torch.arange(6)
    d = _draws(0, n=6, batch=6)
    mixed, y_a, y_b, lam = mix_batch(x, y, d.ints, d.lam)
    assert torch.equal(y_a, y) and torch.equal(y_b, y[d.ints[:, PARTNER]])
    assert torch.allclose(mixed[:, 0, 0, 0], (1 - lam) * y_a.float() + lam * y_b.float())


@pytest.mark.parametrize("momentum, weight_decay", [(0.9, 5e-4), (0.0, 0.0), (0.9, 0.0)])
def test_sgd_update_is_torch_sgd(momentum, weight_decay):
    torch.manual_seed(0)
    ours, ref = [torch.randn(5, 3), torch.randn(3)], None
    ref = [p.clone().requires_grad_() for p in ours]
    opt = torch.optim.SGD(ref, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    update = SGDUpdate(ours, momentum, weight_decay)
    for step in range(5):
        grads = [torch.randn_like(p) for p in ours]
        for p, g in zip(ref, grads, strict=True):
            p.grad = g.clone()
        for group in opt.param_groups:
            group["lr"] = 0.1 / (step + 1)
        opt.step()
        update(grads, torch.tensor(0.1 / (step + 1)))
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b.detach(), atol=1e-6)


def test_adam_update_is_torch_adam():
    torch.manual_seed(0)
    ours = [torch.randn(5, 3), torch.randn(3)]
    ref = [p.clone().requires_grad_() for p in ours]
    opt = torch.optim.Adam(ref, lr=1e-3, weight_decay=5e-4)
    update = AdamUpdate(ours, 5e-4)
    for _ in range(10):
        grads = [torch.randn_like(p) for p in ours]
        for p, g in zip(ref, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        update(grads, torch.tensor(1e-3))
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b.detach(), atol=1e-6)


def test_sam_step_takes_the_gradient_at_the_perturbed_point(tiny_digits):
    """One full-batch step of the sam recipe (no momentum, decay or augmentation) moves the
    weights by -lr times the gradient taken at w + rho g/||g||, from w."""
    recipe = RECIPES.create("sam", epochs=1, batch_size=200, momentum=0.0, weight_decay=0.0, augment=False)
    torch.manual_seed(0)
    trainer = Trainer("mlp", recipe, tiny_digits, None, 0, CPU)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    x, y = tiny_digits.train_x, tiny_digits.train_y

    def loss() -> torch.Tensor:
        return nn.functional.cross_entropy(trainer.model(x), y)

    grads = torch.autograd.grad(loss(), params)
    with perturbed_weights(params, worst_case_direction(grads, 0.05)):
        sharp = torch.autograd.grad(loss(), params)
    expected = [p.detach() - recipe.train.lr * g for p, g in zip(params, sharp, strict=True)]
    plain = [p.detach() - recipe.train.lr * g for p, g in zip(params, grads, strict=True)]
    trainer.run_epoch()
    assert all(torch.allclose(p, e, atol=1e-6) for p, e in zip(params, expected, strict=True))
    assert any(not torch.allclose(p, q, atol=1e-6) for p, q in zip(params, plain, strict=True))


@pytest.mark.parametrize("recipe", ["sgd", "mixup", "adversarial"])
def test_packed_victims_equal_victims_trained_alone(tiny_digits, recipe):
    rec = RECIPES.create(recipe, epochs=2, batch_size=64)
    specs = [VictimSpec("convnet", rec, tiny_digits, seed=s) for s in (0, 1, 2)]
    packed = train_packed(specs, device="cpu")
    for spec, p in zip(specs, packed, strict=True):
        alone = train_victim("convnet", rec, tiny_digits, seed=spec.seed, device="cpu")
        assert p.losses == alone.losses and p.clean_accuracy == alone.clean_accuracy
        assert p.timing.packed == 3 and alone.timing.packed == 1
        for a, b in zip(p.model.state_dict().values(), alone.model.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert len({p.losses for p in packed}) == 3  # three seeds, three victims


def test_victims_with_a_gradient_transform_are_not_packed(tiny_digits):
    from sapabench.defenses.training import GradientShaping

    dp = GradientShaping().gradient_transform()
    specs = [VictimSpec("convnet", "sgd", tiny_digits, seed=s, grad_transform=dp) for s in (0, 1)]
    with pytest.raises(ConfigError, match="train alone"):
        train_packed(specs, device="cpu")


def test_graph_steps_need_cuda_and_auto_is_eager_on_the_cpu():
    assert resolve_step("auto", CPU) == "eager" and resolve_step("eager", CPU) == "eager"
    with pytest.raises(ConfigError, match="--train-step"):
        resolve_step("graph", CPU)
    with pytest.raises(ConfigError, match="invalid train step 'fast'"):
        resolve_step("fast", CPU)


def test_a_step_that_cannot_be_captured_falls_back_to_eager(tiny_digits, monkeypatch):
    """Where capture fails (a gradient transform that reads a value on the host, say), the
    trainer says why and trains eagerly, with the same numbers as an eager trainer."""
    import sapabench.victims.train as train_module

    class Uncapturable:
        captured = False

        def __init__(self, *args, **kwargs) -> None:
            pass

        def __call__(self, *inputs):
            raise RuntimeError("operation not permitted when stream is capturing")

    rec = RECIPES.create("sgd", epochs=2, batch_size=64)
    torch.manual_seed(0)
    eager = Trainer("convnet", rec, tiny_digits, None, 0, CPU)
    torch.manual_seed(0)
    fallback = Trainer("convnet", rec, tiny_digits, None, 0, CPU)
    monkeypatch.setattr(train_module, "CapturedStep", Uncapturable)
    fallback.step_mode = "graph"  # as on CUDA
    losses = [(eager.run_epoch()[0].loss, fallback.run_epoch()[0].loss) for _ in range(2)]
    assert fallback.step_mode == "eager" and "stream is capturing" in (fallback.fallback or "")
    assert all(a == b for a, b in losses)


def test_a_pack_that_runs_out_of_gpu_memory_is_split_in_halves(monkeypatch):
    """benchmark.trial trains a pack that does not fit as two halves, down to single victims;
    a victim that does not fit alone fails with the out-of-memory error as its own."""
    from types import SimpleNamespace

    import sapabench.benchmark.trial as trial_module

    tried = []

    def train_packed(specs, **kwargs):
        tried.append(len(specs))
        if len(specs) > 2 or "big" in specs:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return [f"trained {s}" for s in specs]

    monkeypatch.setattr(trial_module, "train_packed", train_packed)

    def victim(s):
        return SimpleNamespace(spec=s, device=CPU, trial=SimpleNamespace(train_step="auto"), repair=None)

    group = [victim(s) for s in "abcde"]
    out = trial_module._train_pack(group)
    # each trained victim comes with what a model-level defense reported in training (none here)
    assert tried == [5, 2, 3, 1, 2] and [out[id(p)] for p in group] == [(f"trained {s}", {}) for s in "abcde"]
    big = [victim(s) for s in ("big", "x")]
    out = trial_module._train_pack(big)
    assert isinstance(out[id(big[0])], torch.cuda.OutOfMemoryError) and out[id(big[1])] == ("trained x", {})
