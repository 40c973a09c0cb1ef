"""Module-level task functions for executor tests (executors ship functions by reference)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def craft_label(task: str) -> str:
    """A parent's result: its task, crafted."""
    time.sleep(0.05)
    return f"crafted {task}"


def run_child(child: str, parent: str | None) -> tuple[str, str | None, float]:
    """A child's result: itself, what its parent gave it, and when it ran."""
    return child, parent, time.monotonic()


def lost(err: BaseException) -> str:
    return f"lost: {type(err).__name__}"


def die_once(marker: str) -> str:
    """Kill this worker the first time (leaving ``marker``), craft the second."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return f"crafted after {path.read_text()} died"


def assigned_resources(child: str, parent: str | None) -> dict[str, float]:
    """What Ray gave the task running this child."""
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())


def assigned_resources_craft(task: str) -> dict[str, float]:
    return assigned_resources(task, None)
