"""DP-SGD (Abadi et al., CCS 2016) as a defense: per-example clipping, Gaussian noise, and the
privacy it spends, (epsilon, delta), from Opacus's RDP accountant of the sampled Gaussian
mechanism (Mironov et al. 2019).

Each example's gradient is clipped to ``clip`` and N(0, (noise_multiplier * clip)^2) noise is
added to their sum (:mod:`sapabench.victims.private`). What differs from the original, and from
Opacus: the victim's BatchNorm is GroupNorm (as Opacus requires); batches are the trainer's
shuffled batches of fixed size, not Poisson samples, while the accountant assumes Poisson
sampling at rate batch / N (the usual approximation, also in Abadi et al.'s code); the
accountant counts the recipe's steps (epochs x batches per epoch). Recipes that mix examples
(MixUp), perturb the weights (SAM) or re-draw them (adversarial training) are refused.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

from sapabench.core.checks import in_range, positive
from sapabench.core.errors import ConfigError
from sapabench.defenses.base import TrainingDefense, register_defense
from sapabench.victims.augment import batch_sizes
from sapabench.victims.private import PerExampleClipping
from sapabench.victims.recipes import Recipe
from sapabench.victims.train import GradientTransform


def privacy_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` sampled Gaussian steps at ``sample_rate`` for ``delta``, by Opacus's
    RDP accountant (its orders and conversion)."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    return float(accountant.get_epsilon(delta))


@register_defense(
    "dp-sgd",
    description="training: DP-SGD, each example's gradient clipped to 1.0, noise multiplier 1.0, (epsilon, delta=1e-5) "
    "by Opacus's RDP accountant (Abadi et al. 2016)",
)
@dataclass
class DPSGD(TrainingDefense):
    """DP-SGD (Abadi et al. 2016): per-example clipping to ``clip``, Gaussian noise of standard
    deviation ``noise_multiplier * clip`` on the summed gradients; reports the privacy spent at
    ``delta`` (see the module docstring for what differs from the original). With
    ``target_epsilon`` the noise multiplier is the one that spends that epsilon over the victim's
    steps (it replaces ``noise_multiplier``)."""

    clip: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5
    target_epsilon: float | None = None

    def __post_init__(self) -> None:
        positive("dp-sgd clip", self.clip)
        if not isinstance(self.noise_multiplier, (int, float)) or not self.noise_multiplier > 0:
            raise ConfigError(
                f"invalid dp-sgd noise_multiplier={self.noise_multiplier!r}: must be > 0 (without noise nothing is "
                "private; gradient-shaping clips without accounting)"
            )
        in_range("dp-sgd noise_multiplier", self.noise_multiplier, 0.0, 1000.0)
        if not isinstance(self.delta, (int, float)) or not 0 < self.delta < 1:
            raise ConfigError(f"invalid dp-sgd delta={self.delta!r}: must be in (0, 1), e.g. 1e-5")
        if self.target_epsilon is not None:
            in_range("dp-sgd target_epsilon", self.target_epsilon, 1e-3, MAX_TARGET_EPSILON)

    def for_training(self, recipe: Recipe, num_train: int) -> DPSGD:
        """With ``target_epsilon``: this defense at the noise multiplier that spends it over the
        recipe's steps (Opacus's search with its RDP accountant); refused in one line when no
        noise multiplier can (the target too small for the steps and delta)."""
        if self.target_epsilon is None:
            return self
        rate, steps = _sampling(recipe, num_train)
        from opacus.accountants.utils import get_noise_multiplier

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "optimal order is the largest alpha": a looser bound, still valid
                sigma = get_noise_multiplier(
                    target_epsilon=self.target_epsilon, target_delta=self.delta, sample_rate=rate, steps=steps
                )
        except ValueError as err:
            raise ConfigError(
                f"dp-sgd cannot reach target_epsilon={self.target_epsilon:g} at delta {self.delta:g} over {steps} steps "
                f"at sampling rate {rate:.3g} ({err}): set a larger target_epsilon or train fewer steps"
            ) from None
        if not sigma <= 1000.0:
            raise ConfigError(
                f"dp-sgd would need noise multiplier {sigma:.3g} for target_epsilon={self.target_epsilon:g}: at most 1000 "
                "(set a larger target_epsilon)"
            )
        return replace(self, noise_multiplier=float(sigma), target_epsilon=None)

    def gradient_transform(self) -> GradientTransform:
        return PerExampleClipping(self.clip, self.noise_multiplier)

    def stats(self, recipe: Recipe, num_train: int) -> dict[str, float]:
        rate, steps = _sampling(recipe, num_train)
        epsilon = privacy_spent(self.noise_multiplier, rate, steps, self.delta)
        if not math.isfinite(epsilon):
            raise ConfigError(f"dp-sgd spends no finite epsilon at noise_multiplier {self.noise_multiplier}")
        return {"epsilon": epsilon, "delta": self.delta}


MAX_TARGET_EPSILON = 1e4
"""The largest privacy target ``target_epsilon`` may name (past a few hundred it means nothing)."""


def _sampling(recipe: Recipe, num_train: int) -> tuple[float, int]:
    """The accountant's sampling rate (batch / N) and steps (epochs x batches per epoch)."""
    epochs, batch = recipe.train.epochs, recipe.train.batch_size
    if not epochs or not batch:
        raise ConfigError("dp-sgd accounts the recipe's epochs and batch size, which must be resolved")
    return min(1.0, batch / num_train), epochs * len(batch_sizes(num_train, batch))
