"""The ``sapabench`` command's arguments: every subcommand, option and help text, in a module that
imports no torch (nor any module that does), so ``sapabench --help`` and a mistyped option answer
at once. :mod:`sapabench.benchmark.cli` runs the parsed command (``args.handler``)."""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path
from typing import NoReturn

from sapabench import __version__
from sapabench.core.names import (
    AUTO,
    CELL_CAP,
    EMBEDDED_DATASET,
    MAX_VERIFY_ENTRIES,
    MEMORY_FORMATS,
    NESTED,
    NO_DEFENSE,
    PRECISIONS,
    SCRATCH,
    STEPS,
    VICTIM_SEEDINGS,
)

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors on one line (no usage block) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str) -> float:
    """A float, also written as a fraction such as ``8/255``."""
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"invalid number {text!r} (write e.g. 0.1 or 8/255)") from None


def _add_training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (defaults: the recipe's and the dataset's protocol)")
    g.add_argument("--epochs", type=int, help="passes over the training set (default: the protocol's)")
    g.add_argument("--batch-size", type=int, help="images per step (default: the protocol's)")
    g.add_argument("--lr", type=_number, help="peak learning rate (default: the recipe's and protocol's)")
    g.add_argument("--momentum", type=_number, help="SGD momentum (default 0.9; the adam recipe ignores it)")
    g.add_argument("--weight-decay", type=_number, help="L2 weight decay (default: the protocol's)")
    g.add_argument("--schedule", help="step (x0.1 at 1/2 and 3/4), cosine, cyclic or constant")
    g.add_argument("--no-augment", action="store_true", help="no random crop/flip")
    g = p.add_argument_group("recipe options")
    g.add_argument("--sam-rho", type=_number, help="SAM radius (recipe sam; default 0.05)")
    g.add_argument("--cutout-size", type=int, help="CutOut square side in pixels (recipe cutout; default side/2)")
    g.add_argument("--adv-eps", type=_number, help="PGD L_inf radius in [0, 1] (recipe adversarial; default 8/255)")
    g.add_argument("--adv-step", type=_number, help="PGD step (recipe adversarial; default 2/255)")
    g.add_argument("--adv-steps", type=int, help="PGD iterations (recipe adversarial; default 7)")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data on disk (cifar10, cifar100, svhn)")
    g.add_argument("--data-root", help="folder in torchvision's on-disk format")
    g.add_argument("--download", action="store_true", help="download into --data-root (needs internet)")
    g.add_argument("--no-verify-checksums", action="store_true", help="accept files whose md5 differs from the release")


def _numerics_group(
    p: argparse.ArgumentParser, title: str, prefix: str, default: str | None, whose: tuple[str, str], where: str
) -> argparse._ArgumentGroup:
    """A ``--{prefix}precision`` / ``--{prefix}memory-format`` pair; ``whose``: what each one
    sets, as its help starts."""
    g = p.add_argument_group(title)
    where = where if default is None else default
    g.add_argument(
        f"--{prefix}precision",
        choices=(AUTO, *PRECISIONS),
        default=default,
        help=f"{whose[0]}: fp32, bf16 (autocast) or auto = bf16 where the device has it in hardware (default: {where})",
    )
    g.add_argument(
        f"--{prefix}memory-format",
        choices=(AUTO, *MEMORY_FORMATS),
        default=default,
        help=f"{whose[1]}: contiguous (NCHW), channels_last (NHWC) or auto (default: {where})",
    )
    return g


def _add_numerics_options(p: argparse.ArgumentParser, default: str | None) -> None:
    g = _numerics_group(
        p,
        'victim numerics (see docs/performance.md, "Precision and speed")',
        "",
        default,
        ("victims' arithmetic", "victims' weights and batches"),
        "the suite's, else auto",
    )
    g.add_argument(
        "--train-step",
        choices=("auto", *STEPS),
        default="auto",
        help="how each training step runs: eager, graph (captured once as a CUDA graph and replayed; CUDA only) "
        "or auto = graph on CUDA, eager elsewhere (default auto)",
    )


def _add_craft_numerics_options(p: argparse.ArgumentParser, default: str | None) -> None:
    _numerics_group(
        p,
        'crafting numerics (see docs/performance.md, "Crafting numerics")',
        "craft-",
        default,
        (
            "the arithmetic of the attacks that support it (Error-Min, Error-Max and their SAPA twins; the "
            "perturbation stays fp32)",
            "their surrogate's weights and batches",
        ),
        "the suite's [craft], else auto",
    )


def _add_protocol_options(p: argparse.ArgumentParser, sources: bool) -> None:
    g = p.add_argument_group('victim protocol (see docs/concepts.md, "Victim protocols")')
    g.add_argument(
        "--protocol",
        default=SCRATCH,
        help="scratch (default), finetune, linear or known-init (sapabench list protocols)",
    )
    g.add_argument(
        "--pretrained",
        help="finetune/linear start: a .safetensors checkpoint of the victim architecture"
        + (" or surrogate (default: the clean run the attacker crafted against) or independent" if sources else ""),
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu or cuda")
    p.add_argument(
        "--pretrained",
        metavar="PATH",
        help="a .safetensors checkpoint every finetune/linear victim of the suite starts from (replaces the grids' source)",
    )
    _add_numerics_options(p, None)
    _add_craft_numerics_options(p, None)
    p.add_argument(
        "--executor",
        default="auto",
        help="local (one process), processes (one single-threaded worker per core), ray (a Ray cluster; "
        "pip install 'sapabench[ray]') or auto (default: processes on CUDA and on a 2-core CPU, local otherwise; "
        'measured: docs/performance.md, "Precision and speed")',
    )
    p.add_argument(
        "--workers",
        type=int,
        help="processes for --executor processes (default: cores; on CUDA 4 per GPU; at most the cores)",
    )
    p.add_argument("--force-workers", action="store_true", help="allow --workers beyond this machine's cores")
    p.add_argument(
        "--pack",
        type=int,
        help="victims trained together per task, same poison and setting, each on its own CUDA stream "
        "(default: 4 on CUDA, 1 elsewhere; a pack that runs out of GPU memory is split in halves)",
    )
    ray = p.add_argument_group("--executor ray (flags override the suite's [resources])")
    ray.add_argument("--address", help="an existing Ray cluster's address (default: start a local one)")
    ray.add_argument("--cpus-per-task", type=int, help="CPU cores and torch threads per task (default 1)")
    ray.add_argument("--gpus-per-victim", type=float, help="GPU share per victim, e.g. 0.25 packs four (default 0)")
    ray.add_argument("--gpus-per-craft", type=float, help="GPU share per crafting task (default: --gpus-per-victim)")
    ray.add_argument("--max-retries", type=int, help="retries of a task whose worker was lost (default 3)")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms only (cuDNN/cuBLAS on CUDA; recorded in every entry): GPU results "
        "that verify exactly on the same GPU",
    )
    p.add_argument("--yes", action="store_true", help=f"run a suite of more than {CELL_CAP} cells")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_options(p)


FAIL_ON = ("failed", "below", "inconclusive", "untested")
"""What ``claims --fail-on`` can make exit 1: a FAILED claim, one BELOW THE PAPER (alone or with
HELD), an inconclusive or an untested one."""


def _fail_on(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in FAIL_ON]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown outcome {bad[0] if bad else text!r}; choose from {', '.join(FAIL_ON)} (comma-separated)"
        )
    return kinds


def _force_out(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force-out",
        action="store_true",
        help="write into --out even where it is your home folder or a source checkout / project root",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sapabench", description="Benchmark harness for data poisoning attacks and defenses around SAPA."
    )
    parser.add_argument("--version", action="version", version=f"sapabench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "list", help="list registered datasets, architectures, recipes, attacks, defenses, victim protocols or suites"
    )
    p.add_argument(
        "axis",
        choices=("datasets", "archs", "recipes", "attacks", "defenses", "protocols", "suites"),
        help="which registry to list",
    )
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'res*'")
    p.set_defaults(handler="list")

    p = sub.add_parser("train", help="train one victim and report clean accuracy and timing")
    p.add_argument("--arch", default="convnet", help="architecture (default convnet; see: sapabench list archs)")
    p.add_argument("--recipe", default="sgd", help="training recipe (default sgd; see: sapabench list recipes)")
    p.add_argument("--dataset", default=EMBEDDED_DATASET, help="dataset (default digits; see: sapabench list datasets)")
    p.add_argument("--seed", type=int, default=0, help="seeds the victim's initialisation and data order (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    _add_training_options(p)
    _add_numerics_options(p, AUTO)
    _add_protocol_options(p, sources=False)
    _add_data_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler="train")

    p = sub.add_parser("attack", help="craft a poison set and save it (safetensors + JSON)")
    p.add_argument("name", help="attack (see: sapabench list attacks)")
    p.add_argument("--dataset", default=EMBEDDED_DATASET, help="dataset (default digits; sapabench list datasets)")
    p.add_argument(
        "--seed", type=int, default=0, help="draws target/classes/poisons and seeds crafting and the surrogate"
    )
    p.add_argument(
        "--out",
        required=True,
        help="poison folder: a new one, or an earlier poison folder (its other files are kept; written so that an "
        "interrupt leaves the old poison or the new one)",
    )
    _force_out(p)
    p.add_argument("--preset", help="paper, embedded or smoke (default: embedded on digits, paper otherwise)")
    p.add_argument("--eps", type=_number, help="L_inf bound in [0, 1], e.g. 16/255")
    p.add_argument("--budget", type=_number, help="fraction of the training set perturbed, e.g. 0.01")
    p.add_argument("--rho", type=_number, help="SAPA radius (SAPA variants; default 0.05)")
    p.add_argument("--surrogate-arch", help="surrogate architecture (default: the preset's)")
    p.add_argument("--surrogate-epochs", type=int, help="surrogate training epochs (default: the dataset's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other attack option, e.g. --set steps=50")
    p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu or cuda")
    _add_craft_numerics_options(p, AUTO)
    _add_data_options(p)
    p.set_defaults(handler="attack")

    p = sub.add_parser(
        "evaluate", help="train victims on a poison set (with and without a defense, paired by seed); metric +/- SE"
    )
    p.add_argument("--poison", required=True, help="folder written by sapabench attack")
    p.add_argument("--arch", default="convnet", help="victim architecture (default convnet; sapabench list archs)")
    p.add_argument("--recipe", default="sgd", help="victim training recipe (default sgd; sapabench list recipes)")
    p.add_argument("--trials", type=int, default=5, help="victims trained on the poison (default 5)")
    p.add_argument(
        "--seed",
        type=int,
        default=100,
        help="the suites' trial_seed: victim i's seed is derived from (SEED, the poison's craft seed, i), the "
        "victims a run with this trial_seed trains on this poison (--victim-seeds shared: SEED, SEED+1, ...)",
    )
    p.add_argument(
        "--victim-seeds",
        choices=VICTIM_SEEDINGS,
        default=NESTED,
        help="nested (default, as suites) or shared (the rule of run folders made before 2026-12)",
    )
    p.add_argument("--dataset", help="default: the poison's dataset")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also train victims on clean data with the same seeds (and, with --defense, on clean data under the "
        "defense: its cost with no attack)",
    )
    p.add_argument(
        "--defense",
        default=NO_DEFENSE,
        help="a registered defense (sapabench list defenses): the poison's victims train without it and, with the "
        "same seeds, with it; prints what it removed (precision, recall), its time and the paired difference",
    )
    _add_protocol_options(p, sources=True)
    p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu or cuda")
    _add_training_options(p)
    _add_numerics_options(p, AUTO)
    _add_data_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler="evaluate")

    p = sub.add_parser("run", help="run a benchmark suite (resumable) and print its leaderboard")
    p.add_argument(
        "--suite", default="default", help="built-in suite name or a .toml file (see: sapabench list suites)"
    )
    p.add_argument("--out", help="output folder (default runs/SUITE); re-running skips finished cells")
    _force_out(p)
    _add_run_options(p)
    p.set_defaults(handler="run")

    p = sub.add_parser("submit", help="run the standard suite for one attack or defense into a submission folder")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--attack", help="a registered attack (built in or from a plugin); its SAPA twin runs beside it")
    who.add_argument("--defense", help="a registered defense, evaluated against the standard attacks")
    p.add_argument("--profile", default="standard", help="standard (the default suite's protocol) or smoke (seconds)")
    p.add_argument("--dataset", default=EMBEDDED_DATASET, help="dataset of the standard suite (default digits)")
    p.add_argument("--out", help="submission folder (default submissions/KIND-NAME); re-running resumes")
    _force_out(p)
    _add_run_options(p)
    p.set_defaults(handler="submit")

    p = sub.add_parser("verify", help="re-run a sample of entries' trials from their seeds; accept or refuse each")
    p.add_argument(
        "target", metavar="ENTRY_OR_DIR", help="an entry .json, an entries folder, or a run/submission folder"
    )
    p.add_argument(
        "--cells",
        type=int,
        default=None,
        help="trials re-run per entry (default: all of an entry with <= 8 trials, else enough to catch one "
        "forged value with probability 0.9)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds which trials are drawn")
    p.add_argument(
        "--max-entries",
        type=int,
        default=MAX_VERIFY_ENTRIES,
        help=f"refuse (before any work, with an estimate of the time) a target of more entries (default "
        f"{MAX_VERIFY_ENTRIES}); the time verification will take is printed before it starts",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu or cuda")
    p.add_argument(
        "--no-deterministic",
        dest="deterministic",
        action="store_false",
        help="re-run without deterministic algorithms (default: deterministic, so GPU entries measured with "
        "--deterministic verify exactly)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_data_options(p)
    p.set_defaults(handler="verify")

    p = sub.add_parser("leaderboard", help="leaderboard tools")
    lsub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    r = lsub.add_parser("render", help="re-render tables and plots from the entry files, without recomputing")
    r.add_argument("--results", required=True, help="an output folder of sapabench run")
    r.set_defaults(handler="leaderboard")
    r = lsub.add_parser("schema", help="print the leaderboard entry's JSON Schema")
    r.set_defaults(handler="schema")

    p = sub.add_parser(
        "migrate-poison", help="seal a poison folder written before metadata was sealed (trusting it as found)"
    )
    p.add_argument("folders", nargs="+", type=Path, help="poison folders (with poison.json) of format 1 or 2")
    p.set_defaults(handler="migrate-poison")

    p = sub.add_parser("claims", help="test the paper's claims against measured results")
    p.add_argument("--results", required=True, help="an output folder of sapabench run")
    p.add_argument(
        "--alpha",
        type=_number,
        help="family-wise (planned) or false-discovery (unplanned) level of the two-sided and below-the-paper tests "
        "(default: the plan's, else the claims file's 0.05); refused on a run that pre-registered its alpha",
    )
    p.add_argument(
        "--claims",
        help="a claims TOML file (default: the paper's Tables 1-5); refused where it redefines a pre-registered claim",
    )
    p.add_argument(
        "--fail-on",
        type=_fail_on,
        default=(),
        metavar="OUTCOMES",
        help=f"exit 1 when a claim ends in one of these (comma-separated: {', '.join(FAIL_ON)}), for CI jobs",
    )
    p.add_argument("--all", action="store_true", help="list the untested claims too (default: counted only)")
    p.set_defaults(handler="claims")

    p = sub.add_parser(
        "pilot",
        help="measure a pilot run's variance components (poison vs victim) for a claim, as a pilots.toml block",
    )
    p.add_argument("--results", required=True, help="an output folder of sapabench run (the pilot's craft seeds)")
    p.add_argument("--claim", required=True, action="append", help="a claim id (repeat for several)")
    p.add_argument("--claims", help="a claims TOML file (default: the paper's Tables 1-5)")
    p.set_defaults(handler="pilot")

    p = sub.add_parser(
        "compare",
        help="regression test: has anything moved between two runs of one suite (exit 0 no, 1 yes, 2 bad input)",
    )
    p.add_argument("before", type=Path, help="an output folder of sapabench run (the reference)")
    p.add_argument("after", type=Path, help="an output folder of the same suite (the run to check)")
    p.add_argument(
        "--margin",
        type=_number,
        help="how far a SAPA - base gap, or an attack's metric, may move per poison before it counts (a fraction of "
        "the metric, or logits); default: half the delta of the claim that tests the gap, else 0.02 (0.5 logits)",
    )
    p.add_argument("--alpha", type=_number, default=0.05, help="family-wise level over the comparisons (default 0.05)")
    p.set_defaults(handler="compare")
    return parser
