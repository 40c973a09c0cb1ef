"""The victim architecture zoo.

Every factory takes ``(in_chans, num_classes, img_size)`` and returns an ``nn.Module`` mapping
normalised images to logits. Library models (timm, torchvision) are adapted to small inputs the
way the CIFAR literature does it: a 3x3 stride-1 stem and no early downsampling. Use
:func:`build_model` to get a victim for a dataset: it puts the dataset's normalisation inside
the model, so attacks and training both work in [0, 1] pixel space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import timm
import torch
from torch import Tensor, nn
from torchvision.models import vgg11_bn

from sapabench.core.datasets import ImageDataset
from sapabench.core.errors import ConfigError
from sapabench.core.registry import Registry

ARCHS: Registry[nn.Module] = Registry("architecture")


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as the first layer of a victim."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Victim(nn.Sequential):
    """``Normalize`` followed by the architecture; takes images in [0, 1]."""

    def __init__(self, arch: str, normalize: Normalize, net: nn.Module) -> None:
        super().__init__()
        self.arch = arch
        self.normalize = normalize
        self.net = net


def build_model(arch: str, dataset: ImageDataset, **kwargs: object) -> Victim:
    """A freshly initialised victim of architecture ``arch`` shaped for ``dataset``.

    The caller seeds ``torch`` beforehand when it needs a reproducible initialisation.
    """
    net = ARCHS.create(
        arch, in_chans=dataset.in_chans, num_classes=dataset.num_classes, img_size=dataset.img_size, **kwargs
    )
    return Victim(arch, Normalize(dataset.mean, dataset.std), net)


def _check_shape(arch: str, in_chans: int, num_classes: int, img_size: int, min_size: int) -> None:
    if in_chans < 1 or num_classes < 2:
        raise ConfigError(f"{arch}: need in_chans >= 1 and num_classes >= 2 (got {in_chans}, {num_classes})")
    if img_size < min_size:
        raise ConfigError(f"{arch}: images of side {img_size} are too small; it needs at least {min_size}")


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@ARCHS.register(
    "convnet", description="small 5-layer convnet with BatchNorm (0.14M params at width 32), the fast CPU default"
)
def convnet(in_chans: int, num_classes: int, img_size: int, width: int = 32) -> nn.Module:
    """A small VGG-style convnet: two pooled conv stages, one conv, global pool, linear head."""
    _check_shape("convnet", in_chans, num_classes, img_size, 4)
    w = width
    return nn.Sequential(
        *_conv_bn(in_chans, w),
        *_conv_bn(w, w),
        nn.MaxPool2d(2),
        *_conv_bn(w, 2 * w),
        *_conv_bn(2 * w, 2 * w),
        nn.MaxPool2d(2),
        *_conv_bn(2 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, num_classes),
    )


@ARCHS.register("lenet", description="LeNet-5 (LeCun et al. 1998): two 5x5 conv + pool stages, three linear layers")
def lenet(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    """LeNet-5 with ReLU and max-pooling, padded so any side >= 8 keeps a valid map."""
    _check_shape("lenet", in_chans, num_classes, img_size, 8)
    side = img_size // 4
    return nn.Sequential(
        nn.Conv2d(in_chans, 6, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120),
        nn.ReLU(inplace=True),
        nn.Linear(120, 84),
        nn.ReLU(inplace=True),
        nn.Linear(84, num_classes),
    )


@ARCHS.register("mlp", description="multi-layer perceptron on the flattened pixels (two hidden layers of 256)")
def mlp(in_chans: int, num_classes: int, img_size: int, hidden: int = 256) -> nn.Module:
    """Two hidden ReLU layers on the flattened image: no convolution at all."""
    _check_shape("mlp", in_chans, num_classes, img_size, 1)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_chans * img_size * img_size, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.relu(self.body(x) + self.shortcut(x))


@ARCHS.register("resnet8", description="CIFAR ResNet-8 (He et al. 2016, sec. 4.2: one basic block per stage, 16/32/64)")
def resnet8(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    """The smallest CIFAR ResNet: 3x3 stem, three stages of one basic block (widths 16, 32,
    64, the last two at stride 2), global pool, linear head: 8 weighted layers, 78k parameters."""
    _check_shape("resnet8", in_chans, num_classes, img_size, 4)
    return nn.Sequential(
        *_conv_bn(in_chans, 16),
        _BasicBlock(16, 16, 1),
        _BasicBlock(16, 32, 2),
        _BasicBlock(32, 64, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def _cifar_resnet(name: str, in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    _check_shape(name, in_chans, num_classes, img_size, 8)
    model = timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=num_classes)
    # CIFAR-style stem (He et al. 2016, sec. 4.2): 3x3 stride 1, no max-pool.
    model.conv1 = nn.Conv2d(in_chans, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@ARCHS.register("resnet18", description="timm ResNet-18 with the CIFAR 3x3 stem (paper's surrogate and main victim)")
def resnet18(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    """ResNet-18 (timm) with a 3x3 stride-1 stem and no max-pool."""
    return _cifar_resnet("resnet18", in_chans, num_classes, img_size)


@ARCHS.register("resnet50", description="timm ResNet-50 with the CIFAR 3x3 stem")
def resnet50(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    """ResNet-50 (timm) with a 3x3 stride-1 stem and no max-pool."""
    return _cifar_resnet("resnet50", in_chans, num_classes, img_size)


@ARCHS.register("vgg11", description="torchvision VGG11-BN features, CIFAR head (global pool + one linear layer)")
def vgg11(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    """VGG11 with BatchNorm (torchvision's feature stack), CIFAR-style classifier.

    The CIFAR VGG replaces the 3-layer 4096-wide head by one linear layer on the 512-channel
    pooled features. Its five max-pools need 32x32 inputs; on smaller images the last pools
    (those that would shrink the map below 1x1) are dropped.
    """
    _check_shape("vgg11", in_chans, num_classes, img_size, 4)
    features = vgg11_bn(weights=None).features
    layers = list(features)
    first = layers[0]
    layers[0] = nn.Conv2d(in_chans, first.out_channels, 3, padding=1)
    keep_pools = min(5, int(math.log2(img_size)))
    pool_positions = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
    for i in pool_positions[keep_pools:]:
        layers[i] = nn.Identity()
    return nn.Sequential(nn.Sequential(*layers), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))


@ARCHS.register("mobilenetv2", description="timm MobileNetV2-1.0, CIFAR stem (stride 1) and stride-1 second stage")
def mobilenetv2(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    """MobileNetV2 (timm ``mobilenetv2_100``) adapted to 32x32 as in the CIFAR literature.

    Stem stride 2 -> 1 and the first 24-channel block stride 2 -> 1, so the network
    downsamples 8x instead of 32x.
    """
    _check_shape("mobilenetv2", in_chans, num_classes, img_size, 8)
    model = timm.create_model("mobilenetv2_100", pretrained=False, in_chans=in_chans, num_classes=num_classes)
    model.conv_stem.stride = (1, 1)
    model.blocks[1][0].conv_dw.stride = (1, 1)
    return model


@ARCHS.register("vit", description="timm ViT-Tiny (dim 192, 12 blocks, 3 heads) with 4x4 patches for small images")
def vit(in_chans: int, num_classes: int, img_size: int, patch_size: int = 4, depth: int = 12) -> nn.Module:
    """Vision Transformer (timm ``vit_tiny_patch16_224`` config) with patches that fit small images."""
    _check_shape("vit", in_chans, num_classes, img_size, 2 * patch_size)
    if img_size % patch_size:
        raise ConfigError(f"vit: image side {img_size} is not a multiple of patch_size={patch_size}")
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=img_size,
        patch_size=patch_size,
        depth=depth,
        in_chans=in_chans,
        num_classes=num_classes,
    )
