"""The ``sapabench`` command line. It only parses arguments into typed configs and calls the
library; every user error surfaces as one ``sapabench: error: ...`` line and exit status 2."""

from __future__ import annotations

import argparse
import errno
import fnmatch
import json
import math
import sqlite3
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sapabench.attacks import ATTACKS, create_attack
from sapabench.benchmark.claims import COST_DESCRIPTION, EFFECT_RULE, TEST_DESCRIPTION, check_claims
from sapabench.benchmark.entries import board_dir, entries_dir
from sapabench.benchmark.evaluate import comparisons as evaluate_comparisons
from sapabench.benchmark.evaluate import plan_arms, run_arms
from sapabench.benchmark.evaluate import summary as arm_summary
from sapabench.benchmark.executor import RESOURCE_KEYS, Resources, make_executor
from sapabench.benchmark.parser import EXIT_USAGE, build_parser
from sapabench.benchmark.runner import RunReport, run_suite
from sapabench.benchmark.store import file_system_fault
from sapabench.benchmark.submit import prepare, submission_suite, write_manifest
from sapabench.benchmark.suite import (
    Suite,
    builtin_suites,
    load_suite,
    pretrained_label,
    victim_seed,
)
from sapabench.benchmark.trial import PoisonRef, Trial, TrialRecord, start_of
from sapabench.benchmark.verify import REPORT_FILE, verify
from sapabench.core.datasets import DATASETS, DataSource, ImageDataset
from sapabench.core.errors import ConfigError
from sapabench.core.files import read_json
from sapabench.core.interrupts import marking_interrupts
from sapabench.core.names import EMBEDDED_DATASET, NO_DEFENSE, file_name
from sapabench.core.numerics import Numerics, resolve_numerics
from sapabench.core.owned import check_out
from sapabench.core.poison import META_FILE, PoisonSet, check_poison_folder, migrate, recorded_sha256
from sapabench.core.runtime import check_seed, resolve_device
from sapabench.core.stats import mean_se
from sapabench.core.threats import CLEAN_ACCURACY
from sapabench.defenses import DEFENSES
from sapabench.leaderboard.records import CLAIMS_FILE, VERDICT_TEXT, VERDICTS, twin_dataset
from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import json_schema, load_entries
from sapabench.leaderboard.summary import threat_summaries
from sapabench.victims.archs import ARCHS
from sapabench.victims.protocols import NO_PRETRAINED, PRETRAINED_SOURCES, PROTOCOLS, get_protocol
from sapabench.victims.recipes import RECIPES, Recipe
from sapabench.victims.train import EpochStats, resolve_step, train_victim

REGISTRIES = {
    "datasets": DATASETS,
    "archs": ARCHS,
    "recipes": RECIPES,
    "attacks": ATTACKS,
    "defenses": DEFENSES,
    "protocols": PROTOCOLS,
}


def _cmd_list(args: argparse.Namespace) -> int:
    if args.axis == "suites":
        suites = {k: v for k, v in builtin_suites().items() if fnmatch.fnmatchcase(k, args.pattern)}
        if not suites:
            raise ConfigError(f"no suites match {args.pattern!r}; known: {', '.join(builtin_suites())}")
        width = max(map(len, suites))
        for name, desc in suites.items():
            print(f"{name:<{width}}  {desc}")
        return 0
    registry = REGISTRIES[args.axis]
    names = registry.list(args.pattern)
    if not names:
        if not any(c in args.pattern for c in "*?["):
            registry.entry(args.pattern)  # raises with "did you mean ..."
        raise ConfigError(f"no {args.axis} match {args.pattern!r}; known: {', '.join(registry.list())}")
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {registry.entry(name).description}")
    return 0


# CLI flag -> (recipe it belongs to, keyword of that recipe's factory)
_RECIPE_FLAGS = {
    "sam_rho": ("sam", "rho"),
    "cutout_size": ("cutout", "size"),
    "adv_eps": ("adversarial", "eps"),
    "adv_step": ("adversarial", "step"),
    "adv_steps": ("adversarial", "steps"),
}
_TRAIN_FLAGS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule")


def _recipe_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``--recipe`` given by the training flags (checked: unknown recipes and
    bad values fail here, naming the flag)."""
    RECIPES.entry(args.recipe)  # unknown names fail here, with suggestions
    options: dict[str, Any] = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    if args.no_augment:
        options["augment"] = False
    for flag, (owner, kwarg) in _RECIPE_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if owner != args.recipe:
            raise ConfigError(f"--{flag.replace('_', '-')} applies only to --recipe {owner}, not {args.recipe!r}")
        options[kwarg] = value
    RECIPES.create(args.recipe, **options)
    return options


def _build_recipe(args: argparse.Namespace) -> Recipe:
    return RECIPES.create(args.recipe, **_recipe_options(args))


def _source(args: argparse.Namespace, name: str) -> DataSource:
    """Where dataset ``name`` comes from, by the data options of ``args``."""
    DATASETS.entry(name)
    source = DataSource(name, args.data_root, args.download, not args.no_verify_checksums)
    source.check_disk_options()
    return source


def _build_dataset(args: argparse.Namespace, name: str | None = None) -> ImageDataset:
    return _source(args, name or args.dataset).load()


def _numerics(args: argparse.Namespace, device: torch.device) -> Numerics:
    return resolve_numerics(args.precision, args.memory_format, device)


def _pretrained(args: argparse.Namespace) -> str:
    """The checked ``--protocol`` and the label of its pretrained source (``none`` if it has none)."""
    protocol = get_protocol(args.protocol)
    if not protocol.needs_pretrained:
        if args.pretrained is not None:
            raise ConfigError(f"--pretrained applies to finetune and linear, not to protocol {protocol.name!r}")
        return NO_PRETRAINED
    return pretrained_label(args.pretrained or PRETRAINED_SOURCES[0])


def _parse_value(text: str) -> Any:
    """``--set`` values: JSON (numbers, true/false, strings in quotes), fractions like 16/255,
    or a bare string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return text


def _cmd_attack(args: argparse.Namespace) -> int:
    check_seed(args.seed)
    check_poison_folder(check_out(args.out, force=args.force_out))  # refused before any crafting
    overrides: dict[str, Any] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip().replace("-", "_")] = _parse_value(value.strip())
    for key in ("eps", "budget", "rho"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.surrogate_arch or args.surrogate_epochs:
        overrides["surrogate"] = {
            "arch": args.surrogate_arch or "convnet",
            "recipe": "sgd",
            "epochs": args.surrogate_epochs,
        }
    attack = create_attack(args.name, dataset=args.dataset, preset=args.preset, **overrides)
    device = resolve_device(args.device)
    numerics = attack.crafting_numerics(resolve_numerics(args.craft_precision, args.craft_memory_format, device))
    dataset = _build_dataset(args)
    print(
        f"crafting {attack.name} on {dataset.name} (seed {args.seed}, {device}, {numerics.label}): "
        f"{attack.config.to_json()}",
        file=sys.stderr,
    )
    poison = attack.run(
        dataset, seed=args.seed, device=device, log=lambda m: print(m, file=sys.stderr), numerics=numerics
    )
    out = poison.save(args.out)
    print(
        f"wrote {poison.num_poisons} poisons ({poison.threat.kind}, eps {poison.eps:.4f}, budget {poison.budget:g}) to {out}"
    )
    print(f"crafting time: {poison.craft_s:.1f} s on {device}")
    return 0


NEAR_CHANCE = 2.0
"""``evaluate`` warns when the clean baseline's accuracy is below this multiple of chance."""


def _cmd_evaluate(args: argparse.Namespace) -> int:
    ARCHS.entry(args.arch)
    check_seed(args.seed)
    if args.trials < 1:
        raise ConfigError(f"invalid trials={args.trials}: must be a positive integer (set --trials)")
    if args.defense != NO_DEFENSE:
        DEFENSES.entry(args.defense)
    options = tuple(sorted(_recipe_options(args).items()))
    dev = resolve_device(args.device)
    device, numerics = str(dev), _numerics(args, dev)
    resolve_step(args.train_step, dev)
    try:
        dataset_name = read_json(Path(args.poison) / META_FILE, "poison metadata").get("dataset")
    except (ConfigError, AttributeError):
        dataset_name = None
    source = _source(args, args.dataset or dataset_name or EMBEDDED_DATASET)
    data = source.load()
    poison = PoisonSet.load(args.poison, data)  # refuses a bad artifact before anything trains
    ref = PoisonRef(str(args.poison), recorded_sha256(args.poison), poison.craft_s)
    pretrained = _pretrained(args)
    report: dict[str, Any] = {
        "poison": str(args.poison),
        "attack": poison.attack,
        "craft_numerics": poison.numerics.label,
        "threat": poison.threat.kind,
        "arch": args.arch,
        "recipe": RECIPES.create(args.recipe, **dict(options)).describe(),
        "defense": args.defense,
        "dataset": source.name,
        "device": device,
        "precision": numerics.precision,
        "memory_format": numerics.memory_format,
        "protocol": args.protocol,
        "pretrained": pretrained,
    }
    arms = plan_arms(args.defense, args.baseline)
    recipe = RECIPES.create(args.recipe, **dict(options))
    epochs = recipe.train.epochs or data.default_epochs
    print(
        f"training {len(arms)} arm(s) x {args.trials} victims of {epochs} epochs ({', '.join(a[0] for a in arms)}; "
        f"the same victim seeds in every arm; --epochs sets fewer, the built-in suites train 6 on digits)",
        file=sys.stderr,
    )
    trials = [
        Trial(
            args.arch,
            args.recipe,
            options,
            NO_DEFENSE,
            victim_seed(args.victim_seeds, args.seed, poison.seed, i),
            source,
            device,
            ref,
            True,
            numerics,
            args.protocol,
            pretrained,
            train_step=args.train_step,
        )
        for i in range(args.trials)
    ]
    bar = tqdm(
        total=len(arms) * args.trials, desc="victims", unit="victim", disable=args.quiet or None, file=sys.stderr
    )

    def on_trial(label: str, i: int, record: TrialRecord) -> None:
        bar.update(1)
        if not args.quiet:
            bar.write(
                f"  {label} victim {i + 1}/{args.trials} (seed {trials[i].seed}): {poison.threat.metric} "
                f"{100 * record.metric:.1f} %, clean accuracy {100 * record.clean_accuracy:.1f} %, "
                f"{record.train_s:.1f} s",
                file=sys.stderr,
            )

    try:
        done = run_arms(trials, args.defense, args.baseline, on_trial)
    finally:
        bar.close()
    higher = poison.threat.higher_is_stronger
    report["arms"] = {}
    for arm in done:
        mean, se, clean_mean, clean_se = arm_summary(arm)
        train_s = [float(r.train_s) for r in arm.records]  # type: ignore[arg-type]
        diagnostics = {key: mean_se([r.diagnostics[key] for r in arm.records]) for key in arm.records[0].diagnostics}
        report["arms"][arm.label] = {
            "defense": arm.defense,
            "on_poison": arm.on_poison,
            "metric": poison.threat.metric,
            "mean": mean,
            "se": se,
            "values": arm.values,
            "victim_seeds": [t.seed for t in trials],
            "clean_accuracy_mean": clean_mean,
            "clean_accuracy_se": clean_se,
            "train_s": train_s,
            "trials": args.trials,
            "defense_stats": arm.filter_stats(),
            "diagnostics": {key: {"mean": m, "se": e} for key, (m, e) in diagnostics.items()},
        }
        if not args.json:
            direction = "higher" if higher else "lower"
            trials_text = "1 victim" if args.trials == 1 else f"{args.trials} victims, SE"
            spread = "" if args.trials == 1 else f" +/- {100 * se:.1f}"
            clean_spread = "" if args.trials == 1 else f" +/- {100 * clean_se:.1f}"
            print(
                f"{arm.label:>24}: {poison.threat.metric} {100 * mean:.1f}{spread} % ({trials_text}; {direction} = "
                f"stronger attack)  clean accuracy {100 * clean_mean:.1f}{clean_spread} %  "
                f"training {sum(train_s) / len(train_s):.1f} s/victim"
            )
            stats = arm.filter_stats()
            if "removed" in stats:
                found = (
                    f", precision {100 * stats['precision']:.1f} %, recall {100 * stats['recall']:.1f} % of the poisons"
                    if "recall" in stats
                    else ""
                )
                print(f"{'':>24}  {arm.defense} removed {stats['removed']:.1f} images per victim{found}")
                if "class_removed" in stats:
                    share = (
                        f", {100 * stats['class_precision']:.1f} % of them poisons"
                        if "class_precision" in stats
                        else ""
                    )
                    print(
                        f"{'':>24}  {arm.defense} removed {stats['class_removed']:.1f} of them from the poisons' "
                        f"class(es){share}"
                    )
            if "defense_s" in stats:
                what = (
                    f"its own model trained in {stats['defender_s']:.1f} s, once per training set and seed"
                    if "defender_s" in stats
                    else "the whole defended training, victim included"
                )
                print(f"{'':>24}  {arm.defense} took {stats['defense_s']:.1f} s per victim ({what})")
            if "heldout" in stats:
                print(
                    f"{'':>24}  {arm.defense} held out {stats['heldout']:.0f} clean training images per victim "
                    "(its own split; the victim does not train on them)"
                )
            if "pruned" in stats:
                print(f"{'':>24}  {arm.defense} pruned {stats['pruned']:.1f} penultimate units per victim")
            if "stopped_epoch" in stats:
                print(
                    f"{'':>24}  {arm.defense} kept epoch {stats['stopped_epoch']:.1f} on average; peak test accuracy over "
                    f"the epochs {100 * stats['peak_test_accuracy']:.1f} %"
                )
            if "epsilon" in stats:
                print(
                    f"{'':>24}  {arm.defense} spent epsilon {stats['epsilon']:.3g} at delta {stats['delta']:.1g} (RDP accountant)"
                )
            for key, (m, e) in diagnostics.items():
                print(f"{'':>24}  diagnostic {key} {m:.4f}" + ("" if args.trials == 1 else f" +/- {e:.4f}"))
        chance = 1 / data.num_classes
        if not arm.on_poison and clean_mean < NEAR_CHANCE * chance:
            print(
                f"sapabench: warning: the {arm.label} arm's accuracy {100 * clean_mean:.1f} % is near chance "
                f"({100 * chance:.1f} % for {data.num_classes} classes): the victims are undertrained, so the "
                "poisoned numbers say little about the attack; train longer (--epochs)",
                file=sys.stderr,
            )
    answers = evaluate_comparisons(done, args.defense, higher, poison.threat.metric == CLEAN_ACCURACY)
    report["comparisons"] = [
        {
            "what": c.what,
            "a": c.a,
            "b": c.b,
            "measure": c.measure,
            "mean": c.mean,
            "interval": [None if math.isinf(v) else v for v in c.interval],
            "differences": list(c.differences),
        }
        for c in answers
    ]
    if args.json:
        report["craft_s"] = poison.craft_s
        print(json.dumps(report, indent=2))
    else:
        for c in answers:
            print(f"{'':>2}{c.line()}")
        if answers:
            print(
                "  (one poison: these intervals are over its victims; sapabench run --suite defenses replicates over poisons)"
            )
        print(
            f"{'crafting':>24}: {poison.craft_s:.1f} s ({poison.attack}, {poison.num_poisons} poisons, {poison.numerics.label})"
        )
    return 0


def _progress_printer(stream: Any) -> Callable[[EpochStats], None]:
    """Training progress (tqdm: epochs, rate, ETA, loss and learning rate) on ``stream`` when
    it is a terminal; quiet otherwise."""
    shown = hasattr(stream, "isatty") and stream.isatty()
    bar: list[tqdm] = []

    def show(stats: EpochStats) -> None:
        if not bar:
            bar.append(tqdm(total=stats.epochs, unit="epoch", file=stream, disable=not shown, dynamic_ncols=True))
        bar[0].set_postfix_str(f"loss {stats.loss:.4f}  lr {stats.lr:.4g}  {stats.epoch_s:.2f}s/epoch", refresh=False)
        bar[0].update(1)
        if stats.epoch == stats.epochs:
            bar[0].close()

    return show


def _cmd_train(args: argparse.Namespace) -> int:
    ARCHS.entry(args.arch)
    check_seed(args.seed)
    recipe = _build_recipe(args)
    device = resolve_device(args.device)
    numerics = _numerics(args, device)
    resolve_step(args.train_step, device)
    dataset = _build_dataset(args)
    pretrained = _pretrained(args)  # no attacker here: the default source is a clean run with the victim's seed
    trial = Trial(
        args.arch,
        recipe.name,
        (),
        NO_DEFENSE,
        args.seed,
        DataSource(dataset.name),
        str(device),
        protocol=args.protocol,
        pretrained=pretrained,
    )
    start = start_of(trial, None, dataset, device)
    print(
        f"training {args.arch} ({args.protocol}) with recipe {recipe.name} on {dataset.name} "
        f"({dataset.num_train} train / {len(dataset.test_y)} test, seed {args.seed}, {device}, {numerics.label})",
        file=sys.stderr,
    )
    progress = None if args.quiet else _progress_printer(sys.stderr)
    result = train_victim(
        args.arch,
        recipe,
        dataset,
        seed=args.seed,
        device=device,
        progress=progress,
        numerics=numerics,
        protocol=args.protocol,
        start=start,
        step=args.train_step,
    )
    t = result.timing
    if args.json:
        report = {
            "arch": args.arch,
            "recipe": result.recipe.describe(),
            "dataset": dataset.name,
            "dataset_fingerprint": dataset.fingerprint,
            "seed": args.seed,
            "clean_accuracy": result.clean_accuracy,
            "train_s": t.total_s,
            "epoch_s": list(t.epoch_s),
            "images_per_s": t.images_per_s,
            "eval_s": result.eval_s,
            "device": t.device,
            "precision": numerics.precision,
            "memory_format": numerics.memory_format,
            "train_step": t.step,
            "train_step_fallback": t.fallback,
            "protocol": args.protocol,
            "pretrained": pretrained,
        }
        print(json.dumps(report, indent=2))
    else:
        print(
            f"clean test accuracy: {100 * result.clean_accuracy:.2f}%  ({args.arch}, {recipe.name}, {dataset.name}, seed {args.seed})"
        )
        print(
            f"time: {t.total_s:.1f} s training ({t.mean_epoch_s:.2f} s/epoch over {len(t.epoch_s)} epochs, "
            f"{t.images_per_s:.0f} images/s) + {result.eval_s:.2f} s evaluation on {t.device}, {numerics.label}, "
            f"{t.step} steps" + (f" (graph capture failed: {t.fallback})" if t.fallback else "")
        )
    return 0


def _resources(suite: Suite, args: argparse.Namespace) -> Resources:
    """What each Ray task asks for: the suite's [resources], overridden by the flags."""
    flags = {k: getattr(args, k) for k in RESOURCE_KEYS if getattr(args, k, None) is not None}
    if flags and args.executor != "ray":
        raise ConfigError(f"--{next(iter(flags)).replace('_', '-')} applies to --executor ray only")
    return Resources(**{**dict(suite.resources), **flags})


def _run_and_show(suite: Suite, out: Path, args: argparse.Namespace) -> RunReport:
    """Run ``suite`` into ``out`` with the run options of ``args``; print what ran and, per threat
    model, how SAPA fared against its base (:mod:`sapabench.leaderboard.summary`)."""
    if args.precision is not None:
        suite = replace(suite, precision=args.precision)
    if args.memory_format is not None:
        suite = replace(suite, memory_format=args.memory_format)
    if args.craft_precision is not None:
        suite = replace(suite, craft_precision=args.craft_precision)
    if args.craft_memory_format is not None:
        suite = replace(suite, craft_memory_format=args.craft_memory_format)
    if args.pretrained is not None:
        label = pretrained_label(args.pretrained)
        suite = replace(suite, grids=tuple(replace(g, pretrained=label) for g in suite.grids))
    source = _source(args, suite.dataset)
    executor = make_executor(
        args.executor,
        args.workers,
        None if args.executor == "ray" else resolve_device(args.device),
        address=args.address,
        resources=_resources(suite, args),
        force_workers=args.force_workers,
    )
    try:
        report = run_suite(
            suite,
            out,
            source=source,
            device=args.device,
            executor=executor,
            progress=not args.quiet,
            deterministic=args.deterministic,
            pack=args.pack,
            train_step=args.train_step,
            yes=args.yes,
        )
    finally:
        executor.close()
    print(f"{report.ran} cells run ({report.failed} failed), {report.skipped} already done, in {report.wall_s:.0f} s")
    for summary in threat_summaries(load_entries(entries_dir(out))):
        print(summary.line())
    return report


def _cmd_run(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    out = check_out(args.out or Path("runs") / suite.name, force=args.force_out)
    report = _run_and_show(suite, out, args)
    print(f"page: {board_dir(out) / 'leaderboard.html'} (beside it leaderboard.md, .csv, table4.md, *.png)")
    print(f"next: sapabench claims --results {out}  (tests the paper's claims; the page then shows the verdicts)")
    return 1 if report.failed else 0


def _cmd_submit(args: argparse.Namespace) -> int:
    kind, name = ("attack", args.attack) if args.attack else ("defense", args.defense)
    out = check_out(args.out or Path("submissions") / file_name(f"{kind}-{name}"), force=args.force_out)
    suite_path = prepare(kind, name, out, args.profile, args.dataset)
    suite = submission_suite(out)
    print(
        f"submitting {kind} {name!r} ({args.profile} profile, {len(suite.cells())} cells): suite {suite_path}",
        file=sys.stderr,
    )
    report = _run_and_show(suite, out, args)
    manifest = write_manifest(kind, name, args.profile, out)
    submitted = sum(e["role"] == "submitted" for e in manifest["entries"])
    if not submitted:
        print(
            f"submission: {out} holds no entry of the submitted {kind} {name!r} (every cell of it failed: see the "
            f"log above and {out / 'results.sqlite'}); there is nothing to verify",
            file=sys.stderr,
        )
        return 1
    print(
        f"submission: {out} ({submitted} submitted + {len(manifest['entries']) - submitted} reference entries, "
        f"manifest {out / 'submission.json'}); check it with: sapabench verify {out}"
    )
    return 1 if report.failed else 0


def _check_flag(check: Any) -> str:
    return "" if check.ok else "  NOT RE-RUN" if check.measured is None else "  MISMATCH"


def _cmd_verify(args: argparse.Namespace) -> int:
    def source_for(dataset: str) -> DataSource:
        return DataSource(dataset, args.data_root, args.download, not args.no_verify_checksums)

    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    report = verify(
        args.target,
        cells=args.cells,
        seed=args.seed,
        device=args.device,
        source_for=source_for,
        log=log,
        deterministic=args.deterministic,
        max_entries=args.max_entries,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for problem in report.problems:
            print(f"REFUSED  {problem}")
        for v in report.verdicts:
            print(f"{'ACCEPTED' if v.accepted else 'REFUSED ':<8}  {v.label}  ({Path(v.path).name}, {v.mode})")
            for c in v.checks:
                got = "-" if c.measured is None else f"{c.measured:.4f}"
                craft_seed = "-" if c.craft_seed is None else c.craft_seed
                within = "compared statistically" if c.tolerance is None else f"tolerance {c.tolerance:.2g}"
                print(
                    f"          craft seed {craft_seed}, trial seed {c.trial_seed}: recorded {c.recorded:.4f}, "
                    f"re-run {got} ({within}){_check_flag(c)}"
                )
            for problem in v.problems:
                print(f"          problem: {problem}")
            for note in v.notes:
                print(f"          note: {note}")
        refused = sum(not v.accepted for v in report.verdicts)
        folder_problems = f", {len(report.problems)} folder problem(s)" if report.problems else ""
        report_file = Path(args.target) / REPORT_FILE
        where = f" (report: {report_file})" if report_file.is_file() else ""
        print(f"{len(report.verdicts) - refused} accepted, {refused} refused{folder_problems}{where}")
    return 0 if report.accepted else 1


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    written = render(entries_dir(args.results), board_dir(args.results))
    print(f"rendered {len(written)} files into {board_dir(args.results)}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_migrate_poison(args: argparse.Namespace) -> int:
    for folder in args.folders:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sealed = migrate(folder)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        print(
            f"sealed {folder} (format 3)"
            if sealed
            else f"{folder} is sealed already (format 3, checked); left as it is"
        )
    return 0


def _verdict_tag(r: dict[str, Any]) -> str:
    """A verdict as ``sapabench claims`` prints it: upper case, with the proxy it rests on and a
    twin dataset named (``HELD (MARGIN) [DIGITS]``)."""
    twin = twin_dataset(r)
    return r["label"].upper() + ("" if twin is None else f" [{twin}]")


def _cmd_claims(args: argparse.Namespace) -> int:
    record = check_claims(args.results, args.alpha, args.claims)
    rows = record["verdicts"]
    plan = record["plan"]
    print(
        f"paper claims vs measured trials (alpha = {record['alpha']}; gain > 0 = SAPA stronger). Test: {TEST_DESCRIPTION}. "
        f"Decision: {record['correction']}. Delta: {EFFECT_RULE}."
    )
    if plan is not None:
        looks = plan.get("looks") or []
        spent = ", ".join(f"{n} poisons at {a:.4g}" for n, a in zip(looks, plan.get("look_alphas") or [], strict=False))
        print(
            f"pre-registered by the run: {len(plan['primary'])} primary claim(s), Holm-Shaffer at family-wise alpha "
            f"{plan['alpha']:g}" + (f"; looks: {spent}" if spent else "")
        )
    for kind in ("claim", "cost"):
        if kind == "cost" and any(r["kind"] == "cost" and (args.all or r["verdict"] != "untested") for r in rows):
            print(f"cost claims (section 5.5): {COST_DESCRIPTION}")
        for r in (r for r in rows if r["kind"] == kind and (args.all or r["verdict"] != "untested")):
            print(f"  {_verdict_tag(r):<21} {r['id']:<34} {r['summary']}")
    counts = {k: sum(r["verdict"] == k for r in rows) for k in VERDICTS}
    # "; " between counts: a verdict's text ("held, below the paper") has a comma of its own
    print("summary: " + "; ".join(f"{n} {VERDICT_TEXT[k]}" for k, n in counts.items()))
    if counts["untested"] and not args.all:
        print(
            f"{counts['untested']} untested claim(s) not listed (no matching results or too few poisons): --all lists them"
        )
    if plan is not None:
        print("the run's other results are shown on the leaderboard, not tested (they were not pre-registered)")
    print(f"verdicts written to {board_dir(args.results) / CLAIMS_FILE}; leaderboard.html shows them at the top")
    matched = {
        "failed": ("failed",),
        "below": ("below", "held+below"),
        "inconclusive": ("inconclusive",),
        "untested": ("untested",),
    }
    hits = [r["id"] for r in rows if r["kind"] == "claim" and any(r["verdict"] in matched[k] for k in args.fail_on)]
    if hits:
        print(f"--fail-on {','.join(args.fail_on)}: {len(hits)} claim(s) matched ({', '.join(hits[:5])}); exit 1")
        return 1
    return 0


def _cmd_pilot(args: argparse.Namespace) -> int:
    from sapabench.benchmark.claims import measure_pilot, pilot_toml

    for claim in args.claim:
        print(pilot_toml(measure_pilot(args.results, claim, args.claims)))
    print(
        "# add these blocks to benchmark/pilots.toml: a suite may then pre-register the claim ([claims] primary), "
        "and its run states the design power at delta before any data"
    )
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from sapabench.benchmark.compare import compare_runs, report

    result = compare_runs(args.before, args.after, args.margin, args.alpha)
    for line in report(result, args.before, args.after):
        print(line)
    return result.exit_code


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": _cmd_list,
    "train": _cmd_train,
    "attack": _cmd_attack,
    "evaluate": _cmd_evaluate,
    "run": _cmd_run,
    "submit": _cmd_submit,
    "verify": _cmd_verify,
    "leaderboard": _cmd_leaderboard,
    "schema": _cmd_schema,
    "migrate-poison": _cmd_migrate_poison,
    "claims": _cmd_claims,
    "pilot": _cmd_pilot,
    "compare": _cmd_compare,
}
"""What runs each parsed command (``args.handler``, set by :func:`sapabench.benchmark.parser.build_parser`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    return dispatch(build_parser().parse_args(argv))


def dispatch(args: argparse.Namespace) -> int:
    """Run a parsed command; every user error is one ``sapabench: error:`` line and exit 2."""
    try:
        with marking_interrupts():  # the user's Ctrl-C, told apart from a plugin's KeyboardInterrupt
            return int(COMMANDS[args.handler](args))
    except ConfigError as err:
        message = " ".join(str(err).split())
        print(f"sapabench: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sapabench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except sqlite3.DatabaseError as err:  # a full or read-only disk, or garbage pages found mid-read
        fault = file_system_fault(err)
        if fault is not None:
            print(f"sapabench: error: {fault}", file=sys.stderr)
        else:
            print(
                f"sapabench: error: a results database is corrupt ({err}); restore it or choose another --out",
                file=sys.stderr,
            )
        return EXIT_USAGE
    except OSError as err:  # read-only or full disk, a file where a folder should be: finished work is kept
        print(f"sapabench: error: {file_system_error(err)}", file=sys.stderr)
        return EXIT_USAGE


_FS_FIXES = {
    errno.ENOSPC: "free some space and run the same command again (finished results are kept)",
    errno.EDQUOT: "free some space and run the same command again (finished results are kept)",
    errno.EROFS: "choose a writable --out",
    errno.EACCES: "choose a folder you may write (--out) or fix its permissions",
    errno.EPERM: "choose a folder you may write (--out) or fix its permissions",
    errno.ENOTDIR: "a file stands where a folder is needed: choose another --out",
    errno.EEXIST: "a file stands where a folder is needed: choose another --out",
    errno.EISDIR: "a folder stands where a file is needed: choose another path",
}


def file_system_error(err: OSError) -> str:
    """One line for a file-system failure: what failed, on which path, and the fix."""
    where = f" {err.filename}" if err.filename else ""
    fix = _FS_FIXES.get(err.errno or 0, "check the path and the disk, then run the same command again")
    return f"cannot use{where}: {err.strerror or err}; {fix}"


if __name__ == "__main__":
    raise SystemExit(main())
