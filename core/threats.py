"""Threat models and the metric each is measured by.

- ``targeted``: one test image (``target_index``) classified as ``adversarial_class``; metric
  ``target_success`` (1 or 0 per victim), higher = stronger attack.
- ``backdoor``: test images of ``source_class`` carrying the trigger classified as
  ``target_class``; metric ``attack_success_rate``, higher = stronger.
- ``untargeted``: low clean test accuracy; metric ``clean_accuracy``, lower = stronger.

Clean-data results have no threat: their threat is ``NO_THREAT`` and their metric the clean
accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from sapabench.core.errors import ConfigError

THREATS = ("targeted", "backdoor", "untargeted")
NO_THREAT = "none"
CLEAN_ACCURACY = "clean_accuracy"
# threat -> (metric name, whether a larger value means a stronger attack)
METRICS = {
    "targeted": ("target_success", True),
    "backdoor": ("attack_success_rate", True),
    "untargeted": (CLEAN_ACCURACY, False),
}
TRIGGER_PLACEMENTS = ("random", "corner", "four-corners")
FIXED_PLACEMENTS = ("corner", "four-corners")
"""Placements that put the trigger at the same place in every image (no random draw)."""
ADVERSARIAL_MARGIN = "adversarial_margin"
"""The continuous targeted measure: the victim's logit of the adversarial class on the target
minus its largest other logit (> 0 exactly when the attack succeeds)."""
CLEAN_PREFIX = "clean_"
"""Prefix of a measure's paired reference: the same-seed clean victim's value."""


def metric_name(threat: str) -> str:
    """The metric of ``threat`` (``clean_accuracy`` for clean data)."""
    return METRICS[threat][0] if threat in METRICS else CLEAN_ACCURACY


def higher_is_stronger(threat: str) -> bool:
    """Whether a larger metric means a stronger attack (False for accuracies)."""
    return METRICS[threat][1] if threat in METRICS else False


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker wants.

    - ``targeted``: the test image ``target_index`` classified as ``adversarial_class``.
    - ``backdoor``: test images of ``source_class`` carrying the trigger classified as
      ``target_class``; the trigger is a patch stored with the tensors, placed by
      ``trigger_placement`` (``random``: uniform position per image, seeded by
      ``trigger_seed``; ``corner``: bottom-right).
    - ``untargeted``: low clean test accuracy.
    """

    kind: str
    target_index: int | None = None
    adversarial_class: int | None = None
    source_class: int | None = None
    target_class: int | None = None
    trigger_placement: str | None = None
    trigger_seed: int | None = None
    stamped: bool = False
    """Backdoor poisons only: the trigger is pasted at full contrast, at ``trigger_placement``,
    onto every poisoned training image when the poison is applied (Turner et al.'s clean-label
    backdoor: outside the eps ball, which bounds the adversarial perturbation ``delta``)."""

    def __post_init__(self) -> None:
        if self.kind not in THREATS:
            raise ConfigError(f"unknown threat model {self.kind!r}; choose one of {', '.join(THREATS)}")
        need = {
            "targeted": ("target_index", "adversarial_class"),
            "backdoor": ("source_class", "target_class", "trigger_placement", "trigger_seed"),
            "untargeted": (),
        }[self.kind]
        for name in need:
            if not isinstance(getattr(self, name), int) and not (name == "trigger_placement" and getattr(self, name)):
                raise ConfigError(f"{self.kind} threat model needs {name}")
        if self.trigger_placement not in (None, *TRIGGER_PLACEMENTS):
            raise ConfigError(
                f"trigger_placement must be one of {', '.join(TRIGGER_PLACEMENTS)}, got {self.trigger_placement!r}"
            )
        if self.stamped is not False and (
            self.stamped is not True or self.kind != "backdoor" or self.trigger_placement not in FIXED_PLACEMENTS
        ):
            raise ConfigError(
                f"a stamped trigger needs a backdoor threat placed at {' or '.join(FIXED_PLACEMENTS)}, "
                f"got kind {self.kind!r}, placement {self.trigger_placement!r}, stamped {self.stamped!r}"
            )

    @property
    def metric(self) -> str:
        return metric_name(self.kind)

    @property
    def higher_is_stronger(self) -> bool:
        return higher_is_stronger(self.kind)


def paste_fixed(x: Tensor, trigger: Tensor, placement: str) -> Tensor:
    """``x`` (N, C, H, W) with ``trigger`` (C, h, w) pasted in the bottom-right corner
    (``corner``) or in all four corners (``four-corners``, Turner et al.'s variant that survives
    flips and crops); a copy, ``x`` is not modified."""
    if placement not in FIXED_PLACEMENTS:
        raise ValueError(f"unknown fixed trigger placement {placement!r}")
    _, _, h, w = x.shape
    ph, pw = trigger.shape[-2:]
    out = x.clone()
    patch = trigger.to(x.device, x.dtype)
    spots = [(h - ph, w - pw)] if placement == "corner" else [(0, 0), (0, w - pw), (h - ph, 0), (h - ph, w - pw)]
    for r, c in spots:
        out[:, :, r : r + ph, c : c + pw] = patch
    return out
