"""Defenses against data poisoning: data-level filters and purification, training-level defenses.

Registered (``sapabench list defenses``): spectral-signatures, activation-clustering, deep-knn,
jpeg, grayscale (data-level); dp-sgd, adversarial, mixup, cutout, sam (training-level).
"""

from defenses import filters, purification, training  # noqa: F401  (registration)
from defenses.base import DEFENSES, DataDefense, Defense, DefenseContext, Filtered, TrainingDefense

__all__ = ["DEFENSES", "DataDefense", "Defense", "DefenseContext", "Filtered", "TrainingDefense"]
