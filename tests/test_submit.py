"""Submission and verification: standard suites, manifests, re-runs that catch forged entries."""

import json
import shutil

import pytest

from sapabench.benchmark.cli import main
from sapabench.benchmark.submit import standard_suite
from sapabench.benchmark.suite import parse_suite
from sapabench.benchmark.verify import trials_to_rerun, verify
from sapabench.core.errors import ConfigError
from sapabench.core.stats import mean_se
from sapabench.leaderboard.schema import content_hash, load_entry


def test_attack_suite_pairs_the_attack_with_its_sapa_twin_and_every_recipe():
    suite = parse_suite(standard_suite("attack", "sapa-error-min"))
    (grid,) = suite.grids
    assert grid.attacks == ("error-min", "sapa-error-min")
    assert grid.recipes == ("sgd", "adam", "cutout", "mixup", "sam", "adversarial")
    assert suite.trials == 3 and dict(suite.victim) == {"epochs": 6} and suite.preset == "embedded"
    assert suite.clean_baseline and len(suite.cells()) == 6 * 3 * 3


def test_defense_suite_runs_the_attack_panel_with_and_without_the_defense():
    suite = parse_suite(standard_suite("defense", "jpeg", profile="smoke"))
    (grid,) = suite.grids
    assert grid.defenses == ("none", "jpeg") and grid.attacks == ("error-max", "sapa-error-max")
    assert dict(suite.victim) == {"epochs": 1} and suite.trials == 2


def test_a_standard_defense_submission_is_decided_over_poisons_with_controls():
    """The defenses suite's design: 12 poisons per attack with one nested victim each, the oracle
    filter beside a data defense where the poison leaves clean images (not Error-Min's 100 %),
    and 12 clean victims under every arm for the clean cost."""
    suite = parse_suite(standard_suite("defense", "spectral-signatures"))
    backdoor, untargeted, clean = suite.grids
    assert suite.craft_seeds == tuple(range(12)) and suite.trials == 1
    assert backdoor.attacks == ("sleeper-agent", "sapa-sleeper-agent")
    assert backdoor.defenses == ("none", "spectral-signatures", "random-like-spectral-signatures", "oracle-filter")
    # no oracle on a full-budget poison; the random twin still says what removing as many images does
    assert untargeted.defenses == ("none", "spectral-signatures", "random-like-spectral-signatures")
    assert clean.attacks == ("clean",) and clean.trials == 12 and clean.defenses == backdoor.defenses
    trained = parse_suite(standard_suite("defense", "adversarial"))
    assert all("oracle-filter" not in g.defenses for g in trained.grids)  # a training defense has no oracle


def test_cifar_suites_keep_the_datasets_own_protocol():
    suite = parse_suite(standard_suite("attack", "error-min", dataset="cifar10"))
    assert suite.victim == () and suite.preset is None and suite.dataset == "cifar10"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("attack", "eror-min"), "did you mean 'error-min'"),
        (("defense", "spectral"), "unknown defense 'spectral'"),
        (("attack", "clean"), "reference, not an attack"),
        (("attack", "error-min", "huge"), "unknown profile 'huge'"),
        (("attack", "error-min", "smoke", "mnist"), "unknown dataset 'mnist'"),
    ],
)
def test_bad_submissions_are_refused(args, needle):
    with pytest.raises(ConfigError, match=needle):
        standard_suite(*args)


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    out = tmp_path_factory.mktemp("sub") / "attack-error-max"
    assert (
        main(["submit", "--attack", "error-max", "--profile", "smoke", "--out", str(out), "--device", "cpu", "--quiet"])
        == 0
    )
    return out


def _copy(submission, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(submission, out)
    return out


def _entry_file(folder, attack):
    (path,) = list((folder / "leaderboard" / "entries").glob(f"{attack}--*.json"))
    return path


def _reseal(path, edit):
    """Edit an entry the way a careful forger would: consistent mean/SE and a fresh content hash."""
    e = json.loads(path.read_text())
    edit(e)
    e["metric"]["mean"], e["metric"]["se"] = mean_se(e["metric"]["values"])
    e["content_sha256"] = content_hash(e)
    path.write_text(json.dumps(e))
    load_entry(path)  # passes every static check


def test_submit_writes_suite_results_entries_and_manifest(submission):
    for name in ("suite.toml", "results.sqlite", "submission.json", "leaderboard/leaderboard.md"):
        assert (submission / name).is_file()
    manifest = json.loads((submission / "submission.json").read_text())
    roles = {e["attack"]: e["role"] for e in manifest["entries"]}
    assert roles == {"error-max": "submitted", "sapa-error-max": "submitted", "clean": "reference"}
    entry = load_entry(_entry_file(submission, "error-max"))
    crafted = json.loads(next((submission / "poisons").glob("error-max-*/poison.json")).read_text())
    assert entry["provenance"]["poison_sha256"] == [crafted["tensors_sha256"]]
    assert entry["provenance"]["git_commit"] and entry["provenance"]["torch"]
    # the entry says what was run: the resolved attack config, defaults included, as the poison has it
    config = entry["setting"]["attack_config"]
    assert config == crafted["config"] and {"steps", "eps", "sapa"} <= set(config)
    assert entry["provenance"]["deterministic"] is False


def test_a_genuine_submission_is_accepted(submission, tmp_path, capsys):
    out = _copy(submission, tmp_path)
    assert main(["verify", str(out), "--cells", "2", "--device", "cpu", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert text.count("ACCEPTED") == 3 and "3 accepted, 0 refused" in text
    report = json.loads((out / "verification.json").read_text())
    assert report["accepted"] and all(v["mode"] == "exact" for v in report["entries"])
    assert sum(len(v["checks"]) for v in report["entries"]) == 6


@pytest.mark.parametrize(
    ("attack", "forge", "needles"),
    [
        pytest.param(
            "sapa-error-max",
            lambda e: e["metric"]["values"].__setitem__(0, e["metric"]["values"][0] - 0.05),
            ("MISMATCH", "the entry records"),
            id="forged-trial-value-caught-by-the-re-run",
        ),
        pytest.param(
            "error-max",
            lambda e: e["provenance"].__setitem__("poison_sha256", ["ab" * 32]),
            ("re-crafted with sha256", "NOT RE-RUN"),
            id="poison-hash-that-does-not-match",
        ),
        pytest.param(
            "error-max",
            lambda e: e.update(attack="someones-attack", base_attack="someones-attack"),
            ("attack 'someones-attack' is not registered here",),
            id="attack-not-installed-here-names-the-fix",
        ),
    ],
)
def test_a_forged_entry_is_refused_with_the_reason(submission, tmp_path, capsys, attack, forge, needles):
    path = _entry_file(_copy(submission, tmp_path), attack)
    _reseal(path, forge)
    assert main(["verify", str(path), "--cells", "2", "--device", "cpu", "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "REFUSED" in text and all(needle in text for needle in needles)


def test_manifest_catches_replaced_and_added_entries(submission, tmp_path, capsys):
    out = _copy(submission, tmp_path)
    _reseal(_entry_file(out, "clean"), lambda e: e["timings"].__setitem__("total_s", 0.5))
    shutil.copy(_entry_file(out, "error-max"), out / "leaderboard" / "entries" / "extra.json")
    assert main(["verify", str(out), "--cells", "1", "--device", "cpu", "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "content hash differs" in text and "extra.json is not listed" in text


def test_a_submission_whose_manifest_was_deleted_is_refused(submission, tmp_path, capsys):
    from sapabench.benchmark.submit import MANIFEST_FILE

    out = _copy(submission, tmp_path)
    (out / MANIFEST_FILE).unlink()
    assert main(["verify", str(out), "--cells", "1", "--device", "cpu", "--quiet"]) == 1
    text = capsys.readouterr().out
    assert f"is a submission (it holds suite.toml) but its {MANIFEST_FILE} is missing" in text


def test_an_entry_that_names_another_attacks_poison_is_refused(submission, tmp_path, capsys):
    """A forger re-seals the base attack's entry to name the SAPA twin's shipped poison: the
    poison's own sealed metadata says whose it is."""
    out = _copy(submission, tmp_path)
    sapa = json.loads(_entry_file(out, "sapa-error-max").read_text())
    _reseal(
        _entry_file(out, "error-max"),
        lambda e: e["provenance"].__setitem__("poison_sha256", sapa["provenance"]["poison_sha256"]),
    )
    assert main(["verify", str(out), "--cells", "1", "--device", "cpu", "--quiet"]) == 1
    assert "a poison of 'sapa-error-max', but error-max--" in capsys.readouterr().out


def test_a_submission_with_an_edited_poison_is_refused(submission, tmp_path, capsys):
    out = _copy(submission, tmp_path)
    meta_path = next((out / "poisons").glob("error-max-*/poison.json"))
    meta = json.loads(meta_path.read_text())
    meta["budget"] = 0.5 * meta["budget"]
    meta_path.write_text(json.dumps(meta))
    assert main(["verify", str(out), "--cells", "1", "--device", "cpu", "--quiet"]) == 1
    assert "budget in" in capsys.readouterr().out


def test_a_submission_whose_attack_produced_nothing_fails_and_does_not_verify(tmp_path, capsys, monkeypatch):
    from sapabench.attacks.error_max import ErrorMax

    def broken(self, ctx):
        raise RuntimeError("this attack cannot craft")

    monkeypatch.setattr(ErrorMax, "craft", broken)
    out = tmp_path / "broken"
    argv = ["submit", "--attack", "error-max", "--profile", "smoke", "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--executor", "local", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "holds no entry of the submitted attack 'error-max'" in captured.err
    assert "check it with" not in captured.out
    assert main(["verify", str(out), "--device", "cpu", "--quiet"]) == 1
    assert "lists no submitted entry" in capsys.readouterr().out


def test_an_entry_edited_without_resealing_is_refused(submission, tmp_path, capsys):
    out = _copy(submission, tmp_path)
    path = _entry_file(out, "error-max")
    e = json.loads(path.read_text())
    e["provenance"]["device"] = "cuda:H200"
    path.write_text(json.dumps(e))
    assert main(["verify", str(path), "--device", "cpu", "--quiet"]) == 1
    assert "content_sha256 does not match" in capsys.readouterr().out


def test_a_resealed_forgery_claiming_another_platform_is_refused_with_its_detectable_difference(submission, tmp_path):
    out = _copy(submission, tmp_path)
    path = _entry_file(out, "error-max")

    def forge(e):  # another platform claimed, so no exact re-run; the numbers made up
        e["provenance"]["device"] = "cuda:NVIDIA H200"
        e["metric"]["values"] = [0.95, 0.95]

    _reseal(path, forge)
    report = verify(out, device="cpu")
    (v,) = [v for v in report.verdicts if v.path == str(path)]
    assert not v.accepted and v.mode == "statistical" and "cuda:NVIDIA H200" in v.notes[0]
    assert any("taken from" in n for n in v.notes)  # the submission's own poison, hash-checked
    (problem,) = v.problems
    assert problem.startswith("cannot verify across platforms: 2 trials, detectable difference ")
    detectable = float(problem.split("detectable difference ")[1].split()[0])
    assert detectable > 0.10  # the band a forger could hide in, stated


def test_a_shipped_poison_swapped_for_another_seeds_is_refused_in_exact_mode(submission, tmp_path, capsys):
    out = _copy(submission, tmp_path)
    (mine,) = (out / "poisons").glob("error-max-s0-*")
    other = tmp_path / "other"
    assert (
        main(["attack", "error-max", "--preset", "smoke", "--seed", "5", "--out", str(other), "--device", "cpu"]) == 0
    )
    shutil.rmtree(mine)
    shutil.copytree(other, mine)  # a valid, sealed poison, but not the one the entry's numbers came from
    assert main(["verify", str(out), "--cells", "1", "--device", "cpu", "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "is not the poison the entry records" in text and "exact" in text


CROSS = """
name = "cross"
dataset = "digits"
preset = "smoke"
trials = 6
craft_seeds = [0]
clean_baseline = false

[victim]
epochs = 4

[[grid]]
attacks = ["error-max"]
recipes = ["sgd"]
archs = ["convnet"]
"""


@pytest.fixture(scope="module")
def cross_run(tmp_path_factory):
    from sapabench.benchmark.runner import run_suite
    from sapabench.benchmark.suite import parse_suite

    out = tmp_path_factory.mktemp("cross")
    run_suite(parse_suite(CROSS), out, device="cpu", progress=False, log=lambda m: None)
    return out


def _another_platform(path, monkeypatch):
    """The entry as if measured elsewhere: relabelled instruction set (statistical mode) and, so
    that the numbers really change, every re-run victim on a shifted seed stream."""
    import dataclasses

    import sapabench.benchmark.verify as V

    _reseal(path, lambda e: e["provenance"].__setitem__("isa", "avx512-elsewhere"))
    real = V.run_trial
    monkeypatch.setattr(V, "run_trial", lambda trial: real(dataclasses.replace(trial, seed=trial.seed + 1000)))


@pytest.mark.slow
def test_an_honest_entry_re_run_elsewhere_is_accepted_and_a_forged_one_refused(cross_run, tmp_path, monkeypatch):
    """Marked slow (about a minute): a 6-trial run and its re-runs on 4-epoch victims."""
    import sapabench.benchmark.verify as V

    honest = tmp_path / "honest"
    shutil.copytree(cross_run, honest)
    path = _entry_file(honest, "error-max")
    _another_platform(path, monkeypatch)
    rerun, measured = V.run_trial, {}

    def remembering(trial):
        measured[trial.seed] = record = rerun(trial)
        return record

    monkeypatch.setattr(V, "run_trial", remembering)
    (v,) = verify(path, device="cpu").verdicts
    assert v.mode == "statistical" and len(v.checks) == 6
    assert any(c.measured != c.recorded for c in v.checks)  # the numbers really changed ...
    assert v.accepted, v.problems  # ... within what the entry's own spread allows
    forged = tmp_path / "forged"
    shutil.copytree(cross_run, forged)
    path = _entry_file(forged, "error-max")
    # a stronger attack claimed: every accuracy 0.3 lower (the spread kept, so the SE is consistent)
    _reseal(path, lambda e: e["metric"].__setitem__("values", [max(0.0, x - 0.3) for x in e["metric"]["values"]]))
    _reseal(path, lambda e: e["provenance"].__setitem__("isa", "avx512-elsewhere"))
    monkeypatch.setattr(V, "run_trial", lambda trial: measured[trial.seed])  # that platform's re-runs again
    (v,) = verify(path, device="cpu").verdicts
    assert not v.accepted and "differs by" in v.problems[0]


def test_a_forged_success_rate_is_refused_by_fishers_exact_test():
    from sapabench.core.stats import agreement

    forged = agreement([1.0] * 10, [0.0] * 10, trial_sd=0.0, trials=10, alpha=0.01)
    assert not forged.agree and forged.test == "Fisher's exact test" and "p = 1.08e-05" in forged.detail
    honest = agreement([1, 0, 1, 1, 0, 1, 0, 1, 1, 0], [1, 1, 0, 1, 0, 1, 0, 0, 1, 1], 0.5, 10, 0.01)
    assert honest.agree
    # two trials cannot refuse even an all-or-nothing forgery: the test says so by its p-value
    assert agreement([1.0, 1.0], [0.0, 0.0], 0.0, 2, 0.01).agree


def test_how_many_trials_verify_re_runs():
    assert [trials_to_rerun(n, None) for n in (1, 2, 8, 9, 20, 100)] == [1, 2, 8, 9, 18, 90]
    assert trials_to_rerun(20, 3) == 3 and trials_to_rerun(2, 5) == 2


def test_the_default_verify_re_runs_every_trial_of_a_small_entry(submission, tmp_path, capsys):
    """One forged value among two trials is caught whatever the draw (all trials are re-run)."""
    out = _copy(submission, tmp_path)
    path = _entry_file(out, "sapa-error-max")
    _reseal(path, lambda e: e["metric"]["values"].__setitem__(1, e["metric"]["values"][1] - 0.05))
    assert main(["verify", str(path), "--device", "cpu", "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "MISMATCH" in text and "re-ran 2 of 2 trials" in text and "probability 1.00" in text


def test_resubmitting_into_a_folder_of_another_suite_is_refused(submission, tmp_path, capsys):
    out = _copy(submission, tmp_path)
    assert main(["submit", "--attack", "error-min", "--profile", "smoke", "--out", str(out), "--quiet"]) == 2
    assert "holds a submission of another suite" in capsys.readouterr().err


def test_resubmitting_resumes_without_rerunning(submission, tmp_path, capsys):
    out = _copy(submission, tmp_path)
    assert (
        main(["submit", "--attack", "error-max", "--profile", "smoke", "--out", str(out), "--device", "cpu", "--quiet"])
        == 0
    )
    assert "0 cells run (0 failed), 6 already done" in capsys.readouterr().out


def test_a_defense_submission_verifies(tmp_path, capsys):
    out = tmp_path / "defense"
    assert (
        main(["submit", "--defense", "jpeg", "--profile", "smoke", "--out", str(out), "--device", "cpu", "--quiet"])
        == 0
    )
    manifest = json.loads((out / "submission.json").read_text())
    submitted = {(e["attack"], e["defense"]) for e in manifest["entries"] if e["role"] == "submitted"}
    assert submitted == {("clean", "jpeg"), ("error-max", "jpeg"), ("sapa-error-max", "jpeg")}
    (path,) = (out / "leaderboard" / "entries").glob("sapa-error-max--*--jpeg--*.json")
    assert main(["verify", str(path), "--cells", "1", "--device", "cpu", "--quiet"]) == 0


def test_verify_bad_targets(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["verify", str(tmp_path)]) == 2
    assert "holds no leaderboard entries" in capsys.readouterr().err
    assert main(["verify", str(tmp_path), "--cells", "0"]) == 2


def test_entries_from_single_thread_workers_are_re_run_with_one_thread(submission, tmp_path):
    import platform

    import torch

    from sapabench.benchmark.executor import make_executor
    from sapabench.benchmark.runner import run_suite
    from sapabench.benchmark.submit import submission_suite

    out = tmp_path / "workers"
    report = run_suite(
        submission_suite(submission),
        out,
        device="cpu",
        executor=make_executor("processes", 2),
        progress=False,
        log=lambda m: None,
    )
    assert report.failed == 0
    path = _entry_file(out, "sapa-error-max")
    assert load_entry(path)["provenance"]["device"] == f"cpu:{platform.machine()}x1threads"
    threads = torch.get_num_threads()
    (v,) = verify(path, cells=2, device="cpu").verdicts
    assert v.accepted and v.mode == "exact" and torch.get_num_threads() == threads


def test_an_entry_of_another_suite_listed_in_the_manifest_is_refused(submission, tmp_path, capsys):
    out = _copy(submission, tmp_path)
    path = _entry_file(out, "error-max")
    _reseal(path, lambda e: e["setting"].__setitem__("suite", "someone-elses"))
    manifest = json.loads((out / "submission.json").read_text())
    for item in manifest["entries"]:  # the manifest re-hashed to match, as a forger would
        if item["file"] == path.name:
            item["content_sha256"] = json.loads(path.read_text())["content_sha256"]
    (out / "submission.json").write_text(json.dumps(manifest))
    assert main(["verify", str(out), "--cells", "1", "--device", "cpu", "--quiet"]) == 1
    assert "is an entry of suite 'someone-elses'" in capsys.readouterr().out
