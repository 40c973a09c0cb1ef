"""Data-level filters on learned features: spectral signatures, activation clustering, deep k-NN.

Each trains a model the way the victim will be trained (the defender's own model, on the
training set as given, poisons included), takes the penultimate-layer features of every
training image, and removes the images it flags. scikit-learn does the PCA, clustering and
neighbour search.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from torch import Tensor, nn

from sapabench.core.atomic import replacing
from sapabench.core.checks import open_fraction, positive
from sapabench.core.datasets import ImageDataset
from sapabench.core.errors import ConfigError
from sapabench.defenses.base import DataDefense, DefenseContext, Filtered, register_defense
from sapabench.victims.pretrained import cache_dir
from sapabench.victims.train import train_victim


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last linear layer, whose inputs are its penultimate features."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ConfigError("the defense reads the inputs of the victim's last linear layer, which it lacks")
    return layers[-1]


def penultimate_features(model: nn.Module, x: Tensor, batch_size: int = 512) -> np.ndarray:
    """Inputs of the model's last linear layer (its penultimate features) for ``x``."""
    last = last_linear(model)
    captured: list[Tensor] = []
    hook = last.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach().flatten(1).cpu()))
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i : i + batch_size])
    finally:
        hook.remove()
    return torch.cat(captured).numpy().astype(np.float64)


@dataclass(frozen=True)
class DefenderFeatures:
    """The defender model's penultimate features of every training image, and the seconds that
    model took to train (when it was trained: a cached model costs nothing again)."""

    features: np.ndarray
    train_s: float
    cached: bool


def defender_key(ctx: DefenseContext) -> str:
    """What the defender's model depends on: the training set as given (poison included), the
    architecture, recipe, seed, numerics, device type and torch's thread count (CPU kernels are
    deterministic per thread count, so a cached model is the one this process would train).
    Filters of one poison share it."""
    h = hashlib.sha256()
    for tensor in (ctx.x, ctx.y):
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(
        repr((ctx.arch, ctx.recipe, ctx.seed, ctx.numerics.label, ctx.device.type, torch.get_num_threads())).encode()
    )
    return h.hexdigest()[:32]


def defender_features(ctx: DefenseContext) -> DefenderFeatures:
    """Train the defender's model on the given training set (the victim's recipe and numerics) and
    embed every training image; cached on disk (``SAPABENCH_CACHE/defender-features``) by
    :func:`defender_key`, so every filter and control on one poison trains it once."""
    path = cache_dir() / "defender-features" / f"{defender_key(ctx)}.safetensors"
    if path.is_file():
        try:
            with safe_open(str(path), "pt") as f:
                feats, train_s = f.get_tensor("features").numpy(), float(f.metadata()["train_s"])
            if feats.shape[0] == len(ctx.x):
                return DefenderFeatures(feats.astype(np.float64), train_s, True)
        except Exception:  # a damaged cache entry is recomputed, never trusted
            pass
    data = ImageDataset(
        name=f"{ctx.dataset_name}-as-given",
        train_x=ctx.x,
        train_y=ctx.y,
        test_x=ctx.x[:2],
        test_y=ctx.y[:2],
        num_classes=ctx.num_classes,
        mean=ctx.mean,
        std=ctx.std,
        flip_invariant=ctx.flip_invariant,
        default_epochs=ctx.recipe.train.epochs or 20,
        default_batch_size=ctx.recipe.train.batch_size or 64,
    )
    t0 = time.perf_counter()
    model = train_victim(ctx.arch, ctx.recipe, data, seed=ctx.seed, device=ctx.device, numerics=ctx.numerics).model
    train_s = time.perf_counter() - t0
    feats = penultimate_features(model, ctx.x)
    with contextlib.suppress(OSError), replacing(path) as tmp:  # a read-only cache only costs the retraining
        save_file({"features": torch.from_numpy(feats).float().contiguous()}, str(tmp), {"train_s": repr(train_s)})
    return DefenderFeatures(feats, train_s, False)


@register_defense(
    "spectral-signatures", description="data filter: spectral signatures of penultimate features (Tran et al. 2018)"
)
@dataclass
class SpectralSignatures(DataDefense):
    """Spectral signatures (Tran et al., NeurIPS 2018): per class, score each image by its squared
    projection on the top singular vector of the centred features and remove the
    ``1.5 * expected_fraction`` highest-scoring share of the class.

    Args:
        expected_fraction: the poison fraction the defender guards against (eps in the paper).
    """

    expected_fraction: float = 0.1

    def __post_init__(self) -> None:
        open_fraction("expected_fraction", self.expected_fraction)

    def filter(self, ctx: DefenseContext) -> Filtered:
        defender, y = defender_features(ctx), ctx.y.cpu().numpy()
        feats = defender.features
        remove: list[int] = []
        for c in range(ctx.num_classes):
            idx = np.flatnonzero(y == c)
            if len(idx) < 2:
                continue
            centred = feats[idx] - feats[idx].mean(axis=0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            scores = (centred @ vt[0]) ** 2
            k = int(np.floor(1.5 * self.expected_fraction * len(idx)))
            remove += idx[np.argsort(-scores, kind="stable")[:k]].tolist()
        return Filtered(kept_indices(len(y), remove), defender_s=defender.train_s)


@register_defense(
    "activation-clustering", description="data filter: 2-means on PCA of activations per class (Chen et al. 2018)"
)
@dataclass
class ActivationClustering(DataDefense):
    """Activation clustering (Chen et al., 2018): per class, reduce the features to
    ``components`` dimensions (PCA), split them into two clusters (k-means) and remove the
    smaller cluster when it holds less than ``size_threshold`` of the class.
    """

    components: int = 10
    size_threshold: float = 0.35

    def __post_init__(self) -> None:
        open_fraction("size_threshold", self.size_threshold)
        positive("components", self.components, integer=True)

    def filter(self, ctx: DefenseContext) -> Filtered:
        defender, y = defender_features(ctx), ctx.y.cpu().numpy()
        feats = defender.features
        remove: list[int] = []
        for c in range(ctx.num_classes):
            idx = np.flatnonzero(y == c)
            if len(idx) < max(4, self.components):
                continue
            reduced = PCA(n_components=min(self.components, len(idx) - 1), random_state=ctx.seed).fit_transform(
                feats[idx]
            )
            labels = KMeans(n_clusters=2, n_init=10, random_state=ctx.seed).fit_predict(reduced)
            small = int(np.argmin(np.bincount(labels, minlength=2)))
            if (labels == small).mean() < self.size_threshold:
                remove += idx[labels == small].tolist()
        return Filtered(kept_indices(len(y), remove), defender_s=defender.train_s)


@register_defense(
    "deep-knn",
    description="data filter: drop images whose k nearest feature neighbours disagree with the label (Peri et al. 2020)",
)
@dataclass
class DeepKNN(DataDefense):
    """Deep k-NN (Peri et al., 2020): remove every training image whose label is not the plurality
    label of its ``k`` nearest neighbours in feature space."""

    k: int = 10

    def __post_init__(self) -> None:
        positive("k", self.k, integer=True)

    def filter(self, ctx: DefenseContext) -> Filtered:
        defender, y = defender_features(ctx), ctx.y.cpu().numpy()
        feats = defender.features
        k = min(self.k, len(y) - 1)
        _, nbrs = NearestNeighbors(n_neighbors=k + 1).fit(feats).kneighbors(feats)
        votes = y[nbrs[:, 1:]]  # drop the point itself
        plurality = np.array([np.bincount(v, minlength=ctx.num_classes).argmax() for v in votes])
        return Filtered(kept_indices(len(y), np.flatnonzero(plurality != y).tolist()), defender_s=defender.train_s)


def kept_indices(n: int, remove: Sequence[int] | np.ndarray) -> Tensor:
    """The indices of ``range(n)`` not in ``remove``, as a filter's :class:`Filtered` wants them."""
    mask = np.ones(n, dtype=bool)
    mask[np.asarray(remove, dtype=np.int64)] = False
    return torch.from_numpy(np.flatnonzero(mask))
