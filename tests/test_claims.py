import dataclasses
import json

import pytest

from sapabench.benchmark.claims import ClaimsPlan, describe, load_claims, plan_claims
from sapabench.benchmark.claims import check_claims as write_verdicts
from sapabench.benchmark.claims import test_claims as check_claims
from sapabench.core.errors import ConfigError
from sapabench.core.stats import adjust_p
from sapabench.leaderboard.records import load_claims_record
from tests._entries import make_clean_entry, make_entry


def test_claims_file_covers_tables_1_to_5():
    alpha, claims = load_claims()
    assert alpha == 0.05
    ids = {c.id for c in claims}
    assert len(claims) == len(ids) == 26 + 48 + 36 + 96
    assert {c.table for c in claims} == {"1", "2", "3", "4", "5"}
    # Tables 1-3: the SAPA attack against every baseline of its table, in every setting of the paper
    t1 = [c for c in claims if c.table == "1"]
    assert {c.baseline for c in t1} == {"gradient-matching", "poison-frogs", "bullseye-polytope", "metapoison"}
    assert {(c.dataset, round(c.options["eps"] * 255), c.options["budget"]) for c in t1} == {
        (d, e, b) for d in ("cifar10", "cifar100") for e in (16, 8, 4) for b in (0.01, 0.002)
    }
    t3 = [c for c in claims if c.table == "3"]
    assert {c.compared[0] for c in t3} == {"sapa-error-min", "sapa-error-max"}
    assert {c.baseline for c in t3} == {"error-min", "error-max", "separable", "autoregressive"}
    frogs = next(c for c in claims if c.id == "T1-cifar10-16-1.0%-vs-poison-frogs")
    assert frogs.paper == (1.3, 80.1) and frogs.embedded == {}
    assert all(c.expect == "sapa_stronger" for c in claims)
    sgd_em = next(c for c in claims if c.id == "T4-sgd-error-min")
    assert sgd_em.paper == (21.2, 10.9) and sgd_em.metric == "accuracy"


def _results(tmp_path, entries):
    folder = tmp_path / "leaderboard" / "entries"
    folder.mkdir(parents=True)
    for i, e in enumerate(entries):
        (folder / f"{i}.json").write_text(json.dumps(e))
    return tmp_path


def _verdicts(tmp_path, entries, **kw):
    _, verdicts = check_claims(_results(tmp_path, entries), **kw)
    return {v.claim.id: v for v in verdicts}


EIGHT = [(c, 100) for c in range(8)]  # eight craft seeds, one victim each
LOW, HIGH = [0.50 + 0.01 * i for i in range(8)], [0.70 + 0.01 * i for i in range(8)]


def _error_min(recipe, baseline, sapa):
    """Error-Min and SAPA Error-Min accuracies over eight poisons under ``recipe``."""
    return [
        make_entry("error-min", baseline, recipe=recipe, cells=EIGHT),
        make_entry("sapa-error-min", sapa, recipe=recipe, cells=EIGHT),
    ]


def test_verdicts_follow_the_measured_trials(tmp_path):
    low, high = [0.50 + 0.01 * i for i in range(8)], [0.70 + 0.01 * i for i in range(8)]
    noisy_a = [0.5, 0.7, 0.6, 0.55, 0.65, 0.6, 0.52, 0.68]
    noisy_b = [0.55, 0.65, 0.6, 0.5, 0.7, 0.58, 0.56, 0.64]
    entries = [
        # error-min / sgd: SAPA lowers accuracy for every craft seed -> held
        make_entry("error-min", high, recipe="sgd", cells=EIGHT),
        make_entry("sapa-error-min", low, recipe="sgd", cells=EIGHT),
        # error-min / adam: SAPA raises accuracy for every craft seed -> failed
        make_entry("error-min", low, recipe="adam", cells=EIGHT),
        make_entry("sapa-error-min", high, recipe="adam", cells=EIGHT),
        # error-min / sam: noise -> inconclusive
        make_entry("error-min", noisy_a, recipe="sam", cells=EIGHT),
        make_entry("sapa-error-min", noisy_b, recipe="sam", cells=EIGHT),
    ]
    v = _verdicts(tmp_path, entries)
    assert v["T4-sgd-error-min"].verdict == "held" and v["T4-sgd-error-min"].p_sapa_stronger == 2**-8
    assert v["T4-sgd-error-min"].test.unit == "craft seed" and v["T4-sgd-error-min"].test.n == 8
    assert v["T4-adam-error-min"].verdict == "failed"
    assert v["T4-sam-error-min"].verdict == "inconclusive"
    assert v["T4-sgd-sleeper-agent"].verdict == "untested"
    # the paper's ResNet-18 rows are matched to the measured main victim (convnet here)
    assert v["T4-sgd-error-min"].measured.arch == "convnet"


def test_the_verdicts_are_recorded_for_the_page_with_the_p_value_each_rests_on(tmp_path):
    entries = _error_min("sgd", HIGH, LOW) + _error_min("adam", LOW, HIGH)
    record = write_verdicts(_results(tmp_path, entries))
    assert load_claims_record(tmp_path / "leaderboard" / "claims.json") == record  # the writer passes the reader
    rows = {r["id"]: r for r in record["verdicts"]}
    held, failed, untested = rows["T4-sgd-error-min"], rows["T4-adam-error-min"], rows["T4-sgd-sleeper-agent"]
    # two-sided p: twice the smaller one-sided p (2 x 2^-8); Benjamini-Yekutieli over the two
    # hypotheses (no clean victims here, so no delta and no BELOW test): x (1 + 1/2)
    assert held["verdict"] == "held" and held["p_value"] == held["p_floor"] == 2**-7
    assert (
        held["p_adjusted"] == pytest.approx(1.5 * 2**-7) and held["label"] == "held" and held["decided_on"] == "metric"
    )
    assert held["interval"][0] > 0 and held["delta"] is None and held["p_below"] is None and held["power"] is None
    assert failed["verdict"] == "failed" and failed["p_value"] == 2**-7
    assert untested["p_value"] is None and "no matching black-box scratch results" in untested["summary"]
    # the paper's row is CIFAR-10's: the verdict says it was tested on the digits twin
    assert held["summary"].startswith("paper 21.2 -> 10.9 on cifar10, tested on its digits twin; digits/convnet/sgd/")
    assert (held["paper_dataset"], held["tested_on"], untested["tested_on"]) == ("cifar10", "digits", None)
    assert {r["kind"] for r in rows.values()} == {"claim", "cost"}  # cost claims recorded (untested here)
    page = (tmp_path / "leaderboard" / "leaderboard.html").read_text()
    assert "T4-adam-error-min" in page and 'class="verdict v-failed"' in page


def test_alpha_changes_the_verdict_not_the_numbers(tmp_path):
    entries = [  # 6 of 8 craft seeds favour SAPA: p = 37/256
        make_entry("error-min", [0.6, 0.66, 0.62, 0.6, 0.6, 0.6, 0.6, 0.6], recipe="sgd", cells=EIGHT),
        make_entry("sapa-error-min", [0.55, 0.62, 0.58, 0.55, 0.55, 0.55, 0.62, 0.61], recipe="sgd", cells=EIGHT),
    ]
    strict = _verdicts(tmp_path / "a", entries, alpha=0.01)["T4-sgd-error-min"]
    loose = _verdicts(tmp_path / "b", entries, alpha=0.5)["T4-sgd-error-min"]
    assert strict.p_sapa_stronger == loose.p_sapa_stronger
    assert strict.verdict == "inconclusive" and loose.verdict == "held"
    with pytest.raises(ConfigError, match="alpha"):
        _verdicts(tmp_path / "c", entries, alpha=1.5)


def test_two_constant_trials_against_two_never_hold(tmp_path):
    """The old failure: zero variance in both arms gave p = 0 and a "held" claim from 2 vs 2."""
    entries = [
        make_entry("error-min", (0.50, 0.50), recipe="sgd", cells=[(0, 100), (1, 100)]),
        make_entry("sapa-error-min", (0.49, 0.49), recipe="sgd", cells=[(0, 100), (1, 100)]),
    ]
    v = _verdicts(tmp_path, entries)["T4-sgd-error-min"]
    assert v.verdict == "untested" and "2 poisons cannot decide it: floor 0.5 >= alpha 0.05" in describe(v)


def test_victims_of_one_poison_never_test_a_claim(tmp_path):
    """The poison is the unit: eight victims of one craft seed are not eight draws of the attack."""
    entries = [
        make_entry("error-min", [0.7 + 0.01 * i for i in range(8)], recipe="sgd"),
        make_entry("sapa-error-min", [0.5 + 0.01 * i for i in range(8)], recipe="sgd"),
    ]
    v = _verdicts(tmp_path, entries)["T4-sgd-error-min"]
    assert v.verdict == "untested" and v.test is None and "one craft seed" in describe(v)


def test_targeted_claims_test_the_margin_in_their_protocol(tmp_path):
    cells = [(c, t) for c in range(8) for t in (100, 101)]
    success = [0.0] * 16
    base_margin = [-4.0 + 0.1 * i for i in range(16)]
    sapa_margin = [m + 1.0 for m in base_margin]
    clean = [-6.0] * 16
    kw = dict(
        threat="targeted", metric="success", higher=True, cells=cells, protocol="linear", pretrained="independent"
    )
    entries = [
        make_entry("gradient-matching", success, margin=(base_margin, clean), **kw),
        make_entry("sapa-gradient-matching", success, margin=(sapa_margin, clean), **kw),
    ]
    v = _verdicts(tmp_path, entries)
    gm = v["T4-sgd-gradient-matching"]
    assert gm.claim.protocol == "linear" and gm.claim.measure == "adversarial_margin"
    assert gm.verdict == "held" and gm.test.n == 8 and gm.p_sapa_stronger == 2**-8
    # the same pair in the white-box protocol tests nothing
    kw["protocol"], kw["pretrained"] = "known-init", "none"
    white = [
        make_entry("gradient-matching", success, margin=(base_margin, clean), **kw),
        make_entry("sapa-gradient-matching", success, margin=(sapa_margin, clean), **kw),
    ]
    assert _verdicts(tmp_path / "w", white)["T4-sgd-gradient-matching"].verdict == "untested"


def _frogs(attack, values, margins, **kw):
    return make_entry(
        attack,
        values,
        threat="targeted",
        metric="target_success",
        higher=True,
        cells=kw.pop("cells", EIGHT),
        margin=(margins, [-5.0] * len(margins)),
        **kw,
    )


def test_table_rows_compare_sapa_with_other_baselines_in_their_setting(tmp_path):
    zeros = [0.0] * 8
    entries = [
        _frogs("sapa-gradient-matching", zeros, [-1.0 + 0.1 * i for i in range(8)]),
        _frogs("poison-frogs", zeros, [-3.0 + 0.1 * i for i in range(8)]),
        _frogs("bullseye-polytope", zeros, [0.5 + 0.1 * i for i in range(8)]),
    ]
    v = _verdicts(tmp_path, entries)
    frogs, bullseye = v["T1-cifar10-16-1.0%-vs-poison-frogs"], v["T1-cifar10-16-1.0%-vs-bullseye-polytope"]
    assert frogs.verdict == "held" and frogs.test.design == "paired" and frogs.test.unit == "craft seed"
    assert frogs.p_sapa_stronger == 2**-8 and frogs.test.mean_difference == pytest.approx(2.0)
    assert bullseye.verdict == "failed"  # a baseline stronger than SAPA is reported as such
    assert v["T1-cifar10-16-1.0%-vs-metapoison"].verdict == "untested"
    # the embedded twin stands for the paper's first column only
    assert v["T1-cifar10-8-1.0%-vs-poison-frogs"].verdict == "untested"
    assert v["T1-cifar100-16-1.0%-vs-poison-frogs"].verdict == "untested"


def test_paper_scale_rows_match_their_dataset_and_options_exactly(tmp_path):
    setting = dict(preset="paper", dataset="cifar100", options={"eps": 8 / 255, "budget": 0.002}, arch="resnet18")
    entries = [
        _frogs("sapa-gradient-matching", [0.0] * 8, [1.0] * 8, **setting),
        _frogs("metapoison", [0.0] * 8, [0.0] * 8, **setting),
    ]
    v = _verdicts(tmp_path, entries)
    assert v["T1-cifar100-8-0.2%-vs-metapoison"].verdict == "held"
    assert v["T1-cifar10-8-0.2%-vs-metapoison"].verdict == "untested"
    assert v["T1-cifar100-8-1.0%-vs-metapoison"].verdict == "untested"
    assert v["T1-cifar10-16-1.0%-vs-metapoison"].verdict == "untested"  # embedded rows never match paper entries


def test_entries_that_share_no_seeds_are_shown_unpaired_and_test_no_claim(tmp_path):
    """A claim's gain is measured per poison, as a pair: entries crafted with other seeds are
    compared unpaired on the page (a two-sample test) but decide no claim."""
    from sapabench.leaderboard.pairs import rival_pairs

    sapa = _frogs("sapa-gradient-matching", [0.0] * 8, [1.0 + 0.1 * i for i in range(8)])
    other = _frogs("poison-frogs", [0.0] * 8, [0.1 * i for i in range(8)], cells=[(c, 100) for c in range(8, 16)])
    v = _verdicts(tmp_path, [sapa, other])["T1-cifar10-16-1.0%-vs-poison-frogs"]
    assert v.verdict == "untested" and v.gain is None
    t = rival_pairs([sapa, other])[0].margin_test
    assert t.design == "unpaired" and "unpaired" in t.test and t.n == 8
    assert t.p_greater == pytest.approx(1 / 12870) and t.p_floor == pytest.approx(1 / 12870)  # C(16, 8)


def test_a_claim_naming_an_unknown_baseline_is_refused(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text(
        '[[claim]]\nid = "x"\ntable = "1"\nattack = "gradient-matching"\nbaseline = "poison-frog"\n'
        'recipe = "sgd"\narch = "convnet"\npaper = [1, 2]\nmetric = "success"\nexpect = "sapa_stronger"\n'
    )
    with pytest.raises(ConfigError, match="poison-frogs"):
        load_claims(bad)


def test_a_claim_naming_no_options_ignores_swept_settings(tmp_path):
    """Table 4 is about the attack as preset; a Table-3 budget sweep is another setting."""
    half = {"budget": 0.5}
    entries = [
        make_entry("error-min", [0.70 + 0.01 * i for i in range(8)], cells=EIGHT, options=half),
        make_entry("sapa-error-min", [0.50 + 0.01 * i for i in range(8)], cells=EIGHT, options=half),
    ]
    v = _verdicts(tmp_path, entries)
    assert v["T4-sgd-error-min"].verdict == "untested"
    assert v["T3-cifar10-resnet18-50%-sapa-error-min-vs-error-min"].verdict == "held"
    assert v["T3-cifar10-resnet18-100%-sapa-error-min-vs-error-min"].verdict == "untested"


def test_many_comparisons_are_adjusted_together_and_a_repeated_one_counts_once(tmp_path):
    """One decisive comparison (two-sided p = 2^-7) among noisy ones: Benjamini-Yekutieli over the
    hypotheses of the distinct comparisons raises it to c(m) m x 2^-7. Sleeper Agent's pair is
    named by two claims (Table 2 and Table 4) and counted once, but each states its own delta:
    m = 5 "gain = 0" (sgd, adam, cutout, mixup error-min; sleeper agent) + 2 "gain >= delta"
    (the two Sleeper Agent rows; the error-min rows have no clean victims here, so no delta)."""
    noisy_a = [0.5, 0.7, 0.6, 0.55, 0.65, 0.6, 0.52, 0.68]
    noisy_b = [0.55, 0.65, 0.6, 0.5, 0.7, 0.58, 0.56, 0.64]
    low, high = [0.50 + 0.01 * i for i in range(8)], [0.70 + 0.01 * i for i in range(8)]
    entries = [
        make_entry("error-min", high, recipe="sgd", cells=EIGHT),
        make_entry("sapa-error-min", low, recipe="sgd", cells=EIGHT),
        make_entry("sleeper-agent", noisy_a, threat="backdoor", metric="attack_success_rate", higher=True, cells=EIGHT),
        make_entry(
            "sapa-sleeper-agent", noisy_b, threat="backdoor", metric="attack_success_rate", higher=True, cells=EIGHT
        ),
    ]
    for recipe in ("adam", "cutout", "mixup"):
        entries += [
            make_entry("error-min", noisy_a, recipe=recipe, cells=EIGHT),
            make_entry("sapa-error-min", noisy_b, recipe=recipe, cells=EIGHT),
        ]
    v = _verdicts(tmp_path, entries)
    both = v["T2-cifar10-resnet18-16-vs-sleeper-agent"], v["T4-sgd-sleeper-agent"]
    assert both[0].test is both[1].test and both[0].p_adjusted == both[1].p_adjusted is not None
    tested = [x for x in v.values() if x.p_adjusted is not None]
    assert len({id(x.test) for x in tested}) == 5
    sgd = v["T4-sgd-error-min"]
    hypotheses = {(id(x.test), "eq"): x.p_two_sided for x in tested}
    hypotheses |= {(id(x.test), x.gain.expected): x.p_below for x in tested if x.p_below is not None}
    assert len(hypotheses) == 7
    keys = list(hypotheses)
    by = dict(zip(keys, adjust_p([hypotheses[k] for k in keys], "by"), strict=True))
    assert sgd.p_two_sided == 2**-7 and sgd.verdict == "held"
    assert sgd.p_adjusted == pytest.approx(by[(id(sgd.test), "eq")]) and sgd.p_adjusted > 2**-7
    assert all(v[f"T4-{r}-error-min"].verdict == "inconclusive" for r in ("adam", "cutout", "mixup"))
    # alone it would hold at alpha 0.035; among seven hypotheses it does not
    assert _verdicts(tmp_path / "strict", entries, alpha=0.035)["T4-sgd-error-min"].verdict == "inconclusive"


def test_a_verdict_decided_on_the_margin_is_labelled_in_every_output(tmp_path, capsys):
    from sapabench.benchmark.cli import main

    cells = [(c, t) for c in range(8) for t in (100, 101)]
    base_margin = [-4.0 + 0.1 * i for i in range(16)]
    sapa_margin = [m + 1.0 for m in base_margin]
    kw = dict(
        threat="targeted", metric="success", higher=True, cells=cells, protocol="linear", pretrained="independent"
    )
    entries = [
        make_entry("gradient-matching", [0.0] * 16, margin=(base_margin, [-6.0] * 16), **kw),
        make_entry("sapa-gradient-matching", [0.0] * 16, margin=(sapa_margin, [-6.0] * 16), **kw),
    ]
    results = _results(tmp_path, entries)
    assert main(["claims", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "HELD (MARGIN)" in out and "T4-sgd-gradient-matching" in out
    rows = {r["id"]: r for r in json.loads((results / "leaderboard" / "claims.json").read_text())["verdicts"]}
    row = rows["T4-sgd-gradient-matching"]
    assert row["label"] == "held (margin)" and row["decided_on"] == "adversarial margin"
    assert "success 0.0 +/- 0.0 % -> 0.0 +/- 0.0 %" in row["summary"]  # the 0/1 success beside it
    assert "gain +1.00 logits (95% interval [+1.0, +1.0] logits) over 8 poisons x 2 victims" in row["summary"]
    assert "no delta (decided on a proxy)" in row["summary"] and row["delta"] is None
    page = (results / "leaderboard" / "leaderboard.html").read_text()
    assert ">proxy: adversarial margin</span>" in page  # the page badges the proxy beside the verdict


def _linear(attack, margins, arch="convnet", pretrained="independent", surrogate="convnet"):
    cells = [(c, 100) for c in range(8)]
    return make_entry(
        attack,
        [0.0] * 8,
        threat="targeted",
        metric="success",
        higher=True,
        cells=cells,
        arch=arch,
        protocol="linear",
        pretrained=pretrained,
        margin=(margins, [-6.0] * 8),
        attack_config={"surrogate": {"arch": surrogate, "recipe": "sgd", "epochs": None}},
    )


def test_a_victim_that_starts_from_the_attackers_surrogate_is_white_box(tmp_path):
    base = [-4.0 + 0.1 * i for i in range(8)]
    sapa = [m + 1.0 for m in base]
    # linear on the attacker's own surrogate (same architecture): a bound, never a claim
    white = [
        _linear("gradient-matching", base, pretrained="surrogate"),
        _linear("sapa-gradient-matching", sapa, pretrained="surrogate"),
    ]
    assert _verdicts(tmp_path / "w", white)["T4-sgd-gradient-matching"].verdict == "untested"
    board = tmp_path / "w" / "leaderboard"
    from sapabench.leaderboard.pairs import rival_pairs
    from sapabench.leaderboard.schema import load_entries

    pairs = rival_pairs(load_entries(board / "entries"))
    assert pairs and all(p.white_box and p.protocol.endswith("(white-box bound)") for p in pairs)
    # the surrogate source of another architecture is a black-box victim
    black = [
        _linear("gradient-matching", base, pretrained="surrogate", surrogate="resnet18"),
        _linear("sapa-gradient-matching", sapa, pretrained="surrogate", surrogate="resnet18"),
    ]
    assert _verdicts(tmp_path / "b", black)["T4-sgd-gradient-matching"].verdict == "held"


def test_tied_settings_rest_on_the_weakest_not_on_a_label(tmp_path):
    """Two black-box settings with the same number of poisons: the claim takes the larger p
    (an independent source that shows nothing beats a checkpoint file that shows a lot)."""
    base = [-4.0 + 0.1 * i for i in range(8)]
    strong = [m + 1.0 for m in base]
    weak = [m + (0.5 if i % 2 else -0.4) for i, m in enumerate(base)]
    entries = [
        _linear("gradient-matching", base, pretrained="independent"),
        _linear("sapa-gradient-matching", weak, pretrained="independent"),
        _linear("gradient-matching", base, pretrained="file:/x.safetensors@" + "a" * 64),
        _linear("sapa-gradient-matching", strong, pretrained="file:/x.safetensors@" + "a" * 64),
    ]
    from sapabench.leaderboard.schema import seal

    for i in (2, 3):
        entries[i]["entry_id"] += "-file"
        entries[i] = seal({k: v for k, v in entries[i].items() if k != "content_sha256"})
    v = _verdicts(tmp_path, entries)["T4-sgd-gradient-matching"]
    assert v.settings == 2 and v.verdict == "inconclusive" and "weakest of 2" in describe(v)


def test_primary_claims_are_decided_with_holm_and_nothing_else_is_tested(tmp_path):
    entries = _error_min("sgd", HIGH, LOW) + _error_min("adam", HIGH, LOW)
    plan = ClaimsPlan(("T4-sgd-error-min", "T4-adam-error-min", "T4-sam-error-min"), 0.05)
    _, verdicts = check_claims(_results(tmp_path, entries), plan=plan)
    assert [v.claim.id for v in verdicts] == ["T4-sgd-error-min", "T4-adam-error-min", "T4-sam-error-min"]
    sgd, adam, sam = verdicts
    # Holm over the two tested: 2 x 2^-7 at the first step, max(that, 1 x 2^-7) at the second
    assert sgd.p_adjusted == adam.p_adjusted == pytest.approx(2 * 2**-7) and sgd.verdict == adam.verdict == "held"
    assert sgd.family == "primary" and sam.verdict == "untested"
    assert sgd.design_power is None and "power" not in describe(sgd)  # this plan states none
    record = write_verdicts(tmp_path, plan=plan)
    assert record["plan"]["primary"] == list(plan.primary) and "Holm" in record["correction"]
    assert not any(r["kind"] == "cost" for r in record["verdicts"])  # the cost claims were not pre-registered
    assert load_claims_record(tmp_path / "leaderboard" / "claims.json") == record
    html = (tmp_path / "leaderboard" / "leaderboard.html").read_text()
    assert "Pre-registered by the run" in html and "T4-adam-error-min" in html


def _suite(text):
    from sapabench.benchmark.suite import parse_suite

    return parse_suite(text, "s.toml")


PLANNED = """
name = "p"
dataset = "digits"
preset = "embedded"
trials = 1
craft_seeds = {seeds}
[claims]
primary = {primary}
[[grid]]
attacks = ["error-min", "sapa-error-min"]
recipes = ["sgd"]
archs = ["convnet"]
"""


def _pilot(claim="T4-sgd-error-min", sd=0.01):
    """A pilot with a small spread (on craft seeds the test suites do not use)."""
    from sapabench.benchmark.claims import Pilot

    return {claim: Pilot(claim, "pilot", (100, 101), 4, 0.3, sd, sd, sd, sd)}


PILOTS = {**_pilot("T4-sgd-error-min"), **_pilot("T4-adam-error-min")}


def test_a_pre_registered_claim_the_design_cannot_decide_is_refused():
    ok = _suite(PLANNED.format(seeds=list(range(8)), primary='["T4-sgd-error-min"]'))
    plan = plan_claims(ok, pilots=PILOTS)
    assert (plan.primary, plan.alpha, plan.looks) == (("T4-sgd-error-min",), 0.05, (8,))
    power = plan.power["T4-sgd-error-min"]
    assert power["held_at_delta"] > 0.99 and power["below_at_zero"] > 0.99
    assert power["delta"] == pytest.approx(0.3 * (21.2 - 10.9) / (94.8 - 21.2))
    # 6 poisons: two-sided floor 2^-5 = 0.03125, not below 0.05 / 2 under Holm over two claims
    two = PLANNED.format(seeds=list(range(6)), primary='["T4-adam-error-min", "T4-sgd-error-min"]')
    with pytest.raises(ConfigError, match="T4-adam-error-min cannot be decided: no grid trains"):
        plan_claims(_suite(two), pilots=PILOTS)
    two = two.replace('recipes = ["sgd"]', 'recipes = ["sgd", "adam"]')
    with pytest.raises(
        ConfigError, match=r"T4-adam-error-min cannot be decided: floor 0.03125 > alpha 0.025 .* at least 7 craft"
    ):
        plan_claims(_suite(two), pilots=PILOTS)
    with pytest.raises(ConfigError, match="not in the claims file; did you mean 'T4-sgd-error-min'"):
        plan_claims(_suite(PLANNED.format(seeds=list(range(8)), primary='["T4-sgd-error-mn"]')), pilots=PILOTS)
    # power before the data: the pilot's spread at this design gives less than 80 % at delta
    with pytest.raises(ConfigError, match=r"T4-sgd-error-min has \d+% design power at delta .* below 80%"):
        plan_claims(ok, pilots=_pilot(sd=0.2))
    with pytest.raises(ConfigError, match="has no pilot"):
        plan_claims(ok, pilots={})
    with pytest.raises(ConfigError, match="pilot used craft seeds of this suite"):
        plan_claims(_suite(PLANNED.format(seeds=[100, *range(7)], primary='["T4-sgd-error-min"]')), pilots=PILOTS)
    with pytest.raises(ConfigError, match="claims primary must be a non-empty list"):
        _suite(PLANNED.format(seeds=[0, 1], primary="[]"))


def test_a_refused_plan_writes_nothing(tmp_path):
    from sapabench.benchmark.runner import run_suite

    bad = _suite(PLANNED.format(seeds=[0, 1, 2], primary='["T4-sgd-error-min"]'))
    with pytest.raises(ConfigError, match=r"cannot be decided: floor 0\.25"):
        run_suite(bad, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_claim_names_its_protocol_per_scale():
    """The Table-4 gradient-matching rows are tested on linear victims at embedded scale and from
    scratch, as in the paper, at the paper preset."""
    _, claims = load_claims()
    gm = next(c for c in claims if c.id == "T4-sgd-gradient-matching")
    assert gm.protocol_at("embedded") == "linear" and gm.protocol_at("paper") == "scratch"
    from sapabench.benchmark.claims import undecidable_claims
    from sapabench.benchmark.suite import load_suite

    assert undecidable_claims(load_suite("table4")) == []  # ten poisons per comparison
    assert undecidable_claims(load_suite("defenses")) == []  # twelve poisons per comparison
    one_poison = load_suite("defenses")
    assert undecidable_claims(
        dataclasses.replace(one_poison, craft_seeds=(0,))
    )  # one poison: said before the run, not hidden


def test_a_design_that_cannot_decide_is_shown_not_tested(tmp_path):
    four = [(c, 100) for c in range(4)]  # 4 poisons: two-sided floor 2^-3 = 0.125
    entries = [
        make_entry("error-min", [0.7, 0.71, 0.72, 0.73], recipe="sgd", cells=four),
        make_entry("sapa-error-min", [0.5, 0.51, 0.52, 0.53], recipe="sgd", cells=four),
    ]
    v = _verdicts(tmp_path, entries)["T4-sgd-error-min"]
    assert v.verdict == "untested" and "4 poisons cannot decide it: floor 0.125 >= alpha 0.05" in describe(v)


@pytest.mark.parametrize(("preset", "verdict"), [("embedded", "held"), ("smoke", "untested")])
def test_a_smoke_run_tests_no_claim_of_the_paper(tmp_path, preset, verdict):
    """Only the paper preset (on the paper's settings) and its embedded twins test claims: the
    smoke preset (one-epoch surrogates, two-step crafting) stands for no row of the paper, even
    where the row names no options (Table 4) or its embedded twin has none (Table 1)."""
    entries = [
        make_entry("error-min", HIGH, recipe="sgd", cells=EIGHT, preset=preset),
        make_entry("sapa-error-min", LOW, recipe="sgd", cells=EIGHT, preset=preset),
    ]
    v = _verdicts(tmp_path, entries)
    assert v["T4-sgd-error-min"].verdict == verdict
    if preset == "smoke":
        assert {x.verdict for x in v.values()} == {"untested"} and all(x.measured is None for x in v.values())


PLANNED_SAM = """
name = "planned"
dataset = "digits"
preset = "embedded"
trials = 2
craft_seeds = {seeds}
[claims]
primary = ["T4-sam-error-min"]
[[grid]]
attacks = ["error-min", "sapa-error-min"]
recipes = ["sam"]
archs = ["convnet"]
"""


def test_adding_poisons_to_a_planned_run_outside_a_declared_look_is_refused(tmp_path):
    """The plan's looks are fixed with the first result: a suite that later lists more craft seeds
    for the same folder is refused before anything runs (it would be optional stopping)."""
    from sapabench.benchmark.runner import run_suite
    from sapabench.benchmark.store import CLAIMS_PLAN, VICTIM_SEEDING, ResultsStore

    first = _suite(PLANNED_SAM.format(seeds=list(range(14))))
    plan = plan_claims(first)
    assert plan.looks == (14,) and plan.power["T4-sam-error-min"]["held_at_delta"] >= 0.8  # the repository's pilot
    out = tmp_path / "out"
    out.mkdir()
    store = ResultsStore(out)
    store.set_meta("suite", "planned")
    store.set_meta(VICTIM_SEEDING, "nested")
    store.set_meta(CLAIMS_PLAN, json.dumps(plan.record(), sort_keys=True))
    more = _suite(PLANNED_SAM.format(seeds=list(range(20))))
    with pytest.raises(ConfigError, match=r"planned with looks at \[14\] poisons .* \[20\]: adding poisons"):
        run_suite(more, out, progress=False)


def test_a_planned_runs_alpha_and_claims_cannot_change_after_the_data(tmp_path, capsys):
    from sapabench.benchmark.cli import main

    entries = _error_min("sgd", HIGH, LOW)
    results = _results(tmp_path, entries)
    _, claims = load_claims()
    sgd = next(c for c in claims if c.id == "T4-sgd-error-min")
    from sapabench.benchmark.claims import claims_digest

    plan = ClaimsPlan(("T4-sgd-error-min",), 0.05, (8,), claims_digest([sgd]))
    (results / "leaderboard" / "runs.json").write_text(json.dumps({"suite": "t", "runs": [], "claims": plan.record()}))
    assert main(["claims", "--results", str(results)]) == 0
    assert "HELD" in capsys.readouterr().out
    assert main(["claims", "--results", str(results), "--alpha", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "pre-registered alpha 0.05: --alpha cannot change a planned run's decisions" in err
    assert len(err.strip().splitlines()) == 1
    # a claims file that redefines the planned claim (its paper numbers) is refused by its digest
    text = tmp_path / "claims.toml"
    from importlib import resources

    original = (resources.files("sapabench.benchmark") / "claims.toml").read_text()
    text.write_text(original.replace("paper = [21.2, 10.9]", "paper = [21.2, 1.0]", 1))
    assert main(["claims", "--results", str(results), "--claims", str(text)]) == 2
    assert "a planned claim cannot be redefined after the data" in capsys.readouterr().err
    # the same file unchanged is accepted
    text.write_text(original)
    assert main(["claims", "--results", str(results), "--claims", str(text)]) == 0


def test_claims_fail_on_gives_ci_an_exit_status(tmp_path, capsys):
    from sapabench.benchmark.cli import main

    results = _results(tmp_path, _error_min("sgd", HIGH, LOW) + _error_min("adam", LOW, HIGH))
    assert main(["claims", "--results", str(results)]) == 0
    assert main(["claims", "--results", str(results), "--fail-on", "below"]) == 0
    assert main(["claims", "--results", str(results), "--fail-on", "failed,below"]) == 1
    assert "T4-adam-error-min" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        main(["claims", "--results", str(results), "--fail-on", "worse"])
    assert bad.value.code == 2


def test_no_output_states_power_for_the_measured_effect(tmp_path, capsys):
    from sapabench.benchmark.cli import main

    results = _results(tmp_path, _error_min("sgd", HIGH, LOW) + _error_min("sam", HIGH, LOW))
    main(["claims", "--results", str(results), "--all"])
    outputs = [capsys.readouterr().out]
    outputs += [
        p.read_text() for p in (results / "leaderboard").glob("*") if p.suffix in (".json", ".md", ".csv", ".html")
    ]
    for text in outputs:
        assert "measured effect" not in text and "for the measured" not in text


def test_a_pilot_measures_the_variance_between_and_within_poisons(tmp_path):
    import tomllib

    import numpy as np

    from sapabench.benchmark.claims import measure_pilot, pilot_toml
    from sapabench.core.stats import variance_components

    rng = np.random.default_rng(0)
    cells = [(c, 1000 * c + v) for c in range(6) for v in range(3)]
    base = [0.6 + 0.01 * v for v in range(18)]
    poison_effect = {c: rng.normal(0, 0.1) for c in range(6)}
    sapa = [b - 0.05 - poison_effect[c] - rng.normal(0, 0.03) for b, (c, _) in zip(base, cells, strict=True)]
    entries = [
        make_entry("error-min", base, recipe="sam", cells=cells),
        make_entry("sapa-error-min", sapa, recipe="sam", cells=cells),
        _clean("sam", [0.98, 0.99]),
    ]
    pilot = measure_pilot(_results(tmp_path, entries), "T4-sam-error-min")
    gains = [[base[i] - sapa[i] for i in range(18) if cells[i][0] == c] for c in range(6)]
    assert (pilot.gain_sd_poison, pilot.gain_sd_victim) == pytest.approx(variance_components(gains))
    assert pilot.craft_seeds == tuple(range(6)) and pilot.victims_per_poison == 3
    assert pilot.effect == pytest.approx(0.985 - sum(base) / 18)
    block = tomllib.loads(pilot_toml(pilot))["pilot"][0]
    assert block["claim"] == "T4-sam-error-min" and block["gain_sd_poison"] == pytest.approx(
        pilot.gain_sd_poison, abs=1e-4
    )


def _clean(recipe, values):
    return make_clean_entry(values, recipe)


def test_below_the_paper_is_decided_against_delta_from_the_clean_victims(tmp_path):
    """Clean victims at 98 %, Error-Min at about 60 %: the paper's SAPA gain under SAM (r 0.267 of
    the base attack's damage) predicts about 9.7 points here. SAPA 1 point stronger on every
    poison is HELD and BELOW THE PAPER; 20 points stronger is HELD only."""
    base = [0.60 + 0.005 * i for i in range(8)]
    small = [b - 0.01 - 0.001 * i for i, b in enumerate(base)]
    large = [b - 0.20 - 0.001 * i for i, b in enumerate(base)]
    clean = _clean("sam", [0.98, 0.98])
    v = _verdicts(tmp_path / "a", [*_error_min("sam", base, small), clean])["T4-sam-error-min"]
    assert v.verdict == "held+below" and v.label == "held, below the paper"
    r = (28.9 - 11.3) / (94.8 - 28.9)
    assert v.gain.delta == pytest.approx(r * (0.98 - sum(base) / 8))
    assert v.gain.interval[0] > 0 and v.gain.interval[1] < v.gain.delta
    assert "delta +9.7 points (r = 0.267" in describe(v) and "p(gain < delta) 0.0039" in describe(v)
    v = _verdicts(tmp_path / "b", [*_error_min("sam", base, large), clean])["T4-sam-error-min"]
    assert v.verdict == "held" and v.p_below == 1.0
    # no clean victims: no delta, HELD / FAILED only
    v = _verdicts(tmp_path / "c", _error_min("sam", base, small))["T4-sam-error-min"]
    assert v.verdict == "held" and v.gain.delta is None and "BELOW is not tested" in describe(v)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('alpha = "lots"', r"alpha must be a number in \(0, 1\), got 'lots'"),
        ("alpha = [0.05]", r"alpha must be a number in \(0, 1\), got \[0.05\]"),
        ("alpha = 1.5", r"alpha must be a number in \(0, 1\)"),
        ('claim = "everything"', r"'claim' must be a list of \[\[claim\]\] tables, got str"),
        ("[[claim]]\nid = [1]", "every \\[\\[claim\\]\\] needs an id, a string"),
        ('[[claim]]\nid = "x"\npaper = [1, "2"]', "paper must be two finite numbers"),
        ('[[claim]]\nid = "x"\nattack = 3\npaper = [1, 2]', "attack must be a string"),
        ('[[claim]]\nid = "x"\npaper = [1, 2]\nclean = nan', "clean must be a finite number"),
        ('[[cost_claim]]\nid = "x"\npaper = [1, 2]\nmargin = inf', "margin must be a finite number"),
    ],
)
def test_a_malformed_claims_file_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    import re

    from sapabench.benchmark.cli import main

    results = _results(tmp_path / "r", _error_min("sgd", HIGH, LOW))
    bad = tmp_path / "claims.toml"
    bad.write_text(text + "\n")
    assert main(["claims", "--results", str(results), "--claims", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_a_claims_file_of_too_many_claims_is_refused_before_it_is_read_further(tmp_path):
    from sapabench.benchmark.claims import MAX_CLAIMS

    bad = tmp_path / "claims.toml"
    bad.write_text('[[claim]]\nid = "x"\npaper = [1, 2]\n' * (MAX_CLAIMS + 1))
    with pytest.raises(ConfigError, match=r"more than 10000: split the file"):
        load_claims(bad)
