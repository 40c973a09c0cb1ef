"""Poisoning attacks: the four attacks SAPA augments and their SAPA versions, the other
baselines of the paper's Tables 1-3, and everything an attack author needs, importable from
here (``from sapabench.attacks import ...``).

Registered attacks (``sapabench list attacks``)::

    gradient-matching   sapa-gradient-matching   targeted   (Witches' Brew)
    sleeper-agent       sapa-sleeper-agent       backdoor   (hidden trigger)
    error-min           sapa-error-min           untargeted (unlearnable examples)
    error-max           sapa-error-max           untargeted (adversarial poisoning)
    poison-frogs, bullseye-polytope, metapoison  targeted   (Table 1 baselines)
    hidden-trigger, clean-label-backdoor         backdoor   (Table 2 baselines)
    separable, autoregressive                    untargeted (Table 3 baselines, no surrogate)

Each SAPA pair is one class; the SAPA version differs only by :func:`worst_case_weights`.
Attacks of one threat model draw their goal from the craft seed the same way
(:mod:`sapabench.attacks._draws`), so results of the same craft seed are paired across attacks.

To write an attack: subclass :class:`Attack` (set ``threat``, ``Config`` and ``presets``,
implement ``craft(ctx: CraftContext) -> Crafted``) and decorate it with
:func:`register_attack`. ``Config`` derives from :class:`AttackConfig` (eps, budget), or from
:class:`SurrogateConfig` (adds ``rho`` and the ``surrogate``) when the attack crafts against a
model; only those can have a SAPA twin (:class:`ModelConfig` gives the ``surrogate`` alone, for
model-based baselines). Helpers: :func:`pick_indices`, :func:`budget_count`,
:func:`project`, :func:`random_delta`, :func:`check_positive_ints`; the SAPA step
:func:`worst_case_weights` / :func:`objective_gradient`; errors :class:`ConfigError`.
"""

from sapabench.attacks import (  # noqa: F401  (registration)
    autoregressive,
    bullseye_polytope,
    clean_label_backdoor,
    error_max,
    error_min,
    gradient_matching,
    hidden_trigger,
    metapoison,
    poison_frogs,
    separable,
    sleeper_agent,
)
from sapabench.attacks.base import (
    ATTACKS,
    SURROGATES_S,
    Attack,
    AttackConfig,
    CraftContext,
    Crafted,
    ModelConfig,
    SurrogateConfig,
    budget_count,
    check_positive_ints,
    crafting_numerics,
    create_attack,
    pick_indices,
    project,
    random_delta,
    register_attack,
)
from sapabench.attacks.metrics import Measurement, clean_reference, measure, test_logits
from sapabench.attacks.sapa import objective_gradient, worst_case_weights
from sapabench.attacks.surrogate import SurrogateSpec
from sapabench.core.errors import ConfigError
from sapabench.core.poison import PoisonSet
from sapabench.core.threats import ThreatModel

__all__ = [
    "ATTACKS",
    "SURROGATES_S",
    "Attack",
    "AttackConfig",
    "ConfigError",
    "CraftContext",
    "Crafted",
    "Measurement",
    "ModelConfig",
    "PoisonSet",
    "SurrogateConfig",
    "SurrogateSpec",
    "ThreatModel",
    "budget_count",
    "check_positive_ints",
    "clean_reference",
    "crafting_numerics",
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
