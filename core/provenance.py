"""Where a result came from: code and library versions, git commit, device."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from sapabench.core.runtime import device_name, isa

try:
    VERSION = metadata.version("sapabench")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    VERSION = "0.0.0+unknown"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the sapabench checkout in use ('unknown' outside a git checkout)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip()
        if out.returncode != 0 or not commit:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(device: torch.device) -> dict[str, Any]:
    return {
        "sapabench_version": VERSION,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "timm": metadata.version("timm"),
        "python": platform.python_version(),
        "device": device_name(device),
        "isa": isa(device),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
