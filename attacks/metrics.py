"""The metric of each threat model, measured on a victim re-trained on the poisoned data.

- targeted: success (1 or 0): the target test image is classified as the adversarial class;
  beside it the continuous *adversarial margin*, the victim's logit of the adversarial class
  minus its largest other logit on the target (positive exactly when the attack succeeds), and
  the same margin of the same-seed clean victim as its paired reference
  (:func:`clean_reference`).
- backdoor: attack success rate: the fraction of source-class test images carrying the trigger
  (placed by the threat model's rule and seed) classified as the target class.
- untargeted: the victim's clean test accuracy (lower = stronger attack).

Clean test accuracy is always reported beside the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sapabench.attacks.triggers import apply_trigger
from sapabench.core.datasets import ImageDataset
from sapabench.core.poison import PoisonSet
from sapabench.core.threats import ADVERSARIAL_MARGIN, CLEAN_PREFIX
from sapabench.victims.train import accuracy, predict


@dataclass(frozen=True)
class Measurement:
    """The threat model's metric, the clean accuracy, and diagnostics that are not the metric
    (for targeted attacks: the adversarial margin and the softmax probability of the
    adversarial class on the target, which show a partial effect where success stays 0)."""

    metric: str
    value: float
    clean_accuracy: float
    diagnostics: dict[str, float] = field(default_factory=dict)


def measure(
    model: nn.Module, poison: PoisonSet, dataset: ImageDataset, clean_accuracy: float | None = None
) -> Measurement:
    """The poison's threat-model metric and the clean test accuracy of ``model`` (pass
    ``clean_accuracy`` when it is already known, e.g. from :func:`sapabench.victims.train_victim`)."""
    device = next(model.parameters()).device
    ds = dataset.to(device)
    clean = accuracy(model, ds.test_x, ds.test_y) if clean_accuracy is None else clean_accuracy
    threat = poison.threat
    diagnostics: dict[str, float] = {}
    if threat.kind == "targeted":
        i = int(threat.target_index)  # type: ignore[arg-type]
        value = float(int(predict(model, ds.test_x[i : i + 1])[0]) == threat.adversarial_class)
        diagnostics = target_scores(test_logits(model, ds.test_x[i : i + 1])[0], int(threat.adversarial_class))  # type: ignore[arg-type]
    elif threat.kind == "backdoor":
        source = ds.test_x[ds.test_y == threat.source_class]
        generator = torch.Generator().manual_seed(int(threat.trigger_seed))  # type: ignore[arg-type]
        patched = apply_trigger(source, poison.trigger, threat.trigger_placement, generator)  # type: ignore[arg-type]
        value = float((predict(model, patched) == threat.target_class).float().mean())
    else:
        value = clean
    return Measurement(threat.metric, value, clean, diagnostics)


@torch.no_grad()
def test_logits(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """The logits of ``x`` in eval mode, in fp32 (the model's mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def target_scores(logits: Tensor, adversarial_class: int) -> dict[str, float]:
    """One target's adversarial margin (adversarial logit minus the largest other logit) and
    softmax probability of the adversarial class, from its logits."""
    others = torch.cat([logits[:adversarial_class], logits[adversarial_class + 1 :]])
    return {
        ADVERSARIAL_MARGIN: float(logits[adversarial_class] - others.max()),
        "adversarial_probability": float(logits.softmax(0)[adversarial_class]),
    }


def clean_reference(clean_test_logits: Tensor, poison: PoisonSet) -> dict[str, float]:
    """The paired reference of a targeted trial: the same scores of the clean victim trained
    with the trial's seed, protocol and starting weights (its test-set logits), keyed
    ``clean_<score>``."""
    threat = poison.threat
    scores = target_scores(clean_test_logits[int(threat.target_index)], int(threat.adversarial_class))  # type: ignore[arg-type]
    return {CLEAN_PREFIX + k: v for k, v in scores.items()}
