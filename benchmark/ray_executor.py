"""The ``ray`` executor: a run's graph as Ray tasks (the ``sapabench[ray]`` extra).

Every poison set is one craft task; every cell one task that takes its craft task's result (an
``ObjectRef``) as its argument, submitted the moment that poison is crafted, ahead of the next
craft, so a victim starts as soon as its own poison exists. Tasks
ask for :class:`~sapabench.benchmark.executor.Resources` (CPUs and torch threads, a GPU share per victim
and per craft) and are retried ``max_retries`` times when their worker is lost; a task's own
failures come back as failed records (the task functions never raise), so they are not retried.

The driver alone writes the results store, as results arrive (``ray.wait``): a killed driver
loses at most the tasks in flight and the same command resumes. Poisons travel as artifact
folders: the run's ``--out`` folder (and the data root and ``SAPABENCH_CACHE``) must be on
storage every node mounts at the same path; a cell re-checks its poison's seal and hash when
it loads it, so a poison that did not arrive whole fails its cells instead of training on it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

from sapabench.benchmark.executor import CELL, CRAFT, Finished, Graph, Resources
from sapabench.core.errors import ConfigError
from sapabench.core.runtime import resolve_device

try:
    import ray
except ImportError:  # pragma: no cover - exercised only without the extra
    ray = None

ENV_PREFIX = "SAPABENCH_"  # the driver's SAPABENCH_* variables (cache, data root) go to every task


def _in_task(fn: Callable[..., Any], threads: int, *args: Any) -> Any:
    """Run ``fn`` inside a Ray task with the task's torch thread count."""
    torch.set_num_threads(threads)
    return fn(*args)


class RayExecutor:
    """Streams a run's graph over a Ray cluster: ``address`` None starts a local one (all this
    machine's cores, or ``num_cpus``/``num_gpus``), else ``ray.init(address=address)``."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        resources: Resources | None = None,
        *,
        num_cpus: int | None = None,
        num_gpus: float | None = None,
    ) -> None:
        if ray is None:
            raise ConfigError("--executor ray needs Ray: pip install 'sapabench[ray]' (or pip install ray)")
        self.address = address
        self.resources = resources or Resources()
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self._started = False

    # ----------------------------------------------------------------------------- cluster
    def connect(self) -> None:
        """Join the cluster (starting a local one when no address was given), once."""
        if ray.is_initialized():
            return
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "runtime_env": {"env_vars": env} if env else None,
        }
        if self.address is None:
            kwargs.update(address="local", num_cpus=self.num_cpus, num_gpus=self.num_gpus)
        else:
            kwargs["address"] = self.address
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as err:
            where = self.address or "a local cluster"
            raise ConfigError(f"could not start or join the Ray cluster at {where}: {err} (check --address)") from None
        self._started = True

    def close(self) -> None:
        """Leave the cluster if this executor joined it (a local cluster stops with it)."""
        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False

    def cluster(self) -> dict[str, float]:
        self.connect()
        return {k: float(v) for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}

    def slots(self, gpus: float | None = None) -> int:
        """How many tasks asking ``gpus`` each (default: crafting's share) the cluster runs at
        once (at least one)."""
        r, cluster = self.resources, self.cluster()
        gpus = r.craft_gpus if gpus is None else gpus
        slots = cluster.get("CPU", 1.0) // r.cpus_per_task
        if gpus > 0:
            slots = min(slots, cluster.get("GPU", 0.0) // gpus)
        return max(1, int(slots))

    def resolve_device(self, device: str) -> torch.device:
        """``auto`` is CUDA when victims ask for GPUs and the cluster has them, else CPU; an
        explicit device is taken as asked (the driver itself may have no GPU)."""
        if device != "auto":
            try:
                dev = torch.device(device)
            except (RuntimeError, TypeError):
                return resolve_device(device)  # its error message
            if dev.type == "cuda" and self.resources.gpus_per_victim == 0:
                raise ConfigError("--device cuda on Ray needs a GPU share per victim (set --gpus-per-victim)")
            return dev
        gpus = self.cluster().get("GPU", 0.0)
        return torch.device("cuda" if gpus > 0 and self.resources.gpus_per_victim > 0 else "cpu")

    def describe(self) -> dict[str, Any]:
        r = self.resources
        return {
            "executor": self.name,
            "address": self.address or "local",
            "cluster": self.cluster(),
            "concurrency": self.slots(r.gpus_per_victim),  # cells at once
            "threads_per_task": r.cpus_per_task,
            "gpus_per_victim": r.gpus_per_victim,
            "gpus_per_craft": r.craft_gpus,
            "victims_per_gpu": round(1 / r.gpus_per_victim, 3) if r.gpus_per_victim else 0,
            "max_retries": r.max_retries,
        }

    # ----------------------------------------------------------------------------- streaming
    def stream(self, graph: Graph) -> Iterator[Finished]:
        self.connect()
        r = self.resources
        task = ray.remote(_in_task)
        crafting = task.options(
            num_cpus=r.cpus_per_task, num_gpus=r.craft_gpus, max_retries=r.max_retries, retry_exceptions=False
        )

        def victims(child: Any) -> Any:
            """A cell task asking for its victims' GPU share (a pack of k: k shares, at most one GPU)."""
            share = r.gpus_per_victim * getattr(child, "victims", 1)
            return task.options(
                num_cpus=r.cpus_per_task,
                num_gpus=min(1.0, share),
                max_retries=r.max_retries,
                retry_exceptions=False,
            )

        pending: dict[Any, tuple[str, Any]] = {}
        ready, waiting = graph.waiting()
        for child, parent in ready:  # cells that need no new poison first
            pending[victims(child).remote(graph.run, r.cpus_per_task, child, parent)] = (CELL, child)
        crafts = iter(graph.parents.items())

        def submit_craft() -> None:
            """The next poison's crafting task, if any is left."""
            for key, item in crafts:
                pending[crafting.remote(graph.craft, r.cpus_per_task, item)] = (CRAFT, key)
                return

        # Ray runs ready tasks in submission order: submitting every craft at once would run them
        # all before any cell. Crafts are submitted as slots free up, and a poison's cells when it
        # is crafted, before the next craft: they take its (finished) task's result as their
        # argument and are ready at once, so they go ahead. (Cells submitted together with their
        # craft would wait on it and race the next craft for the freed slot.)
        for _ in range(self.slots()):
            submit_craft()
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    kind, item = pending.pop(ref)
                    if kind == CRAFT:
                        for child in waiting.get(item, ()):
                            pending[victims(child).remote(graph.run, r.cpus_per_task, child, ref)] = (CELL, child)
                        submit_craft()
                    try:
                        result = ray.get(ref)
                    except Exception as err:  # the worker was lost beyond its retries, or its parent was
                        result = (graph.craft_failed if kind == CRAFT else graph.run_failed)(err)
                    yield Finished(kind, item, result)  # type: ignore[arg-type]
        finally:
            for ref in pending:  # the driver stopped early: nothing left running for it
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
