"""The ``sapabench`` command line. It only parses arguments into typed configs and calls the
library; every user error surfaces as one ``sapabench: error: ...`` line and exit status 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from typing import Any, Callable, NoReturn, Sequence

from benchmark.errors import ConfigError

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


def _registries() -> dict[str, Any]:
    from benchmark.datasets import DATASETS
    from victims.archs import ARCHS
    from victims.recipes import RECIPES

    return {"datasets": DATASETS, "archs": ARCHS, "recipes": RECIPES}


def _cmd_list(args: argparse.Namespace) -> int:
    registry = _registries()[args.axis]
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
_TORCHVISION = ("cifar10", "cifar100", "svhn")


def _build_recipe(args: argparse.Namespace) -> Any:
    from victims.recipes import RECIPES

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
    return RECIPES.create(args.recipe, **options)


def _build_dataset(args: argparse.Namespace) -> Any:
    from benchmark.datasets import DATASETS

    DATASETS.entry(args.dataset)
    if args.dataset in _TORCHVISION:
        return DATASETS.create(
            args.dataset, data_root=args.data_root, download=args.download, verify_checksums=not args.no_verify_checksums
        )
    if args.data_root is not None or args.download:
        raise ConfigError(f"--data-root/--download are for {', '.join(_TORCHVISION)}; {args.dataset!r} is built in")
    return DATASETS.create(args.dataset)


def _progress_printer(stream: Any) -> Callable[[Any], None]:
    start = time.perf_counter()
    interactive = hasattr(stream, "isatty") and stream.isatty()

    def show(stats: Any) -> None:
        elapsed = time.perf_counter() - start
        eta = elapsed / stats.epoch * (stats.epochs - stats.epoch)
        width = 24
        done = int(width * stats.epoch / stats.epochs)
        line = (
            f"[{'#' * done}{'.' * (width - done)}] epoch {stats.epoch}/{stats.epochs}"
            f"  loss {stats.loss:.4f}  lr {stats.lr:.4g}  {stats.seconds:.2f}s/epoch  eta {eta:.0f}s"
        )
        end = "\n" if not interactive or stats.epoch == stats.epochs else ""
        stream.write(("\r" if interactive else "") + line + end)
        stream.flush()

    return show


def _cmd_train(args: argparse.Namespace) -> int:
    from victims.archs import ARCHS
    from victims.train import check_seed, resolve_device, train_victim

    ARCHS.entry(args.arch)
    check_seed(args.seed)
    recipe = _build_recipe(args)
    device = resolve_device(args.device)
    dataset = _build_dataset(args)
    print(
        f"training {args.arch} with recipe {recipe.name} on {dataset.name} "
        f"({dataset.num_train} train / {len(dataset.test_y)} test, seed {args.seed}, {device})",
        file=sys.stderr,
    )
    result = train_victim(
        args.arch, recipe, dataset, seed=args.seed, device=device,
        progress=None if args.quiet else _progress_printer(sys.stderr),
    )  # fmt: skip
    t = result.timing
    if args.json:
        print(json.dumps({
            "arch": args.arch, "recipe": result.recipe.describe(), "dataset": dataset.name,
            "dataset_fingerprint": dataset.fingerprint, "seed": args.seed,
            "clean_accuracy": result.clean_accuracy, "train_s": t.total_s, "epoch_s": list(t.epoch_s),
            "images_per_s": t.images_per_s, "eval_s": result.eval_s, "device": t.device,
        }, indent=2))  # fmt: skip
    else:
        print(f"clean test accuracy: {100 * result.clean_accuracy:.2f}%  ({args.arch}, {recipe.name}, {dataset.name}, seed {args.seed})")
        print(
            f"time: {t.total_s:.1f} s training ({t.mean_epoch_s:.2f} s/epoch over {len(t.epoch_s)} epochs, "
            f"{t.images_per_s:.0f} images/s) + {result.eval_s:.2f} s evaluation on {t.device}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from benchmark import __version__

    parser = _Parser(prog="sapabench", description="Benchmark harness for data poisoning attacks and defenses around SAPA.")
    parser.add_argument("--version", action="version", version=f"sapabench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="list registered datasets, architectures or recipes")
    p.add_argument("axis", choices=("datasets", "archs", "recipes"))
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'res*'")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("train", help="train one victim and report clean accuracy and timing")
    p.add_argument("--arch", default="convnet", help="architecture (default convnet; see: sapabench list archs)")
    p.add_argument("--recipe", default="sgd", help="training recipe (default sgd; see: sapabench list recipes)")
    p.add_argument("--dataset", default="digits", help="dataset (default digits; see: sapabench list datasets)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    g = p.add_argument_group("training (defaults: the recipe's and the dataset's protocol)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=_number)
    g.add_argument("--momentum", type=_number)
    g.add_argument("--weight-decay", type=_number)
    g.add_argument("--schedule", help="step (x0.1 at 1/2 and 3/4), cosine, cyclic or constant")
    g.add_argument("--no-augment", action="store_true", help="no random crop/flip")
    g = p.add_argument_group("recipe options")
    g.add_argument("--sam-rho", type=_number, help="SAM radius (recipe sam; default 0.05)")
    g.add_argument("--cutout-size", type=int, help="CutOut square side in pixels (recipe cutout; default side/2)")
    g.add_argument("--adv-eps", type=_number, help="PGD L_inf radius in [0, 1] (recipe adversarial; default 8/255)")
    g.add_argument("--adv-step", type=_number, help="PGD step (recipe adversarial; default 2/255)")
    g.add_argument("--adv-steps", type=int, help="PGD iterations (recipe adversarial; default 7)")
    g = p.add_argument_group("data on disk (cifar10, cifar100, svhn)")
    g.add_argument("--data-root", help="folder in torchvision's on-disk format")
    g.add_argument("--download", action="store_true", help="download into --data-root (needs internet)")
    g.add_argument("--no-verify-checksums", action="store_true", help="accept files whose md5 differs from the release")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sapabench`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as err:
        message = " ".join(str(err).split())
        print(f"sapabench: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sapabench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
