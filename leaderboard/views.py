"""The leaderboard's views as typed rows: numbers stay numbers until an edge formats them.

A view is a list of frozen rows (:class:`EntryRow`, :class:`ThreatRow`, :class:`DefenseRow`, the
:class:`~sapabench.leaderboard.pairs.Pair` of the Table-4 view, the cost view's rows) and the
:class:`Column` s that read a cell from a row. A cell is a typed value (:class:`Num`,
:class:`Spread`, :class:`Change`, :class:`PerDevice`), a label (``str``) or ``None`` (``-``);
Markdown and CSV format cells as text (:func:`text`), the page as HTML with a numeric sort key
(:func:`sort_key`) taken from the number itself. Adding a column is adding one :class:`Column`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Generic, TypeVar

from sapabench.core.names import NO_DEFENSE, sapa_name
from sapabench.core.stats import PairedTest
from sapabench.core.threats import ADVERSARIAL_MARGIN, NO_THREAT
from sapabench.leaderboard.defended import Decided, DefenseDecision, decide
from sapabench.leaderboard.pairs import (
    ALPHA,
    Family,
    Pair,
    family,
    filter_values,
    marked,
    numerics_label,
    pair,
    protocol_label,
    variant,
)

R = TypeVar("R")


@dataclass(frozen=True)
class Num:
    """A number shown as ``format(value * scale, spec)`` between ``prefix`` and ``suffix``
    (metrics are fractions shown in percent: ``scale`` 100)."""

    value: float
    spec: str = ".1f"
    scale: float = 1.0
    prefix: str = ""
    suffix: str = ""

    def text(self, html: bool = False) -> str:
        return f"{self.prefix}{format(self.key, self.spec)}{self.suffix}"

    @property
    def key(self) -> float:
        return self.value if self.scale == 1.0 else self.value * self.scale  # counts stay ints


@dataclass(frozen=True)
class Spread:
    """A mean with its standard error over ``trials`` (one trial: the mean alone, whose SE of 0
    would read as a certainty it does not have)."""

    mean: float
    se: float
    trials: int | None = None
    spec: str = ".1f"
    scale: float = 100.0
    suffix: str = ""

    def text(self, html: bool = False) -> str:
        mean = format(self.mean * self.scale, self.spec)
        if self.trials == 1:
            return f"{mean} (1 trial){self.suffix}"
        se = format(self.se * self.scale, self.spec.lstrip("+"))
        return f"{mean} {'±' if html else '+/-'} {se}{self.suffix}"

    @property
    def key(self) -> float:
        return self.mean * self.scale


@dataclass(frozen=True)
class Change:
    """A measure before and after (the adversarial margin: baseline -> SAPA); sorts by the after."""

    before: float
    after: float
    spec: str = "+.2f"

    def text(self, html: bool = False) -> str:
        return f"{format(self.before, self.spec)} {'→' if html else '->'} {format(self.after, self.spec)}"

    @property
    def key(self) -> float:
        return self.after


@dataclass(frozen=True)
class PerDevice:
    """A per-victim timing: the one device's value, or each device's (``device: value; ...``)
    when an entry's trials ran on several (never averaged across devices; sorts only when one)."""

    values: tuple[tuple[str, float], ...]
    spec: str

    def text(self, html: bool = False) -> str:
        if len(self.values) == 1 and not self.values[0][0]:
            return format(self.values[0][1], self.spec)
        return "; ".join(f"{name}: {format(v, self.spec)}" for name, v in self.values)

    @property
    def key(self) -> float | None:
        return self.values[0][1] if len(self.values) == 1 else None


@dataclass(frozen=True)
class Interval:
    """A mean difference with its exact 95 % interval, in points (``[-inf, +inf]``: the design
    cannot bound it), ``°`` where its test cannot reach alpha."""

    mean: float
    lower: float
    upper: float
    decidable: bool = True
    scale: float = 100.0

    def text(self, html: bool = False) -> str:
        def point(x: float) -> str:
            return "inf" if math.isinf(x) else format(x * self.scale, "+.1f")

        mark = "" if self.decidable else "°"
        return f"{point(self.mean)} [{point(self.lower)}, {point(self.upper)}]{mark}"

    @property
    def key(self) -> float:
        return self.mean * self.scale


Cell = Num | Spread | Change | PerDevice | Interval | str | None


def text(cell: Cell, html: bool = False) -> str:
    """A cell as the Markdown and CSV (``html`` False: ASCII) or the page show it; None is ``-``."""
    if cell is None:
        return "-"
    return cell if isinstance(cell, str) else cell.text(html)


def sort_key(cell: Cell) -> float | None:
    """The number a cell sorts by on the page (None: sorted as text)."""
    return None if cell is None or isinstance(cell, str) else cell.key


@dataclass(frozen=True)
class Column(Generic[R]):
    """One column of a view: its header, how to read its cell from a row, its tooltip on the page
    and the CSS mark of its cell there (``sig`` bold where significant, ``sapa``...)."""

    name: str
    cell: Callable[[R], Cell]
    tip: str = ""
    mark: Callable[[R], str] | None = None


def same_name(*names: str, via: str = "") -> tuple[Column[Any], ...]:
    """Columns that show the row's attribute of the same name as it is (labels); ``via``: the
    attribute holding them (``entry``: a view row's :class:`EntryRow`)."""
    return tuple(Column(name, attrgetter(f"{via}.{name}" if via else name)) for name in names)


def table(columns: Sequence[Column[R]], rows: Sequence[R], html: bool = False) -> list[dict[str, str]]:
    """The rows as text, one dict per row keyed by column name."""
    return [{c.name: text(c.cell(r), html) for c in columns} for r in rows]


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP's CSV injection list)."""


def csv_safe(cell: Cell) -> str:
    """A cell as CSV text: a name (an attack, arch or defense name comes from user files and
    plugins) that a spreadsheet would run as a formula gets a leading apostrophe; numbers and the
    ``-`` of an empty cell stay as they are."""
    value = text(cell)
    if isinstance(cell, str) and value != "-" and value.startswith(FORMULA_START):
        return "'" + value
    return value


def markdown_safe(cell: Cell) -> str:
    """A cell as Markdown table text: a ``|`` or a line break in a name would split the row."""
    return text(cell).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown(columns: Sequence[Column[R]], rows: Sequence[R]) -> str:
    out = ["| " + " | ".join(c.name for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(markdown_safe(c.cell(r)) for c in columns) + " |" for r in rows]
    return "\n".join(out) + "\n"


def csv_text(columns: Sequence[Column[R]], rows: Sequence[R]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[c.name for c in columns], lineterminator="\n")
    w.writeheader()
    w.writerows({c.name: csv_safe(c.cell(r)) for c in columns} for r in rows)
    return buf.getvalue()


def num(value: float | None, spec: str = ".1f") -> Num | None:
    """A number as it is (None: no value)."""
    return None if value is None else Num(value, spec)


def pct(value: float | None, spec: str = ".1f") -> Num | None:
    """A fraction shown in percent."""
    return None if value is None else Num(value, spec, 100.0)


def logits(value: float | None) -> Num | None:
    """An adversarial margin (logits), signed."""
    return None if value is None else Num(value, "+.2f")


def p_value(value: float | None, spec: str = ".4f") -> Num | None:
    return None if value is None else Num(value, spec)


def tested_p(test: PairedTest | None) -> Num | None:
    """A test's exact two-sided p as every view shows it: ``°`` where its design cannot reach
    alpha (one poison, or the floor 2^(1-n) of n poisons not below it), so a p of 0.25 over 3
    poisons reads as the best those poisons could do."""
    if test is None:
        return None
    return Num(test.p_two_sided, ".4f", suffix="" if test.decidable(ALPHA) else "°")


def adjusted_p(test: PairedTest | None) -> Num | None:
    """A test's p after the page family's correction (None where its design cannot decide)."""
    return None if test is None or test.p_adjusted is None else Num(test.p_adjusted, ".4f")


def pairs_label(test: PairedTest) -> str:
    """What a test paired: ``8 craft seeds`` (``(unpaired)`` where the arms shared no seeds)."""
    return f"{test.n} {test.unit}s" + (" (unpaired)" if test.design == "unpaired" else "")


def sig(test: PairedTest | None) -> str:
    """The CSS mark of a cell reporting ``test``: bold where it is significant after the page
    family's correction (:data:`sapabench.leaderboard.pairs.SIGNIFICANCE_NOTE`), never on an
    unadjusted p."""
    return "sig" if test is not None and test.significant(ALPHA) else ""


def significant_text(test: PairedTest | None) -> str | None:
    """``yes`` / ``no`` / ``undecidable`` (the design cannot reach alpha), for the CSV."""
    if test is None:
        return None
    return "undecidable" if not test.decidable(ALPHA) else "yes" if test.significant(ALPHA) else "no"


def _spread(m: dict[str, Any] | None, trials: int, spec: str = ".1f", scale: float = 100.0) -> Spread | None:
    return None if m is None else Spread(m["mean"], m["se"], trials, spec, scale)


def _label(name: str) -> str:
    return name.replace("_", " ")


# -- every entry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryRow:
    """One entry's numbers (fractions for metrics and accuracy, seconds for timings)."""

    entry_id: str
    attack: str
    sapa: bool
    defense: str
    dataset: str
    arch: str
    recipe: str
    protocol: str
    numerics: str
    threat: str
    eps: float
    budget: float
    metric: str
    higher_is_stronger: bool
    value: Spread
    margin: Spread | None
    clean_margin: Spread | None
    clean_acc: Spread
    craft_s: float
    surrogates_s: float
    total_s: float
    train_s: PerDevice
    eval_s: PerDevice
    images_per_s: PerDevice
    peak_mem_mb: PerDevice

    @property
    def where(self) -> dict[str, str]:
        return filter_values(self)

    @property
    def direction(self) -> str:
        """The metric's direction as the tables say it."""
        if self.higher_is_stronger:
            return "higher = stronger"
        return "lower = stronger" if self.threat != NO_THREAT else ""


def _per_device(t: dict[str, Any], key: str, spec: str) -> PerDevice:
    if t[key] is not None:
        return PerDevice((("", t[key]),), spec)
    return PerDevice(tuple((name, d[key]) for name, d in sorted(t["devices"].items())), spec)


def entry_row(e: dict[str, Any]) -> EntryRow:
    s, m, t = e["setting"], e["metric"], e["timings"]
    margin = e["measures"].get(ADVERSARIAL_MARGIN)
    n = m["trials"]
    return EntryRow(
        entry_id=e["entry_id"],
        attack=e["attack"],
        sapa=e["sapa"],
        defense=e["defense"],
        dataset=s["dataset"],
        arch=s["arch"],
        recipe=s["recipe"],
        protocol=protocol_label(s),
        numerics=numerics_label(s),
        threat=s["threat"],
        eps=s["eps"],
        budget=s["budget"],
        metric=m["name"],
        higher_is_stronger=m["higher_is_stronger"],
        value=Spread(m["mean"], m["se"], n),
        margin=None if margin is None else Spread(margin["mean"], margin["se"], n, "+.2f", 1.0),
        clean_margin=None if margin is None else Spread(margin["clean_mean"], margin["clean_se"], n, "+.2f", 1.0),
        clean_acc=Spread(e["clean_accuracy"]["mean"], e["clean_accuracy"]["se"], n),
        craft_s=t["craft_s"],
        surrogates_s=t["surrogates_s"],
        total_s=t["total_s"],
        train_s=_per_device(t, "train_s_mean", ".1f"),
        eval_s=_per_device(t, "eval_s_mean", ".2f"),
        images_per_s=_per_device(t, "images_per_s", ".0f"),
        peak_mem_mb=_per_device(t, "peak_memory_mb", ".0f"),
    )


def eps_text(eps: float) -> str:
    return f"{eps * 255:.0f}/255"


ENTRY_COLUMNS: tuple[Column[EntryRow], ...] = (
    *same_name("attack", "defense", "dataset", "arch", "recipe", "protocol", "numerics", "threat"),
    Column("eps", lambda r: eps_text(r.eps)),
    Column("budget", lambda r: Num(r.budget, "g")),
    Column("metric", lambda r: r.metric + (f" ({r.direction})" if r.direction else "")),
    Column("mean", lambda r: pct(r.value.mean)),
    Column("se", lambda r: pct(r.value.se)),
    Column("trials", lambda r: Num(r.value.trials or 0, "d")),
    Column("margin", lambda r: r.margin),
    Column("clean_margin", lambda r: r.clean_margin),
    Column("clean_acc", lambda r: pct(r.clean_acc.mean)),
    Column("clean_acc_se", lambda r: pct(r.clean_acc.se)),
    Column("craft_s", lambda r: Num(r.craft_s)),
    Column("train_s_per_victim", lambda r: r.train_s),
    Column("eval_s_per_victim", lambda r: r.eval_s),
    Column("total_s", lambda r: Num(r.total_s)),
    Column("images_per_s", lambda r: r.images_per_s),
    Column("peak_mem_mb", lambda r: r.peak_mem_mb),
)
"""The columns of ``leaderboard.md|.csv``."""


# -- the Table-4 view: each SAPA attack beside its own base ----------------------------------


PAIR_COLUMNS: tuple[Column[Pair], ...] = (
    *same_name("dataset", "arch", "recipe", "protocol", "numerics", "defense", "attack", "metric"),
    Column("baseline", lambda p: Spread(p.baseline.mean, p.baseline.se, p.baseline.trials)),
    Column("sapa", lambda p: Spread(p.sapa.mean, p.sapa.se, p.sapa.trials)),
    Column("gap", lambda p: Num(p.gap, "+.1f", 100.0)),
    Column("p_value", lambda p: p_value(p.p_value)),
    Column("p_adjusted", lambda p: adjusted_p(p.test)),
    Column("significant", lambda p: significant_text(p.test)),
    Column("pairs", lambda p: pairs_label(p.test)),
    Column("p_floor", lambda p: Num(p.test.p_floor_two_sided, ".4f")),
    Column(
        "margin_baseline",
        lambda p: None if p.margin is None else Spread(p.margin.baseline.mean, p.margin.baseline.se, None, "+.2f", 1.0),
    ),
    Column(
        "margin_sapa",
        lambda p: None if p.margin is None else Spread(p.margin.sapa.mean, p.margin.sapa.se, None, "+.2f", 1.0),
    ),
    Column("margin_gap", lambda p: None if p.margin_test is None else logits(p.margin_test.mean_difference)),
    Column("margin_p", lambda p: None if p.margin_test is None else p_value(p.margin_test.p_two_sided)),
    Column("margin_p_adjusted", lambda p: adjusted_p(p.margin_test)),
    Column("margin_significant", lambda p: significant_text(p.margin_test)),
)
"""The columns of ``table4.md|.csv``."""


# -- per threat model: every attack ranked, each baseline beside its SAPA twin ---------------


@dataclass(frozen=True)
class ThreatRow:
    """One attack in one threat-model setting: its rank (1 = strongest), its metric, the clean
    reference (clean accuracy for untargeted attacks, the clean victims' adversarial margin for
    targeted ones) and, for a baseline, the comparison with its SAPA twin (``versus``)."""

    entry: EntryRow
    rank: int
    preset: str
    clean_accuracy: float | None
    versus: Pair | None

    @property
    def clean_reference(self) -> Num | None:
        if self.entry.clean_margin is not None:
            return Num(self.entry.clean_margin.mean, "+.2f", prefix="margin ")
        return pct(self.clean_accuracy)

    @property
    def setting(self) -> str:
        return f"eps {eps_text(self.entry.eps)}, budget {self.entry.budget:g}, {self.preset}"

    @property
    def versus_test(self) -> PairedTest | None:
        """The paired test of this baseline against its SAPA attack (None for a SAPA row)."""
        return None if self.versus is None else self.versus.test

    @property
    def margin_test(self) -> PairedTest | None:
        return None if self.versus is None else self.versus.margin_test


THREAT_COLUMNS: tuple[Column[ThreatRow], ...] = (
    *same_name("dataset", "threat", "protocol", "arch", "recipe", via="entry"),
    Column("setting", lambda r: r.setting),
    Column("rank", lambda r: Num(r.rank, "d")),
    Column("attack", lambda r: r.entry.attack),
    Column("metric", lambda r: r.entry.metric),
    Column("value", lambda r: r.entry.value),
    Column("margin", lambda r: r.entry.margin),
    Column("clean_reference", lambda r: r.clean_reference),
    Column("vs_sapa", lambda r: None if r.versus is None else r.versus.sapa_attack),
    Column("gap", lambda r: None if r.versus is None else Num(r.versus.gap, "+.1f", 100.0)),
    Column("p_value", lambda r: None if r.versus is None else p_value(r.versus.p_value)),
    Column("p_adjusted", lambda r: adjusted_p(r.versus_test)),
    Column("significant", lambda r: significant_text(r.versus_test)),
    Column("pairs", lambda r: None if r.versus is None else pairs_label(r.versus.test)),
    Column("p_floor", lambda r: None if r.versus is None else Num(r.versus.test.p_floor_two_sided, ".4f")),
    Column("margin_gap", lambda r: None if r.margin_test is None else logits(r.margin_test.mean_difference)),
    Column("margin_p", lambda r: None if r.margin_test is None else p_value(r.margin_test.p_two_sided)),
    Column("margin_p_adjusted", lambda r: adjusted_p(r.margin_test)),
)
"""The columns of ``threat-models.md|.csv``."""


def _strength(e: dict[str, Any]) -> float:
    m = e["metric"]
    return m["mean"] if m["higher_is_stronger"] else -m["mean"]


def _margin_mean(e: dict[str, Any]) -> float:
    """The adversarial margin of a targeted entry (ties of success broken by it), else 0."""
    m = e["measures"].get(ADVERSARIAL_MARGIN)
    return 0.0 if m is None else m["mean"]


def threat_view(entries: list[dict[str, Any]], fam: Family | None = None) -> list[ThreatRow]:
    """Per threat model and victim protocol (and dataset, arch, recipe, attack settings): every
    attack ranked strongest first (targeted ties of success broken by the adversarial margin),
    beside the clean reference, each baseline compared with its own SAPA twin, or where it has
    none in the group with the group's strongest SAPA attack (gap > 0: SAPA stronger; one-sided p)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    clean: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        if e["defense"] != NO_DEFENSE:
            continue
        s = e["setting"]
        where = (s["suite"], s["dataset"], s["arch"], s["recipe"], protocol_label(s), numerics_label(s))
        if s["threat"] == NO_THREAT:
            clean[where] = e
        else:
            options = json.dumps([s["preset"], s["options"], s["victim"]], sort_keys=True)
            groups[(s["threat"], *where, options)].append(e)
    fam = family(entries) if fam is None else fam
    rows = []
    for (threat, *where, _), group in sorted(groups.items()):
        group.sort(key=lambda e: (-_strength(e), -_margin_mean(e), e["attack"]))
        strongest_sapa = next((e for e in group if e["sapa"]), None)
        by_attack = {e["attack"]: e for e in group}
        ref = clean.get(tuple(where))
        for rank, e in enumerate(group, 1):
            # a baseline against its own SAPA twin; one without a twin here (Poison Frogs, Separable...)
            # against the strongest SAPA attack of the group, as the paper's Tables 1-3 compare them
            sapa = by_attack.get(sapa_name(e["attack"]), strongest_sapa)
            rows.append(
                ThreatRow(
                    entry_row(e),
                    rank,
                    e["setting"]["preset"],
                    ref["metric"]["mean"] if threat == "untargeted" and ref is not None else None,
                    marked(pair(sapa, e), fam) if sapa is not None and not e["sapa"] else None,
                )
            )
    return rows


# -- defenses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DefenseRow:
    """One attack against one defense: the defended victims beside the same attack undefended
    (``without``), the clean accuracy the defense costs, what a data-level filter removed and
    what it took, and the decided tests (:mod:`sapabench.leaderboard.defended`)."""

    entry: EntryRow
    rank: int
    without: Spread | None
    clean_acc_cost: float | None
    removed: float | None
    precision: float | None
    recall: float | None
    decision: DefenseDecision | None = None
    defense_s: float | None = None
    defender_s: float | None = None
    epsilon: float | None = None
    class_removed: float | None = None  # removed from the poisons' classes (where they sit in some only)
    class_precision: float | None = None  # the share of those that were poisons
    pruned: float | None = None  # fine-pruning's pruned units
    stopped_epoch: float | None = None  # early stopping's kept epoch
    peak_test_accuracy: float | None = None  # the peak test accuracy over the epochs (early stopping)


def decided(d: Decided | None) -> Interval | None:
    """A decided test as an interval cell."""
    return None if d is None else Interval(d.mean, d.lower, d.upper, d.test.decidable(ALPHA))


def defense_decision(r: DefenseRow, name: str) -> Decided | None:
    return None if r.decision is None else getattr(r.decision, name)


def oracle_share(r: DefenseRow) -> Num | None:
    """The defense's reduction over the oracle filter's (a point estimate)."""
    return None if r.decision is None or r.decision.oracle_share is None else Num(r.decision.oracle_share, ".2f")


def defense_test(r: DefenseRow, name: str) -> PairedTest | None:
    d = defense_decision(r, name)
    return None if d is None else d.test


DEFENSE_TESTS = ("reduction", "beyond_random", "remaining", "clean_cost")
"""The defense view's decided tests (:class:`sapabench.leaderboard.defended.DefenseDecision`)."""


DEFENSE_COLUMNS: tuple[Column[DefenseRow], ...] = (
    *same_name("defense", "threat", via="entry"),
    Column("rank", lambda r: Num(r.rank, "d")),
    *same_name("attack", "arch", "recipe", "metric", via="entry"),
    Column("with_defense", lambda r: r.entry.value),
    Column("without_defense", lambda r: r.without),
    Column(
        "poisons", lambda r: None if defense_test(r, "reduction") is None else pairs_label(defense_test(r, "reduction"))
    ),  # type: ignore[arg-type]
    *(
        column
        for name in DEFENSE_TESTS
        for column in (
            Column(name, lambda r, n=name: decided(defense_decision(r, n))),
            Column(f"{name}_p_adjusted", lambda r, n=name: adjusted_p(defense_test(r, n))),
            Column(f"{name}_significant", lambda r, n=name: significant_text(defense_test(r, n))),
        )
    ),
    Column("oracle_share", oracle_share),
    Column("clean_acc", lambda r: pct(r.entry.clean_acc.mean)),
    Column("clean_acc_cost", lambda r: pct(r.clean_acc_cost, "+.1f")),
    Column("removed", lambda r: num(r.removed, ".0f")),
    Column("precision", lambda r: pct(r.precision)),
    Column("recall", lambda r: pct(r.recall)),
    Column("defense_s", lambda r: num(r.defense_s, ".1f")),
    Column("defender_s", lambda r: num(r.defender_s, ".1f")),
    Column("epsilon", lambda r: num(r.epsilon, ".3g")),
    Column("class_removed", lambda r: num(r.class_removed, ".0f")),
    Column("class_precision", lambda r: pct(r.class_precision)),
    Column("pruned", lambda r: num(r.pruned, ".1f")),
    Column("stopped_epoch", lambda r: num(r.stopped_epoch, ".1f")),
    Column("peak_test_accuracy", lambda r: pct(r.peak_test_accuracy)),
)
"""The columns of ``defenses.md|.csv``: every decided test as its mean difference in points with
the exact 95 % interval, its adjusted p and whether it is significant (one convention with the
page); ``oracle_share`` the defense's reduction over the oracle filter's (point estimate)."""


def defense_view(entries: list[dict[str, Any]]) -> list[DefenseRow]:
    """For each defense, every attack (baseline and SAPA) in each setting, strongest first,
    beside the same attack without the defense and the clean-accuracy cost."""
    plain = {}
    for e in entries:
        if e["defense"] == NO_DEFENSE:
            s = e["setting"]
            plain[(s["suite"], s["dataset"], s["arch"], s["recipe"], s["surrogate"], e["attack"], variant(e))] = e
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        if e["defense"] != NO_DEFENSE:
            groups[(e["defense"], e["setting"]["threat"], e["setting"]["dataset"])].append(e)
    rows = []
    decisions = decide(entries)
    for _, group in sorted(groups.items()):
        group.sort(key=lambda e: (-_strength(e), e["attack"]))
        for rank, e in enumerate(group, 1):
            s, stats = e["setting"], e["defense_stats"]
            base = plain.get(
                (s["suite"], s["dataset"], s["arch"], s["recipe"], s["surrogate"], e["attack"], variant(e))
            )
            rows.append(
                DefenseRow(
                    entry_row(e),
                    rank,
                    None if base is None else _spread(base["metric"], base["metric"]["trials"]),
                    None if base is None else base["clean_accuracy"]["mean"] - e["clean_accuracy"]["mean"],
                    stats.get("removed_mean"),
                    stats.get("precision_mean"),
                    stats.get("recall_mean"),
                    decisions.get(e["entry_id"]),
                    stats.get("defense_s_mean"),
                    stats.get("defender_s_mean"),
                    stats.get("epsilon_mean"),
                    stats.get("class_removed_mean"),
                    stats.get("class_precision_mean"),
                    stats.get("pruned_mean"),
                    stats.get("stopped_epoch_mean"),
                    stats.get("peak_test_accuracy_mean"),
                )
            )
    return rows


def metric_label(name: str, higher_is_stronger: bool) -> str:
    """A metric as captions say it: ``accuracy %, lower = stronger``."""
    return f"{_label(name)} %, {'higher' if higher_is_stronger else 'lower'} = stronger"
