"""Attacks move their metric the right way on digits with the embedded preset (default victim).

error-min runs in the default test run (about 15 s); the rest are ``slow``. Targeted gradient
matching does not succeed at embedded scale (README, "Embedded-scale calibration"), so its test
is an expected failure that will report when that changes.
"""

import pytest

from sapabench.attacks import create_attack
from sapabench.attacks.metrics import measure
from sapabench.victims.recipes import RECIPES
from sapabench.victims.train import train_victim


def _poisoned_and_clean(digits, name, seed=0):
    poison = create_attack(name, dataset="digits").run(digits, seed=seed)
    recipe = RECIPES.create("sgd")
    poisoned = measure(train_victim("convnet", recipe, digits, poison=poison, seed=100).model, poison, digits)
    clean = measure(train_victim("convnet", recipe, digits, seed=100).model, poison, digits)
    return poisoned, clean


def test_error_min_makes_digits_unlearnable(digits):
    poisoned, clean = _poisoned_and_clean(digits, "error-min")
    assert clean.value > 0.95 and poisoned.value < 0.85


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sapa-error-min", "error-max", "sapa-error-max"])
def test_untargeted_attacks_lower_clean_accuracy(digits, name):
    poisoned, clean = _poisoned_and_clean(digits, name)
    assert poisoned.value < clean.value - 0.1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sleeper-agent", "sapa-sleeper-agent"])
def test_backdoor_raises_attack_success(digits, name):
    poisoned, clean = _poisoned_and_clean(digits, name, seed=1)
    assert poisoned.value > clean.value + 0.1


@pytest.mark.slow
@pytest.mark.xfail(reason="targeted gradient matching does not succeed at embedded scale (measured 0/5)", strict=True)
@pytest.mark.parametrize("name", ["gradient-matching", "sapa-gradient-matching"])
def test_targeted_success(digits, name):
    poisoned, clean = _poisoned_and_clean(digits, name)
    assert poisoned.value > clean.value
