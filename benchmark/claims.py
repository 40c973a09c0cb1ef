"""The paper's claims (``benchmark/claims.toml``) tested against measured trials.

Each claim states the expected direction of the SAPA-vs-baseline gap in one row of the paper's
Tables 4 and 5. A claim is tested with a one-sided Welch t-test on the trial values of the
matching leaderboard entries:

- ``held``: SAPA significantly stronger (p < alpha);
- ``failed``: SAPA significantly weaker (the opposite one-sided test has p < alpha);
- ``inconclusive``: neither;
- ``untested``: the results hold no matching pair.

Claims about the paper's main victim (ResNet-18) are matched to the results' main victim
architecture when the results have no ResNet-18 rows (the embedded suites use the convnet);
the output names what was actually measured.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from benchmark.entries import entries_dir
from core.errors import ConfigError
from core.names import NO_DEFENSE
from core.stats import p_greater
from leaderboard.render import sapa_pairs
from leaderboard.schema import load_entries

PAPER_MAIN_ARCH = "resnet18"


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


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str
    measured: dict[str, Any] | None
    p_sapa_stronger: float | None
    p_sapa_weaker: float | None


def load_claims(path: str | Path | None = None) -> tuple[float, list[Claim]]:
    text = Path(path).read_text() if path else (resources.files("benchmark") / "claims.toml").read_text()
    data = tomllib.loads(text)
    alpha = float(data.get("alpha", 0.05))
    claims = []
    for raw in data.get("claim", []):
        try:
            paper = (float(raw["paper"][0]), float(raw["paper"][1]))
            claims.append(
                Claim(
                    raw["id"],
                    str(raw["table"]),
                    raw["attack"],
                    raw["recipe"],
                    raw["arch"],
                    paper,
                    raw["metric"],
                    raw["expect"],
                )
            )
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ConfigError(f"claims file: malformed claim {raw.get('id', raw)!r} ({err})") from None
        if claims[-1].expect != "sapa_stronger":
            raise ConfigError(f"claim {claims[-1].id}: expect must be 'sapa_stronger'")
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
    pairs = [p for p in sapa_pairs(entries) if p["defense"] == NO_DEFENSE]
    archs = Counter(p["arch"] for p in pairs)
    main_arch = archs.most_common(1)[0][0] if archs else None
    verdicts = []
    for c in claims:
        arch = c.arch
        if arch == PAPER_MAIN_ARCH and not any(p["arch"] == arch for p in pairs):
            arch = main_arch or arch
        match = [p for p in pairs if p["attack"] == c.attack and p["recipe"] == c.recipe and p["arch"] == arch]
        if not match:
            verdicts.append(Verdict(c, "untested", None, None, None))
            continue
        p = match[0]
        sv, bv = p["sapa_values"], p["baseline_values"]
        if p["higher_is_stronger"]:
            stronger, weaker = p_greater(sv, bv), p_greater(bv, sv)
        else:
            stronger, weaker = p_greater(bv, sv), p_greater(sv, bv)
        verdict = "held" if stronger < alpha else ("failed" if weaker < alpha else "inconclusive")
        verdicts.append(Verdict(c, verdict, p, stronger, weaker))
    return alpha, verdicts
