"""The executor seam: how cells are run. A local executor now (sequential, or one process per
core); a distributed engine plugs in behind the same interface later.

``auto`` (the default) picks by measurement (README, "Precision and speed"): on a 2-core CPU
two single-threaded worker processes ran the default suite faster than one process with two
threads; on a GPU one process keeps the device to itself, and CPUs with more cores keep the
local executor until measured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Protocol, TypeVar

import torch

from core.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``items`` and yields ``(item, result)`` as each finishes.

    ``fn`` must be a module-level function and items picklable, so that any executor (local
    processes, a cluster) can ship them. ``fn`` must not raise: failures come back as results.
    """

    name: str

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]: ...


class LocalExecutor:
    """Runs every item in this process, one after another."""

    name = "local"

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        for item in items:
            yield item, fn(item)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


class ProcessExecutor:
    """One worker process per core (each with one torch thread), results as they complete."""

    name = "processes"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or cpu_cores()

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        items = list(items)
        with ProcessPoolExecutor(self.workers, initializer=_init_worker, initargs=(1,)) as pool:
            futures = {pool.submit(fn, item): item for item in items}
            for future in as_completed(futures):
                yield futures[future], future.result()


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_executor(device: torch.device) -> str:
    """The executor ``auto`` stands for on ``device`` (see the module docstring)."""
    return "processes" if device.type == "cpu" and cpu_cores() == 2 else "local"


EXECUTORS = ("auto", "local", "processes")


def make_executor(name: str, workers: int | None = None, device: torch.device | None = None) -> Executor:
    """The executor called ``name``; ``auto`` resolves with :func:`default_executor`."""
    if name == "auto":
        name = default_executor(device or torch.device("cpu"))
    if name == "local":
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor(workers)
    raise ConfigError(f"unknown executor {name!r}; choose {', '.join(EXECUTORS)} (set --executor)")
