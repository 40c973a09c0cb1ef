"""sapabench's top layer: suites, the runner and its results store, executors, the trial
pipeline, entries from results, verification, submission, the claims check and the CLI.

Packages, top to bottom (each imports only those below it; ``pyproject.toml``'s import-linter
contract checks it): ``benchmark`` > ``leaderboard`` | ``defenses`` | ``attacks`` > ``victims``
> ``core``.
"""

from sapabench.core.provenance import VERSION as __version__

__all__ = ["__version__"]
