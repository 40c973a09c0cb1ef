"""Poisoning attacks: the four baselines and their SAPA versions, and everything an attack
author needs, importable from here (``from attacks import ...``).

Registered attacks (``sapabench list attacks``)::

    gradient-matching   sapa-gradient-matching   targeted   (Witches' Brew)
    sleeper-agent       sapa-sleeper-agent       backdoor   (hidden trigger)
    error-min           sapa-error-min           untargeted (unlearnable examples)
    error-max           sapa-error-max           untargeted (adversarial poisoning)

Each pair is one class; the SAPA version differs only by :func:`worst_case_weights`.

To write an attack: subclass :class:`Attack` (set ``threat``, ``Config`` and ``presets``,
implement ``craft(ctx: CraftContext) -> Crafted``) and decorate it with
:func:`register_attack`. ``Config`` derives from :class:`AttackConfig` (eps, budget), or from
:class:`SurrogateConfig` (adds ``rho`` and the ``surrogate``) when the attack crafts against a
model; only those can have a SAPA twin. Helpers: :func:`pick_indices`, :func:`budget_count`,
:func:`project`, :func:`random_delta`, :func:`check_positive_ints`; the SAPA step
:func:`worst_case_weights` / :func:`objective_gradient`; errors :class:`ConfigError`.
"""

from attacks import error_max, error_min, gradient_matching, sleeper_agent  # noqa: F401  (registration)
from attacks.base import (
    ATTACKS,
    Attack,
    AttackConfig,
    CraftContext,
    Crafted,
    SurrogateConfig,
    budget_count,
    check_positive_ints,
    create_attack,
    pick_indices,
    project,
    random_delta,
    register_attack,
)
from attacks.metrics import Measurement, clean_reference, measure, test_logits
from attacks.sapa import objective_gradient, worst_case_weights
from attacks.surrogate import SurrogateSpec
from core.errors import ConfigError
from core.poison import PoisonSet
from core.threats import ThreatModel

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "ConfigError",
    "CraftContext",
    "Crafted",
    "Measurement",
    "PoisonSet",
    "SurrogateConfig",
    "SurrogateSpec",
    "ThreatModel",
    "budget_count",
    "check_positive_ints",
    "clean_reference",
    "create_attack",
    "measure",
    "objective_gradient",
    "pick_indices",
    "project",
    "random_delta",
    "register_attack",
    "test_logits",
    "worst_case_weights",
]
