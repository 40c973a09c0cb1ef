"""SAPA against a baseline in the same setting: the paired comparisons every view, the answer
line and the claims rest on (below the renderer, so the statistics never live in a view).

An entry's trials are keyed by their (craft seed, victim seed); two entries of one setting are
compared by :func:`sapabench.core.stats.compare_arms` (per poison the mean over its victims,
then the exact sign-flip test over poisons; unpaired only where they share no seeds). A
:class:`Pair` holds the numbers of one comparison; the views format them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

from sapabench.core.names import CLEAN, NO_DEFENSE, base_name, is_sapa
from sapabench.core.numerics import Numerics
from sapabench.core.stats import PairedTest, adjust_p, compare_arms
from sapabench.core.threats import ADVERSARIAL_MARGIN, NO_THREAT
from sapabench.victims.protocols import FILE_PREFIX, NO_PRETRAINED, is_white_box

ALPHA = 0.05
"""The level every view marks significance at (the claims take theirs from the plan)."""
VIEW_CORRECTION = "by"
"""The correction every view adjusts its two-sided p-values with, over one family: every
SAPA-vs-baseline comparison of the page (metric and adversarial margin) whose design can decide
(:meth:`sapabench.core.stats.PairedTest.decidable`). Benjamini-Yekutieli, as the claims' secondary
family: the comparisons share arms and poisons, with dependence of either sign."""
SIGNIFICANCE_NOTE = (
    f"significant: the exact two-sided sign-flip test over poisons (craft seeds), Benjamini-Yekutieli-adjusted over "
    f"every SAPA-vs-baseline comparison of this page, below alpha = {ALPHA}; ° where the design cannot reach alpha "
    "(one poison, or a floor 2^(1-poisons) not below it)"
)
FILTERS = ("dataset", "arch", "recipe", "protocol", "defense")
"""What the page filters rows and plots by: attributes of every view's row."""


def filter_values(row: Any) -> dict[str, str]:
    """A row's values of the page's :data:`FILTERS`."""
    return {name: getattr(row, name) for name in FILTERS}


def protocol_label(setting: dict[str, Any]) -> str:
    """The victim protocol of an entry's setting as tables show it: ``scratch``,
    ``linear/surrogate``, ``known-init (white-box bound)``..."""
    protocol, pretrained = setting["protocol"], setting["pretrained"]
    bound = " (white-box bound)" if white_box(setting) else ""
    if pretrained == NO_PRETRAINED:
        return f"{protocol}{bound}"
    if pretrained.startswith(FILE_PREFIX):
        pretrained = "file " + pretrained.rpartition("@")[2][:8]
    return f"{protocol}/{pretrained}{bound}"


def surrogate_arch(setting: dict[str, Any]) -> str | None:
    """The architecture of the surrogate the entry's poison was crafted against (None: clean
    data, or an entry that does not record it)."""
    surrogate = (setting.get("attack_config") or {}).get("surrogate")
    return surrogate.get("arch") if isinstance(surrogate, dict) else None


def white_box(setting: dict[str, Any]) -> bool:
    """Whether the entry's victims are the attacker's own model (:func:`sapabench.victims.protocols.is_white_box`)."""
    return is_white_box(setting["protocol"], setting["pretrained"], setting["arch"], surrogate_arch(setting))


def numerics_label(setting: dict[str, Any], prefix: str = "") -> str:
    """The victims' numerics of an entry's setting (``prefix="craft_"``: the numerics its poisons
    were crafted in), as tables show them (``fp32``, ``bf16+cl``, ...)."""
    return Numerics(setting[f"{prefix}precision"], setting[f"{prefix}memory_format"]).label


def variant(e: dict[str, Any]) -> str:
    """What else tells settings apart: the attack preset and options, the victim protocol and
    numerics, the crafting numerics (entries that differ only by these are different results and
    must not be paired across)."""
    s = e["setting"]
    return json.dumps(
        [
            s["preset"],
            s["options"],
            s["victim"],
            s["precision"],
            s["memory_format"],
            s["protocol"],
            s["pretrained"],
            s["craft_precision"],
            s["craft_memory_format"],
        ],
        sort_keys=True,
    )


def _trials(e: dict[str, Any], values: list[float], stronger_is_higher: bool) -> dict[tuple[Any, Any], float]:
    """An entry's trial values keyed by (craft seed, victim seed), signed so larger = stronger."""
    sign = 1.0 if stronger_is_higher else -1.0
    return {(craft, trial): sign * v for (craft, trial), v in zip(e["provenance"]["cell_seeds"], values, strict=True)}


def trial_values(e: dict[str, Any], measure: str | None = None) -> dict[tuple[Any, Any], float]:
    """An entry's trials keyed by (craft seed, victim seed), on its metric (signed so larger =
    stronger) or on the continuous ``measure`` (larger = stronger already)."""
    if measure is None:
        return _trials(e, e["metric"]["values"], e["metric"]["higher_is_stronger"])
    return _trials(e, e["measures"][measure]["values"], True)


CLEAN_KEYS = ("suite", "dataset", "arch", "recipe", "victim", "precision", "memory_format", "protocol", "pretrained")


def clean_entry(entries: list[dict[str, Any]], e: dict[str, Any]) -> dict[str, Any] | None:
    """The clean victims' entry of ``e``'s setting (same suite, data, victim, numerics and
    protocol, no defense), or None where the run trained none."""
    s = e["setting"]
    for c in entries:
        if c["attack"] == CLEAN and c["defense"] == NO_DEFENSE and all(c["setting"][k] == s[k] for k in CLEAN_KEYS):
            return c
    return None


def compare(sapa: dict[str, Any], base: dict[str, Any], measure: str | None = None) -> PairedTest:
    """SAPA against a baseline, paired by seeds (:func:`sapabench.core.stats.compare_arms`: unpaired only
    where the two entries share no seeds), on the metric or on the continuous ``measure``;
    positive differences mean SAPA is stronger."""
    if measure is None:
        higher = sapa["metric"]["higher_is_stronger"]
        return compare_arms(
            _trials(sapa, sapa["metric"]["values"], higher), _trials(base, base["metric"]["values"], higher)
        )
    return compare_arms(
        _trials(sapa, sapa["measures"][measure]["values"], True),
        _trials(base, base["measures"][measure]["values"], True),
    )


@dataclass(frozen=True)
class Summary:
    """A measure's mean and standard error over an entry's trials (fractions for metrics,
    logits for the adversarial margin)."""

    mean: float
    se: float
    trials: int


@dataclass(frozen=True)
class MarginPair:
    """The adversarial margin on the target of both arms of a targeted pair, the clean victims'
    margin, and the paired test of SAPA's margin being larger."""

    baseline: Summary
    sapa: Summary
    clean: float
    test: PairedTest


@dataclass(frozen=True)
class Pair:
    """A SAPA entry against a baseline entry of the same setting (its own base attack, or another
    attack of its threat model). ``gap`` is signed so that positive means SAPA is stronger (for
    accuracy, where lower is stronger, it is baseline minus SAPA); ``test`` is the paired
    sign-flip test of that difference over craft seeds (over victim seeds with one craft seed)."""

    dataset: str
    arch: str
    recipe: str
    protocol: str  # as tables show it (protocol_label)
    protocol_name: str
    white_box: bool
    threat: str
    numerics: str
    defense: str
    attack: str  # the baseline
    sapa_attack: str
    sapa_entry_id: str
    base_entry_id: str
    preset: str
    options: dict[str, Any]
    metric: str
    higher_is_stronger: bool
    baseline: Summary
    sapa: Summary
    gap: float
    test: PairedTest
    margin: MarginPair | None

    @property
    def p_value(self) -> float:
        """The exact two-sided p of SAPA differing from the baseline (the sign of ``gap`` says which way)."""
        return self.test.p_two_sided

    @property
    def significant(self) -> bool:
        """Decided at :data:`ALPHA` after the page family's correction (:data:`VIEW_CORRECTION`)."""
        return self.test.significant(ALPHA)

    @property
    def margin_test(self) -> PairedTest | None:
        """The paired test on the adversarial margin (targeted pairs), else None."""
        return None if self.margin is None else self.margin.test

    @property
    def own_base(self) -> bool:
        """Whether the baseline is the SAPA attack's own base (error-min for sapa-error-min)."""
        return self.attack == base_name(self.sapa_attack)

    @property
    def where(self) -> dict[str, str]:
        return filter_values(self)


def summary(m: dict[str, Any], trials: int) -> Summary:
    return Summary(m["mean"], m["se"], trials)


def pair(sapa: dict[str, Any], base: dict[str, Any]) -> Pair:
    """A SAPA entry against a baseline entry of the same setting: means, signed gap, and the test
    of SAPA being stronger (targeted pairs also on the adversarial margin)."""
    higher = sapa["metric"]["higher_is_stronger"]
    gap = (sapa["metric"]["mean"] - base["metric"]["mean"]) * (1 if higher else -1)
    margin = None
    if ADVERSARIAL_MARGIN in sapa["measures"] and ADVERSARIAL_MARGIN in base["measures"]:
        mb, ms = base["measures"][ADVERSARIAL_MARGIN], sapa["measures"][ADVERSARIAL_MARGIN]
        margin = MarginPair(
            summary(mb, base["metric"]["trials"]),
            summary(ms, sapa["metric"]["trials"]),
            mb["clean_mean"],
            compare(sapa, base, ADVERSARIAL_MARGIN),
        )
    s = sapa["setting"]
    return Pair(
        dataset=s["dataset"],
        arch=s["arch"],
        recipe=s["recipe"],
        protocol=protocol_label(s),
        protocol_name=s["protocol"],
        white_box=white_box(s),
        threat=s["threat"],
        numerics=numerics_label(s),
        defense=sapa["defense"],
        attack=base["attack"],
        sapa_attack=sapa["attack"],
        sapa_entry_id=sapa["entry_id"],
        base_entry_id=base["entry_id"],
        preset=s["preset"],
        options=dict(s["options"]),
        metric=sapa["metric"]["name"],
        higher_is_stronger=higher,
        baseline=summary(base["metric"], base["metric"]["trials"]),
        sapa=summary(sapa["metric"], sapa["metric"]["trials"]),
        gap=gap,
        test=compare(sapa, base),
        margin=margin,
    )


Family = dict[tuple[str, str, str], float]
METRIC_KEY = "metric"


def _family_tests(pairs: list[Pair]) -> dict[tuple[str, str, str], PairedTest]:
    tests = {}
    for p in pairs:
        tests[(p.sapa_entry_id, p.base_entry_id, METRIC_KEY)] = p.test
        if p.margin_test is not None:
            tests[(p.sapa_entry_id, p.base_entry_id, ADVERSARIAL_MARGIN)] = p.margin_test
    return tests


def family(entries: list[dict[str, Any]]) -> Family:
    """The adjusted two-sided p of every decidable SAPA-vs-baseline comparison of ``entries``
    (:data:`VIEW_CORRECTION`), keyed by (SAPA entry id, baseline entry id, measure)."""
    return _adjusted(_rival_pairs(entries))


def _adjusted(pairs: list[Pair]) -> Family:
    tests = {k: t for k, t in _family_tests(pairs).items() if t.decidable(ALPHA)}
    adjusted = adjust_p([t.p_two_sided for t in tests.values()], VIEW_CORRECTION)
    return dict(zip(tests, adjusted, strict=True))


def marked(p: Pair, fam: Family) -> Pair:
    """``p`` with its tests' adjusted p from ``fam`` (None where the family has none)."""
    test = replace(p.test, p_adjusted=fam.get((p.sapa_entry_id, p.base_entry_id, METRIC_KEY)))
    margin = p.margin
    if margin is not None:
        q = fam.get((p.sapa_entry_id, p.base_entry_id, ADVERSARIAL_MARGIN))
        margin = replace(margin, test=replace(margin.test, p_adjusted=q))
    return replace(p, test=test, margin=margin)


def _key(e: dict[str, Any]) -> tuple:
    """What an entry's setting is, but for its attack: entries with the same key are compared."""
    s = e["setting"]
    return (s["suite"], s["dataset"], s["arch"], s["recipe"], e["defense"], s["surrogate"], variant(e))


def sapa_pairs(entries: list[dict[str, Any]], fam: Family | None = None) -> list[Pair]:
    """The Table-4 view: each SAPA entry beside its own base attack in the same setting (same
    victim protocol and numerics: never across them; defended settings too), marked with the
    page's family (:func:`family`)."""
    fam = family(entries) if fam is None else fam
    index = {(*_key(e)[:-1], e["attack"], _key(e)[-1]): e for e in entries}
    pairs = []
    for key, sapa in sorted(index.items()):
        attack = key[-2]
        if not is_sapa(attack):
            continue
        base = index.get((*key[:-2], base_name(attack), key[-1]))
        if base is not None:
            pairs.append(marked(pair(sapa, base), fam))
    return pairs


def rival_pairs(entries: list[dict[str, Any]]) -> list[Pair]:
    """Every SAPA entry against every non-SAPA attack of its threat model in the same setting
    (its own base attack included): the comparisons of the paper's Tables 1-3, marked with the
    page's family (:func:`family`)."""
    pairs = _rival_pairs(entries)
    fam = _adjusted(pairs)
    return [marked(p, fam) for p in pairs]


def _rival_pairs(entries: list[dict[str, Any]]) -> list[Pair]:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        if e["setting"]["threat"] != NO_THREAT:
            groups[(*_key(e), e["setting"]["threat"])].append(e)
    pairs = []
    for _, group in sorted(groups.items()):
        for sapa in sorted((e for e in group if e["sapa"]), key=lambda e: e["attack"]):
            for base in sorted((e for e in group if not e["sapa"]), key=lambda e: e["attack"]):
                pairs.append(pair(sapa, base))
    return pairs


def answer_pairs(pairs: list[Pair]) -> list[Pair]:
    """The settings the page's answer line and forest plots count: SAPA against its own base,
    black-box (white-box victims only bound the attack, as the claims treat them), defended or not."""
    return [p for p in pairs if p.own_base and not p.white_box]
