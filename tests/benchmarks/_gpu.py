"""The figures file the GPU benchmarks add to."""

from __future__ import annotations

import json
import os
from pathlib import Path


def record(key: str, value: object) -> None:
    """Add ``value`` under ``key`` to the JSON file named by ``SAPABENCH_BENCH_JSON`` (if set)."""
    name = os.environ.get("SAPABENCH_BENCH_JSON")
    if not name:
        return
    path = Path(name)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = value
    path.write_text(json.dumps(results, indent=1))
