from dataclasses import dataclass

import pytest
import torch

from sapabench.core.errors import ConfigError
from sapabench.victims.recipes import RECIPES
from sapabench.victims.train import train_victim

# The bar on digits with the default convnet and the dataset's preset protocol.
ACCURACY_BAR = {"sgd": 0.95, "adam": 0.95, "cutout": 0.95, "mixup": 0.95, "sam": 0.95, "adversarial": 0.85}


# adversarial (PGD inner loop) and sam (two passes per step) take 35-105 s on 2 cores: run with --run-slow.
_SLOW_RECIPES = {"adversarial", "sam"}


@pytest.mark.parametrize(
    "recipe", [pytest.param(r, marks=pytest.mark.slow) if r in _SLOW_RECIPES else r for r in sorted(ACCURACY_BAR)]
)
def test_default_victim_reaches_the_accuracy_bar_on_digits(digits, recipe):
    result = train_victim("convnet", recipe, digits, seed=0, device="cpu")
    assert result.clean_accuracy >= ACCURACY_BAR[recipe]
    assert result.recipe.train.epochs == digits.default_epochs == len(result.timing.epoch_s)
    assert result.timing.images_per_s > 0 and result.timing.device == "cpu"
    assert result.losses[-1] < result.losses[0]


def _weights(model):
    return [t.detach().clone() for t in model.state_dict().values()]


@pytest.mark.parametrize("recipe", ["sgd", "mixup", "sam", "adversarial", "cutout"])
def test_same_seed_same_result_on_cpu(tiny_digits, recipe):
    rec = RECIPES.create(recipe, epochs=2, batch_size=32)
    a = train_victim("convnet", rec, tiny_digits, seed=3, device="cpu")
    b = train_victim("convnet", rec, tiny_digits, seed=3, device="cpu")
    assert a.clean_accuracy == b.clean_accuracy and a.losses == b.losses
    assert all(torch.equal(x, y) for x, y in zip(_weights(a.model), _weights(b.model), strict=True))
    c = train_victim("convnet", rec, tiny_digits, seed=4, device="cpu")
    assert c.losses != a.losses


def test_training_leaves_the_callers_rng_alone(tiny_digits):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_victim("convnet", RECIPES.create("sgd", epochs=1), tiny_digits, seed=0, device="cpu")
    assert torch.equal(torch.rand(3), expected)


@dataclass
class _LabelFlip:
    indices: torch.Tensor
    delta: torch.Tensor
    labels: torch.Tensor


def test_poison_reaches_the_victim(digits):
    """Relabelling every training image (y -> y+1) must wreck test accuracy: the poison is used."""
    n = digits.num_train
    flip = _LabelFlip(torch.arange(n), torch.zeros_like(digits.train_x), (digits.train_y + 1) % 10)
    rec = RECIPES.create("sgd", epochs=6)
    clean = train_victim("convnet", rec, digits, seed=0, device="cpu")
    poisoned = train_victim("convnet", rec, digits, poison=flip, seed=0, device="cpu")
    assert clean.clean_accuracy > 0.9 and poisoned.clean_accuracy < 0.1


def test_progress_reports_every_epoch(tiny_digits):
    seen = []
    train_victim("convnet", RECIPES.create("sgd", epochs=3), tiny_digits, seed=0, device="cpu", progress=seen.append)
    assert [s.epoch for s in seen] == [1, 2, 3] and all(s.epochs == 3 and s.epoch_s > 0 for s in seen)
    assert seen[0].lr == pytest.approx(0.1) and seen[2].lr == pytest.approx(0.001)  # step schedule at 1/2, 3/4


@pytest.mark.parametrize("arch", ["resnet18", "vgg11", "mobilenetv2", "vit"])
def test_zoo_architectures_train_end_to_end(tiny_digits, arch):
    result = train_victim(arch, RECIPES.create("sgd", epochs=1, batch_size=50), tiny_digits, seed=0, device="cpu")
    assert 0.0 <= result.clean_accuracy <= 1.0 and len(result.timing.epoch_s) == 1


def test_bad_seed_and_device_are_refused(tiny_digits):
    with pytest.raises(ConfigError, match="seed"):
        train_victim("convnet", "sgd", tiny_digits, seed=-1)
    with pytest.raises(ConfigError, match="device"):
        train_victim("convnet", "sgd", tiny_digits, device="tpu")


@pytest.mark.gpu
def test_trains_on_cuda(tiny_digits):
    result = train_victim("convnet", RECIPES.create("sam", epochs=2), tiny_digits, seed=0, device="cuda")
    assert result.timing.device.startswith("cuda") and next(result.model.parameters()).is_cuda
