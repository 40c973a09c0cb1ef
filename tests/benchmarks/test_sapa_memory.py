"""Peak memory of the untargeted SAPA step against the training-set size (deselected by default).

Run: ``python -m pytest tests/benchmarks/test_sapa_memory.py --run-benchmarks -s``. The step is
Error-Min's / Error-Max's worst-case weights: the gradient of the mean training loss over the
whole perturbed set. Memory is what autograd holds saved for backward at its peak
(:func:`sapabench.core.memory.peak_saved_bytes`; it is what grows with the set). ``chunked`` is the
harness (one 512-image chunk's graph at a time); ``one graph`` sums the chunk losses first and
back-propagates once, as the code did before, and is measured up to 2,000 images (it grows
linearly: 8,000 would hold about 4x the 2,000 figure). The ResNet-18 figures are per image at
32x32, extrapolated to CIFAR-10's 50,000 training images.
"""

from __future__ import annotations

import pytest
import torch

from sapabench.attacks.sapa import DEFAULT_CHUNK, mean_loss_terms, worst_case_weights
from sapabench.core.memory import peak_saved_bytes
from sapabench.victims.archs import ARCHS

MB = 2**20


def _sapa_step_bytes(model: torch.nn.Module, n: int, one_graph: bool) -> int:
    g = torch.Generator().manual_seed(n)
    x, y = torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    delta = (torch.rand(x.shape, generator=g) * 2 - 1) * 8 / 255

    def objective():
        terms = mean_loss_terms(model, x, y, DEFAULT_CHUNK, delta)
        return sum(terms) if one_graph else terms

    def step():
        with worst_case_weights(model, objective, 0.05):
            pass

    return peak_saved_bytes(step)


@pytest.mark.parametrize("one_graph", [False, True], ids=["chunked", "one-graph"])
def test_untargeted_sapa_step_memory(benchmark, one_graph):
    torch.manual_seed(0)
    model = ARCHS.create("convnet", in_chans=3, num_classes=10, img_size=32).eval()
    sizes = (500, 2000) if one_graph else (500, 2000, 8000)
    peaks = {n: _sapa_step_bytes(model, n, one_graph) / MB for n in sizes}
    benchmark.pedantic(_sapa_step_bytes, args=(model, 500, one_graph), rounds=1, iterations=1)
    benchmark.extra_info.update({f"peak_saved_mb_{n}": round(v, 1) for n, v in peaks.items()})
    print(
        f"\nconvnet 32x32 {'one graph' if one_graph else 'chunked'}: "
        + ", ".join(f"{n} images {v:.0f} MB" for n, v in peaks.items())
    )
    if not one_graph:
        assert max(peaks.values()) <= 1.2 * min(peaks.values())  # flat from 500 to 8,000 images


def test_resnet18_cifar_extrapolation(benchmark):
    torch.manual_seed(0)
    model = ARCHS.create("resnet18", in_chans=3, num_classes=10, img_size=32).eval()
    per_image = (_sapa_step_bytes(model, 16, True) - _sapa_step_bytes(model, 8, True)) / 8
    benchmark.pedantic(_sapa_step_bytes, args=(model, 8, True), rounds=1, iterations=1)
    one_graph_gb = per_image * 50_000 / 2**30
    chunked_gb = per_image * DEFAULT_CHUNK / 2**30
    benchmark.extra_info.update(per_image_mb=per_image / MB, one_graph_gb=one_graph_gb, chunked_gb=chunked_gb)
    print(
        f"\nresnet18 32x32: {per_image / MB:.2f} MB saved per image; 50,000 images in one graph "
        f"{one_graph_gb:.0f} GB, one {DEFAULT_CHUNK}-image chunk {chunked_gb:.1f} GB"
    )
    assert per_image > 0
