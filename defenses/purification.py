"""Purification defenses: transform every training image before training."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sapabench.core.errors import ConfigError
from sapabench.defenses.base import DataDefense, DefenseContext, Filtered, register_defense


def jpeg_compress(x: Tensor, quality: int) -> Tensor:
    """Round-trip every image in [0, 1] through JPEG at ``quality`` (Pillow's codec)."""
    u8 = (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for img in u8:
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, format="JPEG", quality=quality)
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        out.append(back.reshape(img.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div_(255).to(x.device)


def to_grayscale(x: Tensor) -> Tensor:
    """ITU-R 601 luma, replicated over the input's channels (identity on 1-channel images)."""
    if x.shape[1] == 1:
        return x.clone()
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x[:, :3] * weights).sum(1, keepdim=True).expand(-1, x.shape[1], -1, -1).contiguous()


@register_defense("jpeg", description="purification: JPEG-compress every training image (quality 10)")
@dataclass
class JPEG(DataDefense):
    """JPEG compression of every training image (quality 10, as in image-shortcut squeezing,
    Liu et al. 2023, the strongest setting against unlearnable examples)."""

    removes = False  # purification: every image kept, changed

    quality: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise ConfigError(f"invalid quality={self.quality!r}: an integer in [1, 100]")

    def filter(self, ctx: DefenseContext) -> Filtered:
        return Filtered(torch.arange(len(ctx.x)), jpeg_compress(ctx.x, self.quality))


@register_defense("grayscale", description="purification: remove colour from every training image (no-op on grey data)")
@dataclass
class Grayscale(DataDefense):
    """Colour removal of every training image (Liu et al. 2023); a no-op on grey datasets."""

    removes = False  # purification: every image kept, changed

    def filter(self, ctx: DefenseContext) -> Filtered:
        return Filtered(torch.arange(len(ctx.x)), to_grayscale(ctx.x))
