"""Victims at paper scale on a GPU: the harness against a hand-written CUDA-graph loop, and packs.

Run where a GPU is lent: ``python -m pytest tests/benchmarks/test_gpu_victims.py --run-benchmarks -s``
(marked ``gpu``: skipped without CUDA). A CIFAR-10-shaped set of 50,000 random 32x32 images
written in torchvision's on-disk format stands in for CIFAR-10 (pixels are noise, so accuracy
means nothing and timings are real). ``SAPABENCH_BENCH_JSON`` names a file to write the figures to.

- ``test_harness_vs_plain_graph_loop``: per architecture (ResNet-18, VGG11, ResNet-50), seconds
  per epoch of :class:`sapabench.victims.train.Trainer` (the ``sgd`` recipe: crop + flip, SGD with
  momentum and weight decay, the step schedule; numerics and step ``auto``) against a plain loop
  written here: the same model, numerics and batch, the whole epoch's crop + flip drawn on the
  GPU at once, and forward, backward and ``torch.optim.SGD`` (constant learning rate) captured in
  one CUDA graph. Median of ``EPOCHS`` timed epochs after a warm-up epoch, the two interleaved.
- ``test_packed_victims_throughput``: aggregate images per second of 1, 2, 4 and 8 ResNet-18
  victims trained packed (:func:`sapabench.victims.train.run_pack`), and each pack's ratio to one victim.
"""

from __future__ import annotations

import json
import statistics
import time

import pytest
import torch
from torch import nn

from sapabench.core.numerics import resolve_numerics
from sapabench.victims.archs import build_model
from sapabench.victims.recipes import RECIPES
from sapabench.victims.train import Trainer, run_pack
from tests.benchmarks._gpu import record

pytestmark = pytest.mark.gpu

EPOCHS = 3
BATCH = 128


def plain_graph_epoch(arch: str, ds, numerics):
    """A hand-written loop: whole-epoch crop + flip on the GPU, the step in one CUDA graph."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = numerics.model(build_model(arch, ds).to(dev)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x_all, y_all = ds.train_x.to(dev), ds.train_y.to(dev)
    n, c, h, w = x_all.shape
    steps = n // BATCH
    static_x = torch.zeros(BATCH, c, h, w, device=dev)
    static_x = numerics.inputs(static_x)
    static_y = torch.zeros(BATCH, dtype=torch.long, device=dev)

    def step():
        with numerics.autocast(dev, cache=False):
            loss = nn.functional.cross_entropy(model(static_x), static_y)
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            static_x.copy_(x_all[:BATCH])
            static_y.copy_(y_all[:BATCH])
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)  # backward allocates the gradients in the graph's own memory
    with torch.cuda.graph(graph, stream=side):
        step()

    def epoch():
        order = torch.randperm(n, device=dev)
        padded = nn.functional.pad(x_all[order], (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2, n), device=dev)
        rows = dy[:, None] + torch.arange(h, device=dev)
        cols = dx[:, None] + torch.arange(w, device=dev)
        crop = padded[torch.arange(n, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        crop = crop.permute(0, 3, 1, 2)
        flip = torch.rand(n, device=dev) < 0.5
        xs = torch.where(flip[:, None, None, None], crop.flip(3), crop)
        ys = y_all[order]
        for i in range(steps):
            static_x.copy_(xs[i * BATCH : (i + 1) * BATCH])
            static_y.copy_(ys[i * BATCH : (i + 1) * BATCH])
            graph.replay()
        torch.cuda.synchronize()

    epoch.keep = (model, opt, step)  # type: ignore[attr-defined]  # the graph writes into their tensors
    return epoch


def _timed(fn) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


@pytest.mark.parametrize("arch", ["resnet18", "vgg11", "resnet50"])
def test_harness_vs_plain_graph_loop(benchmark, cifar, arch):
    dev = torch.device("cuda")
    numerics = resolve_numerics("auto", "auto", dev)
    recipe = RECIPES.create("sgd", epochs=160, batch_size=BATCH)
    torch.manual_seed(0)
    harness = Trainer(arch, recipe, cifar, None, 0, dev, numerics=numerics, step="auto")
    plain = plain_graph_epoch(arch, cifar, numerics)
    harness.run_epoch()  # warm-up: capture, allocator, cuDNN handles
    plain()
    times: dict[str, list[float]] = {"harness": [], "plain": []}
    for _ in range(EPOCHS):
        times["harness"].append(_timed(harness.run_epoch))
        times["plain"].append(_timed(plain))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["harness"] / med["plain"]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    info = dict(
        gpu=torch.cuda.get_device_name(),
        numerics=numerics.label,
        step=harness.step_mode,
        fallback=harness.fallback,
        harness_epoch_s=round(med["harness"], 3),
        plain_graph_epoch_s=round(med["plain"], 3),
        harness_over_plain=round(ratio, 3),
        epochs_timed=EPOCHS,
        minutes_for_160_epochs=round(med["harness"] * 160 / 60, 2),
    )
    benchmark.extra_info.update(info)
    record(f"epoch_{arch}", info)
    print(f"\n{arch} on {info['gpu']} ({numerics.label}, step {harness.step_mode}): " + json.dumps(info))
    assert harness.step_mode == "graph"


def test_packed_victims_throughput(benchmark, cifar):
    dev = torch.device("cuda")
    numerics = resolve_numerics("auto", "auto", dev)
    recipe = RECIPES.create("sgd", epochs=160, batch_size=BATCH)
    rates = {}
    for n in (1, 2, 4, 8):
        trainers = []
        for seed in range(n):
            torch.manual_seed(seed)
            trainers.append(Trainer("resnet18", recipe, cifar, None, seed, dev, numerics=numerics, step="auto"))
        images = sum(run_pack(trainers))  # the warm-up epoch (capture) counts the images of one
        times = [_timed(lambda t=trainers: run_pack(t)) for _ in range(2)]
        rates[n] = images / statistics.median(times)
        # every victim of the pack trained on its captured graph, its whole epoch
        assert all(t.step_mode == "graph" and t.fallback is None for t in trainers)
        assert images == n * cifar.num_train
        del trainers
        torch.cuda.empty_cache()
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    info = {
        "gpu": torch.cuda.get_device_name(),
        "numerics": numerics.label,
        **{f"images_per_s_{n}": round(r) for n, r in rates.items()},
        **{f"over_one_{n}": round(r / rates[1], 3) for n, r in rates.items()},
        "victim_minutes_160_epochs_at_best": round(160 * 50000 / max(rates.values()) / 60, 2),
    }
    benchmark.extra_info.update(info)
    record("packed_resnet18", info)
    print("\npacked ResNet-18 victims: " + json.dumps(info))
