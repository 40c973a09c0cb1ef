"""The paper's claims (``benchmark/claims.toml``) tested against measured trials.

Each claim states the expected direction of the SAPA-vs-baseline gap in one row of the paper's
Tables 1-5 (Tables 1-3: the SAPA attack against every baseline of its table, ``baseline``;
Tables 4-5: against its own base attack), the victim protocol it is tested in (``scratch`` unless the claim says
otherwise: the paper's ViT is a fine-tuned pretrained model, and targeted attacks are tested
where they work at embedded scale) and the measure it tests (the threat model's ``metric``, or
the continuous ``adversarial_margin`` of targeted attacks). The SAPA entry and its baseline are
compared paired (:func:`leaderboard.render.compare`): per craft seed the mean over its victims,
then an exact one-sided sign-flip permutation test over craft seeds (over victim seeds when
there is one craft seed). It needs no distributional assumption, and with ``n`` pairs no
p-value below ``2**-n`` can come out, so a claim can only hold where the design has the power.

- ``held``: SAPA significantly stronger, ``failed``: significantly weaker: the exact test's
  two-sided p (twice the smaller one-sided p), adjusted by Benjamini-Hochberg over the distinct
  comparisons the run tests (:data:`CORRECTION_TEXT`), below alpha, in the measured direction;
- ``inconclusive``: neither;
- ``untested``: the results hold no matching pair.

A verdict decided on the adversarial margin (a proxy of targeted success) is labelled
``held (margin)`` / ``failed (margin)`` wherever it is shown.

Claims about the paper's main victim (ResNet-18) are matched to the results' main victim
architecture when the results have no ResNet-18 rows (the embedded suites use the convnet);
the output names what was actually measured. White-box (known-init) pairs never test a claim.

Rows of Tables 1-3 name their setting: ``dataset`` and the attack ``options`` (eps, budget) of
the paper-scale suites (``table1``...), matched exactly against entries crafted with the
``paper`` preset; ``embedded`` (when present) is the options of the embedded twin
(``table1-embedded``...) that stands for the row at embedded scale, matched against entries of
the other presets. A row without either matches any setting (the Table 4-5 rows). Where the two
entries share no seeds the comparison is unpaired (a two-sample permutation test), and said so.

Cost claims (``[[cost_claim]]``, section 5.5 / Figure 2 / Table 11): SAPA at K = R = 1 is at
least as strong as the same attack with ensemble and re-initialisation at every K x R measured
(:func:`leaderboard.cost.cost_verdicts`): ``held`` where SAPA is significantly stronger than every
E&R point, ``failed`` where some E&R point is significantly stronger (reported with the cost
ratio at which E&R overtakes SAPA), ``inconclusive`` otherwise, each E&R point against SAPA
paired by craft seed.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from attacks import ATTACKS
from benchmark.entries import board_dir, entries_dir
from core.atomic import write_json
from core.errors import ConfigError
from core.names import NO_DEFENSE, sapa_name
from core.stats import CORRECTION_NAMES, PairedTest, adjust_p
from core.threats import ADVERSARIAL_MARGIN
from leaderboard.cost import CostVerdict, cost_verdicts
from leaderboard.records import CLAIMS_FILE, CLAIMS_FORMAT, CLAIMS_VERSION, entries_digest
from leaderboard.render import render, rival_pairs
from leaderboard.schema import load_entries
from victims.protocols import PROTOCOLS, SCRATCH, get_protocol

PAPER_MAIN_ARCH = "resnet18"
PAPER_PRESET = "paper"
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

    @property
    def compared(self) -> tuple[str, str]:
        """(SAPA attack, baseline attack) the claim compares."""
        return sapa_name(self.attack), self.baseline or self.attack

    def matches(self, pair: dict[str, Any]) -> bool:
        """Whether a measured pair is in this claim's setting (dataset and attack options). A claim
        that names no options is about the attack's preset as it is: swept options (a budget of
        Table 3, a rho of the ablation) are other settings."""
        if self.options is None and self.embedded is None:
            return not pair["options"]
        if pair["preset"] == PAPER_PRESET:
            return (
                self.options is not None
                and (self.dataset is None or pair["dataset"] == self.dataset)
                and _same_options(pair["options"], self.options)
            )
        return self.embedded is not None and _same_options(pair["options"], self.embedded)


def _same_options(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return set(a) == set(b) and all(
        abs(float(a[k]) - float(b[k])) < 1e-9 if isinstance(b[k], (int, float)) else a[k] == b[k] for k in b
    )


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict. ``p_two_sided`` is the exact test's two-sided p (twice the smaller
    one-sided p, at most 1: HELD and FAILED together keep alpha); ``p_adjusted`` that p after the
    run's multiplicity correction (:data:`CORRECTION`), which the verdict is decided on."""

    claim: Claim
    verdict: str
    measured: dict[str, Any] | None
    test: PairedTest | None
    p_two_sided: float | None = None
    p_adjusted: float | None = None

    @property
    def p_floor_two_sided(self) -> float | None:
        """The smallest two-sided p the design allows (twice the one-sided floor, at most 1)."""
        return None if self.test is None else min(1.0, 2 * self.test.p_floor)

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


def _claims_data(path: str | Path | None) -> dict[str, Any]:
    text = Path(path).read_text() if path else (resources.files("benchmark") / "claims.toml").read_text()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"claims file: not valid TOML ({err})") from None


def load_cost_claims(path: str | Path | None = None) -> list[CostClaim]:
    out = []
    for raw in _claims_data(path).get("cost_claim", []):
        try:
            claim = CostClaim(
                raw["id"], raw["attack"], (float(raw["paper"][0]), float(raw["paper"][1])), raw.get("measure", METRIC)
            )
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ConfigError(f"claims file: malformed cost claim {raw.get('id', raw)!r} ({err})") from None
        if claim.attack not in ATTACKS or sapa_name(claim.attack) not in ATTACKS:
            raise ConfigError(f"cost claim {claim.id}: attack {claim.attack!r} has no registered SAPA version")
        if claim.measure not in MEASURES:
            raise ConfigError(f"cost claim {claim.id}: measure must be one of {', '.join(MEASURES)}")
        out.append(claim)
    return out


def test_cost_claims(
    results: str | Path, alpha: float, claims_file: str | Path | None = None
) -> list[tuple[CostClaim, CostVerdict | None]]:
    """Every cost claim's verdict per setting it was measured in (None: untested)."""
    entries = load_entries(entries_dir(results))
    out: list[tuple[CostClaim, CostVerdict | None]] = []
    for c in load_cost_claims(claims_file):
        verdicts = cost_verdicts(entries, c.attack, c.measure, alpha)
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
            )
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ConfigError(f"claims file: malformed claim {raw.get('id', raw)!r} ({err})") from None
        if claim.expect != "sapa_stronger":
            raise ConfigError(f"claim {claim.id}: expect must be 'sapa_stronger'")
        if claim.protocol not in PROTOCOLS or get_protocol(claim.protocol).white_box:
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


def test_claims(
    results: str | Path, alpha: float | None = None, claims_file: str | Path | None = None
) -> tuple[float, list[Verdict]]:
    """Every claim's verdict on the leaderboard entries under ``results``."""
    file_alpha, claims = load_claims(claims_file)
    alpha = file_alpha if alpha is None else alpha
    if not 0 < alpha < 1:
        raise ConfigError(f"invalid alpha={alpha}: must be in (0, 1) (set --alpha)")
    entries = load_entries(entries_dir(results))
    pairs = [p for p in rival_pairs(entries) if p["defense"] == NO_DEFENSE and not p["white_box"]]
    archs = Counter(p["arch"] for p in pairs)
    main_arch = archs.most_common(1)[0][0] if archs else None
    verdicts = []
    for c in claims:
        arch = c.arch
        if arch == PAPER_MAIN_ARCH and not any(p["arch"] == arch for p in pairs):
            arch = main_arch or arch
        sapa, baseline = c.compared
        match = [
            p
            for p in pairs
            if (p["sapa_attack"], p["attack"], p["recipe"], p["arch"], p["protocol_name"])
            == (sapa, baseline, c.recipe, arch, c.protocol)
            and c.matches(p)
        ]
        if c.measure == ADVERSARIAL_MARGIN:
            match = [p for p in match if p["margin"] is not None]
        if not match:
            verdicts.append(Verdict(c, "untested", None, None))
            continue
        # Several matching pairs (numerics, pretrained sources): the one with the most pairs.
        p = max(match, key=lambda p: (p["test"].n, p["protocol"], p["numerics"]))
        test = p["test"] if c.measure == METRIC else p["margin"]["test"]
        if test.n == 0:
            verdicts.append(Verdict(c, "untested", p, None))
            continue
        verdicts.append(Verdict(c, "inconclusive", p, test, min(1.0, 2 * min(test.p_greater, test.p_less))))
    return alpha, _decide(verdicts, alpha)


CORRECTION = "bh"
CORRECTION_TEXT = (
    f"two-sided exact p (HELD and FAILED together keep alpha), adjusted by {CORRECTION_NAMES[CORRECTION]} over the "
    "distinct comparisons tested (a comparison that several claims name is counted once): the false discovery rate is kept "
    "at alpha under the positive dependence of claims that share an arm"
)


def _decide(verdicts: list[Verdict], alpha: float) -> list[Verdict]:
    """Each tested claim decided on its adjusted p: HELD or FAILED by the direction of the
    measured difference where the adjusted p is below ``alpha``, inconclusive otherwise."""
    distinct: dict[tuple[int, str], float] = {}
    for v in verdicts:
        if v.p_two_sided is not None:
            distinct.setdefault((id(v.test), v.claim.measure), v.p_two_sided)
    adjusted = dict(zip(distinct, adjust_p(list(distinct.values()), CORRECTION), strict=True))
    out = []
    for v in verdicts:
        if v.p_two_sided is None or v.test is None:
            out.append(v)
            continue
        q = adjusted[(id(v.test), v.claim.measure)]
        verdict = "inconclusive"
        if q < alpha:
            verdict = "held" if v.test.p_greater <= v.test.p_less else "failed"
        out.append(replace(v, verdict=verdict, p_adjusted=q))
    return out


TEST_DESCRIPTION = (
    "exact one-sided sign-flip permutation test, SAPA and baseline paired by craft seed (per craft seed the mean "
    "over its victims; by victim seed when there is one craft seed); with n pairs p cannot go below 2^-n. Attacks "
    "of one threat model crafted with the same seed share their target / class pair, so Tables 1-3 are paired too; "
    "entries that share no seeds are compared unpaired (two-sample permutation test), and say so"
)
COST_DESCRIPTION = (
    "SAPA at K = R = 1 at least as strong as ensemble-and-re-initialisation at every K x R measured; each E&R point "
    "against SAPA 1x1, same test (p_sapa: SAPA stronger, p_er: E&R stronger); time ratios = E&R / SAPA crafting "
    "seconds per poison, without | with the surrogates' training"
)


def describe(v: Verdict) -> str:
    """One claim's verdict as one line: the paper's numbers, what was measured and the test."""
    c = v.claim
    paper = f"paper {c.paper[0]:.1f} -> {c.paper[1]:.1f}"
    if v.measured is None or v.test is None:
        return f"{paper}; no matching {c.protocol} results"
    versus = "" if c.baseline in (None, c.attack) else f"{c.compared[0]} vs {c.compared[1]}, "
    m, t = v.measured, v.test
    where = f"{m['dataset']}/{m['arch']}/{m['recipe']}/{m['protocol']}"
    tested = (
        f"{m['metric']} {100 * m['baseline'][0]:.1f} +/- {100 * m['baseline'][1]:.1f} -> "
        f"{100 * m['sapa'][0]:.1f} +/- {100 * m['sapa'][1]:.1f}"
    )
    if c.measure == ADVERSARIAL_MARGIN:
        g = m["margin"]
        tested = (
            f"adversarial margin {g['baseline'][0]:+.2f} -> {g['sapa'][0]:+.2f} (clean {g['clean']:+.2f}), {tested}"
        )
    adjusted = "" if v.p_adjusted is None else f", adjusted {v.p_adjusted:.4f}"
    return (
        f"{paper}; {versus}{where}: {tested}; {t.design} diff {t.mean_difference:+.3g} over {t.n} {t.unit}s, "
        f"p {v.p_two_sided:.4f} two-sided{adjusted} (floor {v.p_floor_two_sided:.4f})"
    )


def describe_cost(c: CostClaim, cv: CostVerdict | None) -> str:
    """One cost claim's verdict in one setting as one line (``cv`` None: untested)."""
    paper = f"paper {c.paper[0]:.1f} (SAPA 1x1) vs {c.paper[1]:.1f} (largest E&R)"
    if cv is None:
        return f"{paper}; no E&R results beside SAPA at 1x1"
    _, ds, _, protocol, arch, recipe, *_ = cv.setting
    points = "; ".join(
        f"{r['K']}x{r['R']} diff {r['test'].mean_difference:+.3g} p_sapa {r['test'].p_greater:.4f} "
        f"p_er {r['test'].p_less:.4f} (time x{r['time_ratio']:.2f} | x{r['total_ratio']:.2f})"
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
        f"{paper}; {ds}/{arch}/{recipe}/{protocol}, {c.measure}, {n.n} {n.unit}s ({n.design}, floor "
        f"{n.p_floor:.4f}): {points}.{after}"
    )


def _claim_p(v: Verdict) -> tuple[float | None, float | None]:
    """The two-sided p-value a claim's verdict rests on (before adjustment), and its floor."""
    return v.p_two_sided, v.p_floor_two_sided


def _cost_p(cv: CostVerdict | None) -> tuple[float | None, float | None]:
    """The p-value a cost verdict rests on: the overtaking point's (E&R stronger) for ``failed``,
    else the largest p of SAPA being stronger over the E&R points (``held`` needs every one)."""
    if cv is None:
        return None, None
    if cv.overtaken is not None:
        return cv.overtaken["test"].p_less, cv.overtaken["test"].p_floor
    worst = max(cv.rows, key=lambda r: r["test"].p_greater)["test"]
    return worst.p_greater, worst.p_floor


def claims_record(
    alpha: float,
    verdicts: list[Verdict],
    cost: list[tuple[CostClaim, CostVerdict | None]],
    entries: list[dict[str, Any]],
) -> dict[str, Any]:
    """What ``claims.json`` holds (:mod:`leaderboard.records`): every verdict with its one-line
    statistics, and the digest of the entries they were checked against."""
    rows = []
    for v in verdicts:
        p, floor = _claim_p(v)
        rows.append(
            {
                "id": v.claim.id,
                "kind": "claim",
                "table": f"Table {v.claim.table}",
                "verdict": v.verdict,
                "paper": f"{v.claim.paper[0]:.1f} -> {v.claim.paper[1]:.1f}",
                "summary": describe(v),
                "p_value": p,
                "p_floor": floor,
                "p_adjusted": v.p_adjusted,
                "decided_on": "adversarial margin" if v.on_proxy else "metric",
                "label": v.label,
            }
        )
    for c, cv in cost:
        p, floor = _cost_p(cv)
        rows.append(
            {
                "id": c.id,
                "kind": "cost",
                "table": "Figure 2",
                "verdict": "untested" if cv is None else cv.verdict,
                "paper": f"{c.paper[0]:.1f} (SAPA 1x1) vs {c.paper[1]:.1f} (largest E&R)",
                "summary": describe_cost(c, cv),
                "p_value": p,
                "p_floor": floor,
                "p_adjusted": None,  # the cost claims are tested apart, each at alpha
                "decided_on": c.measure if c.measure != METRIC else "metric",
                "label": "untested" if cv is None else cv.verdict,
            }
        )
    return {
        "format": CLAIMS_FORMAT,
        "version": CLAIMS_VERSION,
        "alpha": alpha,
        "entries_sha256": entries_digest(entries),
        "test": TEST_DESCRIPTION,
        "correction": CORRECTION_TEXT,
        "verdicts": rows,
    }


def check_claims(
    results: str | Path, alpha: float | None = None, claims_file: str | Path | None = None
) -> dict[str, Any]:
    """Test every claim and cost claim on the entries under ``results``, write the verdicts to
    ``results/leaderboard/claims.json`` and re-render the leaderboard (its page shows them)."""
    alpha, verdicts = test_claims(results, alpha, claims_file)
    cost = test_cost_claims(results, alpha, claims_file)
    record = claims_record(alpha, verdicts, cost, load_entries(entries_dir(results)))
    write_json(board_dir(results) / CLAIMS_FILE, record)
    render(entries_dir(results), board_dir(results))
    return record
