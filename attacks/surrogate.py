"""Clean-trained surrogates, cached on disk by (dataset, arch, recipe, epochs, seed).

A surrogate is an ordinary victim from :func:`victims.train_victim`. Its weights are cached as
safetensors (never pickle) under ``$SAPABENCH_CACHE`` (default ``~/.cache/sapabench``), so a
baseline attack and its SAPA variant crafted with the same seed share one surrogate and the
benchmark does not retrain it for every attack.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from core.atomic import replacing, write_text
from core.datasets import ImageDataset
from core.errors import ConfigError
from victims.archs import ARCHS, Victim, build_model
from victims.recipes import RECIPES, Recipe
from victims.train import train_victim


@dataclass(frozen=True)
class SurrogateSpec:
    """Which clean model an attack crafts against. ``epochs=None``: the dataset's default."""

    arch: str = "convnet"
    recipe: str = "sgd"
    epochs: int | None = None

    def __post_init__(self) -> None:
        ARCHS.entry(self.arch)
        RECIPES.entry(self.recipe)
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ConfigError(f"invalid surrogate epochs={self.epochs!r}: must be a positive integer")

    def train_recipe(self) -> Recipe:
        """The recipe the surrogate is trained with (epochs None: the dataset's default)."""
        return RECIPES.create(self.recipe, **({"epochs": self.epochs} if self.epochs else {}))


def cache_dir() -> Path:
    return Path(os.environ.get("SAPABENCH_CACHE", Path.home() / ".cache" / "sapabench")).expanduser()


def get_surrogate(
    spec: SurrogateSpec, dataset: ImageDataset, seed: int, device: torch.device, use_cache: bool = True
) -> tuple[Victim, dict[str, Any]]:
    """A clean-trained surrogate in eval mode with its description (accuracy, seed, cache key)."""
    recipe = spec.train_recipe()
    epochs = recipe.train.epochs or dataset.default_epochs
    key = f"{dataset.name}-{dataset.fingerprint}/{spec.arch}-{spec.recipe}-e{epochs}-s{seed}"
    folder = cache_dir() / "surrogates"
    weights, info_path = folder / f"{key}.safetensors", folder / f"{key}.json"
    if use_cache and weights.is_file() and info_path.is_file():
        try:
            model = _built(spec, dataset, load_file(str(weights)), device)
            info = json.loads(info_path.read_text())
            if "train_seconds" in info:  # written before seconds were named *_s
                info["train_s"] = info.pop("train_seconds")
            return model, {**info, "cached": True}
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            pass
    result = train_victim(spec.arch, recipe, dataset, seed=seed, device=device)
    info = {
        **asdict(spec),
        "epochs": epochs,
        "seed": seed,
        "clean_accuracy": result.clean_accuracy,
        "train_s": result.timing.total_s,
        "cache_key": key,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    if use_cache:
        with replacing(weights) as tmp:
            save_file(state, str(tmp))
        write_text(info_path, json.dumps(info))
    return _built(spec, dataset, state, device), {**info, "cached": False}


def _built(spec: SurrogateSpec, dataset: ImageDataset, state: dict[str, torch.Tensor], device: torch.device) -> Victim:
    """The surrogate as a freshly built module holding ``state``, in eval mode.

    Freshly trained and cached surrogates go through this one path, so that crafting sees the
    same module and the same global RNG stream (building a module draws from it, and the
    attacks' random augmentations draw after it) whether or not the cache was warm; before,
    a fresh surrogate gave a different poison than a cached one for the same seed.
    """
    model = build_model(spec.arch, dataset)
    model.load_state_dict(state)
    return model.to(device).eval()
