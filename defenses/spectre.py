"""SPECTRE (Hayase, Kong, Somani and Oh, ICML 2021): spectral signatures made robust. Per class,
the defender model's penultimate features are reduced to their top ``dims`` principal directions,
whitened with a *robust* estimate of their mean and covariance (so the poisons cannot hide in the
estimate), and every image is scored by quantum entropy (QUE) scoring: with the whitened
features' covariance ``S``, ``Q = exp(alpha (S - I) / (||S||_2 - 1))`` and the score of ``x`` is
``x' Q x / tr(Q)``, which weighs the directions in which the class is most stretched beyond the
clean covariance. The ``1.5 * expected_fraction`` highest-scoring share of the class is removed.

What differs from the original: its robust estimator is an iterative filter tuned to the poison
fraction, and it tries several dimensions, keeping the one of highest QUE score; here the
estimate is the minimum covariance determinant (scikit-learn's ``MinCovDet``, support
``1 - 1.5 * expected_fraction`` of the class) at a fixed ``dims`` (16: the victim models of the
embedded scale have 32 to 512 features). alpha = 4 as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import expm
from sklearn.covariance import MinCovDet

from sapabench.core.checks import in_range, open_fraction, positive
from sapabench.defenses.base import DataDefense, DefenseContext, Filtered, register_defense
from sapabench.defenses.filters import defender_features, kept_indices


def que_scores(whitened: np.ndarray, alpha: float) -> np.ndarray:
    """Quantum entropy scores of whitened rows (Hayase et al., Algorithm 2)."""
    n, d = whitened.shape
    cov = whitened.T @ whitened / n
    top = float(np.linalg.eigvalsh(cov)[-1])
    if top <= 1.0 + 1e-9:  # not stretched beyond the clean covariance in any direction: all alike
        return np.einsum("ij,ij->i", whitened, whitened) / d
    q = expm(alpha * (cov - np.eye(d)) / (top - 1.0))
    return np.einsum("ij,jk,ik->i", whitened, q, whitened) / float(np.trace(q))


def robust_whiten(x: np.ndarray, support: float, seed: int) -> np.ndarray:
    """``x`` centred on a robust mean and whitened by the robust covariance (MinCovDet)."""
    mcd = MinCovDet(support_fraction=support, random_state=seed).fit(x)
    vals, vecs = np.linalg.eigh(mcd.covariance_)
    inv_sqrt = vecs @ np.diag(1.0 / np.sqrt(np.maximum(vals, 1e-12 * max(1.0, vals[-1])))) @ vecs.T
    return (x - mcd.location_) @ inv_sqrt


@register_defense(
    "spectre", description="data filter: robust covariance + quantum entropy scores of features (Hayase et al. 2021)"
)
@dataclass
class Spectre(DataDefense):
    """SPECTRE (see the module docstring for the method and what differs).

    Args:
        expected_fraction: the poison fraction the defender guards against.
        dims: principal directions kept before the robust estimate.
        alpha: the QUE scores' exponent (0 is spectral-signature-like averaging, large values
            the top direction only).
    """

    expected_fraction: float = 0.1
    dims: int = 16
    alpha: float = 4.0

    def __post_init__(self) -> None:
        open_fraction("spectre expected_fraction", self.expected_fraction)
        positive("spectre dims", self.dims, integer=True, maximum=4096)
        in_range("spectre alpha", self.alpha, 0.0, 100.0)

    def filter(self, ctx: DefenseContext) -> Filtered:
        defender, y = defender_features(ctx), ctx.y.cpu().numpy()
        feats = defender.features
        share = min(0.5, 1.5 * self.expected_fraction)
        remove: list[int] = []
        for c in range(ctx.num_classes):
            idx = np.flatnonzero(y == c)
            k = int(np.floor(share * len(idx)))
            dims = min(self.dims, len(idx) // 4)
            if k == 0 or dims < 1:
                continue
            centred = feats[idx] - feats[idx].mean(axis=0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            reduced = centred @ vt[:dims].T
            scores = que_scores(robust_whiten(reduced, 1.0 - share, ctx.seed), self.alpha)
            remove += idx[np.argsort(-scores, kind="stable")[:k]].tolist()
        return Filtered(kept_indices(len(y), remove), defender_s=defender.train_s)
