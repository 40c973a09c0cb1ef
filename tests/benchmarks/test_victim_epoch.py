"""One epoch of the default victim: the harness against a hand-written PyTorch loop.

Run: ``python -m pytest tests/benchmarks/test_victim_epoch.py --run-benchmarks``. The default
victim is the main job's: the convnet on the whole ``digits`` training set with the ``sgd``
recipe (batch 64, SGD with momentum and weight decay, a per-step LR schedule, random crop). Three loops do that same work, timed in one run, interleaved, median of ``REPEATS``:

- ``plain``: a hand-written fp32 PyTorch loop (the same model, data, optimiser and schedule, and
  kornia's random crop per batch; nothing of the harness);
- ``harness fp32``: :class:`sapabench.victims.train.Trainer` in plain fp32;
- ``harness default``: the Trainer in the numerics ``auto`` resolves to on this machine.

``extra_info`` reports the medians and the two ratios: ``harness_fp32_over_plain`` (goal at
most 1.05) and ``plain_over_harness_default`` (the default's speed-up over plain fp32).
"""

from __future__ import annotations

import statistics
import time

import kornia.augmentation as K
import pytest
import torch
from torch import nn

from sapabench.core.numerics import FP32, resolve_numerics
from sapabench.victims.archs import build_model
from sapabench.victims.recipes import RECIPES
from sapabench.victims.schedules import lr_multiplier
from sapabench.victims.train import Trainer

REPEATS = 7
EPOCHS = 1000  # the schedule's length; only the first few epochs run


def plain_epoch_loop(digits, device):
    """A plain fp32 training loop doing the harness's ``sgd`` work; returns a one-epoch closure."""
    recipe = RECIPES.create("sgd", epochs=EPOCHS)
    batch = recipe.train.batch_size or digits.default_batch_size
    torch.manual_seed(0)
    model = build_model("convnet", digits).to(device).train()
    x_all, y_all = digits.train_x.to(device), digits.train_y.to(device)
    cfg = recipe.train
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = len(x_all) // batch + (len(x_all) % batch > 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(cfg.schedule, EPOCHS, steps))
    crop = K.RandomCrop((digits.img_size, digits.img_size), padding=max(1, digits.img_size // 8), p=1.0)
    shuffle = torch.Generator().manual_seed(0)

    def epoch() -> float:
        total = torch.zeros(())
        for idx in torch.randperm(len(x_all), generator=shuffle).split(batch):
            if len(idx) < 2:
                continue
            x, y = crop(x_all[idx]), y_all[idx]
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach() * len(idx)
        return float(total)

    return epoch


def test_victim_epoch_harness_vs_plain(benchmark, digits):
    device = torch.device("cpu") if not torch.cuda.is_available() else torch.device("cuda")
    default = resolve_numerics("auto", "auto", device)
    recipe = RECIPES.create("sgd", epochs=EPOCHS)
    harness_fp32 = Trainer("convnet", recipe, digits, None, 0, device, numerics=FP32)
    harness_default = Trainer("convnet", recipe, digits, None, 0, device, numerics=default)
    loops = {
        "plain": plain_epoch_loop(digits, device),
        "harness_fp32": harness_fp32.run_epoch,
        "harness_default": harness_default.run_epoch,
    }
    for run in loops.values():  # warm-up: allocator, kernels, lazy initialisation
        run()
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(REPEATS):
        for name, run in loops.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    benchmark.pedantic(harness_default.run_epoch, rounds=3, iterations=1)
    benchmark.extra_info.update(
        device=str(device),
        threads=torch.get_num_threads(),
        default_numerics=default.label,
        images=digits.num_train,
        repeats=REPEATS,
        **{f"{name}_median_s": round(m, 4) for name, m in median.items()},
        harness_fp32_over_plain=round(median["harness_fp32"] / median["plain"], 3),
        plain_over_harness_default=round(median["plain"] / median["harness_default"], 3),
    )
    print(
        f"\nvictim epoch on {device} ({torch.get_num_threads()} threads), median of {REPEATS}: "
        + ", ".join(f"{name} {m:.3f} s" for name, m in median.items())
        + f"; harness fp32 / plain = {median['harness_fp32'] / median['plain']:.3f}, "
        f"plain / harness {default.label} = {median['plain'] / median['harness_default']:.3f}"
    )
    assert all(m > 0 for m in median.values())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_victim_epoch_numerics(benchmark, digits, precision, memory_format):
    """Every numerics setting on its own, for the table in the README (bf16 on a CPU without
    bf16 hardware is emulated: expect it to be slower there)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    numerics = resolve_numerics(precision, memory_format, device)
    trainer = Trainer("convnet", RECIPES.create("sgd", epochs=EPOCHS), digits, None, 0, device, numerics=numerics)
    trainer.run_epoch()
    stats, count = benchmark.pedantic(trainer.run_epoch, rounds=3, iterations=1)
    benchmark.extra_info.update(device=str(device), numerics=numerics.label, images_per_s=count / stats.epoch_s)
    assert stats.loss == stats.loss
