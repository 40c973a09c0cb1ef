"""Seeds, devices and the identity of the platform a number was measured on."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from sapabench.core.errors import ConfigError

MAX_SEED = 2**31 - 1
"""The largest seed a user gives (craft, trial and --seed): seeds derived from it (ensemble
members, heads, trial t of a cell) stay far inside what torch and SQLite's integers hold."""
MAX_DERIVED_SEED = 2**62


def check_seed(seed: object, maximum: int = MAX_SEED) -> None:
    """Seeds are integers from 0 to ``maximum`` (they seed torch generators)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= maximum:
        raise ConfigError(f"invalid seed={seed!r}: must be an integer from 0 to {maximum} (set --seed)")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; asking for CUDA without one is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"invalid device {device!r}: use auto, cpu or cuda (set --device)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no CUDA GPU is available (use --device cpu or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {device!r}: use auto, cpu or cuda (set --device)")
    return dev


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG (and the device's) for the block, leaving the caller's state as
    it was afterwards."""
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Inside the block (``enabled``), torch uses only deterministic algorithms: cuDNN without
    autotuning and in deterministic mode, cuBLAS with a fixed workspace (``CUBLAS_WORKSPACE_CONFIG``
    must be set before CUDA starts; it is set here if absent), and an error for any op that has
    no deterministic implementation instead of a silently different result. CPU kernels are
    deterministic for a fixed thread count already. The previous settings come back afterwards."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]


def device_name(device: torch.device) -> str:
    """The device a result was measured on, as recorded in results and entries: the GPU's name,
    or the CPU architecture with torch's thread count (CPU results depend on it)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}x{torch.get_num_threads()}threads"


UNKNOWN_ISA = "unknown"
"""The instruction set of results recorded before it was (they verify by device name alone)."""


def isa(device: torch.device) -> str:
    """The instruction set of the kernels a result was computed with: torch's CPU capability
    (``AVX2``, ``AVX512``, ...) on the CPU, ``cuda`` on a GPU (whose name :func:`device_name`
    gives). CPU results are bit-identical only between machines with the same one."""
    return "cuda" if device.type == "cuda" else torch.backends.cpu.get_cpu_capability()


_CPU_NAME = re.compile(r"cpu:(.+)x(\d+)threads")
MANY_THREADS = 10**6
"""What a recorded thread count of more than six digits reads as (Python will not convert an
integer of thousands of digits, and no machine has that many)."""


def cpu_threads(recorded: str) -> tuple[str, int] | None:
    """The CPU architecture and thread count a :func:`device_name` records (None for a GPU or
    anything else); a count of more than six digits reads as :data:`MANY_THREADS`."""
    match = _CPU_NAME.fullmatch(recorded)
    if match is None:
        return None
    digits = match.group(2).lstrip("0") or "0"
    return match.group(1), int(digits) if len(digits) <= 6 else MANY_THREADS


@contextmanager
def threads_of(recorded: str, device: torch.device) -> Iterator[None]:
    """Inside the block, torch uses the CPU thread count of ``recorded`` (a :func:`device_name`)
    when it names this machine's CPU architecture and ``device`` is the CPU; otherwise nothing
    changes. Re-running a result with its own thread count reproduces it exactly."""
    parsed = cpu_threads(recorded)
    if device.type != "cpu" or parsed is None or parsed[0] != platform.machine():
        yield
        return
    threads = parsed[1]
    if not 1 <= threads <= (os.cpu_count() or 1):  # more threads than cores cannot reproduce anything faster
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
