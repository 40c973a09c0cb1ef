"""Where a result came from: code and library versions, git commit, device."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the sapabench checkout in use ('unknown' outside a git checkout)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip()
        if out.returncode != 0 or not commit:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}x{torch.get_num_threads()}threads"


def provenance(device: torch.device) -> dict[str, Any]:
    import timm

    from benchmark import __version__

    return {
        "sapabench_version": __version__,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "device": device_name(device),
    }
