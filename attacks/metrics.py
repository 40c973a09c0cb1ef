"""The metric of each threat model, measured on a victim re-trained on the poisoned data.

- targeted: success (1 or 0): the target test image is classified as the adversarial class.
- backdoor: attack success rate: the fraction of source-class test images carrying the trigger
  (placed by the threat model's rule and seed) classified as the target class.
- untargeted: the victim's clean test accuracy (lower = stronger attack).

Clean test accuracy is always reported beside the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from attacks.triggers import apply_trigger
from core.datasets import ImageDataset
from core.poison import PoisonSet
from victims.train import accuracy, predict


@dataclass(frozen=True)
class Measurement:
    """The threat model's metric, the clean accuracy, and diagnostics that are not the metric
    (for targeted attacks: the victim's softmax probability of the adversarial class on the
    target, which shows a partial effect where success stays 0)."""

    metric: str
    value: float
    clean_accuracy: float
    diagnostics: dict[str, float] = field(default_factory=dict)


def measure(
    model: nn.Module, poison: PoisonSet, dataset: ImageDataset, clean_accuracy: float | None = None
) -> Measurement:
    """The poison's threat-model metric and the clean test accuracy of ``model`` (pass
    ``clean_accuracy`` when it is already known, e.g. from :func:`victims.train_victim`)."""
    device = next(model.parameters()).device
    ds = dataset.to(device)
    clean = accuracy(model, ds.test_x, ds.test_y) if clean_accuracy is None else clean_accuracy
    threat = poison.threat
    diagnostics: dict[str, float] = {}
    if threat.kind == "targeted":
        i = int(threat.target_index)  # type: ignore[arg-type]
        value = float(int(predict(model, ds.test_x[i : i + 1])[0]) == threat.adversarial_class)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            prob = model(ds.test_x[i : i + 1]).softmax(1)[0, int(threat.adversarial_class)]  # type: ignore[arg-type]
        model.train(was_training)
        diagnostics["adversarial_probability"] = float(prob)
    elif threat.kind == "backdoor":
        source = ds.test_x[ds.test_y == threat.source_class]
        generator = torch.Generator().manual_seed(int(threat.trigger_seed))  # type: ignore[arg-type]
        patched = apply_trigger(source, poison.trigger, threat.trigger_placement, generator)  # type: ignore[arg-type]
        value = float((predict(model, patched) == threat.target_class).float().mean())
    else:
        value = clean
    return Measurement(threat.metric, value, clean, diagnostics)
