"""sapabench's top layer: suites, the runner and its results store, executors, the trial
pipeline, entries from results, verification, submission, the claims check and the CLI.

Packages, top to bottom (each imports only those below it; ``pyproject.toml``'s import-linter
contract checks it): ``benchmark`` > ``leaderboard`` | ``defenses`` | ``attacks`` > ``victims``
> ``core``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # PEP 562: the command-line parser (benchmark.parser) imports this package without torch.
    if name == "__version__":
        from sapabench.core.provenance import VERSION

        return VERSION
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
