"""``sapabench verify``: re-run a sample of a leaderboard entry's trials and accept or refuse it.

An entry records, for every trial value, the craft seed and trial seed it came from
(``provenance.cell_seeds``), the attack's preset and options, the victim protocol, and the sha256
of the poison crafted with each craft seed. Verification, per entry:

1. validates the entry (types, ranges, mean and SE recomputed from its values, content hash);
2. draws the trials to re-run (seeded by ``--seed`` and the entry id): ``--cells K`` of them, or
   by default every trial of an entry with at most 8 (the standard and smoke submissions), and
   enough of a larger one that a single forged value is among them with probability 0.9 (the
   report prints that probability);
3. re-crafts each needed poison from its recorded seed and compares the sha256 of its tensors
   with the entry's (a different hash refuses the entry: the poison is not the one the numbers
   came from);
4. re-trains and measures each drawn trial exactly as ``sapabench run`` did (same code path),
   and compares the value with the recorded one.

Every trial is re-run in the entry's own numerics (``setting.precision`` and
``setting.memory_format``), whatever the default on this machine.

Modes. On the platform the entry was measured on (same device string, including the CPU
thread count, the same instruction set of the kernels, ``provenance.isa``, and the same torch
version) crafting and training are deterministic: the poison must be re-crafted to the
recorded sha256 and every re-run value must equal the recorded one to 1e-9 (``exact``).
(Entries written before the instruction set was recorded compare the device string alone.)

Elsewhere floats differ, so no hash or value can be required (``statistical``). The poison is
taken from the run/submission folder (``poisons/<key>``, sealed, its tensors' sha256 checked
against the entry); without one it is re-crafted here and that trial then measures this
machine's re-craft (reported: a check of the attack's efficacy, not of the artifact). The
re-run values are compared with the recorded values of the same trials by a test suited to the
metric (:func:`sapabench.core.stats.agreement`): Fisher's exact test for 0/1 success, a Student t
interval on the mean difference for rates, at ``alpha`` = 0.01.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sapabench.attacks import ATTACKS
from sapabench.benchmark.entries import entries_dir, entry_cells
from sapabench.benchmark.submit import MANIFEST_FILE, SUITE_FILE
from sapabench.benchmark.suite import Cell, PoisonSpec
from sapabench.benchmark.trial import DONE, CraftRecord, CraftTask, PoisonRef, Trial, craft, run_trial
from sapabench.core.atomic import write_json
from sapabench.core.datasets import DataSource
from sapabench.core.errors import ConfigError
from sapabench.core.files import parse_toml, read_bytes, read_json
from sapabench.core.names import CLEAN, MAX_VERIFY_ENTRIES, NO_DEFENSE
from sapabench.core.poison import META_FILE, PoisonSet, recorded_sha256
from sapabench.core.provenance import git_commit
from sapabench.core.runtime import UNKNOWN_ISA, device_name, isa, resolve_device, threads_of
from sapabench.core.stats import agreement
from sapabench.defenses import DEFENSES
from sapabench.leaderboard.schema import MAX_ENTRY_BYTES, load_entry

EXACT_TOLERANCE = 1e-9
ALL_TRIALS_UP_TO = 8  # entries with at most this many trials are re-run whole by default
CATCH_PROBABILITY = 0.9  # above it, enough trials that one forged value is caught this often
ALPHA = 0.01  # statistical mode: an entry is refused when its re-run trials disagree at this level
REPORT_FILE = "verification.json"
DETECTABLE_LIMIT = 0.10
"""Statistical mode refuses an entry when its test could miss a forged mean this far from the
truth (ten points of a rate in [0, 1]): such an acceptance would say nothing."""


@dataclass(frozen=True)
class TrialCheck:
    """One re-run trial of an entry."""

    craft_seed: int | None
    trial_seed: int
    recorded: float
    measured: float | None
    tolerance: float | None  # exact mode; None: the entry's re-run trials are compared together
    ok: bool
    problem: str = ""


@dataclass(frozen=True)
class Verdict:
    """The outcome for one entry file."""

    path: str
    entry_id: str
    label: str
    accepted: bool
    mode: str
    checks: tuple[TrialCheck, ...] = ()
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifyReport:
    target: str
    verdicts: tuple[Verdict, ...]
    problems: tuple[str, ...] = ()  # about the folder as a whole (the submission manifest)

    @property
    def accepted(self) -> bool:
        return not self.problems and all(v.accepted for v in self.verdicts)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "accepted": self.accepted,
            "problems": list(self.problems),
            "entries": [asdict(v) for v in self.verdicts],
        }


def entry_files(target: str | Path) -> tuple[Path | None, list[Path]]:
    """The run/submission folder (None for a bare entry file or entries folder) and the entry
    files under ``target`` (an entry file, an entries folder, or a run/submission folder)."""
    target = Path(target)
    if not target.is_dir() and (target.exists() or target.is_symlink()):
        return None, [target]  # a FIFO or a link is refused by the entry's reader, with its reason
    if not target.is_dir():
        raise ConfigError(
            f"{target} does not exist; pass an entry .json file or a folder written by sapabench run/submit"
        )
    for folder in (entries_dir(target), target / "entries", target):
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        files = [f for f in files if f.name not in (REPORT_FILE, MANIFEST_FILE)]
        if files:
            return (target if folder == entries_dir(target) else None), files
    raise ConfigError(f"{target} holds no leaderboard entries (*.json, or leaderboard/entries/*.json)")


def _unregistered(entry: dict[str, Any]) -> str:
    """Why the entry cannot be re-run here ('' if it can): its attack or defense is unknown."""
    checks = (("attack", entry["attack"], ATTACKS, CLEAN), ("defense", entry["defense"], DEFENSES, NO_DEFENSE))
    for kind, name, registry, skip in checks:
        if name != skip and name not in registry:
            return (
                f"{kind} {name!r} is not registered here, so its trials cannot be re-run: install the package that "
                f"provides it (sapabench list {kind}s shows what is registered) and verify again"
            )
    return ""


def trials_to_rerun(n: int, cells: int | None) -> int:
    """How many of an entry's ``n`` trials to re-run: ``cells`` if given (at most ``n``); by
    default all of them up to :data:`ALL_TRIALS_UP_TO`, else enough that a single forged value is
    among them with probability :data:`CATCH_PROBABILITY` (k of n drawn: probability k / n)."""
    if cells is not None:
        return min(cells, n)
    return n if n <= ALL_TRIALS_UP_TO else math.ceil(CATCH_PROBABILITY * n)


@dataclass(frozen=True)
class Estimate:
    """What verifying a set of entries re-runs, and how long that took when the entries were
    measured (their recorded per-trial and per-poison seconds, on their own devices)."""

    entries: int
    trials: int
    poisons: int
    seconds: float
    unreadable: int  # entries refused at load: they cost nothing

    def line(self) -> str:
        minutes = self.seconds / 60
        took = f"about {minutes:.0f} min" if minutes >= 1 else f"about {self.seconds:.0f} s"
        skipped = f"; {self.unreadable} unreadable (refused without work)" if self.unreadable else ""
        return (
            f"verifying {self.entries} entries: re-runs {self.trials} trials and at most {self.poisons} poisons, "
            f"{took} at the speed the entries record{skipped}"
        )


def estimate(files: Sequence[Path], cells: int | None) -> Estimate:
    """The work ``verify`` will do on ``files`` (each poison counted once, as the verifier shares
    re-crafted poisons between entries), timed by what the entries record."""
    trials, seconds, unreadable = 0, 0.0, 0
    poisons: dict[str, float] = {}
    for path in files:
        try:
            entry = load_entry(path)
        except ConfigError:
            unreadable += 1
            continue
        timings, prov = entry["timings"], entry["provenance"]
        n = len(prov["cell_seeds"])
        k = trials_to_rerun(n, cells)
        trials += k
        seconds += k * ((timings["train_s_mean"] or 0.0) + (timings["eval_s_mean"] or 0.0))
        hashes = prov["poison_sha256"]
        for sha in hashes:  # the entry's crafting (surrogates included) split evenly over its poisons
            poisons[sha] = (timings["craft_s"] + timings["surrogates_s"]) / max(len(hashes), 1)
    return Estimate(len(files), trials, len(poisons), seconds + sum(poisons.values()), unreadable)


def _label(entry: dict[str, Any]) -> str:
    s = entry["setting"]
    return f"{entry['attack']} / {s['arch']} / {s['recipe']} / defense {entry['defense']}"


@dataclass
class Verifier:
    """Re-runs entries' trials; re-crafted poisons are shared between entries of one call."""

    source_for: Callable[[str], DataSource]
    device: str
    cells: int | None = None
    seed: int = 0
    log: Callable[[str], None] = lambda message: None
    poison_root: Path | None = None  # a run/submission folder's poisons/, used on other platforms
    deterministic: bool = True  # re-run under core.runtime.deterministic_algorithms
    _poisons: dict[str, CraftRecord] = field(default_factory=dict)
    _shipped: dict[str, PoisonRef | None] = field(default_factory=dict)
    _tmp: Any = None

    def _poison(self, spec: PoisonSpec, source: DataSource) -> CraftRecord:
        key = f"{spec.key}-t{torch.get_num_threads()}"  # crafting, too, depends on the thread count
        if key not in self._poisons:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="sapabench-verify-")
            self.log(f"  re-crafting {spec.attack} (craft seed {spec.craft_seed})")
            task = CraftTask(spec, str(Path(self._tmp.name) / key), source, self.device, self.deterministic)
            self._poisons[key] = craft(task)
        return self._poisons[key]

    def verify_file(self, path: Path) -> Verdict:
        try:
            entry = load_entry(path)
        except ConfigError as err:
            return Verdict(str(path), "?", path.name, False, "-", problems=(str(err),))
        device = resolve_device(self.device)
        with threads_of(entry["provenance"]["device"], device):
            return self._verify_entry(path, entry, device_name(device), isa(device))

    def _verify_entry(self, path: Path, entry: dict[str, Any], here: str, here_isa: str) -> Verdict:
        prov = entry["provenance"]
        same_isa = prov["isa"] in (here_isa, UNKNOWN_ISA)
        # CPU kernels are deterministic for a thread count; CUDA results only in deterministic mode
        reproducible = not prov["device"].startswith("cuda") or (prov["deterministic"] and self.deterministic)
        exact = prov["device"] == here and same_isa and prov["torch"] == torch.__version__ and reproducible
        mode = "exact" if exact else "statistical"
        notes = []
        if not exact and not reproducible:
            notes.append(
                f"measured on {prov['device']} without deterministic algorithms (sapabench run --deterministic): "
                f"two runs on one GPU may differ, so the re-run values are compared statistically (alpha {ALPHA})"
            )
        elif not exact:
            notes.append(
                f"measured on {prov['device']} ({prov['isa']}) with torch {prov['torch']}, re-run on {here} "
                f"({here_isa}) with torch {torch.__version__}: floats differ across platforms, so the re-run values "
                f"are compared statistically (alpha {ALPHA})"
            )
        if prov["git_commit"] != git_commit():
            notes.append(f"entry written by sapabench at commit {prov['git_commit']}, re-run at {git_commit()}")
        missing = _unregistered(entry)
        if missing:
            return Verdict(
                str(path), entry["entry_id"], _label(entry), False, mode, problems=(missing,), notes=tuple(notes)
            )
        cells = entry_cells(entry)
        k = trials_to_rerun(len(cells), self.cells)
        rng = random.Random(f"{self.seed}:{entry['entry_id']}")
        picked = sorted(rng.sample(range(len(cells)), k))
        notes.append(
            f"re-ran {k} of {len(cells)} trials: a single forged trial value is caught with probability "
            f"{k / len(cells):.2f}"
        )
        source = self.source_for(entry["setting"]["dataset"])
        tol = EXACT_TOLERANCE if exact else None
        checks = []
        for i in picked:
            cell, recorded = cells[i], float(entry["metric"]["values"][i])
            measured, problem, note = self._rerun(cell, entry, source, exact)
            if note:
                notes.append(note)
            if tol is not None and measured is not None and abs(measured - recorded) > tol:
                problem = (
                    f"trial (craft seed {cell.craft_seed}, trial seed {cell.trial_seed}) gave {measured:.6f}, "
                    f"the entry records {recorded:.6f} (tolerance {tol:.2g})"
                )
            checks.append(TrialCheck(cell.craft_seed, cell.trial_seed, recorded, measured, tol, not problem, problem))
        problems = [c.problem for c in checks if not c.ok]
        if not exact and not problems:
            n, se = entry["metric"]["trials"], entry["metric"]["se"]
            test = agreement([c.recorded for c in checks], [c.measured for c in checks], se * math.sqrt(n), n, ALPHA)  # type: ignore[misc]
            if test.detectable >= DETECTABLE_LIMIT:
                problems.append(
                    f"cannot verify across platforms: {len(checks)} trials, detectable difference "
                    f"{test.detectable:.3g} > {DETECTABLE_LIMIT:g} of the metric's range [0, 1] ({test.test}), so a "
                    "forged mean would pass: verify on the entry's own platform (exact mode) or submit more trials"
                )
            else:
                (notes if test.agree else problems).append(test.detail)
        return Verdict(
            str(path),
            entry["entry_id"],
            _label(entry),
            not problems,
            mode,
            tuple(checks),
            tuple(problems),
            tuple(notes),
        )

    def _rerun(
        self, cell: Cell, entry: dict[str, Any], source: DataSource, exact: bool
    ) -> tuple[float | None, str, str]:
        """The trial's metric re-measured (or None), why it could not be, and a note."""
        prov = entry["provenance"]
        poison, note = None, ""
        if cell.poison is not None:
            expected = prov["poison_sha256"][prov["craft_seeds"].index(cell.craft_seed)]
            try:  # every shipped file must be what the entry records
                shipped = self._shipped_poison(cell.poison)
            except ConfigError as err:
                return None, str(err), ""
            if shipped is not None and shipped.sha256 != expected:
                return None, f"{shipped.folder} is not the poison the entry records ({expected[:16]}...)", ""
            if shipped is not None and not exact:
                poison, note = shipped, f"poison of craft seed {cell.craft_seed} taken from {shipped.folder}"
            else:
                crafted = self._poison(cell.poison, source)
                if crafted.poison is None:
                    return None, f"re-crafting the poison (craft seed {cell.craft_seed}) failed: {crafted.error}", ""
                if crafted.sha256 != expected:
                    if exact:
                        return (
                            None,
                            (
                                f"poison of craft seed {cell.craft_seed} re-crafted with sha256 "
                                f"{crafted.poison.sha256[:16]}... but the entry records {expected[:16]}...: the numbers "
                                "did not come from this attack and seed"
                            ),
                            "",
                        )
                    note = (
                        f"poison of craft seed {cell.craft_seed} re-crafted here (no copy in the folder) with another "
                        "sha256, as expected on another platform: its trials check the attack's efficacy here"
                    )
                poison = crafted.poison
        self.log(f"  re-training trial seed {cell.trial_seed} ({_label(entry)})")
        record = run_trial(Trial.of(cell, poison, source, self.device, self.deterministic))
        if record.status != DONE:
            return None, f"re-running the trial failed: {record.error}", note
        return float(record.metric), "", note  # type: ignore[arg-type]

    def _shipped_poison(self, spec: PoisonSpec) -> PoisonRef | None:
        """The run/submission folder's own copy of a poison (loaded and checked), if it has one."""
        if spec.key not in self._shipped:  # loaded (and checked) once per poison, not per trial
            folder = None if self.poison_root is None else self.poison_root / spec.key
            ref = None
            if folder is not None and (folder / META_FILE).is_file():
                poison = PoisonSet.load(folder)  # sealed metadata, tensors matching their hash
                ref = PoisonRef(str(folder), recorded_sha256(folder), poison.craft_s)
            self._shipped[spec.key] = ref
        return self._shipped[spec.key]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def check_manifest(folder: Path, files: list[Path]) -> list[str]:
    """A submission's manifest must list exactly its entry files, with their content hashes."""
    path = folder / MANIFEST_FILE
    if not path.exists() and not path.is_symlink():
        if (
            folder / SUITE_FILE
        ).exists():  # a submission's folder (sapabench submit wrote its suite) without its manifest
            return [
                f"{folder} is a submission (it holds {SUITE_FILE}) but its {MANIFEST_FILE} is missing: nothing tells "
                "which entries were submitted, so none is accepted; re-run sapabench submit to rewrite it"
            ]
        return []
    try:
        manifest = read_json(path, "submission manifest")
        listed = {e["file"]: e["content_sha256"] for e in manifest["entries"]}
        submitted = sum(e["role"] == "submitted" for e in manifest["entries"])
    except ConfigError as err:
        return [str(err)]
    except (KeyError, TypeError) as err:
        return [f"{path}: not a readable submission manifest ({err})"]
    problems = []
    suite = _submission_suite(folder, manifest, problems)
    if not submitted:
        problems.append(f"{MANIFEST_FILE} lists no submitted entry: the submission's attack or defense produced none")
    present = {f.name: f for f in files}
    for name, digest in sorted(listed.items()):
        if name not in present:
            problems.append(f"{MANIFEST_FILE} lists {name}, which is missing")
            continue
        try:
            listed_entry = read_json(present[name], "entry", MAX_ENTRY_BYTES)
            actual = listed_entry.get("content_sha256")
            entry_suite = listed_entry["setting"]["suite"]
        except (ConfigError, AttributeError, KeyError, TypeError):
            actual, entry_suite = None, None
        if suite is not None and entry_suite is not None and entry_suite != suite:
            problems.append(
                f"{name} is an entry of suite {str(entry_suite)[:60]!r}, not of this submission's {suite!r}"
            )
        if actual != digest:
            problems.append(
                f"{name} is not the entry {MANIFEST_FILE} lists (content hash differs): replaced after submission"
            )
    problems += [
        f"{name} is not listed in {MANIFEST_FILE}: added after submission"
        for name in sorted(set(present) - set(listed))
    ]
    return problems


def _submission_suite(folder: Path, manifest: dict[str, Any], problems: list[str]) -> str | None:
    """The name of the suite in the submission's ``suite.toml`` (None without one), after checking
    it is the file the manifest hashed."""
    path = folder / SUITE_FILE
    if not path.exists():
        return None
    try:
        text = read_bytes(path, "submission suite")
        name = parse_toml(text, str(path), "submission suite").get("name")
    except ConfigError as err:
        problems.append(str(err))
        return None
    if manifest.get("suite_sha256") not in (None, hashlib.sha256(text).hexdigest()):
        problems.append(f"{SUITE_FILE} is not the suite {MANIFEST_FILE} hashed: replaced after submission")
    return name if isinstance(name, str) else None


def check_poisons(folder: Path, files: Sequence[Path] = ()) -> list[str]:
    """Every poison folder a run or submission holds must load: sealed metadata, tensors matching
    their hash, bounds kept (an edited threat model would be measured against the edited target);
    and a shipped poison that an entry names by its hash must be of that entry's attack, crafted
    with that entry's resolved config (a poison of another attack passed off as this one's)."""
    problems = []
    shipped: dict[str, tuple[Path, PoisonSet]] = {}
    for meta in sorted((folder / "poisons").glob(f"*/{META_FILE}")):
        try:
            shipped[recorded_sha256(meta.parent)] = (meta.parent, PoisonSet.load(meta.parent))
        except ConfigError as err:
            problems.append(str(err))
    for path in files:
        try:
            entry = read_json(path, "leaderboard entry")
            attack, config = entry["attack"], entry["setting"].get("attack_config") or {}
            hashes = entry["provenance"]["poison_sha256"]
        except (ConfigError, KeyError, TypeError):
            continue  # the entry's own check refuses it, with its reason
        for digest in hashes if isinstance(hashes, list) else []:
            if not isinstance(digest, str) or digest not in shipped:
                continue
            where, poison = shipped[digest]
            if poison.attack != attack:
                problems.append(
                    f"{where.name}: a poison of {poison.attack!r}, but {path.name} is an entry of {attack!r}"
                )
            elif config and poison.config != config:
                differs = sorted(k for k in set(poison.config) | set(config) if poison.config.get(k) != config.get(k))
                problems.append(
                    f"{where.name}: crafted with another config than {path.name} records ({', '.join(differs[:5])})"
                )
    return problems


def verify(
    target: str | Path,
    *,
    cells: int | None = None,
    seed: int = 0,
    device: str = "auto",
    source_for: Callable[[str], DataSource] = DataSource,
    log: Callable[[str], None] = lambda message: None,
    write_report: bool = True,
    deterministic: bool = True,
    max_entries: int = MAX_VERIFY_ENTRIES,
) -> VerifyReport:
    """Verify every entry under ``target``; a run/submission folder gets ``verification.json``.
    More than ``max_entries`` entries is refused before any work, with the time it would take;
    within the cap that estimate is logged first."""
    if cells is not None and (not isinstance(cells, int) or cells < 1):
        raise ConfigError(f"invalid cells={cells!r}: re-run at least 1 trial per entry (set --cells)")
    if not isinstance(max_entries, int) or max_entries < 1:
        raise ConfigError(f"invalid max_entries={max_entries!r}: must be at least 1 (set --max-entries)")
    folder, files = entry_files(target)
    if len(files) > max_entries:
        work = estimate(files, cells) if len(files) <= 50 * max_entries else None
        took = "" if work is None else f" ({work.line().split(': ', 1)[1]})"
        raise ConfigError(
            f"{target} holds {len(files)} entries, more than the {max_entries} one verify re-runs by default{took}: "
            f"verify a sample (an entry file, or fewer --cells) or pass --max-entries {len(files)}"
        )
    log(estimate(files, cells).line())
    problems = check_manifest(folder, files) + check_poisons(folder, files) if folder else []
    poison_root = None if folder is None else folder / "poisons"
    verifier = Verifier(source_for, device, cells, seed, log, poison_root, deterministic)
    verdicts = []
    try:
        for path in files:
            log(f"verifying {path.name}")
            verdicts.append(verifier.verify_file(path))
    finally:
        verifier.close()
    report = VerifyReport(str(target), tuple(verdicts), tuple(problems))
    if write_report and folder is not None:
        with contextlib.suppress(OSError):  # a read-only folder: the printed report is the result
            write_json(folder / REPORT_FILE, report.to_json())
    return report
