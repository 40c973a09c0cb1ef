"""sapabench: a benchmark harness for data-poisoning attacks and defenses built around SAPA.

Packages: ``benchmark`` (datasets, registries, CLI), ``victims`` (architectures, training
recipes, ``train_victim``), ``attacks``, ``defenses``, ``leaderboard``.
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("sapabench")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from benchmark.datasets import DATASETS, ImageDataset, load_dataset
from benchmark.errors import ConfigError, UnknownNameError
from benchmark.registry import Registry

__all__ = ["DATASETS", "ConfigError", "ImageDataset", "Registry", "UnknownNameError", "load_dataset", "__version__"]
