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

Each claim is decided both ways (:func:`_decide`): per poison SAPA's gain, with its 95 %
interval (:func:`sapabench.core.stats.sign_flip_interval`), is tested against 0 (two-sided) and
against the gain the paper's effect predicts for that poison (:data:`EFFECT_RULE`, fixed before
the data; one-sided): ``held`` (SAPA significantly stronger), ``below`` (the gain significantly
smaller than delta), ``held+below`` (both), ``failed`` (SAPA significantly weaker),
``inconclusive`` (none; with the poisons a design would need at delta), ``untested`` (no
matching black-box pair, one poison, too few poisons for the exact floor, or entries that share
no craft seed).

Two families of claims (:data:`CORRECTIONS`), over both hypotheses of each claim:

- **primary**: the few claims a suite pre-registers (``[claims] primary``). :func:`plan_claims`
  refuses, before anything runs, a primary claim whose design cannot be decided (no black-box
  grid tests it, its exact floor is not below Holm's first-step level, it has no pilot, or its
  design power at delta is below 80 %); the run records the plan (claims digest, alpha, looks,
  design power) in ``runs.json``, and ``sapabench claims`` then decides exactly those claims by
  Holm with Shaffer's restriction, at each declared look's spent alpha (family-wise error at
  alpha). Every other result is shown, not tested; alpha and the claims' definitions cannot be
  changed after the data.
- **secondary**: without a plan (the ``claims`` suite, the table suites), every claim of the
  file, Benjamini-Yekutieli over the hypotheses of the distinct comparisons (a comparison several
  claims name counts once).

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
the other presets. A row without either matches any setting (the Table 4-5 rows).

Cost claims (``[[cost_claim]]``, section 5.5 / Figure 2 / Table 11): SAPA at K = R = 1 is not
weaker than the same attack with ensemble and re-initialisation at any K x R measured by more
than the claim's ``margin`` (non-inferiority, :func:`sapabench.leaderboard.cost.cost_verdicts`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import statistics
import tomllib
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from sapabench.attacks import ATTACKS, create_attack
from sapabench.benchmark.entries import board_dir, entries_dir
from sapabench.benchmark.suite import Grid, Suite
from sapabench.core.atomic import write_json
from sapabench.core.errors import ConfigError
from sapabench.core.files import parse_toml, read_toml
from sapabench.core.names import NO_DEFENSE, SCRATCH, default_preset, sapa_name
from sapabench.core.stats import (
    EXACT_UP_TO,
    GainTest,
    PairedTest,
    adjust_p,
    gain_test,
    one_sided_power,
    shaffer_holm,
    spent_alpha,
    two_sided_floor,
    variance_components,
)
from sapabench.core.threats import ADVERSARIAL_MARGIN
from sapabench.leaderboard.cost import CostVerdict, cost_verdicts
from sapabench.leaderboard.pairs import Pair, clean_entry, rival_pairs, trial_values
from sapabench.leaderboard.records import (
    CLAIMS_FILE,
    CLAIMS_FORMAT,
    CLAIMS_VERSION,
    RUNS_FILE,
    VERDICT_TEXT,
    entries_digest,
    load_runs,
)
from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import load_entries
from sapabench.victims.protocols import PROTOCOLS, get_protocol, is_white_box

PAPER_MAIN_ARCH = "resnet18"
PAPER_PRESET = "paper"
EMBEDDED_PRESET = "embedded"
CLAIM_PRESETS = (PAPER_PRESET, EMBEDDED_PRESET)
"""The attack presets whose results can test a claim: the paper's settings and their embedded
twins. Any other (``smoke``: one-epoch surrogates and two-step crafting) stands for no setting
of the paper and never tests a claim."""
PAPER_DATASET = "cifar10"
PAPER_CLEAN = {
    ("cifar10", "resnet18"): 94.8,
    ("cifar10", "resnet50"): 95.0,
    ("cifar100", "resnet18"): 74.8,
    ("cifar100", "resnet50"): 75.2,
    ("svhn", "resnet18"): 96.0,
    ("svhn", "resnet50"): 95.9,
}
"""Clean test accuracy of the paper's victims (its Table 3 and Table 8, SGD training): the
default ``clean`` of accuracy claims on these (dataset, architecture) pairs. Table 4's recipe rows
(Adam, CutOut, MixUp, SAM on ResNet-18) take the SGD figure, the only clean one the paper gives;
its architecture rows (MobileNetV2, VGG11, ViT) and Table 5 (adversarial training) give none, so
those claims have no expected effect and are tested for HELD / FAILED only."""
EFFECT_RULE = (
    "expected gain per poison (delta) = r x what the base attack did on that poison, r from the paper alone, fixed "
    "before any data: accuracy r = (base - SAPA) / (clean - base), times the clean victims' accuracy minus the base "
    "attack's; success r = (SAPA - base) / (100 - base), times the room the base attack left (100 % - its success); "
    "claims decided on the adversarial margin (a proxy) and rows without a clean accuracy in the paper state no delta"
)
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
    clean: float | None = None

    @property
    def relative_effect(self) -> float | None:
        """The paper's SAPA gain relative to its setting (:data:`EFFECT_RULE`): accuracy rows, as a
        fraction of the base attack's damage, ``(base - SAPA) / (clean - base)`` (Table 4 sgd
        Error-Min: (21.2 - 10.9) / (94.8 - 21.2) = 0.14); success rows, as a fraction of the room
        the base attack left, ``(SAPA - base) / (100 - base)`` (Table 4 sgd Sleeper Agent:
        (97.1 - 91.8) / 8.2 = 0.65; a ratio to the base's own success would explode where it is
        near 0, Poison Frogs' 1.3 %). None where the paper gives no clean accuracy, and for claims
        decided on the adversarial margin, a proxy with no scale to carry the paper's effect."""
        base, sapa = self.paper
        if self.measure == ADVERSARIAL_MARGIN:
            return None
        if self.metric == "accuracy":
            return None if self.clean is None or self.clean <= base else (base - sapa) / (self.clean - base)
        return None if base >= 100 else (sapa - base) / (100 - base)

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
CORRECTIONS = {PRIMARY: "holm-shaffer", SECONDARY: "by"}
"""The multiplicity correction of each family of claims, over every hypothesis of the family
(each claim tests two: "gain = 0", two-sided, and "gain >= the paper's effect", one-sided; at most
one of the two can be true). Primary claims a suite pre-registers keep the family-wise error rate:
Holm with Shaffer's logical restriction (:func:`sapabench.core.stats.shaffer_holm`), valid under
any dependence. Secondary ones (every claim, where a run pre-registers none) keep the false
discovery rate by Benjamini-Yekutieli, valid under any dependence: claims sharing poisons are
positively dependent, but a claim's two one-sided tests are negatively dependent, so
Benjamini-Hochberg's positive-dependence condition does not hold over the family."""
CORRECTION_LABELS = {"holm-shaffer": "Holm-Shaffer", "by": "Benjamini-Yekutieli"}

HELD = "held"
BELOW = "below"
HELD_BELOW = "held+below"
FAILED = "failed"
INCONCLUSIVE = "inconclusive"
UNTESTED = "untested"
"""HELD: SAPA significantly stronger than its baseline. BELOW THE PAPER: the gain significantly
smaller than the paper's effect scaled to the setting (both may hold: stronger, but less than the
paper). FAILED: SAPA significantly weaker. INCONCLUSIVE: none of these."""


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict. ``gain``: the per-poison test (:class:`sapabench.core.stats.GainTest`:
    interval, expected effect delta, one-sided p's) at the look it was decided at (``look``
    poisons, level ``level``); ``p_two_sided`` / ``p_adjusted``: "gain = 0" (HELD / FAILED),
    ``p_below`` / ``p_below_adjusted``: "gain >= delta" (BELOW THE PAPER), adjusted in its family
    (:data:`CORRECTIONS`). ``design_power``: the plan's power before the data, at delta for HELD
    and at a gain of 0 for BELOW (primary claims only); ``poisons_needed``: for an inconclusive
    claim, the poisons (at this run's victims per poison and its spread) a design would need for
    80 % power at delta. ``reason``: why a claim with results is untested; ``settings``: how many
    black-box settings tied for it (the verdict rests on the weakest of them)."""

    claim: Claim
    verdict: str
    measured: Pair | None
    test: PairedTest | None
    gain: GainTest | None = None
    p_two_sided: float | None = None
    p_adjusted: float | None = None
    p_below: float | None = None
    p_below_adjusted: float | None = None
    family: str = SECONDARY
    design_power: dict[str, float] | None = None
    poisons_needed: int | None = None
    reason: str | None = None
    settings: int = 1
    look: int | None = None
    level: float | None = None
    victims_per_poison: float | None = None

    @property
    def p_floor_two_sided(self) -> float | None:
        """The smallest two-sided p the design allows (twice the one-sided floor, at most 1)."""
        return None if self.gain is None else self.gain.floor_two_sided

    @property
    def on_proxy(self) -> bool:
        """Decided on the adversarial margin rather than the metric the paper reports."""
        return self.test is not None and self.claim.measure == ADVERSARIAL_MARGIN

    @property
    def p_sapa_stronger(self) -> float | None:
        """The one-sided exact p of the mean gain above 0."""
        return None if self.gain is None else self.gain.p_stronger

    @property
    def p_sapa_weaker(self) -> float | None:
        return None if self.gain is None else self.gain.p_weaker

    @property
    def label(self) -> str:
        """The verdict in words, with ``(margin)`` where a decided verdict rests on the proxy."""
        text = VERDICT_TEXT[self.verdict]
        decided = self.verdict not in (INCONCLUSIVE, UNTESTED)
        return f"{text} (margin)" if self.on_proxy and decided else text


@dataclass(frozen=True)
class CostClaim:
    """SAPA at K = R = 1 against E&R of ``attack`` (Table 11: ``paper`` = SAPA 1x1's and the
    largest ensemble's numbers), on the ``measure``."""

    id: str
    attack: str
    paper: tuple[float, float]
    measure: str = METRIC
    margin: float = 0.0


MAX_CLAIMS = 10_000
"""The most claims (and cost claims) a claims file may hold: claims.json must stay readable."""
TEXT_FIELDS = ("id", "attack", "recipe", "arch", "metric", "expect")
OPTIONAL_TEXT = ("protocol", "measure", "baseline", "dataset", "paper_protocol")


def _tables(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The ``[[key]]`` tables of a claims file, each checked to be a table whose fields have
    their types: one line naming the field and the fix for anything else."""
    raw = data.get(key, [])
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError(f"claims file: {key!r} must be a list of [[{key}]] tables, got {type(raw).__name__}")
    if len(raw) > MAX_CLAIMS:
        raise ConfigError(f"claims file: {len(raw)} [[{key}]] tables, more than {MAX_CLAIMS}: split the file")
    for t in raw:
        name = t.get("id")
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ConfigError(f"claims file: every [[{key}]] needs an id, a string of 1-200 characters, got {name!r}")
        for field_name in (*TEXT_FIELDS, *OPTIONAL_TEXT):
            if field_name in t and not isinstance(t[field_name], str):
                raise ConfigError(f"claims file: {key} {name!r}: {field_name} must be a string")
        paper = t.get("paper")
        if (
            not isinstance(paper, list)
            or len(paper) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in paper)
        ):
            raise ConfigError(f"claims file: {key} {name!r}: paper must be two finite numbers [baseline, SAPA]")
        for number in ("clean", "margin"):
            if number in t and (
                isinstance(t[number], bool) or not isinstance(t[number], (int, float)) or not math.isfinite(t[number])
            ):
                raise ConfigError(f"claims file: {key} {name!r}: {number} must be a finite number")
    return raw


def _claims_data(path: str | Path | None) -> dict[str, Any]:
    if path:
        return read_toml(Path(path).resolve(), "claims file")
    return parse_toml((resources.files("sapabench.benchmark") / "claims.toml").read_text(), "claims file")


def load_cost_claims(path: str | Path | None = None) -> list[CostClaim]:
    out = []
    for raw in _tables(_claims_data(path), "cost_claim"):
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


def _clean_of(raw: dict[str, Any]) -> float | None:
    """A claim's clean accuracy: its own ``clean``, else the paper's for its dataset and
    architecture (:data:`PAPER_CLEAN`; never under adversarial training, which the paper gives
    none for)."""
    if "clean" in raw:
        return float(raw["clean"])
    if raw["metric"] != "accuracy" or raw["recipe"] == "adversarial":
        return None
    return PAPER_CLEAN.get((raw.get("dataset", PAPER_DATASET), raw["arch"]))


def claims_digest(claims: list[Claim]) -> str:
    """SHA-256 of the claims' definitions (every field, in id order): a plan records it so that
    a claims file that redefines a planned claim is refused."""
    rows = sorted((asdict(c) for c in claims), key=lambda r: r["id"])
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def load_claims(path: str | Path | None = None) -> tuple[float, list[Claim]]:
    data = _claims_data(path)
    alpha = data.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"claims file: alpha must be a number in (0, 1), got {alpha!r}")
    alpha = float(alpha)
    claims = []
    for raw in _tables(data, "claim"):
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
                _clean_of(raw),
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
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
    """The claims a run pre-registered (its suite's ``[claims]``), fixed before any data: decided
    with Holm-Shaffer at family-wise ``alpha`` over their two hypotheses each, at the declared
    ``looks`` (numbers of poisons; each look at its spent alpha, :func:`spent_alpha`);
    ``claims_sha256``: the digest of the claims' definitions (:func:`claims_digest`);
    ``power``: per claim its design power at delta and the stated variance it rests on. Every
    other result of the run is shown, not tested."""

    primary: tuple[str, ...]
    alpha: float
    looks: tuple[int, ...] = ()
    claims_sha256: str | None = None
    power: dict[str, dict[str, float]] = field(default_factory=dict, compare=False)

    @property
    def levels(self) -> list[float]:
        """The alpha each look spends (one look: all of it)."""
        return spent_alpha(list(self.looks), self.alpha) if len(self.looks) > 1 else [self.alpha]

    @property
    def level(self) -> float:
        """The per-claim level of Holm's first step at the last look (its spent alpha over the
        number of primary claims): a design whose floor is not below it can never be decided."""
        return self.levels[-1] / len(self.primary)

    def record(self) -> dict[str, Any]:
        return {
            "primary": list(self.primary),
            "alpha": self.alpha,
            "correction": CORRECTIONS[PRIMARY],
            "looks": list(self.looks),
            "look_alphas": self.levels if self.looks else [self.alpha],
            "claims_sha256": self.claims_sha256,
            "power": self.power,
        }


PILOTS_FILE = "pilots.toml"
POWER_TARGET = 0.8


@dataclass(frozen=True)
class Pilot:
    """The variance a plan's power is computed from, measured by a pilot on craft seeds the
    planned run does not use (``benchmark/pilots.toml``). SDs are of per-victim paired
    differences in the measure's unit (a fraction for accuracy), split into the spread between
    poisons and within a poison (victim training): the SD of a poison's mean over ``v`` victims
    is ``sqrt(poison^2 + victim^2 / v)``. ``gain``: SAPA's gain; ``below``: the gain minus the
    expected gain (the BELOW test's differences); ``effect``: the base attack's mean effect, which
    turns the claim's relative effect into delta."""

    claim: str
    suite: str
    craft_seeds: tuple[int, ...]
    victims_per_poison: int
    effect: float
    gain_sd_poison: float
    gain_sd_victim: float
    below_sd_poison: float
    below_sd_victim: float

    def sd(self, which: str, victims: int) -> float:
        poison, victim = (
            (self.gain_sd_poison, self.gain_sd_victim)
            if which == "gain"
            else (self.below_sd_poison, self.below_sd_victim)
        )
        return math.sqrt(poison**2 + victim**2 / victims)


def load_pilots() -> dict[str, Pilot]:
    """The pilots kept in the repository, by claim id."""
    text = (resources.files("sapabench.benchmark") / PILOTS_FILE).read_text()
    out = {}
    for raw in tomllib.loads(text).get("pilot", []):
        p = Pilot(
            raw["claim"],
            raw["suite"],
            tuple(raw["craft_seeds"]),
            int(raw["victims_per_poison"]),
            float(raw["effect"]),
            float(raw["gain_sd_poison"]),
            float(raw["gain_sd_victim"]),
            float(raw["below_sd_poison"]),
            float(raw["below_sd_victim"]),
        )
        out[p.claim] = p
    return out


def design_power(c: Claim, pilot: Pilot, poisons: int, victims: int, level: float) -> dict[str, float]:
    """A primary claim's power before the data: HELD at a true gain of delta (two-sided test at
    ``level``, SAPA's side) and BELOW THE PAPER at a true gain of 0 (one-sided at ``level``), for
    ``poisons`` poisons of ``victims`` victims with the pilot's variance; delta = the claim's
    relative effect x the pilot's base effect."""
    r = c.relative_effect
    if r is None:
        raise ConfigError(f"claim {c.id} states no paper effect (no clean accuracy): it cannot be a primary claim")
    delta = r * pilot.effect
    n = min(poisons, EXACT_UP_TO)
    return {
        "delta": delta,
        "relative_effect": r,
        "poisons": poisons,
        "victims_per_poison": victims,
        "sd_gain": pilot.sd("gain", victims),
        "sd_below": pilot.sd("below", victims),
        "held_at_delta": one_sided_power(delta, pilot.sd("gain", victims), n, level / 2),
        "below_at_zero": one_sided_power(delta, pilot.sd("below", victims), n, level),
    }


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


def plan_claims(
    suite: Suite, claims_file: str | Path | None = None, pilots: dict[str, Pilot] | None = None
) -> ClaimsPlan | None:
    """The suite's pre-registered claims, each checked decidable before anything runs: named in
    the claims file, tested by a black-box grid of the suite, and with a design whose exact
    two-sided floor (over craft seeds: the poison is the unit) is below Holm's first-step level.
    None where the suite pre-registers none."""
    if not suite.primary_claims:
        return None
    file_alpha, claims = load_claims(claims_file)
    by_id = {c.id: c for c in claims}
    alpha = file_alpha if suite.claims_alpha is None else suite.claims_alpha
    where = f"suite {suite.name!r}"
    archs = _suite_archs(suite)
    pilots = load_pilots() if pilots is None else pilots
    designs: dict[str, tuple[int, int]] = {}
    for cid in suite.primary_claims:
        if cid not in by_id:
            close = difflib.get_close_matches(cid, list(by_id), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else " (see benchmark/claims.toml)"
            raise ConfigError(f"{where}: primary claim {cid!r} is not in the claims file{hint}")
        c = by_id[cid]
        arch = _claim_arch(c, archs)
        found = [
            (n, g.trials or suite.trials) for g in suite.grids if (n := _grid_pairs(suite, g, c, arch)) is not None
        ]
        if not found:
            sapa, baseline = c.compared
            raise ConfigError(
                f"{where}: primary claim {cid} cannot be decided: no grid trains {sapa} and {baseline} on "
                f"{arch}/{c.recipe}/{c.protocol_at(suite.preset or default_preset(suite.dataset))} (black-box, no defense); add one or drop the claim from [claims] primary"
            )
        designs[cid] = max(found)
    poisons = min(n for n, _ in designs.values())
    looks = suite.claims_looks or (poisons,)
    if looks[-1] > poisons:
        raise ConfigError(f"{where}: the last look ({looks[-1]} poisons) is past the design's {poisons} craft seeds")
    plan = ClaimsPlan(tuple(suite.primary_claims), alpha, tuple(looks), claims_digest([by_id[c] for c in designs]))
    power: dict[str, dict[str, float]] = {}
    for cid, (n, victims) in designs.items():
        n = looks[-1]
        floor = two_sided_floor(n)
        if floor >= plan.level:
            need = next(k for k in range(n + 1, 64) if two_sided_floor(k) < plan.level)
            raise ConfigError(
                f"{where}: primary claim {cid} cannot be decided: floor {floor:.4g} > alpha {plan.level:.4g} "
                f"({n} craft seed(s), two-sided exact floor; Holm over {len(plan.primary)} primary claims at "
                f"{plan.alpha:g}); give its grid at least {need} craft seeds"
            )
        if cid not in pilots:
            raise ConfigError(
                f"{where}: primary claim {cid} has no pilot in benchmark/{PILOTS_FILE}: its power cannot be stated "
                "before the data; run a pilot on other craft seeds and record its variance there"
            )
        pilot = pilots[cid]
        if set(pilot.craft_seeds) & set(_claim_seeds(suite, by_id[cid], archs)):
            raise ConfigError(
                f"{where}: primary claim {cid}'s pilot used craft seeds of this suite: they must be disjoint"
            )
        power[cid] = design_power(by_id[cid], pilot, n, victims, plan.level)
        weakest = min(power[cid]["held_at_delta"], power[cid]["below_at_zero"])
        if weakest < POWER_TARGET:
            raise ConfigError(
                f"{where}: primary claim {cid} has {100 * weakest:.0f}% design power at delta "
                f"{power[cid]['delta']:.4g} ({n} poisons x {victims} victims, pilot {pilot.suite}): below "
                f"{100 * POWER_TARGET:.0f}%; add poisons or victims per poison"
            )
    return replace(plan, power=power)


def _claim_seeds(suite: Suite, c: Claim, archs: Counter[str]) -> list[int]:
    """The craft seeds of the grids of ``suite`` that test ``c``."""
    arch = _claim_arch(c, archs)
    return [
        s
        for g in suite.grids
        if _grid_pairs(suite, g, c, arch) is not None
        for s in (g.craft_seeds or suite.craft_seeds)
    ]


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
    if raw is None:
        return None
    return ClaimsPlan(
        tuple(raw["primary"]),
        float(raw["alpha"]),
        tuple(int(n) for n in raw.get("looks", [])),
        raw.get("claims_sha256"),
        raw.get("power") or {},
    )


ONE_POISON = "one craft seed: a claim replicates over poisons (craft seeds), and victims of one poison are not independent draws of the attack"


def _seed_order(seed: Any) -> tuple[int, str]:
    return (int(seed), "") if isinstance(seed, int) else (0, repr(seed))


def poison_gains(
    c: Claim, p: Pair, entries: dict[str, dict[str, Any]], clean: dict[str, Any] | None
) -> tuple[list[Any], list[float], list[float] | None, float]:
    """Per poison (craft seeds in order) of a claim's pair: SAPA's gain over the baseline (the
    mean over the poison's paired victims, > 0 = SAPA stronger) and the gain the paper's effect
    predicts there (:data:`EFFECT_RULE`; None without a relative effect or a clean reference),
    and the victims per poison. Accuracy's clean reference is the mean of the setting's clean
    victims (``clean``, the clean entry)."""
    sapa, base = entries[p.sapa_entry_id], entries[p.base_entry_id]
    measure = None if c.measure == METRIC else c.measure
    a, b = trial_values(sapa, measure), trial_values(base, measure)
    per: dict[Any, list[tuple[float, float]]] = {}
    for key in sorted(set(a) & set(b), key=lambda k: (_seed_order(k[0]), repr(k[1]))):
        per.setdefault(key[0], []).append((a[key], b[key]))
    seeds = sorted(per, key=_seed_order)
    gains = [sum(x - y for x, y in per[s]) / len(per[s]) for s in seeds]
    base_strength = [sum(y for _, y in per[s]) / len(per[s]) for s in seeds]  # signed: larger = stronger
    r = c.relative_effect
    expected: list[float] | None = None
    if r is not None and p.higher_is_stronger:  # success: the room the base attack left
        expected = [r * (1.0 - bs) for bs in base_strength]
    elif r is not None and clean is not None:  # accuracy (signed -accuracy): the base attack's damage
        expected = [r * (bs + float(clean["metric"]["mean"])) for bs in base_strength]
    victims = sum(len(per[s]) for s in seeds) / max(1, len(seeds))
    return seeds, gains, expected, victims


def matching_pairs(c: Claim, pairs: list[Pair], archs: Counter[str]) -> list[tuple[Pair, PairedTest]]:
    """The black-box pairs that test claim ``c``, each with the test on the claim's measure."""
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
    return [(p, p.test if c.measure == METRIC else p.margin_test) for p in match]  # type: ignore[misc]


def measure_pilot(results: str | Path, claim_id: str, claims_file: str | Path | None = None) -> Pilot:
    """The variance components a plan needs, measured on a pilot run folder (:class:`Pilot`): per
    victim the paired gain and the BELOW test's difference, split by one-way random effects over
    the poisons into the spread between poisons and within a poison; and the base attack's mean
    effect. The pilot's mean gain is not used anywhere: a plan is powered at delta."""
    _, claims = load_claims(claims_file)
    by_claim = {c.id: c for c in claims}
    if claim_id not in by_claim:
        raise ConfigError(f"claim {claim_id!r} is not in the claims file")
    c = by_claim[claim_id]
    if c.relative_effect is None:
        raise ConfigError(f"claim {claim_id} states no paper effect: a pilot cannot power it")
    entries = load_entries(entries_dir(results))
    by_id = {e["entry_id"]: e for e in entries}
    pairs = [p for p in rival_pairs(entries) if p.defense == NO_DEFENSE and not p.white_box]
    tested = matching_pairs(c, pairs, Counter(p.arch for p in pairs))
    if not tested:
        raise ConfigError(f"{results} holds no black-box pair that tests {claim_id}")
    p = max(tested, key=lambda pt: pt[1].n)[0]
    clean = clean_entry(entries, by_id[p.base_entry_id])
    if not p.higher_is_stronger and clean is None:
        raise ConfigError(f"{results} trained no clean victims beside {claim_id}'s pair: the effect needs them")
    measure = None if c.measure == METRIC else c.measure
    a, b = trial_values(by_id[p.sapa_entry_id], measure), trial_values(by_id[p.base_entry_id], measure)
    r = c.relative_effect
    gain: dict[Any, list[float]] = {}
    below: dict[Any, list[float]] = {}
    effect: list[float] = []
    for key in sorted(set(a) & set(b), key=repr):
        room = (1.0 - b[key]) if p.higher_is_stronger else (b[key] + float(clean["metric"]["mean"]))  # type: ignore[index]
        gain.setdefault(key[0], []).append(a[key] - b[key])
        below.setdefault(key[0], []).append(a[key] - b[key] - r * room)
        effect.append(room)
    if len(gain) < 3 or min(len(v) for v in gain.values()) < 2:
        raise ConfigError(f"a pilot needs 3 or more poisons with 2 or more victims each ({results} has {len(gain)})")
    (gp, gv), (bp, bv) = variance_components(list(gain.values())), variance_components(list(below.values()))
    seeds = tuple(int(s) for s in sorted(gain, key=repr))
    victims = min(len(v) for v in gain.values())
    return Pilot(
        claim_id,
        str(by_id[p.sapa_entry_id]["setting"]["suite"]),
        seeds,
        victims,
        statistics.fmean(effect),
        gp,
        gv,
        bp,
        bv,
    )


def pilot_toml(p: Pilot) -> str:
    """A pilot as its ``benchmark/pilots.toml`` block."""
    return (
        f'[[pilot]]\nclaim = "{p.claim}"\nsuite = "{p.suite}"\ncraft_seeds = {list(p.craft_seeds)}\n'
        f"victims_per_poison = {p.victims_per_poison}\neffect = {p.effect:.4f}\n"
        f"gain_sd_poison = {p.gain_sd_poison:.4f}\ngain_sd_victim = {p.gain_sd_victim:.4f}\n"
        f"below_sd_poison = {p.below_sd_poison:.4f}\nbelow_sd_victim = {p.below_sd_victim:.4f}\n"
    )


def test_claims(
    results: str | Path,
    alpha: float | None = None,
    claims_file: str | Path | None = None,
    plan: ClaimsPlan | None = None,
) -> tuple[float, list[Verdict]]:
    """The verdicts on the leaderboard entries under ``results``: the primary claims of ``plan``
    (:func:`recorded_plan` reads the one a run recorded) decided with Holm-Shaffer at the plan's
    alpha and looks, and no other claim; without a plan, every claim of the claims file as a
    secondary claim (Benjamini-Yekutieli). A planned run's alpha and claim definitions cannot be
    changed after the data: ``alpha`` or a ``claims_file`` that redefines a planned claim is
    refused."""
    file_alpha, claims = load_claims(claims_file)
    family = SECONDARY
    if plan is not None:
        known = {c.id: c for c in claims}
        missing = [cid for cid in plan.primary if cid not in known]
        if missing:
            raise ConfigError(
                f"primary claim {missing[0]!r} of the run is not in the claims file; pass the file the run used (--claims)"
            )
        claims = [known[cid] for cid in plan.primary]
        if plan.claims_sha256 is not None and claims_digest(claims) != plan.claims_sha256:
            raise ConfigError(
                "the claims file defines the run's pre-registered claims differently from its plan (digest mismatch): "
                "a planned claim cannot be redefined after the data; drop --claims or pass the file the run used"
            )
        if alpha is not None and alpha != plan.alpha:
            raise ConfigError(
                f"the run pre-registered alpha {plan.alpha:g}: --alpha cannot change a planned run's decisions; drop it"
            )
        file_alpha, family = plan.alpha, PRIMARY
    alpha = file_alpha if alpha is None else alpha
    if not 0 < alpha < 1:
        raise ConfigError(f"invalid alpha={alpha}: must be in (0, 1) (set --alpha)")
    entries = load_entries(entries_dir(results))
    by_id = {e["entry_id"]: e for e in entries}
    pairs = [p for p in rival_pairs(entries) if p.defense == NO_DEFENSE and not p.white_box]
    archs = Counter(p.arch for p in pairs)
    pending: list[tuple[Verdict, list[Any], list[float], list[float] | None]] = []
    verdicts: list[Verdict] = []
    for c in claims:
        tested = matching_pairs(c, pairs, archs)
        if not tested:
            verdicts.append(Verdict(c, UNTESTED, None, None, family=family))
            continue
        by_poison = [(p, t) for p, t in tested if t.unit == "craft seed" and t.n >= 2 and t.design == "paired"]
        if not by_poison:
            verdicts.append(Verdict(c, UNTESTED, tested[0][0], None, family=family, reason=ONE_POISON))
            continue
        # Several black-box settings (numerics, pretrained sources): those with the most poisons;
        # where several tie, the claim rests on the weakest of them (the largest two-sided p).
        most = max(t.n for _, t in by_poison)
        tied = [(t.p_two_sided, i) for i, (_, t) in enumerate(by_poison) if t.n == most]
        p, test = by_poison[max(tied)[1]]
        seeds, gains, expected, victims = poison_gains(c, p, by_id, clean_entry(entries, by_id[p.base_entry_id]))
        v = Verdict(c, INCONCLUSIVE, p, test, family=family, settings=len(tied), victims_per_poison=victims)
        n = len(seeds) if plan is None or not plan.looks else min(len(seeds), plan.looks[-1])
        if two_sided_floor(n) >= alpha:  # shown, not tested: and kept out of the family's correction
            reason = (
                f"{n} poisons cannot decide it: floor {two_sided_floor(n):.4g} >= alpha {alpha:g} "
                "(measured and shown, not tested)"
            )
            verdicts.append(replace(v, verdict=UNTESTED, reason=reason))
            continue
        if plan is not None:
            v = replace(v, design_power=plan.power.get(c.id))
        pending.append((v, seeds, gains, expected))
    looks = list(plan.looks) if plan is not None and plan.looks else [None]
    levels = plan.levels if plan is not None and plan.looks else [alpha]
    decided = decide_at_looks(pending, looks, levels, alpha, family)
    for v, seeds, _, _ in pending:
        out = decided.get(v.claim.id)
        if out is None:
            first = looks[0]
            reason = f"{len(seeds)} poisons: the plan's first look is at {first}"
            out = replace(v, verdict=UNTESTED, reason=reason)
        elif out.verdict == INCONCLUSIVE:
            out = replace(out, poisons_needed=_poisons_needed(out.gain, out.level or alpha))
        verdicts.append(out)
    order = {c.id: i for i, c in enumerate(claims)}
    return alpha, sorted(verdicts, key=lambda v: order[v.claim.id])


Pending = tuple["Verdict", list[Any], list[float], list[float] | None]


def decide_at_looks(
    pending: list[Pending], looks: list[int | None], levels: list[float], alpha: float, family: str
) -> dict[str, Verdict]:
    """Each pending claim (its verdict so far, craft seeds, per-poison gains and expected gains)
    decided at the first declared look (``None``: every poison) where it decides anything, each
    look on the first ``look`` poisons at its spent ``level`` (:func:`_decide` over the claims
    that reach it); a claim no look decides keeps its last look's inconclusive verdict. Claims
    with fewer poisons than the first look are left out (untested)."""
    decided: dict[str, Verdict] = {}
    last: dict[str, Verdict] = {}
    for look, level in zip(looks, levels, strict=True):
        batch = []
        for v, seeds, gains, expected in pending:
            if v.claim.id in decided:
                continue
            n = len(seeds) if look is None else look
            if n > len(seeds):
                continue
            e = None if expected is None else expected[:n]
            batch.append(replace(v, gain=gain_test(gains[:n], e, alpha), look=n, level=level))
        for v in _decide(batch, level, family):
            last[v.claim.id] = v
            if v.verdict != INCONCLUSIVE:
                decided[v.claim.id] = v
    return {**last, **decided}


def _poisons_needed(g: GainTest | None, level: float) -> int | None:
    """Poisons (at the run's victims per poison and spread of per-poison gains) a design would
    need for 80 % power at delta, by the normal approximation ((z_{1-level/2} + z_0.8) SD / delta)^2;
    None without delta or spread. It plans the next design at the effect stated before the data,
    never at the measured one."""
    if g is None or g.delta is None or g.delta <= 0 or g.n < 2:
        return None
    from scipy.stats import norm

    sd = statistics.stdev(g.gains)
    if sd == 0:
        return None
    z = float(norm.ppf(1 - level / 2) + norm.ppf(POWER_TARGET))
    return math.ceil((z * sd / g.delta) ** 2) + 1


def _decide(verdicts: list[Verdict], level: float, family: str) -> list[Verdict]:
    """Each claim decided on its two hypotheses' adjusted p (the family's correction over every
    hypothesis of the distinct comparisons): HELD / FAILED where "gain = 0" is rejected, by the
    direction of the mean gain; BELOW THE PAPER where "gain >= delta" is rejected; HELD and
    BELOW together where both are; INCONCLUSIVE otherwise."""
    # one "gain = 0" hypothesis per distinct comparison (several claims may name one) and one
    # "gain >= delta" per distinct expected effect; Shaffer's groups: a comparison's "gain = 0"
    # and its first delta cannot both be true, a further delta gets a group of its own
    p_of: dict[tuple[Any, ...], float] = {}
    group_of: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for v in verdicts:
        g = v.gain
        assert g is not None
        key = (id(v.test), v.claim.measure)
        p_of.setdefault((*key, "eq"), g.p_two_sided)
        group_of.setdefault((*key, "eq"), key)
        if g.p_below is not None and (*key, "below", g.expected) not in p_of:
            first = not any(k[:2] == key and k[2] == "below" for k in p_of)
            p_of[(*key, "below", g.expected)] = g.p_below
            group_of[(*key, "below", g.expected)] = key if first else (*key, g.expected)
    keys = list(p_of)
    ps = [p_of[k] for k in keys]
    if CORRECTIONS[family] == "holm-shaffer":
        adjusted_list = shaffer_holm([group_of[k] for k in keys], ps)
    else:
        adjusted_list = adjust_p(ps, "by")
    adjusted = dict(zip(keys, adjusted_list, strict=True))
    out = []
    for v in verdicts:
        g = v.gain
        assert g is not None
        key = (id(v.test), v.claim.measure)
        q = adjusted[(*key, "eq")]
        q_below = None if g.p_below is None else adjusted[(*key, "below", g.expected)]
        verdict = INCONCLUSIVE
        if q < level and g.mean_gain < 0:
            verdict = FAILED
        elif q < level and g.mean_gain > 0:
            verdict = HELD_BELOW if q_below is not None and q_below < level else HELD
        elif q_below is not None and q_below < level:
            verdict = BELOW
        out.append(
            replace(
                v,
                verdict=verdict,
                p_two_sided=g.p_two_sided,
                p_adjusted=q,
                p_below=g.p_below,
                p_below_adjusted=q_below,
            )
        )
    return out


TEST_DESCRIPTION = (
    "exact sign-flip permutation tests, SAPA and baseline paired by craft seed (the poison is the unit: per craft seed "
    "the mean over its victims; a claim measured on one poison is untested): gain = 0 two-sided (with n poisons p "
    "cannot go below 2^(1-n)) and gain >= delta one-sided; the 95 % interval of the gain inverts the same test. "
    "Attacks of one threat model crafted with the same seed share their target / class pair, so Tables 1-3 are "
    "paired too; entries that share no craft seed decide no claim. White-box victims (known-init, or a pretrained "
    "model that is the attacker's surrogate) never test a claim"
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


CORRECTION_TEXT = {
    PRIMARY: "two hypotheses per claim: gain = 0 (exact two-sided p; HELD or FAILED by the direction) and gain >= delta "
    "(exact one-sided p; BELOW THE PAPER), adjusted by Holm with Shaffer's restriction over the pre-registered primary "
    "claims (at most one of a claim's two nulls can be true; family-wise error at alpha under any dependence), each "
    "declared look at its spent alpha; the run's other results are shown, not tested",
    SECONDARY: "two hypotheses per claim: gain = 0 (exact two-sided p; HELD or FAILED by the direction) and gain >= "
    "delta (exact one-sided p; BELOW THE PAPER), adjusted by Benjamini-Yekutieli over every hypothesis of the distinct "
    "comparisons tested (false discovery rate at alpha under any dependence: a claim's two tests are negatively "
    "dependent, claims that share poisons positively)",
}


def _unit(c: Claim, value: float) -> str:
    """A gain in the claim's unit: points of the metric, or logits of the margin."""
    return f"{value:+.2f} logits" if c.measure == ADVERSARIAL_MARGIN else f"{100 * value:+.1f} points"


def interval_text(c: Claim, g: GainTest) -> str:
    lo, hi = g.interval
    level = round(100 * (1 - g.alpha))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{level}% interval unbounded at {g.n} poisons"
    scale = 1.0 if c.measure == ADVERSARIAL_MARGIN else 100.0
    unit = "logits" if c.measure == ADVERSARIAL_MARGIN else "points"
    return f"{level}% interval [{scale * lo:+.1f}, {scale * hi:+.1f}] {unit}"


def describe(v: Verdict) -> str:
    """One claim's verdict as one line: the paper's numbers, what was measured, the gain with its
    interval against delta, and the tests."""
    c = v.claim
    paper = f"paper {c.paper[0]:.1f} -> {c.paper[1]:.1f}"
    elsewhere = tested_elsewhere(v)
    if elsewhere is not None:
        paper += f" on {c.paper_dataset}, tested on its {elsewhere} twin"
    if v.measured is None:
        return f"{paper}; no matching black-box {c.protocol} results"
    m = v.measured
    where = f"{m.dataset}/{m.arch}/{m.recipe}/{m.protocol}"
    if v.gain is None or v.verdict == UNTESTED:
        return f"{paper}; {where}: {v.reason}"
    versus = "" if c.baseline in (None, c.attack) else f"{c.compared[0]} vs {c.compared[1]}, "
    g = v.gain
    tested = (
        f"{m.metric} {100 * m.baseline.mean:.1f} +/- {100 * m.baseline.se:.1f} % -> "
        f"{100 * m.sapa.mean:.1f} +/- {100 * m.sapa.se:.1f} %"
    )
    if c.measure == ADVERSARIAL_MARGIN and m.margin is not None:
        mg = m.margin
        tested = f"adversarial margin {mg.baseline.mean:+.2f} -> {mg.sapa.mean:+.2f} logits (clean {mg.clean:+.2f}), {tested}"
    label = CORRECTION_LABELS[CORRECTIONS[v.family]]
    victims = "" if v.victims_per_poison is None else f" x {v.victims_per_poison:g} victims"
    gain = f"gain {_unit(c, g.mean_gain)} ({interval_text(c, g)}) over {g.n} poisons{victims}"
    if g.delta is None:
        why = "decided on a proxy" if c.measure == ADVERSARIAL_MARGIN else "no clean accuracy in the paper or the run"
        expect = f"; no delta ({why}): BELOW is not tested"
    else:
        bound = (
            "" if g.below_bound is None or not math.isfinite(g.below_bound) else f", at most {_unit(c, g.below_bound)}"
        )
        expect = (
            f"; delta {_unit(c, g.delta)} (r = {c.relative_effect:.3f} of the base attack's effect); gain - expected "
            f"per poison {_unit(c, g.mean_gain - g.delta)} ({round(100 * (1 - g.alpha))}% one-sided{bound}), "
            f"p(gain < delta) {g.p_below:.4f}, {label}-adjusted {v.p_below_adjusted:.4f}"
        )
    look = "" if v.level is None or v.level == v.gain.alpha else f"; look at {v.look} poisons, level {v.level:.4g}"
    power = ""
    if v.design_power is not None:
        dp = v.design_power
        power = (
            f"; design power {100 * dp['held_at_delta']:.0f}% at delta (HELD), {100 * dp['below_at_zero']:.0f}% at 0 "
            f"(BELOW), from the pilot's variance"
        )
    need = "" if v.poisons_needed is None else f"; about {v.poisons_needed} poisons would give 80% power at delta"
    tied = "" if v.settings == 1 else f"; the weakest of {v.settings} tied settings"
    return (
        f"{paper}; {versus}{where}: {tested}; {gain}; p(gain = 0) {v.p_two_sided:.4f} two-sided, {label}-adjusted "
        f"{v.p_adjusted:.4f} (floor {v.p_floor_two_sided:.4f}){expect}{look}{power}{need}{tied}"
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


def _finite_interval(interval: tuple[float, float]) -> list[float | None]:
    """An interval as JSON holds it (an unbounded end is null)."""
    return [x if math.isfinite(x) else None for x in interval]


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
                "power": None if v.design_power is None else v.design_power["held_at_delta"],
                "decided_on": "adversarial margin" if v.on_proxy else "metric",
                "interval": None if v.gain is None else _finite_interval(v.gain.interval),
                "gain": None if v.gain is None else v.gain.mean_gain,
                "delta": None if v.gain is None else v.gain.delta,
                "p_below": v.p_below,
                "p_below_adjusted": v.p_below_adjusted,
                "below_bound": None
                if v.gain is None or v.gain.below_bound is None or not math.isfinite(v.gain.below_bound)
                else v.gain.below_bound,
                "design_power": v.design_power,
                "poisons": None if v.gain is None else v.gain.n,
                "victims_per_poison": v.victims_per_poison,
                "poisons_needed": v.poisons_needed,
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
