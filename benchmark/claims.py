"""The paper's claims (``benchmark/claims.toml``) tested against measured trials.

Each claim states the expected direction of the SAPA-vs-baseline gap in one row of the paper's
Tables 1-5 (Tables 1-3: the SAPA attack against every baseline of its table, ``baseline``;
Tables 4-5: against its own base attack), the victim protocol it is tested in (``scratch`` unless
the claim says otherwise: the paper's ViT is a fine-tuned pretrained model) and the measure it
tests (the threat model's ``metric``, or the continuous ``adversarial_margin`` of targeted
attacks). The SAPA entry and its baseline are compared paired
(:func:`sapabench.leaderboard.pairs.compare`): per craft seed (poison) the mean over its victims, then an
exact sign-flip permutation test over craft seeds. The poison is the unit of replication: a
claim measured on one poison is ``untested`` (its victims are not independent draws of the
attack). The test needs no distributional assumption, and with ``n`` poisons no two-sided p
below ``2**(1-n)`` can come out.

Two families of claims (:data:`CORRECTIONS`):

- **primary**: the few claims a suite pre-registers (``[claims] primary``). :func:`plan_claims`
  refuses, before anything runs, a primary claim whose design cannot be decided (no black-box
  grid tests it, or its exact floor is not below Holm's first-step level alpha / k); the run
  records the plan in ``runs.json``, and ``sapabench claims`` then decides exactly those claims
  with Holm's correction (family-wise error at alpha). Every other result is shown, not tested.
- **secondary**: without a plan (the ``claims`` suite, the table suites), every claim of the
  file, Benjamini-Hochberg over the distinct comparisons (a comparison several claims name
  counts once; claims sharing an arm are positively dependent).

- ``held`` / ``failed``: the two-sided exact p (HELD and FAILED together keep alpha), adjusted
  in its family, below alpha, in the measured direction; ``inconclusive``: neither (every tested
  claim also shows the power its design had for the effect it measured); ``untested``: no
  matching black-box pair, one poison, or too few poisons for the exact floor to go below alpha.

A verdict decided on the adversarial margin (a proxy of targeted success) is labelled
``held (margin)`` / ``failed (margin)`` wherever it is shown.

Claims about the paper's main victim (ResNet-18) are matched to the results' main victim
architecture when the results have no ResNet-18 rows (the embedded suites use the convnet);
the output names what was actually measured. White-box pairs never test a claim: known-init,
and linear/finetune victims whose pretrained model is the attacker's surrogate
(:func:`sapabench.victims.protocols.is_white_box`). Where several black-box settings match a claim with
the same number of poisons, the claim rests on the weakest (largest p) of them.

Rows of Tables 1-3 name their setting: ``dataset`` and the attack ``options`` (eps, budget) of
the paper-scale suites (``table1``...), matched exactly against entries crafted with the
``paper`` preset; ``embedded`` (when present) is the options of the embedded twin
(``table1-embedded``...) that stands for the row at embedded scale, matched against entries of
the other presets. A row without either matches any setting (the Table 4-5 rows). Where the two
entries share no seeds the comparison is unpaired (a two-sample permutation test), and said so.

Cost claims (``[[cost_claim]]``, section 5.5 / Figure 2 / Table 11): SAPA at K = R = 1 is not
weaker than the same attack with ensemble and re-initialisation at any K x R measured by more
than the claim's ``margin`` (non-inferiority, :func:`sapabench.leaderboard.cost.cost_verdicts`).
"""

from __future__ import annotations

import difflib
import statistics
from collections import Counter
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from sapabench.attacks import ATTACKS, create_attack
from sapabench.benchmark.entries import board_dir, entries_dir
from sapabench.benchmark.suite import Grid, Suite
from sapabench.core.atomic import write_json
from sapabench.core.errors import ConfigError
from sapabench.core.files import parse_toml, read_toml
from sapabench.core.names import NO_DEFENSE, default_preset, sapa_name
from sapabench.core.stats import CORRECTION_NAMES, EXACT_UP_TO, PairedTest, adjust_p, sign_flip_power, two_sided_floor
from sapabench.core.threats import ADVERSARIAL_MARGIN
from sapabench.leaderboard.cost import CostVerdict, cost_verdicts
from sapabench.leaderboard.pairs import Pair, rival_pairs
from sapabench.leaderboard.records import (
    CLAIMS_FILE,
    CLAIMS_FORMAT,
    CLAIMS_VERSION,
    RUNS_FILE,
    entries_digest,
    load_runs,
)
from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import load_entries
from sapabench.victims.protocols import PROTOCOLS, SCRATCH, get_protocol, is_white_box

PAPER_MAIN_ARCH = "resnet18"
PAPER_PRESET = "paper"
EMBEDDED_PRESET = "embedded"
CLAIM_PRESETS = (PAPER_PRESET, EMBEDDED_PRESET)
"""The attack presets whose results can test a claim: the paper's settings and their embedded
twins. Any other (``smoke``: one-epoch surrogates and two-step crafting) stands for no setting
of the paper and never tests a claim."""
PAPER_DATASET = "cifar10"
METRIC = "metric"
MEASURES = (METRIC, ADVERSARIAL_MARGIN)


@dataclass(frozen=True)
class Claim:
    id: str
    table: str
    attack: str
    recipe: str
    arch: str
    paper: tuple[float, float]
    metric: str
    expect: str
    protocol: str = SCRATCH
    measure: str = METRIC
    baseline: str | None = None
    dataset: str | None = None
    options: dict[str, Any] | None = None
    embedded: dict[str, Any] | None = None
    paper_protocol: str | None = None

    def protocol_at(self, preset: str) -> str:
        """The victim protocol the claim is tested in at attack ``preset`` (the paper preset's
        own where the claim names one)."""
        return self.paper_protocol if preset == PAPER_PRESET and self.paper_protocol else self.protocol

    @property
    def compared(self) -> tuple[str, str]:
        """(SAPA attack, baseline attack) the claim compares."""
        return sapa_name(self.attack), self.baseline or self.attack

    @property
    def paper_dataset(self) -> str:
        """The dataset of the paper's row (Tables 4-5 are CIFAR-10's)."""
        return self.dataset or PAPER_DATASET

    def matches(self, preset: str, dataset: str, options: dict[str, Any]) -> bool:
        """Whether a setting (a measured pair's, or a planned grid's) is this claim's: its preset,
        dataset and attack options.
        Only the ``paper`` preset and its ``embedded`` twins test claims (:data:`CLAIM_PRESETS`).
        A claim that names no options is about the attack's preset as it is: swept options (a
        budget of Table 3, a rho of the ablation) are other settings."""
        if preset not in CLAIM_PRESETS:
            return False
        if self.options is None and self.embedded is None:
            return not options
        if preset == PAPER_PRESET:
            return (
                self.options is not None
                and (self.dataset is None or dataset == self.dataset)
                and _same_options(options, self.options)
            )
        return self.embedded is not None and _same_options(options, self.embedded)


def _same_options(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return set(a) == set(b) and all(
        abs(float(a[k]) - float(b[k])) < 1e-9 if isinstance(b[k], (int, float)) else a[k] == b[k] for k in b
    )


PRIMARY = "primary"
SECONDARY = "secondary"
CORRECTIONS = {PRIMARY: "holm", SECONDARY: "bh"}
"""The multiplicity correction of each family of claims: the primary claims a suite
pre-registers keep the family-wise error rate (Holm, valid under any dependence); the secondary
ones (every claim, where a run pre-registers none) keep the false discovery rate
(Benjamini-Hochberg: claims that share an arm are positively dependent)."""


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict. ``p_two_sided`` is the exact test's two-sided p (twice the smaller
    one-sided p, at most 1: HELD and FAILED together keep alpha); ``p_adjusted`` that p after its
    family's multiplicity correction (:data:`CORRECTIONS`), which the verdict is decided on.
    ``power``: the power its design had for the effect and spread it measured
    (:func:`sapabench.core.stats.sign_flip_power`; at Holm's first-step level for a primary claim, at alpha
    for a secondary one); ``reason``: why a claim
    with results is untested; ``settings``: how many black-box settings tied for it (the
    verdict rests on the weakest of them)."""

    claim: Claim
    verdict: str
    measured: Pair | None
    test: PairedTest | None
    p_two_sided: float | None = None
    p_adjusted: float | None = None
    family: str = SECONDARY
    power: float | None = None
    reason: str | None = None
    settings: int = 1

    @property
    def p_floor_two_sided(self) -> float | None:
        """The smallest two-sided p the design allows (twice the one-sided floor, at most 1)."""
        return None if self.test is None else self.test.p_floor_two_sided

    @property
    def on_proxy(self) -> bool:
        """Decided on the adversarial margin rather than the metric the paper reports."""
        return self.test is not None and self.claim.measure == ADVERSARIAL_MARGIN

    @property
    def label(self) -> str:
        """``held``, ``failed`` ... with ``(margin)`` where the verdict rests on the proxy."""
        return f"{self.verdict} (margin)" if self.on_proxy and self.verdict in ("held", "failed") else self.verdict

    @property
    def p_sapa_stronger(self) -> float | None:
        return None if self.test is None else self.test.p_greater

    @property
    def p_sapa_weaker(self) -> float | None:
        return None if self.test is None else self.test.p_less


@dataclass(frozen=True)
class CostClaim:
    """SAPA at K = R = 1 against E&R of ``attack`` (Table 11: ``paper`` = SAPA 1x1's and the
    largest ensemble's numbers), on the ``measure``."""

    id: str
    attack: str
    paper: tuple[float, float]
    measure: str = METRIC
    margin: float = 0.0


def _claims_data(path: str | Path | None) -> dict[str, Any]:
    if path:
        return read_toml(Path(path).resolve(), "claims file")
    return parse_toml((resources.files("sapabench.benchmark") / "claims.toml").read_text(), "claims file")


def load_cost_claims(path: str | Path | None = None) -> list[CostClaim]:
    out = []
    for raw in _claims_data(path).get("cost_claim", []):
        try:
            claim = CostClaim(
                raw["id"],
                raw["attack"],
                (float(raw["paper"][0]), float(raw["paper"][1])),
                raw.get("measure", METRIC),
                float(raw["margin"]),
            )
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ConfigError(f"claims file: malformed cost claim {raw.get('id', raw)!r} ({err})") from None
        if claim.attack not in ATTACKS or sapa_name(claim.attack) not in ATTACKS:
            raise ConfigError(f"cost claim {claim.id}: attack {claim.attack!r} has no registered SAPA version")
        if claim.measure not in MEASURES:
            raise ConfigError(f"cost claim {claim.id}: measure must be one of {', '.join(MEASURES)}")
        if not claim.margin > 0:
            raise ConfigError(f"cost claim {claim.id}: the non-inferiority margin must be > 0, got {claim.margin}")
        out.append(claim)
    return out


def test_cost_claims(
    results: str | Path, alpha: float, claims_file: str | Path | None = None
) -> list[tuple[CostClaim, CostVerdict | None]]:
    """Every cost claim's verdict per setting it was measured in (None: untested)."""
    entries = load_entries(entries_dir(results))
    out: list[tuple[CostClaim, CostVerdict | None]] = []
    for c in load_cost_claims(claims_file):
        verdicts = cost_verdicts(entries, c.attack, c.measure, alpha, c.margin)
        out += [(c, v) for v in verdicts] or [(c, None)]
    return out


def load_claims(path: str | Path | None = None) -> tuple[float, list[Claim]]:
    data = _claims_data(path)
    alpha = float(data.get("alpha", 0.05))
    claims = []
    for raw in data.get("claim", []):
        try:
            paper = (float(raw["paper"][0]), float(raw["paper"][1]))
            claim = Claim(
                raw["id"],
                str(raw["table"]),
                raw["attack"],
                raw["recipe"],
                raw["arch"],
                paper,
                raw["metric"],
                raw["expect"],
                raw.get("protocol", SCRATCH),
                raw.get("measure", METRIC),
                raw.get("baseline"),
                raw.get("dataset"),
                dict(raw["options"]) if "options" in raw else None,
                dict(raw["embedded"]) if "embedded" in raw else None,
                raw.get("paper_protocol"),
            )
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ConfigError(f"claims file: malformed claim {raw.get('id', raw)!r} ({err})") from None
        if claim.expect != "sapa_stronger":
            raise ConfigError(f"claim {claim.id}: expect must be 'sapa_stronger'")
        for protocol in {claim.protocol, claim.paper_protocol or claim.protocol}:
            if protocol not in PROTOCOLS or get_protocol(protocol).white_box:
                raise ConfigError(f"claim {claim.id}: protocol must be a registered, non-white-box protocol")
        if claim.measure not in MEASURES:
            raise ConfigError(f"claim {claim.id}: measure must be one of {', '.join(MEASURES)}")
        if claim.baseline is not None and claim.baseline not in ATTACKS:
            raise ConfigError(f"claim {claim.id}: {ATTACKS.unknown_message(claim.baseline)}")
        if claim.attack not in ATTACKS or sapa_name(claim.attack) not in ATTACKS:
            raise ConfigError(f"claim {claim.id}: attack {claim.attack!r} has no registered SAPA version")
        claims.append(claim)
    ids = Counter(c.id for c in claims)
    if ids and ids.most_common(1)[0][1] > 1:
        raise ConfigError(f"claims file: claim id {ids.most_common(1)[0][0]!r} is used twice")
    return alpha, claims


@dataclass(frozen=True)
class ClaimsPlan:
    """The claims a run pre-registered (its suite's ``[claims]``): decided with Holm's correction
    at family-wise ``alpha``; every other result of the run is shown, not tested."""

    primary: tuple[str, ...]
    alpha: float

    @property
    def level(self) -> float:
        """The per-claim level of Holm's first step (alpha over the number of primary claims):
        a design whose floor is not below it can never be decided."""
        return self.alpha / len(self.primary)

    def record(self) -> dict[str, Any]:
        return {"primary": list(self.primary), "alpha": self.alpha, "correction": CORRECTIONS[PRIMARY]}


def _suite_archs(suite: Suite) -> Counter[str]:
    """How many (architecture, recipe) settings of each architecture the suite's grids train."""
    return Counter(a for g in suite.grids for a in g.archs for _ in g.recipes)


def _claim_arch(c: Claim, archs: Counter[str]) -> str:
    """The architecture a claim is tested on: its own, or the results' main architecture where
    a claim about the paper's ResNet-18 meets results without ResNet-18 (the embedded suites)."""
    if c.arch == PAPER_MAIN_ARCH and c.arch not in archs and archs:
        return archs.most_common(1)[0][0]
    return c.arch


def _grid_pairs(suite: Suite, grid: Grid, c: Claim, arch: str) -> int | None:
    """The number of poisons (craft seeds) over which ``grid`` of ``suite`` pairs the claim's two
    arms in a black-box setting without a defense (None: the grid does not test the claim)."""
    sapa, baseline = c.compared
    if not {sapa, baseline} <= set(grid.attacks) or c.recipe not in grid.recipes or arch not in grid.archs:
        return None
    preset = suite.preset or default_preset(suite.dataset)
    protocol = c.protocol_at(preset)
    if protocol not in grid.protocols or NO_DEFENSE not in grid.defenses:
        return None
    if not c.matches(preset, suite.dataset, dict(grid.options)):
        return None
    surrogate = grid.surrogate or create_attack(sapa, dataset=suite.dataset, preset=suite.preset).config.surrogate.arch
    if is_white_box(protocol, grid.pretrained_of(protocol), arch, surrogate):
        return None
    return len(grid.craft_seeds or suite.craft_seeds)


def plan_claims(suite: Suite, claims_file: str | Path | None = None) -> ClaimsPlan | None:
    """The suite's pre-registered claims, each checked decidable before anything runs: named in
    the claims file, tested by a black-box grid of the suite, and with a design whose exact
    two-sided floor (over craft seeds: the poison is the unit) is below Holm's first-step level.
    None where the suite pre-registers none."""
    if not suite.primary_claims:
        return None
    file_alpha, claims = load_claims(claims_file)
    by_id = {c.id: c for c in claims}
    plan = ClaimsPlan(suite.primary_claims, file_alpha if suite.claims_alpha is None else suite.claims_alpha)
    archs = _suite_archs(suite)
    where = f"suite {suite.name!r}"
    for cid in plan.primary:
        if cid not in by_id:
            close = difflib.get_close_matches(cid, list(by_id), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else " (see benchmark/claims.toml)"
            raise ConfigError(f"{where}: primary claim {cid!r} is not in the claims file{hint}")
        c = by_id[cid]
        arch = _claim_arch(c, archs)
        designs = [n for g in suite.grids if (n := _grid_pairs(suite, g, c, arch)) is not None]
        if not designs:
            sapa, baseline = c.compared
            raise ConfigError(
                f"{where}: primary claim {cid} cannot be decided: no grid trains {sapa} and {baseline} on "
                f"{arch}/{c.recipe}/{c.protocol_at(suite.preset or default_preset(suite.dataset))} (black-box, no defense); add one or drop the claim from [claims] primary"
            )
        n = max(designs)
        floor = two_sided_floor(n)
        if floor >= plan.level:
            need = next(k for k in range(n + 1, 64) if two_sided_floor(k) < plan.level)
            raise ConfigError(
                f"{where}: primary claim {cid} cannot be decided: floor {floor:.4g} > alpha {plan.level:.4g} "
                f"({n} craft seed(s), two-sided exact floor; Holm over {len(plan.primary)} primary claims at "
                f"{plan.alpha:g}); give its grid at least {need} craft seeds"
            )
    return plan


def undecidable_claims(suite: Suite, claims_file: str | Path | None = None) -> list[tuple[str, int]]:
    """For a suite without a plan: the claims its grids test whose design cannot be decided even
    unadjusted (exact two-sided floor over its craft seeds not below the claims file's alpha),
    with their number of poisons, so a run says so before any compute is spent."""
    if suite.primary_claims:
        return []
    alpha, claims = load_claims(claims_file)
    archs = _suite_archs(suite)
    out = []
    for c in claims:
        designs = [n for g in suite.grids if (n := _grid_pairs(suite, g, c, _claim_arch(c, archs))) is not None]
        if designs and two_sided_floor(max(designs)) >= alpha:
            out.append((c.id, max(designs)))
    return out


def recorded_plan(results: str | Path) -> ClaimsPlan | None:
    """The plan the runs into ``results`` pre-registered (their ``runs.json``, validated by
    :func:`sapabench.leaderboard.records.load_runs`), or None."""
    runs = load_runs(board_dir(results) / RUNS_FILE)
    raw = None if runs is None else runs.get("claims")
    return None if raw is None else ClaimsPlan(tuple(raw["primary"]), float(raw["alpha"]))


ONE_POISON = "one craft seed: a claim replicates over poisons (craft seeds), and victims of one poison are not independent draws of the attack"


def test_claims(
    results: str | Path,
    alpha: float | None = None,
    claims_file: str | Path | None = None,
    plan: ClaimsPlan | None = None,
) -> tuple[float, list[Verdict]]:
    """The verdicts on the leaderboard entries under ``results``: the primary claims of ``plan``
    (:func:`recorded_plan` reads the one a run recorded) decided with Holm's correction, and no
    other claim; without a plan, every claim of the claims file as a secondary claim
    (Benjamini-Hochberg)."""
    file_alpha, claims = load_claims(claims_file)
    family = SECONDARY
    if plan is not None:
        known = {c.id for c in claims}
        missing = [cid for cid in plan.primary if cid not in known]
        if missing:
            raise ConfigError(
                f"primary claim {missing[0]!r} of the run is not in the claims file; pass the file the run used (--claims)"
            )
        claims = [c for c in claims if c.id in plan.primary]
        file_alpha, family = plan.alpha, PRIMARY
    alpha = file_alpha if alpha is None else alpha
    if not 0 < alpha < 1:
        raise ConfigError(f"invalid alpha={alpha}: must be in (0, 1) (set --alpha)")
    entries = load_entries(entries_dir(results))
    pairs = [p for p in rival_pairs(entries) if p.defense == NO_DEFENSE and not p.white_box]
    archs = Counter(p.arch for p in pairs)
    verdicts = []
    for c in claims:
        arch = _claim_arch(c, archs)
        sapa, baseline = c.compared
        match = [
            p
            for p in pairs
            if (p.sapa_attack, p.attack, p.recipe, p.arch, p.protocol_name)
            == (sapa, baseline, c.recipe, arch, c.protocol_at(p.preset))
            and c.matches(p.preset, p.dataset, p.options)
        ]
        if c.measure == ADVERSARIAL_MARGIN:
            match = [p for p in match if p.margin_test is not None]
        tested = [(p, p.test if c.measure == METRIC else p.margin_test) for p in match]
        if not tested:
            verdicts.append(Verdict(c, "untested", None, None, family=family))
            continue
        by_poison = [(p, t) for p, t in tested if t.unit == "craft seed" and t.n >= 2]
        if not by_poison:
            verdicts.append(Verdict(c, "untested", tested[0][0], None, family=family, reason=ONE_POISON))
            continue
        # Several black-box settings (numerics, pretrained sources): those with the most poisons;
        # where several tie, the claim rests on the weakest of them (the largest two-sided p).
        most = max(t.n for _, t in by_poison)
        tied = [(t.p_two_sided, i) for i, (_, t) in enumerate(by_poison) if t.n == most]
        p, test = by_poison[max(tied)[1]]
        if test.p_floor_two_sided >= alpha:
            reason = (
                f"{test.n} poisons cannot decide it: floor {test.p_floor_two_sided:.4g} >= alpha {alpha:g} "
                "(measured and shown, not tested)"
            )
            verdicts.append(Verdict(c, "untested", p, None, family=family, reason=reason))
            continue
        verdicts.append(Verdict(c, "inconclusive", p, test, test.p_two_sided, family=family, settings=len(tied)))
    return alpha, _decide(verdicts, alpha, family)


CORRECTION_TEXT = {
    PRIMARY: "two-sided exact p (HELD and FAILED together keep alpha), adjusted by Holm over the pre-registered primary "
    "claims (family-wise error at alpha under any dependence); the run's other results are shown, not tested",
    SECONDARY: f"two-sided exact p (HELD and FAILED together keep alpha), adjusted by "
    f"{CORRECTION_NAMES[CORRECTIONS[SECONDARY]]} over the distinct comparisons tested (a comparison that several claims "
    "name is counted once): the false discovery rate is kept at alpha under the positive dependence of claims that "
    "share an arm",
}


def _decide(verdicts: list[Verdict], alpha: float, family: str) -> list[Verdict]:
    """Each tested claim decided on its adjusted p (the family's correction over the distinct
    comparisons): HELD or FAILED by the direction of the measured difference where the adjusted
    p is below ``alpha``, inconclusive otherwise. Each carries its design's power for the effect
    and spread it measured."""
    distinct: dict[tuple[int, str], float] = {}
    for v in verdicts:
        if v.p_two_sided is not None:
            distinct.setdefault((id(v.test), v.claim.measure), v.p_two_sided)
    adjusted = dict(zip(distinct, adjust_p(list(distinct.values()), CORRECTIONS[family]), strict=True))
    # the power is at Holm's first-step level for primary claims, at alpha for secondary ones
    # (Benjamini-Hochberg's most lenient threshold: an upper bound on the power after adjustment)
    level = alpha / max(1, len(distinct)) if family == PRIMARY else alpha
    out = []
    for v in verdicts:
        if v.p_two_sided is None or v.test is None:
            out.append(v)
            continue
        q = adjusted[(id(v.test), v.claim.measure)]
        verdict = "inconclusive"
        if q < alpha:
            verdict = "held" if v.test.p_greater <= v.test.p_less else "failed"
        out.append(replace(v, verdict=verdict, p_adjusted=q, power=achieved_power(v.test, level)))
    return out


def achieved_power(test: PairedTest, level: float) -> float | None:
    """The power of ``test``'s design at ``level`` for normal differences with the effect and SD
    it measured (None with fewer than 2 pairs or more than the exact test enumerates)."""
    d = test.differences
    if not 2 <= len(d) <= EXACT_UP_TO:
        return None
    return sign_flip_power(abs(statistics.fmean(d)), statistics.stdev(d), len(d), level)


TEST_DESCRIPTION = (
    "exact sign-flip permutation test, SAPA and baseline paired by craft seed (the poison is the unit: per craft seed "
    "the mean over its victims; a claim measured on one poison is untested); with n pairs the two-sided p cannot go "
    "below 2^(1-n). Attacks of one threat model crafted with the same seed share their target / class pair, so "
    "Tables 1-3 are paired too; entries that share no seeds are compared unpaired (two-sample permutation test), and "
    "say so. White-box victims (known-init, or a pretrained model that is the attacker's surrogate) never test a claim"
)
COST_DESCRIPTION = (
    "SAPA at K = R = 1 not weaker by the claim's margin than ensemble-and-re-initialisation at any K x R measured "
    "(non-inferiority, margin fixed in the claims file; intersection-union over the E&R points, each one-sided at "
    "alpha: p_ni); FAILED where an E&R point is stronger by more than the margin after Holm over the points (p_inf, "
    "Holm-adjusted); time "
    "ratios = E&R / SAPA crafting seconds per poison, without | with the surrogates' training"
)


def tested_elsewhere(v: Verdict) -> str | None:
    """Where a claim was measured on another dataset than the paper's row (the embedded twins):
    the dataset it was tested on; None where it was tested on the paper's own (or not at all)."""
    if v.measured is None or v.measured.dataset == v.claim.paper_dataset:
        return None
    return v.measured.dataset


def describe(v: Verdict) -> str:
    """One claim's verdict as one line: the paper's numbers, what was measured and the test."""
    c = v.claim
    paper = f"paper {c.paper[0]:.1f} -> {c.paper[1]:.1f}"
    elsewhere = tested_elsewhere(v)
    if elsewhere is not None:
        paper += f" on {c.paper_dataset}, tested on its {elsewhere} twin"
    if v.measured is None:
        return f"{paper}; no matching black-box {c.protocol} results"
    m = v.measured
    where = f"{m.dataset}/{m.arch}/{m.recipe}/{m.protocol}"
    if v.test is None:
        return f"{paper}; {where}: {v.reason}"
    versus = "" if c.baseline in (None, c.attack) else f"{c.compared[0]} vs {c.compared[1]}, "
    t = v.test
    tested = (
        f"{m.metric} {100 * m.baseline.mean:.1f} +/- {100 * m.baseline.se:.1f} % -> "
        f"{100 * m.sapa.mean:.1f} +/- {100 * m.sapa.se:.1f} %"
    )
    diff = f"{100 * t.mean_difference:+.1f} points"  # the test's unit: the metric, a fraction
    if c.measure == ADVERSARIAL_MARGIN and m.margin is not None:
        g = m.margin
        tested = (
            f"adversarial margin {g.baseline.mean:+.2f} -> {g.sapa.mean:+.2f} logits (clean {g.clean:+.2f}), {tested}"
        )
        diff = f"{t.mean_difference:+.2f} logits"
    adjusted = (
        "" if v.p_adjusted is None else f", {CORRECTION_NAMES[CORRECTIONS[v.family]]}-adjusted {v.p_adjusted:.4f}"
    )
    power = "" if v.power is None else f"; power {100 * v.power:.0f}% for the measured effect"
    tied = "" if v.settings == 1 else f"; the weakest of {v.settings} tied settings"
    return (
        f"{paper}; {versus}{where}: {tested}; {t.design} diff {diff} over {t.n} {t.unit}s, "
        f"p {v.p_two_sided:.4f} two-sided{adjusted} (floor {v.p_floor_two_sided:.4f}){power}{tied}"
    )


def describe_cost(c: CostClaim, cv: CostVerdict | None) -> str:
    """One cost claim's verdict in one setting as one line (``cv`` None: untested)."""
    paper = f"paper {c.paper[0]:.1f} (SAPA 1x1) vs {c.paper[1]:.1f} (largest E&R)"
    if cv is None:
        return f"{paper}; no E&R results beside SAPA at 1x1"
    _, ds, _, protocol, arch, recipe, *_ = cv.setting
    points = "; ".join(
        f"{r['K']}x{r['R']} diff {r['test'].mean_difference:+.3g} p_ni "
        + ("- (unpaired)" if r["p_noninferior"] is None else f"{r['p_noninferior']:.4f}")
        + f" p_inf {r['p_inferior_holm']:.4f} (time x{r['time_ratio']:.2f} | x{r['total_ratio']:.2f})"
        for r in cv.rows
    )
    o = cv.overtaken
    after = (
        f" E&R overtakes SAPA at {o['K']}x{o['R']}: {o['time_ratio']:.2f}x SAPA's crafting time, "
        f"{o['total_ratio']:.2f}x with the surrogates."
        if o
        else ""
    )
    n = cv.rows[0]["test"]
    return (
        f"{paper}; {ds}/{arch}/{recipe}/{protocol}, {c.measure}, margin {cv.margin:g}, {n.n} {n.unit}s ({n.design}, "
        f"floor {n.p_floor:.4f}): {points}.{after}"
    )


def _cost_p(cv: CostVerdict | None) -> tuple[float | None, float | None, float | None]:
    """The p-values a cost verdict rests on (raw, floor, Holm-adjusted): the overtaking point's
    (E&R stronger by more than the margin) for ``failed``, else the largest non-inferiority p over the E&R points
    (``held`` needs every one; intersection-union, no adjustment)."""
    if cv is None:
        return None, None, None
    if cv.overtaken is not None:
        o = cv.overtaken
        return o["p_inferior"], o["test"].p_floor, o["p_inferior_holm"]
    worst = max(cv.rows, key=lambda r: 1.0 if r["p_noninferior"] is None else r["p_noninferior"])
    p = worst["p_noninferior"]
    return p, worst["test"].p_floor, p


def claims_record(
    alpha: float,
    verdicts: list[Verdict],
    cost: list[tuple[CostClaim, CostVerdict | None]],
    entries: list[dict[str, Any]],
    plan: ClaimsPlan | None = None,
) -> dict[str, Any]:
    """What ``claims.json`` holds (:mod:`sapabench.leaderboard.records`): every verdict with its one-line
    statistics, the family and correction it was decided in, the pre-registered plan (if any),
    and the digest of the entries they were checked against."""
    rows = []
    for v in verdicts:
        rows.append(
            {
                "id": v.claim.id,
                "kind": "claim",
                "family": v.family,
                "table": f"Table {v.claim.table}",
                "verdict": v.verdict,
                "paper": f"{v.claim.paper[0]:.1f} -> {v.claim.paper[1]:.1f}",
                "summary": describe(v),
                "p_value": v.p_two_sided,
                "p_floor": v.p_floor_two_sided,
                "p_adjusted": v.p_adjusted,
                "power": v.power,
                "decided_on": "adversarial margin" if v.on_proxy else "metric",
                "label": v.label,
                "paper_dataset": v.claim.paper_dataset,
                "tested_on": None if v.measured is None else v.measured.dataset,
            }
        )
    for c, cv in cost:
        p, floor, adjusted = _cost_p(cv)
        rows.append(
            {
                "id": c.id,
                "kind": "cost",
                "family": "cost",
                "table": "Figure 2",
                "verdict": "untested" if cv is None else cv.verdict,
                "paper": f"{c.paper[0]:.1f} (SAPA 1x1) vs {c.paper[1]:.1f} (largest E&R)",
                "summary": describe_cost(c, cv),
                "p_value": p,
                "p_floor": floor,
                "p_adjusted": adjusted,
                "power": None,
                "decided_on": c.measure if c.measure != METRIC else "metric",
                "label": "untested" if cv is None else cv.verdict,
                "paper_dataset": None,
                "tested_on": None if cv is None else cv.setting[1],
            }
        )
    family = PRIMARY if plan is not None else SECONDARY
    return {
        "format": CLAIMS_FORMAT,
        "version": CLAIMS_VERSION,
        "alpha": alpha,
        "entries_sha256": entries_digest(entries),
        "test": TEST_DESCRIPTION,
        "correction": CORRECTION_TEXT[family],
        "plan": None if plan is None else plan.record(),
        "verdicts": rows,
    }


def check_claims(
    results: str | Path,
    alpha: float | None = None,
    claims_file: str | Path | None = None,
    plan: ClaimsPlan | None = None,
) -> dict[str, Any]:
    """Test the claims on the entries under ``results`` (the run's pre-registered primary claims
    where it recorded a plan; else every claim and cost claim as secondary claims), write the
    verdicts to ``results/leaderboard/claims.json`` and re-render the leaderboard (its page
    shows them)."""
    plan = recorded_plan(results) if plan is None else plan
    alpha, verdicts = test_claims(results, alpha, claims_file, plan)
    cost = [] if plan is not None else test_cost_claims(results, alpha, claims_file)
    record = claims_record(alpha, verdicts, cost, load_entries(entries_dir(results)), plan)
    write_json(board_dir(results) / CLAIMS_FILE, record)
    render(entries_dir(results), board_dir(results))
    return record
