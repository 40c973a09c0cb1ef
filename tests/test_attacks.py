"""Every registered attack, on tiny data with its smoke preset: bounds, determinism, artifacts."""

import json

import pytest
import torch

from sapabench.attacks import ATTACKS, PoisonSet, create_attack
from sapabench.attacks.base import Attack
from sapabench.core.errors import ConfigError
from sapabench.core.poison import META_FILE, TENSORS_FILE, migrate, sealed

NAMES = ATTACKS.list()


@pytest.fixture(scope="module")
def crafted(tiny_digits, tmp_path_factory):
    """Each attack crafted twice with seed 0 (first with an empty surrogate cache, then with the
    surrogate cached: both must give the same poison) and once with seed 1."""
    import os

    out, old = {}, os.environ.get("SAPABENCH_CACHE")
    try:
        for name in NAMES:
            os.environ["SAPABENCH_CACHE"] = str(tmp_path_factory.mktemp(f"cache-{name}"))
            attack = create_attack(name, dataset="digits", preset="smoke")
            out[name] = (
                attack.run(tiny_digits, seed=0),
                attack.run(tiny_digits, seed=0),
                attack.run(tiny_digits, seed=1),
            )
    finally:
        if old is None:
            os.environ.pop("SAPABENCH_CACHE", None)
        else:
            os.environ["SAPABENCH_CACHE"] = old
    return out


BASELINES = [
    "poison-frogs",
    "bullseye-polytope",
    "metapoison",
    "hidden-trigger",
    "clean-label-backdoor",
    "separable",
    "autoregressive",
]


def test_the_sapa_pairs_and_the_table_baselines_are_registered():
    bases = ["gradient-matching", "sleeper-agent", "error-min", "error-max"]
    assert sorted(NAMES) == sorted(bases + [f"sapa-{b}" for b in bases] + BASELINES)
    for b in bases:
        base, sapa = create_attack(b), create_attack(f"sapa-{b}")
        assert type(base) is type(sapa) and base.config == sapa.config  # same class, same config
        assert base.rho is None and sapa.rho == 0.05  # ... differing only by the SAPA step


@pytest.mark.parametrize("name", NAMES)
def test_attack_respects_eps_budget_and_pixel_range(crafted, tiny_digits, name):
    poison = crafted[name][0]
    assert poison.attack == name and poison.num_poisons >= 1
    assert float(poison.delta.abs().max()) <= poison.eps + 1e-6
    assert poison.num_poisons <= int(poison.budget * tiny_digits.num_train + 1e-9)
    x = tiny_digits.train_x[poison.indices] + poison.delta
    assert float(x.min()) >= -1e-6 and float(x.max()) <= 1 + 1e-6
    assert float(poison.delta.abs().sum()) > 0  # it perturbs something
    assert poison.labels is None  # all four attacks are clean-label
    poison.validate(tiny_digits)


@pytest.mark.parametrize("name", NAMES)
def test_attack_is_deterministic_under_a_seed(crafted, name):
    a, b, c = crafted[name]
    assert torch.equal(a.indices, b.indices) and torch.equal(a.delta, b.delta) and a.threat == b.threat
    assert not torch.equal(a.delta, c.delta)


@pytest.mark.parametrize("name", NAMES)
def test_artifact_round_trip_is_bit_exact(crafted, tiny_digits, tmp_path, name):
    poison = crafted[name][0]
    poison.save(tmp_path / "p")
    back = PoisonSet.load(tmp_path / "p", tiny_digits)
    assert torch.equal(back.indices, poison.indices) and torch.equal(back.delta, poison.delta)
    assert back.threat == poison.threat and back.config == poison.config and back.seed == poison.seed
    assert (back.trigger is None) == (poison.trigger is None)
    if poison.trigger is not None:
        assert torch.equal(back.trigger, poison.trigger)
    assert back.eps == poison.eps and back.budget == poison.budget and back.craft_s == poison.craft_s


@pytest.mark.parametrize("name", [n for n in NAMES if n not in BASELINES])
def test_sapa_variants_record_a_nonzero_step(crafted, name):
    extra = crafted[name][0].extra
    norms = extra.get("sapa_v_norms", [extra.get("sapa_v_norm")])
    if name.startswith("sapa-"):
        assert all(n == pytest.approx(0.05, rel=1e-4) for n in norms)
    else:
        assert all(n == 0.0 for n in norms)


def test_threat_metadata(crafted, tiny_digits):
    gm = crafted["gradient-matching"][0]
    t = gm.threat
    assert t.kind == "targeted" and t.adversarial_class != int(tiny_digits.test_y[t.target_index])
    assert (tiny_digits.train_y[gm.indices] == t.adversarial_class).all()  # poisons from the adversarial class
    sa = crafted["sleeper-agent"][0]
    assert sa.threat.kind == "backdoor" and sa.threat.source_class != sa.threat.target_class
    assert (tiny_digits.train_y[sa.indices] == sa.threat.target_class).all() and sa.trigger.shape == (1, 4, 4)
    assert crafted["error-min"][0].threat.kind == "untargeted"


# ------------------------------------------------------------------------------ bad input


def _saved(crafted, tmp_path, name="gradient-matching"):
    folder = tmp_path / "p"
    crafted[name][0].save(folder)
    return folder


def test_a_format_1_artifact_loads_only_through_the_warned_migration(crafted, tiny_digits, tmp_path):
    """Poison folders written before sealing (here format 1, seconds not yet named *_s) are
    refused with the command that migrates them; the migration warns, seals and renames."""
    folder = _saved(crafted, tmp_path)
    meta = json.loads((folder / META_FILE).read_text())
    meta["format_version"] = 1
    del meta["seal"]
    meta["craft_seconds"] = meta.pop("craft_s")
    meta["extra"]["surrogate_train_seconds_excluded"] = meta["extra"].pop("surrogate_train_s_excluded")
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"format 1, written before poison metadata was sealed.*migrate-poison"):
        PoisonSet.load(folder, tiny_digits)
    with pytest.warns(UserWarning, match="trusted as found"):
        migrate(folder)
    assert json.loads((folder / META_FILE).read_text())["format_version"] == 3
    back = PoisonSet.load(folder, tiny_digits)
    original = crafted["gradient-matching"][0]
    assert back.craft_s == original.craft_s and torch.equal(back.delta, original.delta)
    assert back.extra["surrogate_train_s_excluded"] == original.extra["surrogate_train_s_excluded"]


def test_tampered_tensors_are_refused(crafted, tiny_digits, tmp_path):
    folder = _saved(crafted, tmp_path)
    data = bytearray((folder / TENSORS_FILE).read_bytes())
    data[-5] ^= 0xFF
    (folder / TENSORS_FILE).write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"sha256.*tampered"):
        PoisonSet.load(folder, tiny_digits)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("eps", 2.0, r"eps=2.0 must be in \(0, 1\]"),
        ("eps", 1 / 255, r"\|delta\| reaches .* > eps"),
        ("budget", 0.001, r"exceed the budget"),
        ("budget", -0.1, r"budget=-0.1"),
        ("num_train", 3, r"indices outside|exceed the budget"),
        ("threat", {"kind": "targeted"}, r"targeted threat model needs target_index"),
        ("format_version", 99, r"format_version"),
        ("seed", "zero", r"field 'seed' has the wrong type"),
    ],
)
def test_resealed_bad_metadata_is_refused_naming_the_check(crafted, tiny_digits, tmp_path, field, value, message):
    """Metadata edited *and* re-sealed (a forger who recomputes the seal) still meets the
    content checks."""
    folder = _saved(crafted, tmp_path)
    meta = json.loads((folder / META_FILE).read_text())
    meta[field] = value
    (folder / META_FILE).write_text(json.dumps(sealed({k: v for k, v in meta.items() if k != "seal"})))
    with pytest.raises(ConfigError, match=message):
        PoisonSet.load(folder, tiny_digits)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("threat", "adversarial_class"), "next class"),
        (("threat", "target_index"), "next index"),
        (("eps",), 0.5),
        (("budget",), 0.5),
        (("dataset",), "cifar10"),
        (("dataset_fingerprint",), "0" * 16),
        (("config", "steps"), 7),
        (("seed",), 12),
        (("craft_s",), 0.001),
    ],
)
def test_an_edited_metadata_field_is_refused_by_name(crafted, tiny_digits, tmp_path, path, value):
    """Any field of poison.json edited after saving (the threat model, eps, budget, dataset,
    the attack's config, even the crafting time) is refused, naming the field."""
    folder = _saved(crafted, tmp_path)
    meta = json.loads((folder / META_FILE).read_text())
    node = meta
    for key in path[:-1]:
        node = node[key]
    if value in ("next class", "next index"):
        value = (node[path[-1]] + 1) % (10 if value == "next class" else 100)
    assert path[-1] in node and node[path[-1]] != value
    node[path[-1]] = value
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=rf"{path[0]} in .* differ from what was sealed"):
        PoisonSet.load(folder, tiny_digits)


def test_missing_or_broken_files(tmp_path, crafted):
    with pytest.raises(ConfigError, match="not a poison folder"):
        PoisonSet.load(tmp_path)
    folder = _saved(crafted, tmp_path)
    (folder / META_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        PoisonSet.load(folder)


def test_poison_from_another_dataset_is_refused(crafted, digits, tmp_path):
    folder = _saved(crafted, tmp_path)
    with pytest.raises(ConfigError, match=r"crafted on dataset 'digits' .*not on 'digits'|fingerprint"):
        PoisonSet.load(folder, digits)  # full digits: a different fingerprint than the tiny subset


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eps": 0}, r"invalid eps=0"),
        ({"eps": 1.5}, r"invalid eps=1.5"),
        ({"budget": 0}, r"invalid budget=0"),
        ({"budget": 2}, r"invalid budget=2"),
        ({"rho": -1}, r"rho is an option of SAPA attacks only; use 'sapa-gradient-matching'"),
        ({"steps": 0}, r"invalid steps=0"),
        ({"stepz": 3}, r"unknown attack option 'stepz'"),
    ],
)
def test_bad_attack_options(options, message):
    with pytest.raises(ConfigError, match=message):
        create_attack("gradient-matching", **options)


def test_sapas_radius_is_checked_on_the_sapa_attack():
    with pytest.raises(ConfigError, match=r"invalid rho=-1"):
        create_attack("sapa-gradient-matching", rho=-1)


def test_budget_that_allows_no_poison(tiny_digits):
    with pytest.raises(ConfigError, match="allows no poison"):
        create_attack("gradient-matching", preset="smoke", budget=0.001).run(tiny_digits)


def test_unknown_attack_and_preset():
    with pytest.raises(ConfigError, match="did you mean 'sapa-error-min'"):
        create_attack("sapa-error-mn")
    with pytest.raises(ConfigError, match="unknown preset"):
        create_attack("error-min", preset="huge")


def test_run_leaves_the_callers_rng_alone(tiny_digits):
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    create_attack("error-max", preset="smoke").run(tiny_digits, seed=0)
    assert torch.equal(torch.rand(2), expected)


def test_every_attack_documents_itself():
    for name in NAMES:
        attack: Attack = create_attack(name)
        doc = type(attack).__doc__ or ""
        for section in ("Threat model", "eps / budget", "Objective", "Options", "Example"):
            assert section in doc, f"{name}: docstring lacks {section!r}"
