"""sapabench: a benchmark harness for data-poisoning attacks and defenses around SAPA.

One import namespace over the repository's top-level folders (mapped in ``pyproject.toml``):
``sapabench.core`` (``core/``), ``sapabench.victims``, ``sapabench.attacks``,
``sapabench.defenses``, ``sapabench.leaderboard`` and ``sapabench.benchmark`` (orchestration and
the command line). Each imports only the layers below it: benchmark > leaderboard | defenses |
attacks > victims > core.

This module stays light (no torch): ``sapabench --version`` answers from it.
"""

from importlib import metadata
from pathlib import Path

# In a source checkout the six packages are the folders beside this one: found there first, so
# the checkout you run from is the code that runs even when another copy is installed (an
# installed wheel holds them inside this folder, which is searched first).
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "core" / "__init__.py").is_file():
    __path__.append(str(_checkout))

try:
    __version__ = metadata.version("sapabench")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
