"""Victim numerics: precision and memory format, chosen, applied, recorded and re-run."""

import json

import pytest
import torch

import sapabench.core.numerics as numerics_module
from sapabench.benchmark.entries import entries_dir
from sapabench.benchmark.runner import run_suite
from sapabench.benchmark.store import ResultsStore
from sapabench.benchmark.suite import parse_suite
from sapabench.benchmark.verify import verify
from sapabench.core.errors import ConfigError
from sapabench.core.numerics import FP32, Numerics, resolve_numerics
from sapabench.leaderboard.schema import load_entries, seal
from sapabench.victims.recipes import RECIPES
from sapabench.victims.train import Trainer, train_victim

CPU = torch.device("cpu")
BF16_CL = Numerics("bf16", "channels_last")


def test_numerics_are_validated_naming_the_resolved_choices():
    with pytest.raises(ConfigError, match=r"invalid precision='fp16': a resolved precision is fp32 or bf16"):
        Numerics("fp16")
    with pytest.raises(ConfigError, match=r"invalid memory_format='nhwc': .* contiguous or channels_last"):
        Numerics("fp32", "nhwc")
    with pytest.raises(ConfigError, match=r"invalid precision='auto'.*auto is resolved first") as err:
        Numerics("auto")  # auto is a choice of the flags and suites, never a resolved value
    assert "--precision" not in str(err.value)
    assert FP32.label == "fp32" and BF16_CL.label == "bf16+cl"


@pytest.mark.parametrize(("fast", "expected"), [(False, "fp32"), (True, "bf16")])
def test_auto_picks_bf16_only_where_the_hardware_has_it(monkeypatch, fast, expected):
    monkeypatch.setattr(numerics_module, "fast_bf16", lambda device: fast)
    resolved = resolve_numerics("auto", "auto", CPU)
    assert resolved.precision == expected
    assert resolve_numerics("fp32", "contiguous", CPU) == FP32  # explicit choices are kept
    assert resolve_numerics("bf16", "auto", CPU).precision == "bf16"


def test_fast_bf16_detection_reads_the_cpu():
    cpu = torch.cpu
    assert numerics_module.fast_bf16(CPU) == bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def test_the_trainer_applies_the_numerics(tiny_digits):
    recipe = RECIPES.create("sgd", epochs=2)
    trainer = Trainer("convnet", recipe, tiny_digits, None, 0, CPU, numerics=BF16_CL)
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    hook = conv.register_forward_hook(lambda module, inputs, out: seen.append(out.dtype))
    trainer.run_epoch()
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}  # the forward pass ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # fp32 master weights


@pytest.mark.parametrize("numerics", [FP32, Numerics("fp32", "channels_last"), BF16_CL], ids=lambda n: n.label)
def test_same_seed_same_threads_same_numbers(tiny_digits, numerics):
    runs = [train_victim("convnet", "sgd", tiny_digits, seed=3, device="cpu", numerics=numerics) for _ in range(2)]
    assert runs[0].losses == runs[1].losses and runs[0].clean_accuracy == runs[1].clean_accuracy


def test_bf16_changes_the_arithmetic(tiny_digits):
    fp32 = train_victim("convnet", "sgd", tiny_digits, seed=3, device="cpu", numerics=FP32)
    bf16 = train_victim("convnet", "sgd", tiny_digits, seed=3, device="cpu", numerics=BF16_CL)
    assert fp32.losses != bf16.losses
    assert abs(fp32.losses[0] - bf16.losses[0]) < 0.05  # ... but trains the same model


SUITE = """
name = "numerics"
dataset = "digits"
preset = "smoke"
trials = 1

[victim]
epochs = 1
precision = "bf16"
memory_format = "channels_last"

[[grid]]
attacks = ["clean"]
recipes = ["sgd"]
archs = ["convnet"]
"""


def test_suite_numerics_are_parsed_and_checked():
    suite = parse_suite(SUITE)
    assert (suite.precision, suite.memory_format) == ("bf16", "channels_last")
    assert suite.victim == (("epochs", 1),)  # numerics are not recipe options
    with pytest.raises(ConfigError, match=r"line 9: victim precision must be one of auto, fp32, bf16"):
        parse_suite(SUITE.replace('precision = "bf16"', 'precision = "fp16"'), "numerics.toml")
    plain = parse_suite(SUITE.replace('precision = "bf16"\nmemory_format = "channels_last"\n', ""))
    assert (plain.precision, plain.memory_format) == ("auto", "auto")


def test_cell_keys_and_entry_ids_of_fp32_are_those_of_older_versions():
    """Older run folders resume and older entries keep their ids: fp32 adds nothing to the key."""
    (cell,) = parse_suite(SUITE).cells(FP32)
    assert cell.key == "ef0447445876d5c2"  # the key this cell had before numerics existed (a38336d)
    assert cell.setting.entry_id == "f96edc6bbd1bbfe6"
    (bf16,) = parse_suite(SUITE).cells(BF16_CL)
    assert bf16.key != cell.key and bf16.setting.entry_id != cell.setting.entry_id


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bf16-run")
    run_suite(parse_suite(SUITE), out, device="cpu", progress=False, log=lambda m: None)
    return out


def test_numerics_are_recorded_in_rows_and_entries(bf16_run):
    (row,) = ResultsStore(bf16_run).rows()
    assert (row["precision"], row["memory_format"]) == ("bf16", "channels_last")
    assert row["provenance"]["isa"] == torch.backends.cpu.get_cpu_capability()
    (entry,) = load_entries(entries_dir(bf16_run))
    assert (entry["setting"]["precision"], entry["setting"]["memory_format"]) == ("bf16", "channels_last")
    assert entry["provenance"]["isa"] == row["provenance"]["isa"]


def test_verify_reruns_an_entry_in_its_own_numerics(bf16_run, monkeypatch):
    import sapabench.benchmark.trial as trial_module

    used = []
    real = trial_module.train_packed

    def spy(specs, **kwargs):
        used.extend(spec.numerics for spec in specs)
        return real(specs, **kwargs)

    monkeypatch.setattr(trial_module, "train_packed", spy)
    (verdict,) = verify(entries_dir(bf16_run), device="cpu", write_report=False).verdicts
    assert verdict.accepted and verdict.mode == "exact"
    assert used == [BF16_CL]


def test_an_entry_from_another_instruction_set_is_verified_statistically(bf16_run, tmp_path):
    (path,) = sorted(entries_dir(bf16_run).glob("*.json"))
    entry = json.loads(path.read_text())
    entry["provenance"]["isa"] = "AVX512" if entry["provenance"]["isa"] != "AVX512" else "AVX2"
    (tmp_path / path.name).write_text(json.dumps(seal(entry)))
    (verdict,) = verify(tmp_path / path.name, device="cpu", write_report=False).verdicts
    assert verdict.mode == "statistical"
