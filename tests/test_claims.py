import json

import pytest

from benchmark.claims import load_claims
from benchmark.claims import test_claims as check_claims
from core.errors import ConfigError
from tests._entries import make_entry


def test_claims_file_covers_tables_4_and_5():
    alpha, claims = load_claims()
    assert alpha == 0.05
    ids = {c.id for c in claims}
    assert len(claims) == 26 and len(ids) == 26
    assert {c.table for c in claims} == {"4", "5"}
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
    assert v["T4-sgd-error-min"].measured["arch"] == "convnet"


def test_alpha_changes_the_verdict_not_the_numbers(tmp_path):
    entries = [  # 6 of 8 craft seeds favour SAPA: p = 37/256
        make_entry("error-min", [0.6, 0.66, 0.62, 0.6, 0.6, 0.6, 0.6, 0.6], recipe="sgd", cells=EIGHT),
        make_entry("sapa-error-min", [0.55, 0.62, 0.58, 0.55, 0.55, 0.55, 0.62, 0.61], recipe="sgd", cells=EIGHT),
    ]
    strict = _verdicts(tmp_path / "a", entries, alpha=0.001)["T4-sgd-error-min"]
    loose = _verdicts(tmp_path / "b", entries, alpha=0.5)["T4-sgd-error-min"]
    assert strict.p_sapa_stronger == loose.p_sapa_stronger
    assert strict.verdict == "inconclusive" and loose.verdict == "held"
    with pytest.raises(ConfigError, match="alpha"):
        _verdicts(tmp_path / "c", entries, alpha=1.5)


def test_two_constant_trials_against_two_never_hold(tmp_path):
    """The old failure: zero variance in both arms gave p = 0 and a "held" claim from 2 vs 2."""
    entries = [
        make_entry("error-min", (0.50, 0.50), recipe="sgd"),
        make_entry("sapa-error-min", (0.49, 0.49), recipe="sgd"),
    ]
    v = _verdicts(tmp_path, entries)["T4-sgd-error-min"]
    assert v.verdict == "inconclusive"
    assert v.p_sapa_stronger == 0.25 and v.test.p_floor == 0.25 and v.test.unit == "victim seed"


def test_targeted_claims_test_the_margin_in_their_protocol(tmp_path):
    cells = [(c, t) for c in range(8) for t in (100, 101)]
    success = [0.0] * 16
    base_margin = [-4.0 + 0.1 * i for i in range(16)]
    sapa_margin = [m + 1.0 for m in base_margin]
    clean = [-6.0] * 16
    kw = dict(threat="targeted", metric="success", higher=True, cells=cells, protocol="linear", pretrained="surrogate")
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
