"""Batched data augmentation on tensors with kornia (no per-sample Python)."""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import Tensor, nn


def flip_crop(img_size: int, flip: bool) -> nn.Module:
    """Random crop after zero-padding by 1/8 of the side (4 px at 32x32), plus horizontal flips
    where they preserve labels (not for digits or SVHN)."""
    pad = max(1, img_size // 8)
    ops: list[nn.Module] = [K.RandomCrop((img_size, img_size), padding=pad, p=1.0)]
    if flip:
        ops.insert(0, K.RandomHorizontalFlip(p=0.5))
    return K.AugmentationSequential(*ops)


def cutout(img_size: int, size: int | None) -> nn.Module:
    """CutOut (DeVries & Taylor 2017): one zeroed square per image, side ``size`` (default half
    the image side, i.e. 16 px at 32x32), placed uniformly inside the image."""
    side = size if size is not None else max(1, img_size // 2)
    frac = min(1.0, (side / img_size) ** 2)
    return K.RandomErasing(scale=(frac, frac), ratio=(1.0, 1.0), value=0.0, p=1.0)


class MixUp(nn.Module):
    """MixUp (Zhang et al. 2018) with alpha = 1, i.e. lambda ~ Beta(1, 1) = Uniform(0, 1).

    Returns the mixed batch, the two label vectors and the per-sample weight ``lam`` of the
    second: the loss is ``(1 - lam) * CE(out, y_a) + lam * CE(out, y_b)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.op = K.RandomMixUpV2(lambda_val=(0.0, 1.0), data_keys=["input", "class"], p=1.0)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mixed, labels = self.op(x, y)
        y_a, y_b, lam = labels[:, 0].long(), labels[:, 1].long(), labels[:, 2].to(x.dtype)
        return mixed, y_a, y_b, lam


def mixup_loss(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor) -> Tensor:
    ce = nn.functional.cross_entropy
    return ((1 - lam) * ce(logits, y_a, reduction="none") + lam * ce(logits, y_b, reduction="none")).mean()


def pgd_linf(model: nn.Module, x: Tensor, y: Tensor, eps: float, step: float, steps: int) -> Tensor:
    """Madry et al.'s L_inf PGD with a uniform random start; returns images in [0, 1].

    Runs the model in eval mode (BatchNorm statistics are not touched by the attack) and
    restores its mode afterwards.
    """
    was_training = model.training
    model.eval()
    delta = (torch.rand_like(x) * 2 - 1) * eps
    delta = ((x + delta).clamp(0, 1) - x).detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
        delta = ((x + delta).clamp(0, 1) - x).detach()
    model.train(was_training)
    return (x + delta).detach()
