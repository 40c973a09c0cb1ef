"""Data augmentation drawn and applied on the training device with tensor ops only.

A victim's random augmentation is split in two, so that the training step itself does no host
work and has static shapes (what a captured CUDA graph needs):

- :func:`draw_epoch` draws every random choice of one epoch at once, on the device, from the
  victim's own generator: the batch order's image indices, crop offsets, flips, CutOut
  corners and MixUp partners and weights. One call per epoch.
- :func:`augment_batch` and :func:`mix_batch` apply one batch's draws inside the step (gathers
  and masks, no Python per image).

The distributions are those of the earlier kornia pipeline: a crop of a zero-padded image
(1/8 of the side, 4 px at 32x32) at a uniform offset, a horizontal flip with probability 1/2
where flips preserve labels, one CutOut square placed uniformly inside the image, MixUp with
lambda ~ Uniform(0, 1) per image and a uniformly random partner from the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import torch
from torch import Tensor, nn

# Columns of the per-image integer draws (EpochDraws.ints).
IDX, DY, DX, FLIP, CY, CX, PARTNER = range(7)
INT_COLUMNS = 7


@dataclass(frozen=True)
class Augmentation:
    """What a recipe asks of each training image (all sizes in pixels).

    Attributes:
        img_size: the images' side.
        crop_pad: zero padding of the random crop (None: no crop, no flip).
        flip: random horizontal flips (only with the crop; off for digits and SVHN).
        cutout: side of the CutOut square (None: no CutOut).
        mixup: MixUp within each batch.
    """

    img_size: int
    crop_pad: int | None = None
    flip: bool = False
    cutout: int | None = None
    mixup: bool = False

    @classmethod
    def of(cls, img_size: int, crop: bool, flip: bool, cutout: int | None, cutout_on: bool, mixup: bool):
        """The augmentation of a recipe on images of side ``img_size`` (CutOut's default side is
        half the image side, 16 px at 32x32, DeVries & Taylor's CIFAR-10 setting)."""
        pad = max(1, img_size // 8) if crop else None
        side = None
        if cutout_on:
            side = min(img_size, cutout if cutout is not None else max(1, img_size // 2))
        return cls(img_size, pad, flip and crop, side, mixup)


@dataclass(frozen=True)
class EpochDraws:
    """Every random choice of one epoch: ``ints`` (images x INT_COLUMNS: the image index into
    the training tensors, crop offsets, flip, CutOut corner, MixUp partner as a position inside
    the image's batch) and ``lam`` (images: MixUp weights). Batch ``k`` is rows
    ``k * batch_size`` onwards."""

    ints: Tensor
    lam: Tensor


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """The sizes of an epoch's batches: full batches and the remainder, which is dropped when
    it is a single image (BatchNorm cannot train on a batch of one)."""
    sizes = [batch_size] * (n // batch_size)
    rest = n % batch_size
    if rest > 1 or (rest == 1 and not sizes):
        sizes.append(rest)
    return sizes


def draw_epoch(
    order: Tensor, batch_size: int, aug: Augmentation, generator: torch.Generator, device: torch.device
) -> EpochDraws:
    """The draws of one epoch whose batches take the images ``order`` (a permutation of the
    training indices) in turn; uses only ``generator`` (on ``device``)."""
    sizes = batch_sizes(len(order), batch_size)
    n = sum(sizes)
    ints = torch.zeros(n, INT_COLUMNS, dtype=torch.long, device=device)
    ints[:, IDX] = order[:n].to(device)
    if aug.crop_pad is not None:
        ints[:, DY : DX + 1] = torch.randint(0, 2 * aug.crop_pad + 1, (n, 2), generator=generator, device=device)
        if aug.flip:
            ints[:, FLIP] = torch.randint(0, 2, (n,), generator=generator, device=device)
    if aug.cutout is not None:
        span = aug.img_size - aug.cutout + 1
        ints[:, CY : CX + 1] = torch.randint(0, span, (n, 2), generator=generator, device=device)
    lam = torch.zeros(n, device=device)
    if aug.mixup:
        keys = torch.rand(n, generator=generator, device=device)
        start = 0
        for size, run in groupby(sizes):  # the full batches at once, then the remainder
            count = len(list(run))
            block = keys[start : start + size * count].view(count, size)
            ints[start : start + size * count, PARTNER] = block.argsort(dim=1).flatten()
            start += size * count
        lam = torch.rand(n, generator=generator, device=device)
    return EpochDraws(ints, lam)


def augment_batch(x: Tensor, ints: Tensor, aug: Augmentation) -> Tensor:
    """The batch ``x`` (images of ``ints[:, IDX]``) cropped, flipped and cut out by its draws."""
    b, c, h, w = x.shape
    if aug.crop_pad is not None:
        pad = aug.crop_pad
        padded = nn.functional.pad(x, (pad, pad, pad, pad))
        hp, wp = h + 2 * pad, w + 2 * pad
        rows = ints[:, DY, None] + torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device).expand(b, w)
        cols = torch.where(ints[:, FLIP, None].bool(), w - 1 - cols, cols) + ints[:, DX, None]
        flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        x = padded.reshape(b, c, hp * wp).gather(2, flat).view(b, c, h, w)
    if aug.cutout is not None:
        r = torch.arange(h, device=x.device) - ints[:, CY, None]
        q = torch.arange(w, device=x.device) - ints[:, CX, None]
        inside = ((r >= 0) & (r < aug.cutout))[:, :, None] & ((q >= 0) & (q < aug.cutout))[:, None, :]
        x = x * (~inside)[:, None].to(x.dtype)
    return x


def mix_batch(x: Tensor, y: Tensor, ints: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MixUp (Zhang et al. 2018) of a batch by its draws: returns the mixed batch, the two label
    vectors and the per-image weight ``lam`` of the partner; the loss is
    ``(1 - lam) * CE(out, y_a) + lam * CE(out, y_b)`` (:func:`mixup_loss`)."""
    partner = ints[:, PARTNER]
    w = lam.to(x.dtype).view(-1, 1, 1, 1)
    return x * (1 - w) + x[partner] * w, y, y[partner], lam


def mixup_loss(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor) -> Tensor:
    ce = nn.functional.cross_entropy
    return ((1 - lam) * ce(logits, y_a, reduction="none") + lam * ce(logits, y_b, reduction="none")).mean()


def pgd_linf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    step: float,
    steps: int,
    start: Tensor | None = None,
) -> Tensor:
    """Madry et al.'s L_inf PGD with a uniform random start; returns images in [0, 1].

    ``start`` is the random start's noise, uniform in [-1, 1] with ``x``'s shape (drawn here
    from torch's global generator when None). Runs the model in eval mode (BatchNorm statistics
    are not touched by the attack) and restores its mode afterwards; no host synchronisation,
    so a captured training step can hold it.
    """
    was_training = model.training
    model.eval()
    noise = torch.rand_like(x) * 2 - 1 if start is None else start
    delta = ((x + noise * eps).clamp(0, 1) - x).detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
        delta = ((x + delta).clamp(0, 1) - x).detach()
    model.train(was_training)
    return (x + delta).detach()
