"""Victim protocols train what they say, start where they say, and refuse bad checkpoints."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from sapabench.benchmark.cli import main
from sapabench.benchmark.suite import checkpoint_of, parse_suite, pretrained_label
from sapabench.benchmark.trial import Trial, start_of
from sapabench.core.datasets import DataSource, load_dataset
from sapabench.core.errors import ConfigError
from sapabench.core.runtime import seeded
from sapabench.victims.pretrained import Checkpoint, checkpoint_weights, initial_weights, state_of
from sapabench.victims.protocols import get_protocol, head
from sapabench.victims.recipes import RECIPES
from sapabench.victims.train import Trainer, train_victim

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def pretrained(digits):
    """A clean convnet after one epoch: weights different from any fresh initialisation."""
    return state_of(train_victim("convnet", RECIPES.create("sgd", epochs=1), digits, seed=7).model)


def _same(a: dict, b: dict, keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


def test_linear_trains_only_a_fresh_head_and_keeps_the_extractor_bit_for_bit(digits, pretrained):
    result = train_victim(
        "convnet", RECIPES.create("sgd", epochs=1), digits, seed=3, protocol="linear", start=pretrained
    )
    after = state_of(result.model)
    name, _ = head(result.model)
    head_keys = [k for k in after if k.startswith(name + ".")]
    frozen = [k for k in after if k not in head_keys]
    assert head_keys and frozen
    assert _same(after, pretrained, frozen)  # weights and BatchNorm statistics untouched
    assert not _same(after, pretrained, head_keys)
    # the head started fresh (the victim's own seed), not from the pretrained head
    with seeded(3, CPU):
        trainer = Trainer(
            "convnet",
            RECIPES.create("sgd", epochs=1),
            digits,
            None,
            3,
            CPU,
            None,
            start=pretrained,
            protocol=get_protocol("linear"),
        )
    start = state_of(trainer.model)
    assert _same(start, initial_weights("convnet", digits, 3), head_keys)
    assert [p.requires_grad for p in trainer.model.parameters()].count(True) == len(head_keys)


def test_finetune_starts_from_the_pretrained_weights_at_a_tenth_of_the_lr(digits, pretrained):
    recipe = RECIPES.create("sgd", epochs=1)
    trainer = Trainer(
        "convnet", recipe, digits, None, 3, CPU, None, protocol=get_protocol("finetune"), start=pretrained
    )
    assert _same(state_of(trainer.model), pretrained, pretrained)
    assert trainer.recipe.train.lr == pytest.approx(recipe.train.lr / 10)
    assert all(p.requires_grad for p in trainer.model.parameters())


def test_known_init_starts_bit_identical_to_the_surrogates_initial_weights(digits):
    poison = SimpleNamespace(surrogate={"arch": "convnet", "recipe": "sgd", "epochs": 2, "seed": 5})
    trial = Trial("convnet", "sgd", (), "none", 100, DataSource("digits"), "cpu", protocol="known-init")
    start = start_of(trial, poison, digits, CPU)
    with seeded(5, CPU):  # how the surrogate of craft seed 5 began its training
        surrogate = Trainer("convnet", RECIPES.create("sgd", epochs=2), digits, None, 5, CPU)
    assert _same(start, state_of(surrogate.model), start)
    other = SimpleNamespace(surrogate={**poison.surrogate, "arch": "vgg11"})
    with pytest.raises(ConfigError, match="surrogate's architecture"):
        start_of(trial, other, digits, CPU)


def test_scratch_is_unchanged_by_protocols(digits):
    recipe = RECIPES.create("sgd", epochs=1)
    a = train_victim("convnet", recipe, digits, seed=1)
    b = train_victim("convnet", recipe, digits, seed=1, protocol="scratch")
    assert a.losses == b.losses
    with pytest.raises(ConfigError, match="needs starting weights"):
        train_victim("convnet", recipe, digits, seed=1, protocol="linear")


def test_suites_name_protocols_and_refuse_unknown_ones():
    base = 'name = "t"\ndataset = "digits"\n[[grid]]\nattacks = ["error-min"]\nrecipes = ["sgd"]\narchs = ["convnet"]\n'
    suite = parse_suite(base + 'protocols = ["scratch", "linear"]\n')
    assert {(c.protocol, c.pretrained) for c in suite.cells()} == {("scratch", "none"), ("linear", "surrogate")}
    # a poison is crafted once for every protocol
    assert len(suite.poisons()) == 1
    with pytest.raises(ConfigError, match="did you mean 'linear'"):
        parse_suite(base + 'protocols = ["lineer"]\n')


def _checkpoint(tmp_path, state, name="ckpt.safetensors"):
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_checkpoints_of_another_arch_or_class_count_or_changed_files_are_refused(tmp_path, digits, pretrained):
    good = _checkpoint(tmp_path, pretrained)
    ckpt = Checkpoint.pin(good)
    assert _same(checkpoint_weights(ckpt, "convnet", digits), pretrained, pretrained)
    assert checkpoint_of(pretrained_label(str(good))) == ckpt
    wrong_classes = dict(pretrained)
    name = head(train_victim("convnet", RECIPES.create("sgd", epochs=1), digits, seed=0).model)[0]
    wrong_classes[f"{name}.weight"] = torch.zeros(3, wrong_classes[f"{name}.weight"].shape[1])
    wrong_classes[f"{name}.bias"] = torch.zeros(3)
    with pytest.raises(ConfigError, match="number of classes"):
        checkpoint_weights(Checkpoint.pin(_checkpoint(tmp_path, wrong_classes, "c.safetensors")), "convnet", digits)
    with pytest.raises(ConfigError, match="not a vgg11"):
        checkpoint_weights(ckpt, "vgg11", digits)
    good.write_bytes(good.read_bytes()[:-8] + b"tampered")
    with pytest.raises(ConfigError, match="changed since the run was planned"):
        checkpoint_weights(ckpt, "convnet", digits)
    with pytest.raises(ConfigError, match="does not exist"):
        Checkpoint.pin(tmp_path / "missing.safetensors")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b"not a safetensors file"), "not a readable safetensors file"),
        (lambda p: save_file({"w": torch.zeros(2)}, str(p)), "is not a convnet"),
    ],
)
def test_cli_refuses_bad_pretrained_checkpoints_in_one_line(tmp_path, capsys, make, message):
    path = tmp_path / "bad.safetensors"
    make(path)
    code = main(["train", "--protocol", "linear", "--pretrained", str(path), "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_an_unknown_protocol_with_a_suggestion(capsys):
    code = main(["train", "--protocol", "fine-tune", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'finetune'" in err


def test_targeted_trials_record_the_margin_and_the_same_seed_clean_reference(tmp_path, digits):
    from sapabench.attacks import create_attack, test_logits
    from sapabench.benchmark.trial import DONE, PoisonRef, run_trial
    from sapabench.core.poison import recorded_sha256

    poison = create_attack("gradient-matching", dataset="digits", preset="smoke").run(digits, seed=1)
    folder = poison.save(tmp_path / "p")
    ref = PoisonRef(str(folder), recorded_sha256(folder), poison.craft_s)
    trial = Trial(
        "convnet",
        "sgd",
        (("epochs", 1),),
        "none",
        100,
        DataSource("digits"),
        "cpu",
        ref,
        protocol="linear",
        pretrained="surrogate",
    )
    record = run_trial(trial)
    assert record.status == DONE, record.error
    d = record.diagnostics
    assert record.metric == float(d["adversarial_margin"] > 0)
    # the reference is the clean victim with the trial's seed, protocol and starting weights
    start = start_of(trial, poison, digits, CPU)
    clean = train_victim(
        "convnet", RECIPES.create("sgd", epochs=1), digits, seed=100, protocol="linear", start=start
    ).model
    logits = test_logits(clean, digits.test_x)[poison.threat.target_index]
    adv = poison.threat.adversarial_class
    others = torch.cat([logits[:adv], logits[adv + 1 :]])
    assert d["clean_adversarial_margin"] == pytest.approx(float(logits[adv] - others.max()), abs=1e-5)
    # the linear victim's extractor is the attacker's surrogate itself (white-box)
    surrogate = poison.surrogate
    assert surrogate["arch"] == "convnet" and surrogate["seed"] == 1
