from pathlib import Path

import pytest

from sapabench.benchmark.suite import builtin_suites, load_suite, parse_suite
from sapabench.core.errors import ConfigError

GOOD = """
name = "mine"
dataset = "digits"
preset = "smoke"
trials = 2
craft_seeds = [0, 1]

[victim]
epochs = 1

[[grid]]
attacks = ["error-min", "sapa-error-min"]
recipes = ["sgd", "adam"]
archs = ["convnet"]
"""


def test_builtin_suites_are_listed_and_valid():
    names = set(builtin_suites())
    assert {"smoke", "default", "defenses", "table4", "targeted", "backdoor", "untargeted"} <= names
    for name in names:
        suite = load_suite(name)
        assert suite.cells() and suite.name == name


def test_the_measurement_suites_in_the_docs_load_and_the_equivalence_runs_use_fresh_poisons():
    """The suites a dated docs page was measured with stay runnable; an equivalence run is
    designed on its pilot's spread and never re-uses the pilot's craft seeds."""
    folder = Path(__file__).resolve().parents[1] / "docs" / "measurements"
    suites = {path.stem: load_suite(str(path)) for path in sorted(folder.glob("*.toml"))}
    assert suites and all(suite.cells() for suite in suites.values())
    pilots = {"error-max": suites["2026-12-06-crafting-error-max"], "error-min": load_suite("default")}
    for base, pilot in pilots.items():
        design = suites[f"2026-12-06-crafting-{base}-equivalence"]
        seeds = {c.craft_seed for c in design.cells()}
        assert not seeds & {c.craft_seed for c in pilot.cells()}
        assert {c.attack for c in design.cells()} == {base, f"sapa-{base}"}


def test_default_suite_decides_its_pre_registered_claim():
    """The main job pre-registers one claim whose design has >= 80 % power at delta (HELD) and at
    0 (BELOW THE PAPER) from the repository's pilot, on craft seeds the pilot never used."""
    from sapabench.benchmark.claims import load_pilots, plan_claims

    suite = load_suite("default")
    cells = suite.cells()
    assert {c.recipe for c in cells} == {"sgd", "adam", "cutout", "mixup", "sam"}
    assert suite.dataset == "digits" and suite.primary_claims == ("T4-sam-error-min",)
    plan = plan_claims(suite)
    power = plan.power["T4-sam-error-min"]
    assert power["held_at_delta"] >= 0.8 and power["below_at_zero"] >= 0.8
    assert (power["poisons"], power["victims_per_poison"]) == (14, 2) and plan.looks == (14,)
    assert not set(load_pilots()["T4-sam-error-min"].craft_seeds) & set(suite.craft_seeds)
    # each poison crafted once and shared by every recipe; two nested victims per poison under sam
    for attack in ("error-min", "sapa-error-min"):
        assert len({c.poison.key for c in cells if c.attack == attack}) == 14
    sam = [c for c in cells if c.recipe == "sam" and c.attack == "error-min"]
    assert len(sam) == 28 and len({c.trial_seed for c in sam}) == 28


def test_victims_are_nested_in_poisons_and_paired_across_the_arms():
    """Victim seeds differ across poisons (a victim-seed effect averages out over them) and are
    shared by every attack crafted with the same seed (SAPA and its base stay paired)."""
    from sapabench.benchmark.suite import victim_seed

    suite = parse_suite(GOOD)
    cells = [c for c in suite.cells() if c.poison is not None]
    seeds: dict[tuple, set] = {}
    for c in cells:
        seeds.setdefault((c.attack, c.recipe, c.poison.craft_seed), set()).add(c.trial_seed)
    for (attack, recipe, craft), victims in seeds.items():
        assert len(victims) == suite.trials
        assert victims == seeds[("sapa-error-min" if attack == "error-min" else "error-min", recipe, craft)]
        assert victims == seeds[(attack, "adam" if recipe == "sgd" else "sgd", craft)]  # and across recipes
    assert not seeds[("error-min", "sgd", 0)] & seeds[("error-min", "sgd", 1)]
    # the rule is a pure function of (trial seed, craft seed, index), inside the seed range
    assert victim_seed("nested", 100, 3, 1) == victim_seed("nested", 100, 3, 1) != victim_seed("nested", 100, 4, 1)
    assert 0 <= victim_seed("nested", 2**31 - 1, 10**9, 9999) < 2**31 - 1
    # folders made before nesting keep theirs with victim_seeds = "shared"
    shared = parse_suite(GOOD.replace('name = "mine"', 'name = "mine"\nvictim_seeds = "shared"'))
    assert {c.trial_seed for c in shared.cells()} == {100, 101}
    with pytest.raises(ConfigError, match="victim_seeds must be 'nested' or 'shared'"):
        parse_suite(GOOD.replace('name = "mine"', 'name = "mine"\nvictim_seeds = "random"'))


def test_cells_expand_and_poisons_are_shared(tmp_path):
    suite = parse_suite(GOOD)
    cells = suite.cells()
    # (clean: 1 poison-free setting + 2 attacks x 2 craft seeds) x 2 recipes x 2 trials
    assert len(cells) == (1 + 2 * 2) * 2 * 2
    assert len({c.key for c in cells}) == len(cells)
    # each poison is crafted once and reused across recipes and trials
    assert len(suite.poisons()) == 4
    keys = {c.poison.key for c in cells if c.poison}
    assert len(keys) == 4


def test_a_grid_sets_its_own_craft_seeds_and_trials():
    text = (
        GOOD
        + """
[[grid]]
attacks = ["gradient-matching"]
recipes = ["sgd"]
archs = ["convnet"]
protocols = ["linear"]
craft_seeds = [0, 1, 2, 3]
trials = 1
victim = { epochs = 3 }
"""
    )
    suite = parse_suite(text)
    grid = [c for c in suite.cells() if c.protocol == "linear"]
    gm = [c for c in grid if c.attack == "gradient-matching"]
    assert sorted(c.poison.craft_seed for c in gm) == [0, 1, 2, 3]  # its own seeds ...
    assert len({c.trial_seed for c in gm}) == 4  # ... one victim each, seeded per poison
    clean = [c for c in grid if c.attack == "clean"]
    assert [c.trial_seed for c in clean] == [suite.trial_seed]  # one clean reference victim
    assert {dict(c.victim)["epochs"] for c in grid} == {3}  # its own victim epochs
    # the first grid keeps the suite's seeds and trials
    first = [c for c in suite.cells() if c.attack == "error-min"]
    assert {c.poison.craft_seed for c in first} == {0, 1} and len({c.trial_seed for c in first}) == 4
    assert {dict(c.victim)["epochs"] for c in first} == {1}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"sapa-error-min"]',
            '"sapa-eror-min"]',
            r"mine.toml, line 12: unknown attack 'sapa-eror-min'; did you mean 'sapa-error-min'",
        ),
        ('"adam"]', '"adma"]', r"line 13: unknown recipe 'adma'; did you mean 'adam'"),
        ('archs = ["convnet"]', 'archs = ["resnet19"]', r"line 14: unknown architecture 'resnet19'"),
        ('dataset = "digits"', 'dataset = "digitz"', r"line 3: unknown dataset 'digitz'"),
        ("trials = 2", "trials = 0", r"line 5: trials must be an integer from 1 to 10000"),
        ("epochs = 1", "epochs = 0", r"recipe 'sgd': invalid epochs=0"),
        ("epochs = 1", "epohcs = 1", r"line 9: unknown victim option 'epohcs'"),
        ('preset = "smoke"', 'preset = "smoke"\ncolour = "red"', r"line 5: unknown key 'colour'"),
        ("[[grid]]", "[[grid]]\noptions = { eps = 2.0 }", r"attack 'error-min': invalid eps=2.0"),
        ('name = "mine"', 'name = "mine', r"not valid TOML"),
        ("[[grid]]", "[[grid]]\ntrials = 0", r"line 12: trials must be an integer from 1 to 10000"),
        ("[[grid]]", "[[grid]]\ncraft_seeds = [1, 1]", r"line 12: craft_seeds lists a seed twice"),
        ("[[grid]]", "[[grid]]\ncraft_seeds = []", r"line 12: craft_seeds must be a non-empty list"),
        ("[[grid]]", "[[grid]]\nvictim = { epoch = 2 }", r"line 12: unknown grid victim option 'epoch'"),
        ("[[grid]]", "[[grid]]\nvictim = { epochs = 0 }", r"recipe 'sgd': invalid epochs=0"),
    ],
)
def test_bad_suites_are_refused_naming_the_line(old, new, message):
    assert old in GOOD
    with pytest.raises(ConfigError, match=message):
        parse_suite(GOOD.replace(old, new), "mine.toml")


def test_suite_file_by_path_and_unknown_names(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    assert load_suite(str(path)).name == "mine"
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="unknown suite 'defualt'; did you mean 'default'"):
        load_suite("defualt")


def test_builtin_name_wins_over_a_folder_of_the_same_name(tmp_path, monkeypatch):
    (tmp_path / "defenses").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_suite("defenses").name == "defenses"


def test_a_folder_is_never_resumed_under_the_other_victim_seeding(tmp_path):
    """A run folder made before victims were nested (no rule recorded: shared seeds) is refused
    by a nested suite, with both fixes; the folder is left as it was."""
    from sapabench.benchmark.runner import run_suite
    from sapabench.benchmark.store import ResultsStore

    suite = parse_suite(GOOD)
    out = tmp_path / "old"
    out.mkdir()
    ResultsStore(out).set_meta("suite", suite.name)  # an earlier run's folder, before the rule was recorded
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(
        ConfigError, match=r'run with shared victim seeds .* nested ones: resuming would mix .* victim_seeds = "shared"'
    ):
        run_suite(suite, out, progress=False)
    assert sorted(p.name for p in out.iterdir() if p.name != ".sapabench.lock") == before


@pytest.mark.parametrize("name", ["../../X", "", "a/b", ".hidden", "x" * 101, "tab\tname"])
def test_a_suite_name_that_is_no_folder_name_is_refused(name):
    import json

    with pytest.raises(ConfigError, match="must be 1-100 letters, digits"):
        parse_suite(GOOD.replace('name = "mine"', f"name = {json.dumps(name)}"))


def test_every_defended_grid_has_its_clean_arm():
    """Wherever a built-in suite (or a standard defense submission) runs a defense, clean victims
    train under it too: the defense's cost with no attack is always measured beside its effect."""
    from sapabench.benchmark.submit import standard_suite
    from sapabench.core.names import CLEAN, NO_DEFENSE

    suites = [
        *(load_suite(name) for name in builtin_suites()),
        parse_suite(standard_suite("defense", "spectral-signatures")),
    ]
    checked = 0
    for suite in suites:
        cells = suite.cells()
        defended = {c.defense for c in cells if c.defense != NO_DEFENSE}
        clean = {c.defense for c in cells if c.attack == CLEAN}
        assert defended <= clean, (suite.name, defended - clean)
        checked += bool(defended)
    assert checked >= 2
