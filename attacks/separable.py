"""Synthetic linearly separable noise (Yu et al. 2022)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sapabench.attacks._noise import NoiseConfig, scale
from sapabench.attacks._untargeted import perturbed_subset
from sapabench.attacks.base import Attack, CraftContext, Crafted, project, register_attack
from sapabench.core.errors import ConfigError
from sapabench.core.threats import ThreatModel

SEPARABLE_NOISE = ("clusters", "class-wise")


@dataclass(frozen=True)
class SeparableConfig(NoiseConfig):
    """Separable-noise settings (adds to :class:`NoiseConfig`).

    Attributes:
        patch: side of the blocks the pattern is built from: a Gaussian pattern of side
            ``ceil(side / patch)`` is up-sampled by repeating each value over a patch x patch
            block (the authors' low-dimensional points expanded into image space; 8 on CIFAR).
        noise: ``clusters`` (default, the authors' ``synthetic_perturbations/cifar_train.py``):
            every poisoned image gets its own low-dimensional point, drawn by scikit-learn's
            ``make_classification`` with one Gaussian cluster per class (``class_sep=10``,
            every feature informative), so the noise is sample-wise and linearly separable by
            class. ``class-wise``: the earlier reading, one random pattern shared by all images
            of a class (the class-wise limit of the same idea).
    """

    patch: int = 8
    noise: str = "clusters"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.patch, int) or self.patch < 1:
            raise ConfigError(f"invalid patch={self.patch!r}: a positive integer (pixels)")
        if self.noise not in SEPARABLE_NOISE:
            raise ConfigError(f"invalid noise={self.noise!r}: {' or '.join(SEPARABLE_NOISE)}")


def cluster_points(
    labels: torch.Tensor, num_classes: int, shape: tuple[int, int, int], patch: int, seed: int
) -> torch.Tensor:
    """One synthetic pattern per image of ``labels``, (N, C, H, W), as the authors draw them:
    ``make_classification`` points (one cluster per class, ``class_sep=10``) on the grid of
    patch x patch blocks (channels last, as their reshape), each value repeated over its block."""
    from sklearn.datasets import make_classification

    c, h, w = shape
    rows, cols = -(-h // patch), -(-w // patch)
    features = rows * cols * c
    per_class = int(torch.bincount(labels, minlength=num_classes).max())
    points, point_labels = make_classification(
        n_samples=per_class * num_classes,
        n_features=features,
        n_informative=features,
        n_redundant=0,
        n_repeated=0,
        n_classes=num_classes,
        n_clusters_per_class=1,
        class_sep=10.0,
        flip_y=0.0,
        random_state=seed,
    )
    points, point_labels = torch.from_numpy(points).float(), torch.from_numpy(point_labels)
    low = torch.empty((len(labels), rows, cols, c))
    for cls in labels.unique().tolist():
        mine = torch.nonzero(labels.cpu() == cls).flatten()
        low[mine] = points[point_labels == cls][: len(mine)].view(-1, rows, cols, c)
    low = low.permute(0, 3, 1, 2)
    return low.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :h, :w].contiguous()


def class_patterns(
    num_classes: int, shape: tuple[int, int, int], patch: int, generator: torch.Generator
) -> torch.Tensor:
    """One synthetic pattern per class, (num_classes, C, H, W): Gaussian values on a grid of
    patch x patch blocks, each repeated over its block."""
    c, h, w = shape
    low = torch.randn((num_classes, c, -(-h // patch), -(-w // patch)), generator=generator)
    return low.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :h, :w].contiguous()


@register_attack("separable", description="synthetic linearly separable noise (Yu et al. 2022)")
class Separable(Attack):
    """Availability poisoning by synthetic, linearly separable noise (Yu et al., KDD 2022).

    Threat model: untargeted, clean-label; metric: the victim's clean test accuracy (lower =
    stronger). No surrogate: the noise is a shortcut the victim learns instead of the content.

    eps / budget: every poison gets its class's pattern, scaled to eps (L_inf) or to an L2
    radius and clipped to eps; ``budget`` is the fraction of the training set poisoned.

    Objective: none to optimise. As the authors' code: every image gets its own point of its
    class's Gaussian cluster in a low-dimensional space (``make_classification``, class_sep 10),
    expanded to patch blocks (:func:`cluster_points`), so the perturbations alone separate the
    classes linearly. ``noise="class-wise"`` is the earlier reading (one pattern per class,
    :func:`class_patterns`). Differs on purpose: the authors scale each point to L2 norm
    eps x sqrt(C H W) and only clip to the pixel range; here it is scaled per ``norm`` (L_inf by
    default; with cluster centres at +-10 the authors' L2 scaling gives nearly every pixel
    +-eps too) and clipped to eps like every poison of the harness.

    Options (paper preset): eps 8/255, budget 1.0, norm linf, patch 8.

    Example::

        poison = create_attack("separable", dataset="digits").run(load_dataset("digits"), seed=0)
    """

    threat = "untargeted"
    Config = SeparableConfig
    presets = {
        "paper": dict(eps=8 / 255, budget=1.0, patch=8),
        "embedded": dict(eps=32 / 255, budget=1.0, patch=4),
        "smoke": dict(eps=8 / 255, budget=0.5, patch=4),
    }

    def craft(self, ctx: CraftContext) -> Crafted:
        cfg: SeparableConfig = self.config  # type: ignore[assignment]
        ds = ctx.dataset
        indices, x, y = perturbed_subset(ctx, cfg)
        shape = tuple(ds.train_x.shape[1:])
        if cfg.noise == "class-wise":
            patterns = scale(class_patterns(ds.num_classes, shape, cfg.patch, ctx.generator), cfg).to(ctx.device)  # type: ignore[arg-type]
            delta, count = project(patterns[y], x, cfg.eps), ds.num_classes
        else:
            seed = int(torch.randint(2**31 - 1, (1,), generator=ctx.generator))
            points = cluster_points(y, ds.num_classes, shape, cfg.patch, seed)  # type: ignore[arg-type]
            delta, count = project(scale(points, cfg).to(ctx.device), x, cfg.eps), len(y)
        return Crafted(indices=indices, delta=delta, threat=ThreatModel("untargeted"), extra={"patterns": count})
