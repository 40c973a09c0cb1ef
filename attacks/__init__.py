"""Poisoning attacks: the four baselines and their SAPA versions, poison artifacts, metrics.

Registered attacks (``sapabench list attacks``)::

    gradient-matching   sapa-gradient-matching   targeted   (Witches' Brew)
    sleeper-agent       sapa-sleeper-agent       backdoor   (hidden trigger)
    error-min           sapa-error-min           untargeted (unlearnable examples)
    error-max           sapa-error-max           untargeted (adversarial poisoning)

Each pair is one class; the SAPA variant differs only by :func:`attacks.sapa.worst_case_weights`.
"""

from attacks import error_max, error_min, gradient_matching, sleeper_agent  # noqa: F401  (registration)
from attacks.artifact import PoisonSet, ThreatModel
from attacks.base import ATTACKS, Attack, AttackConfig, CraftContext, Crafted, create_attack
from attacks.evaluate import Evaluation, evaluate, mean_se
from attacks.metrics import measure
from attacks.sapa import objective_gradient, worst_case_weights

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "CraftContext",
    "Crafted",
    "Evaluation",
    "PoisonSet",
    "ThreatModel",
    "create_attack",
    "evaluate",
    "mean_se",
    "measure",
    "objective_gradient",
    "worst_case_weights",
]
