import pytest
import torch

from sapabench.core.errors import ConfigError
from sapabench.victims.archs import ARCHS, Normalize, build_model


@pytest.mark.parametrize("arch", ARCHS.list())
@pytest.mark.parametrize(("in_chans", "img_size"), [(1, 16), (3, 32)])
def test_every_architecture_runs_forward_and_backward(arch, in_chans, img_size):
    torch.manual_seed(0)
    net = ARCHS.create(arch, in_chans=in_chans, num_classes=7, img_size=img_size)
    net.train()
    x = torch.rand(3, in_chans, img_size, img_size)
    out = net(x)
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "mobilenetv2"])
def test_cifar_stems_do_not_downsample_early(arch):
    net = ARCHS.create(arch, in_chans=3, num_classes=10, img_size=32)
    feats = net.forward_features(torch.rand(1, 3, 32, 32))
    # ImageNet stems leave 1x1 at 32x32; CIFAR stems keep 4x4 (8x downsampling).
    assert feats.shape[-1] == 4


def test_victim_normalises_inside_the_model(digits):
    model = build_model("convnet", digits)
    assert isinstance(model.normalize, Normalize) and model.arch == "convnet"
    z = model.normalize(digits.train_x)
    assert abs(float(z.mean())) < 1e-3 and abs(float(z.std()) - 1) < 1e-2


def test_too_small_images_are_refused():
    with pytest.raises(ConfigError, match="too small"):
        ARCHS.create("resnet18", in_chans=1, num_classes=10, img_size=4)
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        ARCHS.create("vit", in_chans=1, num_classes=10, img_size=18)
