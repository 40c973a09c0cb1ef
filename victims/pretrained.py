"""Clean-trained models cached on disk, and user checkpoints: the weights a victim starts from.

An attack's surrogate and a ``finetune`` / ``linear`` victim's pretrained model are the same
thing, a clean training run of one architecture on one dataset with one seed, so both come from
:func:`clean_model` and share its cache: safetensors (never pickle) under ``$SAPABENCH_CACHE``
(default ``~/.cache/sapabench``), keyed by (dataset fingerprint, arch, recipe, epochs, seed).
A user's own checkpoint (e.g. a timm ViT converted to this harness's module layout) is read by
:func:`checkpoint_weights`, which refuses a missing, unreadable or mismatched file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sapabench.core.atomic import file_sha256, replacing, write_text
from sapabench.core.datasets import ImageDataset
from sapabench.core.errors import ConfigError
from sapabench.core.numerics import FP32, Numerics
from sapabench.core.owned import one_at_a_time
from sapabench.core.runtime import seeded
from sapabench.victims.archs import ARCHS, Victim, build_model
from sapabench.victims.recipes import RECIPES, Recipe
from sapabench.victims.train import train_victim

Weights = dict[str, torch.Tensor]


def cache_dir() -> Path:
    return Path(os.environ.get("SAPABENCH_CACHE", Path.home() / ".cache" / "sapabench")).expanduser()


@dataclass(frozen=True)
class CleanRun:
    """A clean training run: ``arch`` trained with ``recipe`` (epochs None: the dataset's
    default) on the clean training set, initialised and shuffled with ``seed``, in ``numerics``
    (an attack's crafting numerics for its surrogate; plain fp32 otherwise)."""

    arch: str = "convnet"
    recipe: str = "sgd"
    epochs: int | None = None
    seed: int = 0
    numerics: Numerics = FP32

    def __post_init__(self) -> None:
        ARCHS.entry(self.arch)
        RECIPES.entry(self.recipe)
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ConfigError(f"invalid epochs={self.epochs!r}: must be a positive integer")

    def train_recipe(self) -> Recipe:
        return RECIPES.create(self.recipe, **({"epochs": self.epochs} if self.epochs else {}))


def state_of(model: torch.nn.Module) -> Weights:
    """A model's weights as contiguous CPU tensors (what safetensors stores)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def clean_model(
    run: CleanRun, dataset: ImageDataset, device: torch.device, use_cache: bool = True
) -> tuple[Victim, dict[str, Any]]:
    """The model of clean run ``run`` in eval mode, trained once and cached, with its
    description (clean accuracy, training seconds, cache key, ``cached``)."""
    recipe = run.train_recipe()
    epochs = recipe.train.epochs or dataset.default_epochs
    key = f"{dataset.name}-{dataset.fingerprint}/{run.arch}-{run.recipe}-e{epochs}-s{run.seed}"
    if run.numerics != FP32:  # fp32 runs keep the keys they had before numerics existed
        key += f"-{run.numerics.precision}-{run.numerics.memory_format}"
    folder = cache_dir() / "surrogates"  # the folder name predates pretrained victims; kept so caches stay warm
    if not use_cache:
        return _trained(run, recipe, epochs, key, dataset, device, None)
    # Two workers crafting an attack and its SAPA twin at once would each train the same run:
    # the second waits for the first and reads its result from the cache.
    with one_at_a_time(folder / f"{key}.lock"):
        return _trained(run, recipe, epochs, key, dataset, device, folder)


def _trained(
    run: CleanRun,
    recipe: Recipe,
    epochs: int,
    key: str,
    dataset: ImageDataset,
    device: torch.device,
    folder: Path | None,
) -> tuple[Victim, dict[str, Any]]:
    """``run``'s model from the cache in ``folder`` (None: no cache), else trained now (and cached)."""
    if folder is not None:
        weights, info_path = folder / f"{key}.safetensors", folder / f"{key}.json"
        if weights.is_file() and info_path.is_file():
            try:
                model = built(run.arch, dataset, load_file(str(weights)), device)
                info = json.loads(info_path.read_text())
                if "train_seconds" in info:  # written before seconds were named *_s
                    info["train_s"] = info.pop("train_seconds")
                return model, {**info, "cached": True}
            except Exception:  # a damaged cache entry is rebuilt, never trusted
                pass
    result = train_victim(run.arch, recipe, dataset, seed=run.seed, device=device, numerics=run.numerics)
    info = {
        "arch": run.arch,
        "recipe": run.recipe,
        "epochs": epochs,
        "seed": run.seed,
        "clean_accuracy": result.clean_accuracy,
        "train_s": result.timing.total_s,
        "cache_key": key,
        **run_numerics(run.numerics),
    }
    state = state_of(result.model)
    if folder is not None:
        with replacing(folder / f"{key}.safetensors") as tmp:
            save_file(state, str(tmp))
        write_text(folder / f"{key}.json", json.dumps(info))
    return built(run.arch, dataset, state, device), {**info, "cached": False}


def run_numerics(numerics: Numerics) -> dict[str, str]:
    """How a clean run's description records its numerics: nothing for plain fp32 (as before
    numerics existed), else ``precision`` and ``memory_format``."""
    return {} if numerics == FP32 else {"precision": numerics.precision, "memory_format": numerics.memory_format}


def recorded_numerics(info: dict[str, Any]) -> Numerics:
    """The numerics a clean run's description records (:func:`run_numerics`'s inverse)."""
    return Numerics(info.get("precision", FP32.precision), info.get("memory_format", FP32.memory_format))


def built(arch: str, dataset: ImageDataset, state: Weights, device: torch.device) -> Victim:
    """``arch`` as a freshly built module holding ``state``, in eval mode.

    Freshly trained and cached models go through this one path, so that whoever uses the model
    next (an attack's random augmentations, say) sees the same global RNG stream whether or not
    the cache was warm: building a module draws from it.
    """
    model = build_model(arch, dataset)
    model.load_state_dict(state)
    return model.to(device).eval()


def initial_weights(arch: str, dataset: ImageDataset, seed: int) -> Weights:
    """The weights a victim of ``arch`` trained with ``seed`` starts from: building the model is
    the first draw :func:`sapabench.victims.train_victim` makes from its seeded RNG."""
    with seeded(seed, torch.device("cpu")):
        return state_of(build_model(arch, dataset))


@dataclass(frozen=True)
class Checkpoint:
    """A user's safetensors checkpoint, pinned by its sha256 when the run was planned."""

    path: str
    sha256: str

    @classmethod
    def pin(cls, path: str | Path) -> Checkpoint:
        """The checkpoint at ``path`` with its current sha256 (refuses a missing file)."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"pretrained checkpoint {p} does not exist; pass the path of a .safetensors file")
        return cls(str(p.resolve()), file_sha256(p))


def checkpoint_weights(ckpt: Checkpoint, arch: str, dataset: ImageDataset) -> Weights:
    """The weights in ``ckpt``, checked against its pinned sha256 and against ``arch`` shaped
    for ``dataset`` (same parameter names and shapes, hence the same number of classes)."""
    path = Path(ckpt.path)
    if not path.is_file():
        raise ConfigError(f"pretrained checkpoint {path} is missing; restore it or pass --pretrained again")
    if file_sha256(path) != ckpt.sha256:
        raise ConfigError(
            f"pretrained checkpoint {path} changed since the run was planned (sha256 {ckpt.sha256[:12]}...); "
            "restore the original file or start a new run with --out"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(f"pretrained checkpoint {path} is not a readable safetensors file ({err})") from None
    expected = {k: tuple(v.shape) for k, v in build_model(arch, dataset).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if set(got) != set(expected):
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        what = f"lacks {missing[0]!r}" if missing else f"has unexpected {extra[0]!r}"
        raise ConfigError(
            f"pretrained checkpoint {path} is not a {arch} for {dataset.name}: it {what} "
            f"({len(missing)} missing, {len(extra)} unexpected tensors); pass a checkpoint of {arch}"
        )
    wrong = [k for k in expected if got[k] != expected[k]]
    if wrong:
        k = wrong[0]
        raise ConfigError(
            f"pretrained checkpoint {path}: tensor {k!r} has shape {got[k]}, a {arch} for {dataset.name} "
            f"({dataset.num_classes} classes, {dataset.in_chans} channels, side {dataset.img_size}) needs "
            f"{expected[k]}; pass a checkpoint of that architecture and number of classes"
        )
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise ConfigError(
            f"pretrained checkpoint {path}: tensor {broken[0]!r} holds NaN or infinite values "
            f"({len(broken)} such tensors); pass a checkpoint of a model that trained"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
