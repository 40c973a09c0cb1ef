"""sapabench's ground floor: the vocabulary every other package shares.

It imports none of ``victims``, ``attacks``, ``defenses``, ``leaderboard`` or ``benchmark``
(an import-linter contract in ``pyproject.toml`` checks it), so any of them can use it:

- ``core.errors``: :class:`ConfigError`, the error every fixable user mistake raises.
- ``core.registry``: :class:`Registry`, one per axis (datasets, archs, recipes, attacks, defenses).
- ``core.datasets``: :class:`ImageDataset`, ``DATASETS``, :class:`DataSource`.
- ``core.threats``: :class:`ThreatModel` and the metric each threat model is measured by.
- ``core.poison``: :class:`PoisonSet`, the poison artifact (safetensors + JSON).
- ``core.names``: shared names (``CLEAN``, ``NO_DEFENSE``, presets, SAPA twin naming).
- ``core.runtime``: seeds, devices, the platform identity of a measurement.
- ``core.sharpness``: the worst-case weight step shared by SAM and SAPA.
- ``core.stats``, ``core.atomic``, ``core.checks``, ``core.provenance``: statistics, atomic file
  writes, config validation, where a result came from.

Its names are imported on first use (PEP 562), so importing a light module of this package (for
example ``core.names`` from the command-line parser) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "DATASETS": "datasets",
    "DataSource": "datasets",
    "ImageDataset": "datasets",
    "load_dataset": "datasets",
    "ConfigError": "errors",
    "UnknownNameError": "errors",
    "PoisonSet": "poison",
    "Registry": "registry",
    "ThreatModel": "threats",
    "__version__": "provenance",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{home}")
    return getattr(module, "VERSION" if name == "__version__" else name)
