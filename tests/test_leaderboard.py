import json

import pytest

from sapabench.core.stats import mean_se, paired_test, sign_flip_p
from sapabench.leaderboard.pairs import sapa_pairs
from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import SCHEMA_VERSION, EntryError, content_hash, load_entries, load_entry, validate
from tests._entries import make_entry


def test_valid_entry_passes():
    e = make_entry()
    assert validate(e) is e


def _tamper(entry, path, value):
    e = json.loads(json.dumps(entry))
    obj = e
    for key in path[:-1]:
        obj = obj[key]
    if value is KeyError:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return e


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("metric", "mean"), 0.1, r"content_sha256|do not match its values"),
        (("attack",), KeyError, r"missing field 'attack'"),
        (("metric", "trials"), "three", r"field 'metric.trials' must be int"),
        (("metric", "values"), [0.5, 1.7, 0.7], r"fractions in \[0, 1\]"),
        (("setting", "threat"), "sneaky", r"not one of"),
        (("timings", "craft_s"), -1.0, r"timings must be seconds from 0 to 1e\+08"),
        (("schema_version",), 1, rf"schema_version 1 is not {SCHEMA_VERSION}"),
        (("provenance", "cell_seeds"), [[0, 100], [0, 100], [0, 101]], r"lists a trial twice"),
        (("provenance", "cell_seeds"), [[0, 100], [0, 101], [1, 102]], r"not \[craft seed, trial seed\]"),
        (("provenance", "cell_seeds"), [[0, 100], [0, 101]], r"2 items for 3 trials"),
        (("provenance", "poison_sha256"), [], r"one sha256 \(64 hex digits\) per craft seed"),
        (("provenance", "trial_seeds"), [102, 101, 100], r"sorted distinct"),
        (("setting", "preset"), "huge", r"setting.preset must be one of"),
        (("colour",), "red", r"unknown field 'colour'"),
        (("sapa",), False, r"sapa flag does not match"),
        (("metric", "mean"), float("nan"), r"must be finite"),
        (("provenance", "device"), "cpu:x86_64x0threads", r"names 0 threads, not 1 to 1024"),
        (("provenance", "device"), "cpu:x86_64x" + "9" * 5000 + "threads", r"names a million or more threads"),
        (("setting", "victim"), {"epochs": 10**8}, r"setting.recipe/victim: invalid epochs=100000000"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(path, value, message):
    e = _tamper(make_entry(), path, value)
    if path != ("schema_version",):
        e["content_sha256"] = content_hash(e)  # even a re-sealed entry must be consistent
    with pytest.raises(EntryError, match=message):
        validate(e)


def test_consistent_edit_without_resealing_is_detected():
    e = make_entry()
    e["provenance"]["device"] = "cuda:H200"  # plausible, but the entry was written on cpu
    with pytest.raises(EntryError, match="content_sha256 does not match"):
        validate(e)


def test_edited_values_with_matching_mean_are_still_caught():
    e = make_entry(values=(0.5, 0.6, 0.7))
    e["metric"]["values"] = [0.6, 0.6, 0.6]  # same mean, different se
    e["content_sha256"] = content_hash(e)
    with pytest.raises(EntryError, match="do not match its values"):
        validate(e)


def test_load_entries_refuses_a_bad_file(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(make_entry()))
    assert len(load_entries(tmp_path)) == 1
    (tmp_path / "b.json").write_text("{broken")
    with pytest.raises(EntryError, match=r"b.json: the entry is not valid JSON"):
        load_entries(tmp_path)


def test_pairs_sign_the_gap_so_positive_means_sapa_stronger():
    entries = [
        # five victim pairs (one craft seed): the smallest two-sided p is 1/16, and one poison never decides
        make_entry("error-min", (0.70, 0.72, 0.74, 0.71, 0.73)),
        make_entry("sapa-error-min", (0.50, 0.52, 0.54, 0.51, 0.53)),  # lower accuracy = stronger
        make_entry("sleeper-agent", (0.4, 0.5, 0.6), threat="backdoor", metric="attack_success_rate", higher=True),
        make_entry("sapa-sleeper-agent", (0.1, 0.2, 0.3), threat="backdoor", metric="attack_success_rate", higher=True),
    ]
    pairs = {p.attack: p for p in sapa_pairs(entries)}
    assert pairs["error-min"].p_value == 1 / 16 and pairs["error-min"].test.unit == "victim seed"
    assert pairs["error-min"].gap == pytest.approx(0.20) and not pairs["error-min"].significant
    assert pairs["sleeper-agent"].gap == pytest.approx(-0.30) and not pairs["sleeper-agent"].significant


def test_entries_that_differ_in_attack_options_are_paired_separately():
    from sapabench.leaderboard.schema import seal

    def with_options(e, options):
        e = dict(e, setting={**e["setting"], "options": options})
        return seal({k: v for k, v in e.items() if k != "content_sha256"})

    entries = [
        make_entry("error-min", (0.70, 0.72, 0.74)),
        make_entry("sapa-error-min", (0.50, 0.52, 0.54)),
        with_options(make_entry("error-min", (0.60, 0.62, 0.64)), {"eps": 0.1}),
        with_options(make_entry("sapa-error-min", (0.65, 0.66, 0.67)), {"eps": 0.1}),
    ]
    gaps = sorted(round(p.gap, 6) for p in sapa_pairs(entries))
    assert gaps == [-0.04, 0.2]  # each SAPA entry against the baseline with the same options


def test_stats():
    assert mean_se([1.0]) == (1.0, 0.0)
    m, se = mean_se([0.0, 1.0])
    assert m == 0.5 and se == pytest.approx(0.5)
    # exact sign-flip test: the smallest p of n pairs is 2^-n, ties and zeros never help
    assert sign_flip_p([0.1, 0.2, 0.3]) == 1 / 8
    assert sign_flip_p([0.01, 0.01]) == 1 / 4  # [0.5, 0.5] vs [0.49, 0.49] paired: not significant
    assert sign_flip_p([0.0, 0.0]) == 1.0 and sign_flip_p([]) == 1.0
    # flips reaching the observed sum: none, either 0.1 (one is the observed -0.1), or 0.05
    assert sign_flip_p([0.3, -0.1, 0.2, 0.25, 0.1, 0.2, 0.15, 0.05]) == 4 / 256
    assert sign_flip_p([-0.1, -0.2, -0.3]) == 1.0
    assert sign_flip_p([0.1] * 20) < 1e-4  # Monte Carlo above 16 pairs, floored at 1 / (2^16 + 1)


def test_paired_test_pairs_over_craft_seeds_and_averages_victims():
    # 8 craft seeds x 2 victims; SAPA better for every craft seed on average, not every victim
    a = {(c, t): 0.5 + (0.2 if t == 100 else -0.1) for c in range(8) for t in (100, 101)}
    b = {(c, t): 0.45 for c in range(8) for t in (100, 101)}
    test = paired_test(a, b)
    assert test.unit == "craft seed" and test.n == 8 and test.p_greater == 2**-8 and test.p_floor == 2**-8
    assert test.mean_difference == pytest.approx(0.1)
    # one craft seed: victims are the pairs; a trial without a partner is left out and counted
    one = paired_test({(0, 100): 0.5, (0, 101): 0.6, (0, 102): 0.7}, {(0, 100): 0.4, (0, 101): 0.5})
    assert one.unit == "victim seed" and one.n == 2 and one.unpaired == 1 and one.p_greater == 0.25


def test_render_is_deterministic_and_complete(tmp_path):
    entries_dir = tmp_path / "entries"
    entries_dir.mkdir()
    for e in (make_entry("error-min", (0.7, 0.72, 0.74)), make_entry("sapa-error-min", (0.5, 0.52, 0.54))):
        (entries_dir / f"{e['attack']}.json").write_text(json.dumps(e))
    first = {p.name: p.read_bytes() for p in render(entries_dir, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in render(entries_dir, tmp_path / "b")}
    assert first == second
    assert {
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.html",
        "table4.md",
        "table4.csv",
        "crafting-time--untargeted.png",
        "pair--digits--convnet--error-min.png",
    } <= set(first)
    md = first["leaderboard.md"].decode()
    assert "sapa-error-min" in md and "52.0" in md and "+20.0" in md
    html = first["leaderboard.html"].decode()
    assert '<table class="board">' in html and "52.0" in html
    assert "http://" not in html and "https://" not in html  # viewable offline: no network resources


def test_json_schema_describes_the_entry():
    from sapabench.leaderboard.schema import json_schema

    schema = json_schema()
    e = make_entry()
    assert set(schema["required"]) == set(e) and schema["additionalProperties"] is False
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    assert set(schema["properties"]["metric"]["required"]) == set(e["metric"])


_V2_TIMINGS = {
    "craft_s": "craft_seconds",
    "train_s_mean": "train_seconds_mean",
    "eval_s_mean": "eval_seconds_mean",
    "total_s": "total_seconds",
}


def _as_version(entry, version):
    """The entry as schema version 9 (no crafting numerics), 7 (also timings of one device, not
    per device), 6 (also no surrogates' training time), 3 (also no numerics, no instruction set)
    or 2 (also seconds named *_seconds) wrote it, sealed."""
    old = json.loads(json.dumps(entry))
    old["schema_version"] = version
    del old["setting"]["craft_precision"], old["setting"]["craft_memory_format"]
    if version <= 7:
        del old["timings"]["devices"], old["timings"]["craft_devices"]
    if version <= 6:
        del old["timings"]["surrogates_s"]
    if version <= 3:
        del old["setting"]["precision"], old["setting"]["memory_format"], old["provenance"]["isa"]
    if version == 2:
        old["timings"] = {_V2_TIMINGS.get(k, k): v for k, v in old["timings"].items()}
    old["content_sha256"] = content_hash(old)
    return old


def _as_version_2(entry):
    return _as_version(entry, 2)


@pytest.mark.parametrize("version", [2, 3, 6, 7, 9])
def test_older_entries_are_read_as_the_current_version(tmp_path, version):
    entry = make_entry(isa="unknown")  # older entries: fp32 victims and crafting, instruction set not recorded
    (tmp_path / "old.json").write_text(json.dumps(_as_version(entry, version)))
    assert load_entry(tmp_path / "old.json") == entry  # same content, same hash, once upgraded
    assert load_entries(tmp_path) == [entry]


def test_timings_of_different_devices_are_never_averaged():
    from sapabench.leaderboard.views import ENTRY_COLUMNS, entry_row, table

    mixed = make_entry(devices={"cpu:x86_64x2threads": 2, "cuda:NVIDIA H100": 1})
    assert mixed["timings"]["train_s_mean"] is None and sorted(mixed["timings"]["devices"]) == [
        "cpu:x86_64x2threads",
        "cuda:NVIDIA H100",
    ]
    (row,) = table(ENTRY_COLUMNS, [entry_row(mixed)])
    assert row["train_s_per_victim"] == "cpu:x86_64x2threads: 2.0; cuda:NVIDIA H100: 4.0"
    averaged = json.loads(json.dumps(mixed))
    averaged["timings"]["train_s_mean"] = 3.0  # an average over the two devices
    averaged["content_sha256"] = content_hash(averaged)
    with pytest.raises(EntryError, match=r"timings.train_s_mean must be the one device's average, or null"):
        validate(averaged)
    short = json.loads(json.dumps(mixed))
    short["timings"]["devices"]["cuda:NVIDIA H100"]["trials"] = 2
    short["timings"]["devices"]["cuda:NVIDIA H100"]["train_steps"] = {"graph": 2}
    short["content_sha256"] = content_hash(short)
    with pytest.raises(EntryError, match=r"do not add up to metric.trials"):
        validate(short)


@pytest.mark.parametrize("steps", [{"graph": 2}, {"compiled": 3}, {"eager": 0, "graph": 3}, [3]])
def test_train_steps_must_count_each_devices_trials_by_mode(steps):
    entry = make_entry(devices={"cuda:NVIDIA H100": 3})
    entry["timings"]["devices"]["cuda:NVIDIA H100"]["train_steps"] = steps
    with pytest.raises(EntryError, match=r"train_steps must count that device's trials by step mode"):
        validate({**entry, "content_sha256": content_hash(entry)})


def test_a_version_8_entry_reads_as_every_step_eager(tmp_path):
    entry = make_entry(devices={"cpu:x86_64x2threads": 3})
    entry["schema_version"] = 8
    for device in entry["timings"]["devices"].values():
        del device["train_steps"]
    entry["content_sha256"] = content_hash(entry)
    (tmp_path / "v8.json").write_text(json.dumps(entry))
    loaded = load_entry(tmp_path / "v8.json")
    assert loaded["schema_version"] == SCHEMA_VERSION
    assert loaded["timings"]["devices"]["cpu:x86_64x2threads"]["train_steps"] == {"eager": 3}


def test_an_entry_with_unknown_numerics_is_refused(tmp_path):
    entry = make_entry()
    entry["setting"]["precision"] = "fp16"
    with pytest.raises(EntryError, match=r"setting: invalid precision='fp16'"):
        validate({**entry, "content_sha256": content_hash(entry)})
    entry = make_entry()
    entry["setting"]["craft_memory_format"] = "nhwc"
    with pytest.raises(EntryError, match=r"setting: invalid memory_format='nhwc'"):
        validate({**entry, "content_sha256": content_hash(entry)})


def test_a_version_2_entry_edited_after_it_was_written_is_refused(tmp_path):
    old = _as_version_2(make_entry())
    old["metric"]["values"][0] = 0.9  # not resealed
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(EntryError, match="content_sha256 does not match"):
        load_entry(tmp_path / "old.json")


def test_rho_ablation_groups_sapa_radii_beside_the_baseline():
    from sapabench.leaderboard.plots import rho_ablation

    def with_rho(e, rho):
        from sapabench.leaderboard.schema import seal

        e = dict(e, setting={**e["setting"], "options": {"rho": rho}})
        e.pop("content_sha256")
        return seal(e)

    kw = dict(threat="backdoor", metric="attack_success_rate", higher=True)
    entries = [
        make_entry("sleeper-agent", (0.3, 0.4), **kw),
        make_entry("sapa-sleeper-agent", (0.5, 0.6), **kw),  # the preset's rho 0.05
        with_rho(make_entry("sapa-sleeper-agent", (0.2, 0.3), **kw), 0.5),
    ]
    view = rho_ablation(entries)
    assert len(view) == 1
    (group,) = view.values()
    assert sorted(group["sapa"]) == [0.05, 0.5] and group["baseline"]["attack"] == "sleeper-agent"


def test_the_threat_model_view_ranks_every_attack_and_puts_each_baseline_beside_sapa():
    from sapabench.leaderboard.views import THREAT_COLUMNS, table, threat_view
    from tests._entries import make_entry

    cells = [(0, 100 + i) for i in range(3)]
    clean = make_entry("error-min", [0.95, 0.96, 0.97], cells=cells)  # re-labelled as the clean reference:
    clean["setting"] = {**clean["setting"], "threat": "none", "preset": "-"}  # the view reads, not validates
    entries = [
        make_entry("separable", [0.30, 0.32, 0.31], cells=cells),
        make_entry("sapa-error-min", [0.50, 0.52, 0.51], cells=cells),
        make_entry("error-min", [0.60, 0.62, 0.61], cells=cells),
        clean,
    ]
    rows = table(THREAT_COLUMNS, threat_view(entries))
    assert [r["attack"] for r in rows] == ["separable", "sapa-error-min", "error-min"]  # lower accuracy first
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and all(r["clean_reference"] == "96.0" for r in rows)
    sep, sapa, em = rows
    assert sep["vs_sapa"] == "sapa-error-min" and sep["gap"] == "-20.0" and sapa["vs_sapa"] == "-"
    assert em["gap"] == "+10.0" and em["p_value"] == "0.2500" and em["pairs"] == "3 victim seeds"  # two-sided


def test_the_threat_model_view_breaks_ties_of_success_by_the_margin():
    from sapabench.leaderboard.views import THREAT_COLUMNS, table, threat_view
    from tests._entries import make_entry

    cells = [(c, 100) for c in range(4)]
    zeros, clean = [0.0] * 4, [-9.0] * 4

    def targeted(attack, margins):
        return make_entry(
            attack, zeros, cells=cells, threat="targeted", metric="target_success", higher=True, margin=(margins, clean)
        )

    rows = table(
        THREAT_COLUMNS,
        threat_view(
            [
                targeted("metapoison", [-8.0, -7.0, -8.5, -7.5]),
                targeted("poison-frogs", [-2.0, -3.0, -2.5, -1.5]),
                targeted("sapa-gradient-matching", [-4.0, -5.0, -4.5, -3.5]),
            ]
        ),
    )
    assert [r["attack"] for r in rows] == ["poison-frogs", "sapa-gradient-matching", "metapoison"]
    frogs, _, meta = rows
    assert frogs["gap"] == "+0.0" and frogs["margin_gap"] == "-2.00" and frogs["margin_p"] == "0.1250"  # two-sided
    assert meta["margin_gap"] == "+3.50" and meta["margin_p"] == "0.1250" and meta["pairs"] == "4 craft seeds"


def test_rho_ablation_keeps_absolute_and_relative_radii_apart_with_one_baseline():
    from sapabench.leaderboard.plots import rho_ablation
    from sapabench.leaderboard.schema import seal

    def with_options(e, **options):
        e = dict(e, setting={**e["setting"], "options": options})
        e.pop("content_sha256")
        return seal(e)

    kw = dict(threat="backdoor", metric="attack_success_rate", higher=True)
    entries = [make_entry("sleeper-agent", (0.3, 0.4), **kw)]
    for scale in ("absolute", "resnet18"):
        for rho in (0.05, 0.5):
            entries.append(with_options(make_entry("sapa-sleeper-agent", (0.5, 0.6), **kw), rho=rho, rho_scale=scale))
    view = rho_ablation(entries)
    assert sorted(k[-1] for k in view) == ["absolute", "resnet18"]
    assert all(sorted(g["sapa"]) == [0.05, 0.5] and g["baseline"]["attack"] == "sleeper-agent" for g in view.values())


def test_the_answer_line_counts_sapa_against_its_own_base_with_the_designs_floor():
    from sapabench.leaderboard.summary import threat_summaries

    eight = [(c, 100) for c in range(8)]
    low, high = [0.50 + 0.01 * i for i in range(8)], [0.70 + 0.01 * i for i in range(8)]
    entries = [
        # sgd: SAPA lowers accuracy on every poison (stronger, decidable); adam: the reverse
        make_entry("error-min", high, recipe="sgd", cells=eight),
        make_entry("sapa-error-min", low, recipe="sgd", cells=eight),
        make_entry("error-min", low, recipe="adam", cells=eight),
        make_entry("sapa-error-min", high, recipe="adam", cells=eight),
        # sam: stronger on three poisons only: the design cannot reach 0.05 (floor 0.25)
        make_entry("error-min", high[:3], recipe="sam", cells=eight[:3]),
        make_entry("sapa-error-min", low[:3], recipe="sam", cells=eight[:3]),
        # a SAPA attack against another family's base is no SAPA-vs-base setting
        make_entry("error-max", high, recipe="sgd", cells=eight),
    ]
    (s,) = threat_summaries(entries)
    assert (s.threat, s.settings, s.stronger, s.stronger_significant, s.weaker, s.weaker_significant) == (
        "untargeted",
        3,
        2,
        1,
        1,
        1,
    )
    assert s.underpowered == 1 and "1 underpowered (need >= 6 poisons to reach p < 0.05)" in s.line()


def test_each_baseline_is_compared_with_its_own_sapa_twin():
    from sapabench.leaderboard.views import THREAT_COLUMNS, table, threat_view

    eight = [(c, 100) for c in range(8)]
    low, high = [0.40 + 0.01 * i for i in range(8)], [0.70 + 0.01 * i for i in range(8)]
    entries = [
        make_entry("error-min", high, cells=eight),
        make_entry("sapa-error-min", low, cells=eight),  # the strongest SAPA attack of the group
        make_entry("error-max", high, cells=eight),
        make_entry("sapa-error-max", [v + 0.05 for v in high], cells=eight),  # weaker than its base
        make_entry("separable", high, cells=eight),  # no SAPA twin
    ]
    rows = table(THREAT_COLUMNS, threat_view(entries))
    versus = {r["attack"]: r["vs_sapa"] for r in rows}
    assert versus["error-max"] == "sapa-error-max" and versus["error-min"] == "sapa-error-min"
    assert versus["separable"] == "sapa-error-min" and versus["sapa-error-max"] == "-"
    gaps = {r["attack"]: r["gap"] for r in rows}
    assert gaps["error-max"] == "-5.0"  # its twin is weaker: the gap says so, not sapa-error-min's


def test_a_one_trial_entry_shows_no_standard_error():
    from sapabench.leaderboard.views import THREAT_COLUMNS, Spread, table, text, threat_view

    assert text(Spread(0.992, 0.0, 1)) == "99.2 (1 trial)"
    assert text(Spread(0.5, 0.01, 3)) == "50.0 +/- 1.0" and text(Spread(0.5, 0.01, 3), html=True) == "50.0 ± 1.0"
    rows = table(
        THREAT_COLUMNS, threat_view([make_entry("error-min", [0.992]), make_entry("sapa-error-min", [0.9, 0.8])])
    )
    assert {r["attack"]: r["value"] for r in rows} == {"error-min": "99.2 (1 trial)", "sapa-error-min": "85.0 +/- 5.0"}


def test_the_forest_plot_shows_each_sapa_base_setting(tmp_path):
    from sapabench.leaderboard.render import render

    eight = [(c, 100) for c in range(8)]
    low, high = [0.50 + 0.01 * i for i in range(8)], [0.70 + 0.01 * i for i in range(8)]
    folder = tmp_path / "entries"
    folder.mkdir()
    entries = [
        make_entry("error-min", high, recipe="sgd", cells=eight),
        make_entry("sapa-error-min", low, recipe="sgd", cells=eight),
        make_entry("error-min", low[:3], recipe="adam", cells=eight[:3]),
        make_entry("sapa-error-min", high[:3], recipe="adam", cells=eight[:3]),
    ]
    for i, e in enumerate(entries):
        (folder / f"{i}.json").write_text(json.dumps(e))
    written = render(folder, tmp_path / "board")
    forest = tmp_path / "board" / "forest--untargeted.png"
    assert forest in written and forest.read_bytes().startswith(b"\x89PNG")
    assert 'title="forest--untargeted.png"' in (tmp_path / "board" / "leaderboard.html").read_text()
