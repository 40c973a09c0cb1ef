"""The executor seam: how a run's crafting and cells are scheduled.

A run is a two-level graph (:class:`Graph`): poison sets to craft, and cells, each waiting on at
most one poison. Every executor *streams* it: a cell starts as soon as its own poison exists,
not after every poison is crafted, and results come back (:class:`Finished`) in the order they
finish, so the driver records each one at once. Three executors:

- ``local``: everything in this process, one after another (cells needing no new poison first,
  then each poison followed by its cells).
- ``processes``: one single-threaded worker process per core; ready cells before new crafting.
- ``ray`` (``benchmark.ray_executor``, the ``sapabench[ray]`` extra): tasks on a Ray cluster,
  each cell task taking its craft task's result as an argument.

``auto`` (the default) picks between the first two by measurement (docs/performance.md,
"Precision and speed" and "Training on a GPU"): on a 2-core CPU two single-threaded worker processes ran the
default suite faster than one process with two threads; on an H100, four spawned workers ran it
in 60 s against 124 s in one process (small victims are bound by host work per step, which
processes spread over cores); CPUs with more cores keep the local executor until measured.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch

from sapabench.core import interrupts
from sapabench.core.errors import ConfigError
from sapabench.core.runtime import resolve_device

CRAFT, CELL = "craft", "cell"


@dataclass(frozen=True)
class Graph:
    """Poison sets to craft and the cells that wait on them.

    ``craft(task)`` makes a parent's result; ``run(child, parent_result)`` a child's, with
    ``None`` for a child that needs no poison (``parent`` key ``None``) and the earlier result
    for a parent in ``known`` (crafted by an earlier run). ``craft_failed(error)`` and
    ``run_failed(error)`` turn a task that could not run at all (a worker lost beyond its
    retries) into a result. Functions must be module-level and tasks picklable, so that any
    executor can ship them; ``craft`` and ``run`` must not raise (failures are results).
    """

    craft: Callable[[Any], Any]
    run: Callable[[Any, Any], Any]
    craft_failed: Callable[[BaseException], Any]
    run_failed: Callable[[BaseException], Any]
    parents: Mapping[str, Any] = field(default_factory=dict)
    known: Mapping[str, Any] = field(default_factory=dict)
    children: Sequence[tuple[str | None, Any]] = ()

    def __post_init__(self) -> None:
        for key, _ in self.children:
            if key is not None and key not in self.parents and key not in self.known:
                raise ValueError(f"a child waits on {key!r}, which is neither crafted nor to craft")

    def waiting(self) -> tuple[list[tuple[Any, Any]], dict[str, list[Any]]]:
        """Children ready now (with their parent's result) and children waiting on a craft."""
        ready, waiting = [], defaultdict(list)
        for key, child in self.children:
            if key is None or key in self.known:
                ready.append((child, None if key is None else self.known[key]))
            else:
                waiting[key].append(child)
        return ready, waiting


@dataclass(frozen=True)
class Finished:
    """One finished task: a craft (``item`` is its parent key) or a cell (``item`` the child)."""

    kind: Literal["craft", "cell"]
    item: Any
    result: Any


class Executor(Protocol):
    """Streams a :class:`Graph`, yielding each task as it finishes."""

    name: str

    def resolve_device(self, device: str) -> torch.device:
        """The device tasks run on (``auto`` resolved where the tasks will run)."""
        ...

    def stream(self, graph: Graph) -> Iterator[Finished]: ...

    def describe(self) -> dict[str, Any]:
        """The executor and its concurrency, as a run's provenance records them."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs every task in this process, one after another."""

    name = "local"

    def resolve_device(self, device: str) -> torch.device:
        return resolve_device(device)

    def stream(self, graph: Graph) -> Iterator[Finished]:
        ready, waiting = graph.waiting()
        for child, parent in ready:
            yield Finished(CELL, child, graph.run(child, parent))
        for key, task in graph.parents.items():
            record = graph.craft(task)
            yield Finished(CRAFT, key, record)
            for child in waiting.get(key, ()):
                yield Finished(CELL, child, graph.run(child, record))

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "concurrency": 1, "threads_per_task": torch.get_num_threads()}

    def close(self) -> None:
        pass


GPU_WORKERS = 4
"""Worker processes per GPU by default with ``--executor processes`` on CUDA: each holds its own
CUDA context (about 0.5 GB) and trains one victim at a time, its steps captured as CUDA graphs."""


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _init_worker(threads: int, parent: int) -> None:
    torch.set_num_threads(threads)
    interrupts.install()  # a plugin's KeyboardInterrupt fails its task; the user's Ctrl-C stops it
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """End this worker when the run that started it ends, however it ends (``kill -9``
    included): the kernel's parent-death signal where there is one (Linux), and a thread that
    checks every second whether the parent is still there (everywhere)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the thread alone
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class ProcessExecutor:
    """One worker process per core (each with one torch thread), at most one task per worker in
    flight, ready cells before new crafting; results as they complete."""

    name = "processes"

    def __init__(self, workers: int | None = None, force: bool = False) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        if workers is not None and workers > cpu_cores() and not force:
            raise ConfigError(
                f"--workers {workers} is more than this machine's {cpu_cores()} cores (each worker is a "
                "single-threaded process: more only queue on the cores); pass at most that, or --force-workers"
            )
        self._asked = workers
        self.workers = workers or cpu_cores()
        self._start = "fork"

    def resolve_device(self, device: str) -> torch.device:
        """The device; on CUDA the workers are *spawned* (a forked child cannot use CUDA once the
        parent has initialised it) and default to ``GPU_WORKERS`` per GPU."""
        dev = resolve_device(device)
        if dev.type == "cuda":
            if "spawn" not in multiprocessing.get_all_start_methods():
                raise ConfigError(
                    "--executor processes on CUDA needs the 'spawn' start method, which this platform lacks "
                    "(use --executor local)"
                )
            self._start = "spawn"
            if self._asked is None:
                self.workers = min(cpu_cores(), GPU_WORKERS * torch.cuda.device_count())
        return dev

    def stream(self, graph: Graph) -> Iterator[Finished]:
        ready, waiting = graph.waiting()
        cells = deque(ready)
        crafts = deque(graph.parents.items())
        context = multiprocessing.get_context(self._start)
        with ProcessPoolExecutor(self.workers, context, initializer=_init_worker, initargs=(1, os.getpid())) as pool:
            running: dict[Future[Any], tuple[str, Any]] = {}

            def fill() -> None:
                while len(running) < self.workers and (cells or crafts):
                    if cells:
                        child, parent = cells.popleft()
                        running[pool.submit(graph.run, child, parent)] = (CELL, child)
                    else:
                        key, task = crafts.popleft()
                        running[pool.submit(graph.craft, task)] = (CRAFT, key)

            fill()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, item = running.pop(future)
                    result = future.result()
                    if kind == CRAFT:
                        cells.extend((child, result) for child in waiting.get(item, ()))
                    yield Finished(kind, item, result)  # type: ignore[arg-type]
                fill()

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "concurrency": self.workers, "threads_per_task": 1, "start_method": self._start}

    def close(self) -> None:
        pass


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_executor(device: torch.device) -> str:
    """The executor ``auto`` stands for on ``device`` (see the module docstring)."""
    if device.type == "cuda":
        return "processes"
    return "processes" if cpu_cores() == 2 else "local"


EXECUTORS = ("auto", "local", "processes", "ray")


@dataclass(frozen=True)
class Resources:
    """What each task asks of a cluster (the ``ray`` executor): CPU cores (and torch threads)
    per task, GPU share per victim and per craft (0.25 packs four on a GPU), and how often a
    task whose worker was lost is retried (a task's own exceptions are results, never retried)."""

    cpus_per_task: int = 1
    gpus_per_victim: float = 0.0
    gpus_per_craft: float | None = None  # None: the victims' share
    max_retries: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.cpus_per_task, int) or isinstance(self.cpus_per_task, bool) or self.cpus_per_task < 1:
            raise ConfigError(f"cpus_per_task must be an integer >= 1, got {self.cpus_per_task!r}")
        for name in ("gpus_per_victim", "gpus_per_craft"):
            value = getattr(self, name)
            if value is None and name == "gpus_per_craft":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not _gpu_share(float(value)):
                raise ConfigError(
                    f"{name} must be 0, a fraction in (0, 1] or a whole number of GPUs, got {value!r} (Ray's rule)"
                )
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")

    @property
    def craft_gpus(self) -> float:
        return self.gpus_per_victim if self.gpus_per_craft is None else float(self.gpus_per_craft)


def _gpu_share(value: float) -> bool:
    return value >= 0.0 and (value <= 1.0 or value.is_integer())


RESOURCE_KEYS = ("cpus_per_task", "gpus_per_victim", "gpus_per_craft", "max_retries")


def make_executor(
    name: str,
    workers: int | None = None,
    device: torch.device | None = None,
    *,
    address: str | None = None,
    resources: Resources | None = None,
    force_workers: bool = False,
) -> Executor:
    """The executor called ``name``; ``auto`` resolves with :func:`default_executor`. ``address``
    and ``resources`` apply to ``ray`` only."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; choose {', '.join(EXECUTORS)} (set --executor)")
    if name != "ray" and address is not None:
        raise ConfigError(f"--address is the Ray cluster's address; it needs --executor ray, not {name}")
    if name == "auto":
        name = default_executor(device or torch.device("cpu"))
    if name == "local":
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor(workers, force_workers)
    from sapabench.benchmark.ray_executor import RayExecutor  # needs the sapabench[ray] extra

    return RayExecutor(address, resources or Resources())
