"""Crafting numerics: attacks that support them craft in bf16 / channels-last, every poison
records what it was crafted in, the numerics are part of the poison's key (cached poisons never
mix numerics, fp32 keys are those of older versions), and the SAPA step stays exact in bf16."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sapabench.attacks import crafting_numerics, create_attack
from sapabench.attacks.sapa import mean_loss_terms, trainable, worst_case_weights
from sapabench.benchmark.entries import entries_dir
from sapabench.benchmark.runner import run_suite
from sapabench.benchmark.store import ResultsStore
from sapabench.benchmark.suite import parse_suite
from sapabench.core.errors import ConfigError
from sapabench.core.numerics import FP32, InNumerics, Numerics
from sapabench.core.poison import CRAFT_NUMERICS, META_FILE, SEAL, PoisonSet, sealed
from sapabench.leaderboard.schema import load_entries
from sapabench.victims.archs import build_model

BF16_CL = Numerics("bf16", "channels_last")

SUITE = """
name = "craftnum"
dataset = "digits"
preset = "smoke"
trials = 1
clean_baseline = false

[victim]
epochs = 1

[[grid]]
attacks = ["error-min", "gradient-matching"]
recipes = ["sgd"]
archs = ["convnet"]
"""

# (poison key, cell key, entry id) of each attack's cell before crafting numerics existed (d0a1b44)
OLDER = {
    "error-min": ("error-min-s0-171920d1eef51365", "8818df6b8f8475bd", "6e4f9dd731961004"),
    "gradient-matching": ("gradient-matching-s0-e6b64f05cb079012", "99bf947611ef3264", "164b41a7fde01654"),
}


def test_fp32_poisons_cells_and_entries_keep_the_keys_of_older_versions():
    """Older run folders resume and older entries keep their ids: fp32 crafting adds nothing."""
    for cell in parse_suite(SUITE).cells(FP32, FP32):
        assert cell.poison.numerics == FP32
        assert (cell.poison.key, cell.key, cell.setting.entry_id) == OLDER[cell.attack]


def test_the_crafting_numerics_are_part_of_the_poison_key_where_the_attack_crafts_in_them():
    cells = {c.attack: c for c in parse_suite(SUITE).cells(FP32, BF16_CL)}
    em, gm = cells["error-min"], cells["gradient-matching"]
    assert em.poison.numerics == BF16_CL and em.setting.craft_numerics == BF16_CL
    assert em.poison.key != OLDER["error-min"][0] and em.key != OLDER["error-min"][1]
    assert em.setting.entry_id != OLDER["error-min"][2]
    # an attack that does not compute in numerics is crafted, and keyed, in plain fp32
    assert gm.poison.numerics == FP32 and (gm.poison.key, gm.key, gm.setting.entry_id) == OLDER["gradient-matching"]
    assert crafting_numerics("sapa-error-max", BF16_CL) == BF16_CL
    assert crafting_numerics("sleeper-agent", BF16_CL) == FP32
    suite = parse_suite(SUITE + '\n[craft]\nprecision = "bf16"\nmemory_format = "channels_last"\n')
    assert (suite.craft_precision, suite.craft_memory_format) == ("bf16", "channels_last")
    with pytest.raises(ConfigError, match=r"craft precision must be one of auto, fp32, bf16, got 'fp16'"):
        parse_suite(SUITE + '\n[craft]\nprecision = "fp16"\n')
    with pytest.raises(ConfigError, match=r"unknown craft option 'dtype'"):
        parse_suite(SUITE + '\n[craft]\ndtype = "bf16"\n')


@pytest.mark.parametrize("attack", ["error-min", "sapa-error-max"])
def test_a_poison_records_its_crafting_numerics_and_they_are_sealed(tiny_digits, tmp_path, attack):
    poison = create_attack(attack, dataset="digits", preset="smoke").run(tiny_digits, seed=1, numerics=BF16_CL)
    assert poison.numerics == BF16_CL
    folder = poison.save(tmp_path / "p")
    meta = json.loads((folder / META_FILE).read_text())
    assert meta[CRAFT_NUMERICS] == {"precision": "bf16", "memory_format": "channels_last"}
    assert PoisonSet.load(folder).numerics == BF16_CL
    if attack == "sapa-error-max":  # its clean surrogate was trained in the crafting numerics too
        assert (poison.surrogate["precision"], poison.surrogate["memory_format"]) == ("bf16", "channels_last")
        assert poison.surrogate["cache_key"].endswith("-bf16-channels_last")
    meta[CRAFT_NUMERICS]["precision"] = "fp32"  # an edit is refused by the seal, naming the field
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"craft_numerics in .* differ from what was sealed"):
        PoisonSet.load(folder)
    meta[CRAFT_NUMERICS]["precision"] = "fp16"  # re-sealed with a value no crafting has: one line, no flag to set
    (folder / META_FILE).write_text(json.dumps(sealed({k: v for k, v in meta.items() if k != SEAL})))
    with pytest.raises(
        ConfigError, match=r"poison check failed: craft_numerics in .*: invalid precision='fp16'"
    ) as err:
        PoisonSet.load(folder)
    assert "--precision" not in str(err.value) and "\n" not in str(err.value)


def test_an_attack_that_does_not_craft_in_numerics_records_fp32(tiny_digits):
    poison = create_attack("separable", dataset="digits", preset="smoke").run(tiny_digits, seed=0, numerics=BF16_CL)
    assert poison.numerics == FP32


def test_bf16_crafting_changes_the_arithmetic_not_the_bounds(tiny_digits):
    attack = create_attack("error-max", dataset="digits", preset="smoke")
    fp32 = attack.run(tiny_digits, seed=2, numerics=FP32)
    bf16 = attack.run(tiny_digits, seed=2, numerics=BF16_CL)
    assert torch.equal(fp32.indices, bf16.indices)
    assert not torch.equal(fp32.delta, bf16.delta)  # the passes ran in bf16 ...
    assert float(bf16.delta.abs().max()) <= bf16.eps + 1e-6 and bf16.delta.dtype == torch.float32  # ... delta in fp32
    again = attack.run(tiny_digits, seed=2, numerics=BF16_CL)
    assert torch.equal(again.delta, bf16.delta)  # same seed, same numerics: same poison


def test_the_sapa_step_in_bf16_moves_the_weights_every_pass_uses_and_restores_them_bit_for_bit(tiny_digits):
    torch.manual_seed(0)
    model = BF16_CL.wrapped(build_model("convnet", tiny_digits)).eval()
    assert isinstance(model, InNumerics)
    x, y = tiny_digits.train_x[:64], tiny_digits.train_y[:64]
    before = {k: v.clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def loss() -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y)

    at_theta = float(loss())
    with worst_case_weights(model, lambda: mean_loss_terms(model, x, y, chunk=16), 0.5) as rec:
        assert rec.v_norm == pytest.approx(0.5, rel=1e-4)
        inside = float(loss())
        # the same weights set by hand in a fresh model give the same bf16 loss: no pass reads a
        # stale bf16 copy of theta (autocast's weight cache lives for one forward pass only)
        twin = BF16_CL.wrapped(build_model("convnet", tiny_digits)).eval()
        twin.load_state_dict(model.state_dict())
        assert float(nn.functional.cross_entropy(twin(x), y).detach()) == inside
        moved = [p.detach() - before[name] for name, p in model.named_parameters()]
        assert all(torch.allclose(m, v, atol=1e-6) for m, v in zip(moved, rec.v_hat, strict=True))
    assert inside > at_theta  # the worst case in the radius raises the loss the passes compute
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit
    assert all(
        p.is_contiguous(memory_format=torch.channels_last) for p in trainable(model) if p.dim() == 4
    )  # and still channels-last
    assert float(loss()) == at_theta


@pytest.fixture(scope="module")
def bf16_crafted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("craft-run")
    text = SUITE.replace('"error-min", "gradient-matching"', '"error-min"')
    suite = parse_suite(text + '\n[craft]\nprecision = "bf16"\nmemory_format = "channels_last"\n')
    run_suite(suite, out, device="cpu", progress=False, log=lambda m: None)
    return out


def test_the_crafting_numerics_reach_the_rows_the_poisons_and_the_entries(bf16_crafted_run):
    (row,) = ResultsStore(bf16_crafted_run).rows()
    assert (row["craft_precision"], row["craft_memory_format"]) == ("bf16", "channels_last")
    (folder,) = (bf16_crafted_run / "poisons").iterdir()
    assert PoisonSet.load(folder).numerics == BF16_CL
    (entry,) = load_entries(entries_dir(bf16_crafted_run))
    assert (entry["setting"]["craft_precision"], entry["setting"]["craft_memory_format"]) == ("bf16", "channels_last")


def test_the_attack_command_crafts_in_the_numerics_it_is_given(tmp_path, capsys):
    from sapabench.benchmark.cli import main

    out = tmp_path / "p"
    argv = ["attack", "error-max", "--preset", "smoke", "--seed", "3", "--out", str(out)]
    assert main([*argv, "--craft-precision", "bf16", "--craft-memory-format", "channels_last"]) == 0
    assert "(seed 3, cpu, bf16+cl)" in capsys.readouterr().err
    assert PoisonSet.load(out).numerics == BF16_CL
    assert (
        main([*argv[:-1], str(tmp_path / "q"), "--craft-precision", "fp32", "--craft-memory-format", "contiguous"]) == 0
    )
    assert PoisonSet.load(tmp_path / "q").numerics == FP32


def _clean_run_in_child(ready, result, cache: str) -> None:
    """In a spawned process: signal ``ready``, then ask for the clean run the parent is training;
    puts whether it came from the cache on ``result``."""
    import os

    os.environ["SAPABENCH_CACHE"] = cache
    from sapabench.core.datasets import load_dataset
    from sapabench.victims.pretrained import CleanRun, clean_model

    digits = load_dataset("digits")
    ready.set()
    _, info = clean_model(CleanRun("convnet", "sgd", 1, seed=5), digits, torch.device("cpu"))
    result.put(bool(info["cached"]))


def test_a_clean_run_two_workers_need_at_once_is_trained_once(digits, tmp_path, monkeypatch):
    """An attack and its SAPA twin crafted at once in two workers share one surrogate: the second
    waits for the first's training and reads it from the cache."""
    import multiprocessing
    import time

    from sapabench.victims import pretrained

    monkeypatch.setenv("SAPABENCH_CACHE", str(tmp_path))
    run = pretrained.CleanRun("convnet", "sgd", 1, seed=5)
    real = pretrained._trained
    ctx = multiprocessing.get_context("spawn")
    ready, result = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_clean_run_in_child, args=(ready, result, str(tmp_path)))

    def slow_trained(*args):
        # hold the lock while the child asks for the same run, and only then train and cache it
        child.start()
        assert ready.wait(300)
        time.sleep(2.0)
        return real(*args)

    monkeypatch.setattr(pretrained, "_trained", slow_trained)
    try:
        _, info = pretrained.clean_model(run, digits, torch.device("cpu"))
        assert info["cached"] is False
        assert result.get(timeout=300) is True  # the child waited, then read the parent's model
    finally:
        child.join(60)
        if child.is_alive():
            child.kill()
