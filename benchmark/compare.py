"""``sapabench compare BEFORE AFTER``: has anything moved between two runs of one suite?

The regression test of the paper's claims (and of a change to the harness) compares two run
folders of the same suite. Entries are matched by their setting (attack, data, victim, recipe,
defense, protocol, numerics, preset; attack options may differ and are named), trials by their
(craft seed, victim seed).

- Every matched trial equal: the runs are **equal** (exit 0).
- Trials differ where both runs were deterministic on one device: a deterministic run changed
  (exit 1).
- Otherwise each SAPA-vs-base comparison present in both runs is tested on the per-poison change
  of its gap (after minus before, poisons paired by craft seed, each the mean over its victims):
  it **moved** when the exact sign-flip test puts the change significantly beyond the margin in
  either direction (two one-sided tests of "change >= -margin" and "change <= +margin", each at
  alpha / 2, Holm over the comparisons). The margin is half the delta of the claim that tests the
  comparison (its paper effect scaled to the BEFORE run's setting,
  :data:`sapabench.benchmark.claims.EFFECT_RULE`), else ``--margin``. Exit 1 when something
  moved, 0 when nothing did; decided claim verdicts that changed are listed either way.
- Each attack's own strength is compared the same way (its metric per poison, the mean over
  its victims, after minus before; poisons paired by craft seed): **MOVED** beyond the margin as
  above, **EQUAL** within it when both one-sided tests of "change > -margin" and "change <
  +margin" reject at alpha (two one-sided tests; Holm over the attacks), else undecided; each
  with the exact ``1 - alpha`` interval of the change. The margin is ``--margin``, else 2 points.
  This is what a change of the harness that should not move results (crafting numerics, a
  faster kernel) is checked with: the runs need not be deterministic, only paired by seeds.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sapabench.benchmark.claims import (
    ADVERSARIAL_MARGIN,
    INCONCLUSIVE,
    METRIC,
    UNTESTED,
    Claim,
    load_claims,
    matching_pairs,
    poison_gains,
    recorded_plan,
    test_claims,
)
from sapabench.benchmark.entries import board_dir, entries_dir
from sapabench.core.errors import ConfigError
from sapabench.core.names import CLEAN, NO_DEFENSE
from sapabench.core.numerics import FP32
from sapabench.core.stats import adjust_p, sign_flip_interval, sign_flip_p
from sapabench.leaderboard.pairs import (
    Pair,
    clean_entry,
    numerics_label,
    protocol_label,
    sapa_pairs,
    trial_values,
)
from sapabench.leaderboard.records import RUNS_FILE, load_runs
from sapabench.leaderboard.schema import load_entries

DEFAULT_MARGIN = {METRIC: 0.02, ADVERSARIAL_MARGIN: 0.5}
"""The margin of a comparison no claim states a delta for: 2 points of the metric, 0.5 logits
of the adversarial margin (``--margin`` overrides every margin)."""
MATCH_KEYS = (
    "dataset",
    "arch",
    "recipe",
    "protocol",
    "pretrained",
    "precision",
    "memory_format",
    "preset",
    "surrogate",
)


def match_key(e: dict[str, Any]) -> str:
    """What matches an entry across two runs: its setting without the suite name and the attack
    options (a changed option is the regression a comparison looks for)."""
    s = e["setting"]
    return json.dumps([e["attack"], e["defense"], *(s[k] for k in MATCH_KEYS), s["victim"]], sort_keys=True)


@dataclass(frozen=True)
class GapChange:
    """One SAPA-vs-base comparison in both runs, on ``measure``: per-poison gaps (> 0 = SAPA
    stronger), their mean change, and the test of the change against ``margin``."""

    sapa_attack: str
    attack: str
    where: str
    measure: str
    poisons: int
    before: float
    after: float
    change: float
    margin: float
    margin_from: str
    p: float
    p_adjusted: float | None = None
    options_changed: str = ""

    def moved(self, alpha: float) -> bool:
        return self.p_adjusted is not None and self.p_adjusted < alpha


@dataclass(frozen=True)
class StrengthChange:
    """One attack's metric in both runs (``where``: its setting), per poison: the means before
    and after, their mean change with its exact interval (``low``, ``high``), and the tests of
    the change against ``margin``: beyond it either way (``p_moved``), within it (``p_equal``,
    the larger of the two one-sided p-values)."""

    attack: str
    where: str
    metric: str
    poisons: int
    before: float
    after: float
    change: float
    low: float
    high: float
    margin: float
    p_moved: float
    p_equal: float
    p_moved_adjusted: float | None = None
    p_equal_adjusted: float | None = None

    def verdict(self, alpha: float) -> str:
        if self.p_moved_adjusted is not None and self.p_moved_adjusted < alpha:
            return MOVED
        if self.p_equal_adjusted is not None and self.p_equal_adjusted < alpha:
            return EQUAL
        return UNDECIDED


MOVED, EQUAL, UNDECIDED = "MOVED", "EQUAL", "undecided"


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` found: ``identical`` (every matched trial equal), ``deterministic`` (both
    runs deterministic on one device), the gap changes and the decided verdicts that changed."""

    trials: int
    differing: int
    identical: bool
    deterministic: bool
    changes: tuple[GapChange, ...]
    verdicts: tuple[tuple[str, str, str], ...]
    only_before: int
    only_after: int
    alpha: float
    options: tuple[str, ...] = ()
    strengths: tuple[StrengthChange, ...] = ()

    @property
    def moved(self) -> list[GapChange]:
        return [c for c in self.changes if c.moved(self.alpha)]

    @property
    def moved_strengths(self) -> list[StrengthChange]:
        return [c for c in self.strengths if c.verdict(self.alpha) == MOVED]

    @property
    def exit_code(self) -> int:
        if self.identical:
            return 0
        if self.deterministic:
            return 1
        return 1 if self.moved or self.moved_strengths else 0


def _entries(folder: Path) -> tuple[str | None, list[dict[str, Any]]]:
    """A run folder's suite name and entries; one line and exit 2 for anything else."""
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: pass two output folders of sapabench run")
    if not entries_dir(folder).is_dir():
        raise ConfigError(f"{folder} is not an output folder of sapabench run (no leaderboard/entries in it)")
    entries = load_entries(entries_dir(folder))
    if not entries:
        raise ConfigError(f"{folder} holds no leaderboard entries: run its suite first (sapabench run --out {folder})")
    runs = load_runs(board_dir(folder) / RUNS_FILE)
    suites = {e["setting"]["suite"] for e in entries}
    suite = runs.get("suite") if runs else None
    if suite is None and len(suites) == 1:
        suite = next(iter(suites))
    return suite, entries


def _seed_means(values: dict[tuple[Any, Any], float]) -> dict[Any, float]:
    """Per craft seed the mean of the values keyed by (craft seed, victim seed)."""
    per: dict[Any, list[float]] = {}
    for key, value in values.items():
        per.setdefault(key[0], []).append(value)
    return {k: sum(v) / len(v) for k, v in per.items()}


def _beyond_margin_p(change: list[float], margin: float) -> float:
    """Two-sided p of the mean change lying beyond ``margin`` either way: twice the smaller of the
    one-sided exact tests of "below -margin" and "above +margin"."""
    fell = sign_flip_p([-margin - c for c in change])
    rose = sign_flip_p([c - margin for c in change])
    return min(1.0, 2 * min(fell, rose))


def _within_margin_p(change: list[float], margin: float) -> float:
    """p of the mean change lying within ``margin`` (two one-sided exact tests: above -margin and
    below +margin; the larger p of the two)."""
    above = sign_flip_p([c + margin for c in change])
    below = sign_flip_p([margin - c for c in change])
    return max(above, below)


def _where(s: dict[str, Any], defense: str, after: dict[str, Any]) -> str:
    """How the report names a setting matched in two runs (``s`` before, ``after``):
    data/arch/recipe/protocol/victims' numerics[/crafted in][/+defense]. The crafting numerics are
    named where either run's are not plain fp32 (``crafted fp32 -> bf16+cl`` where they differ:
    entries match across them, so this is often what a comparison is about)."""
    crafted = [numerics_label(x, "craft_") for x in (s, after)]
    shown = "" if set(crafted) == {FP32.label} else "/crafted " + " -> ".join(dict.fromkeys(crafted))
    return f"{s['dataset']}/{s['arch']}/{s['recipe']}/{protocol_label(s)}/{numerics_label(s)}{shown}" + (
        "" if defense == NO_DEFENSE else f"/+{defense}"
    )


def _poison_gaps(sapa: dict[str, Any], base: dict[str, Any], measure: str) -> dict[Any, float]:
    """Per craft seed the mean gap over its paired victims (> 0 = SAPA stronger)."""
    m = None if measure == METRIC else measure
    a, b = trial_values(sapa, m), trial_values(base, m)
    return _seed_means({key: a[key] - b[key] for key in set(a) & set(b)})


def _claim_for(pair: Pair, claims: list[Claim], archs: Counter[str], measure: str) -> Claim | None:
    """The first claim on ``measure`` with a stated effect that ``pair`` tests."""
    return next(
        (
            c
            for c in claims
            if c.measure == measure and c.relative_effect is not None and matching_pairs(c, [pair], archs)
        ),
        None,
    )


def _margin(
    pair: Pair,
    entries: list[dict[str, Any]],
    by_id: dict[str, dict[str, Any]],
    measure: str,
    fixed: float | None,
    claims: list[Claim],
    archs: Counter[str],
) -> tuple[float, str]:
    """The comparison's margin and where it came from (``claims`` and the BEFORE run's ``archs``
    read once by the caller, not per comparison)."""
    if fixed is not None:
        return fixed, "--margin"
    claim = _claim_for(pair, claims, archs, measure)
    if claim is not None:
        _, _, expected, _ = poison_gains(claim, pair, by_id, clean_entry(entries, by_id[pair.base_entry_id]))
        if expected:
            delta = sum(expected) / len(expected)
            if delta > 0:
                return delta / 2, f"delta/2 of {claim.id}"
    return DEFAULT_MARGIN[measure], "default"


def _changes(before: list[dict[str, Any]], after: list[dict[str, Any]], margin: float | None) -> list[GapChange]:
    by_before = {e["entry_id"]: e for e in before}
    by_key = {match_key(e): e for e in after}  # SAPA and its base matched one by one: their options may differ
    pairs = sapa_pairs(before)
    claims = [] if margin is not None else load_claims()[1]
    archs = Counter(p.arch for p in pairs)
    rows = []
    for p in pairs:
        sapa_b, base_b = by_before[p.sapa_entry_id], by_before[p.base_entry_id]
        sapa_a, base_a = by_key.get(match_key(sapa_b)), by_key.get(match_key(base_b))
        if sapa_a is None or base_a is None or p.white_box:
            continue
        options = [
            f"{b['attack']}: {b['setting']['options']} -> {a['setting']['options']}"
            for b, a in ((sapa_b, sapa_a), (base_b, base_a))
            if b["setting"]["options"] != a["setting"]["options"]
        ]
        for measure in (METRIC, ADVERSARIAL_MARGIN):
            if measure == ADVERSARIAL_MARGIN and not all(
                ADVERSARIAL_MARGIN in e["measures"] for e in (sapa_b, base_b, sapa_a, base_a)
            ):
                continue
            gb, ga = _poison_gaps(sapa_b, base_b, measure), _poison_gaps(sapa_a, base_a, measure)
            seeds = sorted(set(gb) & set(ga), key=repr)
            if not seeds:
                continue
            change = [ga[s] - gb[s] for s in seeds]
            m, source = _margin(p, before, by_before, measure, margin, claims, archs)
            rows.append(
                GapChange(
                    p.sapa_attack,
                    p.attack,
                    _where(sapa_b["setting"], p.defense, sapa_a["setting"]),
                    measure,
                    len(seeds),
                    sum(gb[s] for s in seeds) / len(seeds),
                    sum(ga[s] for s in seeds) / len(seeds),
                    sum(change) / len(change),
                    m,
                    source,
                    _beyond_margin_p(change, m),
                    options_changed="; ".join(options),
                )
            )
    decidable = [i for i, r in enumerate(rows) if r.poisons >= 2]
    adjusted = adjust_p([rows[i].p for i in decidable], "holm")
    for i, q_value in zip(decidable, adjusted, strict=True):
        rows[i] = replace(rows[i], p_adjusted=q_value)
    return rows


def _metric_values(e: dict[str, Any]) -> dict[tuple[Any, Any], float]:
    """An entry's metric values (as measured, not signed) keyed by (craft seed, victim seed)."""
    return dict(zip(map(tuple, e["provenance"]["cell_seeds"]), e["metric"]["values"], strict=True))


def _strengths(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], shared: list[str], margin: float, alpha: float
) -> list[StrengthChange]:
    rows = []
    for k in shared:
        b, a = before[k], after[k]
        if b["attack"] == CLEAN:
            continue
        vb, va = _metric_values(b), _metric_values(a)
        mb, ma = (_seed_means({key: v[key] for key in set(vb) & set(va)}) for v in (vb, va))
        seeds = sorted(mb, key=repr)
        if not seeds:
            continue
        change = [ma[x] - mb[x] for x in seeds]
        low, high = sign_flip_interval(change, alpha)
        rows.append(
            StrengthChange(
                b["attack"],
                _where(b["setting"], b["defense"], a["setting"]),
                b["metric"]["name"],
                len(seeds),
                sum(mb[x] for x in seeds) / len(seeds),
                sum(ma[x] for x in seeds) / len(seeds),
                sum(change) / len(change),
                low,
                high,
                margin,
                _beyond_margin_p(change, margin),
                _within_margin_p(change, margin),
            )
        )
    decidable = [i for i, r in enumerate(rows) if r.poisons >= 2]
    moved = adjust_p([rows[i].p_moved for i in decidable], "holm")
    equal = adjust_p([rows[i].p_equal for i in decidable], "holm")
    for i, pm, pe in zip(decidable, moved, equal, strict=True):
        rows[i] = replace(rows[i], p_moved_adjusted=pm, p_equal_adjusted=pe)
    return rows


def _verdicts(folder: Path) -> dict[str, str]:
    _, verdicts = test_claims(folder, plan=recorded_plan(folder))
    return {v.claim.id: v.verdict for v in verdicts}


def compare_runs(before: str | Path, after: str | Path, margin: float | None = None, alpha: float = 0.05) -> Comparison:
    """Compare two run folders of one suite (see the module docstring)."""
    if margin is not None and not 0 < margin < 1e6:
        raise ConfigError(f"invalid --margin {margin}: must be a positive number (points as a fraction, or logits)")
    if not 0 < alpha < 1:
        raise ConfigError(f"invalid --alpha {alpha}: must be in (0, 1)")
    before, after = Path(before), Path(after)
    suite_b, eb = _entries(before)
    suite_a, ea = _entries(after)
    if suite_b != suite_a:
        raise ConfigError(
            f"{before} holds suite {suite_b!r} and {after} suite {suite_a!r}: compare two runs of the same suite"
        )
    kb = {match_key(e): e for e in eb}
    ka = {match_key(e): e for e in ea}
    shared = sorted(set(kb) & set(ka))
    if not shared:
        raise ConfigError(f"{before} and {after} share no setting: nothing to compare")
    trials = differing = 0
    for k in shared:
        for measure in (None, *sorted(set(kb[k]["measures"]) & set(ka[k]["measures"]))):
            vb, va = trial_values(kb[k], measure), trial_values(ka[k], measure)
            common = set(vb) & set(va)
            trials += len(common)
            differing += sum(vb[c] != va[c] for c in common)
            differing += len(set(vb) ^ set(va))
    identical = differing == 0 and set(kb) == set(ka)
    options = tuple(
        f"{kb[k]['attack']} ({kb[k]['setting']['recipe']}): {kb[k]['setting']['options']} -> {ka[k]['setting']['options']}"
        for k in shared
        if kb[k]["setting"]["options"] != ka[k]["setting"]["options"]
    )
    deterministic = (
        all(e["provenance"]["deterministic"] for e in (*eb, *ea))
        and len({e["provenance"]["device"] for e in (*eb, *ea)}) == 1
    )
    changes = () if identical else tuple(_changes(eb, ea, margin))
    strengths = () if identical else tuple(_strengths(kb, ka, shared, margin or DEFAULT_MARGIN[METRIC], alpha))
    vb, va = _verdicts(before), _verdicts(after)
    undecided = (INCONCLUSIVE, UNTESTED)
    changed = tuple(
        (cid, vb[cid], va.get(cid, UNTESTED))
        for cid in vb
        if vb[cid] != va.get(cid, UNTESTED) and not (vb[cid] in undecided and va.get(cid, UNTESTED) in undecided)
    )
    return Comparison(
        trials,
        differing,
        identical,
        deterministic,
        changes,
        changed,
        len(set(kb) - set(ka)),
        len(set(ka) - set(kb)),
        alpha,
        options,
        strengths,
    )


def _amount(measure: str, value: float) -> str:
    return f"{value:+.2f} logits" if measure == ADVERSARIAL_MARGIN else f"{100 * value:+.1f} pts"


def report(c: Comparison, before: str | Path, after: str | Path) -> list[str]:
    """The lines ``sapabench compare`` prints."""
    lines = [f"compared {c.trials} trials of {before} and {after}: {c.differing} differ"]
    if c.only_before or c.only_after:
        lines.append(f"settings only in before: {c.only_before}; only in after: {c.only_after} (not compared)")
    lines += [f"attack options changed: {o}" for o in c.options]
    if c.identical:
        lines.append("equal: every matched trial has the same value (exit 0)")
    elif c.deterministic:
        lines.append("both runs were deterministic on one device, yet trials differ: the code or data changed (exit 1)")
    if c.changes:
        lines.append(
            "SAPA - base gap per poison, before -> after (change; margin; p two-sided of moving beyond the margin, "
            "Holm over the comparisons):"
        )
        for r in c.changes:
            p = "undecidable (one poison)" if r.p_adjusted is None else f"p {r.p:.4f}, Holm {r.p_adjusted:.4f}"
            flag = "MOVED" if r.moved(c.alpha) else "within"
            note = f"  [options changed: {r.options_changed}]" if r.options_changed else ""
            lines.append(
                f"  {flag:<6} {r.sapa_attack} vs {r.attack} {r.where} ({r.measure}, {r.poisons} poisons): "
                f"{_amount(r.measure, r.before)} -> {_amount(r.measure, r.after)} "
                f"(change {_amount(r.measure, r.change)}; margin {_amount(r.measure, r.margin).lstrip('+')} "
                f"from {r.margin_from}; {p}){note}"
            )
    if c.strengths:
        lines.append(
            f"each attack's metric per poison, before -> after (change [{100 * (1 - c.alpha):g} % interval]; margin; "
            "MOVED: beyond the margin, EQUAL: within it by two one-sided tests; Holm over the attacks):"
        )
        for r in c.strengths:
            if r.p_moved_adjusted is None:
                p = "undecidable (one poison)"
            else:
                p = f"moved p {r.p_moved_adjusted:.4f}, equal p {r.p_equal_adjusted:.4f} (Holm)"
            interval = f"[{_amount(METRIC, r.low)}, {_amount(METRIC, r.high)}]"
            lines.append(
                f"  {r.verdict(c.alpha):<9} {r.attack} {r.where} ({r.metric}, {r.poisons} poisons): "
                f"{100 * r.before:.1f} % -> {100 * r.after:.1f} % (change {_amount(METRIC, r.change)} {interval}; "
                f"margin {_amount(METRIC, r.margin).lstrip('+')}; {p})"
            )
    for cid, old, new in c.verdicts:
        lines.append(f"  verdict changed: {cid}: {old} -> {new}")
    if not c.identical and not c.deterministic:
        moved = len(c.moved) + len(c.moved_strengths)
        lines.append(
            f"{moved} comparison(s) moved beyond their margin (exit 1)"
            if moved
            else "nothing moved beyond its margin (exit 0)"
        )
    return lines
