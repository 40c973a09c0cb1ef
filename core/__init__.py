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
"""

from sapabench.core.datasets import DATASETS, DataSource, ImageDataset, load_dataset
from sapabench.core.errors import ConfigError, UnknownNameError
from sapabench.core.poison import PoisonSet
from sapabench.core.provenance import VERSION as __version__
from sapabench.core.registry import Registry
from sapabench.core.threats import ThreatModel

__all__ = [
    "DATASETS",
    "ConfigError",
    "DataSource",
    "ImageDataset",
    "PoisonSet",
    "Registry",
    "ThreatModel",
    "UnknownNameError",
    "__version__",
    "load_dataset",
]
