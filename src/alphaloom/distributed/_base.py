"""The executor interface, its settings, the serial executor and seeding helpers."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import numpy as np
from pydantic import Field, model_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError

__all__ = [
    "Executor",
    "ExecutorConfig",
    "OnResult",
    "SerialExecutor",
    "default_workers",
    "open_executor",
    "task_seeds",
]

T = TypeVar("T")
R = TypeVar("R")

#: ``on_result(index, result)``: called once per finished task (in completion order), e.g. for progress.
OnResult = Callable[[int, Any], None]

# Ray refuses an object store below 75 MiB; the default keeps it small on a shared machine.
_MIN_OBJECT_STORE_MB = 80


class ExecutorConfig(ComponentConfig):
    """Where tasks run: in this process, on a local Ray, or on an existing Ray cluster.

    Parameters
    ----------
    backend
        ``"serial"`` (the default: one task after the other in this process) or ``"ray"``.
    address
        Address of an existing Ray cluster (``"HOST:PORT"`` of its head node, ``"ray://HOST:10001"`` for
        Ray Client, or ``"auto"`` for a cluster started on this machine with ``ray start --head``). ``None``
        with ``backend="ray"`` starts a local Ray with ``workers`` CPUs.
    workers
        Most tasks in flight at once. For a local Ray it is also the number of CPUs Ray is given (``None``:
        every core of the machine); on a cluster ``None`` lets Ray schedule on all of its CPUs.
    cpus_per_task
        CPUs Ray reserves for each task; keep 1 for single-threaded torch/numba work.
    object_store_mb
        Size of the local Ray object store in MiB (shared inputs live there); ignored on a cluster.
    log_dir
        Directory for the local Ray session's files and logs (``<log_dir>/session_*/logs``); ``None`` uses
        Ray's default (``/tmp/ray``). Ignored on a cluster (its logs stay on its nodes).
    """

    backend: Literal["serial", "ray"] = "serial"
    address: str | None = None
    workers: int | None = Field(default=None, ge=1, le=100_000)
    cpus_per_task: float = Field(default=1.0, gt=0.0, le=1024.0)
    object_store_mb: int = Field(default=200, ge=_MIN_OBJECT_STORE_MB)
    log_dir: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ExecutorConfig:
        if self.address is not None and self.backend != "ray":
            raise ValueError(
                f"address={self.address!r} names a Ray cluster but backend is {self.backend!r}; set "
                "backend='ray' (the CLI's --ray-address does this) or drop the address"
            )
        if self.address is not None and not self.address.strip():
            raise ValueError("address is empty; pass HOST:PORT of the Ray head node, or None for a local Ray")
        return self


class Executor(ABC):
    """Runs independent tasks and returns their results in task order.

    The base class owns the contract: :meth:`map` checks its arguments, hands the work to the backend's
    ``_map`` hook and checks that one result came back per task. Results never depend on the backend: each
    task carries its own seed, runs single-threaded, and its result lands at its task's position, however
    the tasks were scheduled. An executor is a context manager; leaving it releases what it started.

    ``fn`` must be a module-level function (or a :func:`functools.partial` of one) and every task and the
    shared input picklable, so that a backend can ship them to other processes or machines.
    """

    #: Name of the backend, e.g. ``"serial"`` or ``"ray"``.
    backend: str = "executor"

    def __init__(self) -> None:
        self._closed = False

    def map(
        self,
        fn: Callable[..., R],
        tasks: Sequence[Any],
        *,
        shared: Any = None,
        on_result: OnResult | None = None,
    ) -> list[R]:
        """``[fn(t) for t in tasks]``, or ``[fn(t, shared) for t in tasks]`` when ``shared`` is given.

        Parameters
        ----------
        fn
            The work of one task.
        tasks
            The tasks, each with everything that varies between tasks (fold, seed, ...).
        shared
            An input every task reads (data frames, configs). It is sent once, not once per task: Ray keeps
            it in its object store and each worker reads it from there.
        on_result
            Called as ``on_result(index, result)`` when a task finishes, in the order tasks finish.

        Returns
        -------
        list
            One result per task, in the order of ``tasks``.

        Raises
        ------
        ConfigError
            If ``fn`` is not callable, ``tasks`` is not a sequence, or the executor was closed.
        ModelError
            If a worker process died (killed for memory, say) before finishing its task.
        """
        if not callable(fn):
            raise ConfigError(f"map needs a callable fn(task[, shared]), got {type(fn).__name__}.")
        if isinstance(tasks, str | bytes) or not isinstance(tasks, Sequence):
            raise ConfigError(
                f"tasks must be a sequence (a list of task objects), got {type(tasks).__name__}; "
                "wrap a generator in list(...)."
            )
        if self.closed:
            raise ConfigError(
                f"this {self.backend} executor was closed; open a new one with open_executor()."
            )
        tasks = list(tasks)
        if not tasks:
            return []
        results = self._map(fn, tasks, shared, on_result)
        assert len(results) == len(tasks), "an executor returned the wrong number of results"
        return results

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Release what the executor started (idempotent)."""
        if not self.closed:
            self._closed = True
            self._close()

    @property
    @abstractmethod
    def n_workers(self) -> int:
        """Tasks that can run at once."""

    def info(self) -> dict[str, Any]:
        """What the executor runs on, for manifests and reports."""
        return {"backend": self.backend, "workers": self.n_workers}

    @abstractmethod
    def _map(
        self, fn: Callable[..., R], tasks: list[Any], shared: Any, on_result: OnResult | None
    ) -> list[R]: ...

    def _close(self) -> None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SerialExecutor(Executor):
    """Runs the tasks one after the other in this process: the default, and the reference every other
    backend must reproduce."""

    backend = "serial"

    @property
    def n_workers(self) -> int:
        """Always 1."""
        return 1

    def _map(
        self, fn: Callable[..., R], tasks: list[Any], shared: Any, on_result: OnResult | None
    ) -> list[R]:
        results = []
        for i, task in enumerate(tasks):
            result = fn(task) if shared is None else fn(task, shared)
            if on_result is not None:
                on_result(i, result)
            results.append(result)
        return results


def open_executor(config: ExecutorConfig | None = None) -> Executor:
    """The executor ``config`` asks for; serial by default.

    Use it as a context manager so a local Ray is shut down afterwards::

        with open_executor(ExecutorConfig(backend="ray", workers=2)) as ex:
            results = ex.map(run_fold, folds, shared=data)

    Raises
    ------
    ConfigError
        If the Ray cluster at ``config.address`` cannot be reached, or Ray is not installed.
    """
    config = config or ExecutorConfig()
    if config.backend == "serial":
        return SerialExecutor()
    from alphaloom.distributed._ray import RayExecutor

    return RayExecutor(config)


def task_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 32-bit seeds derived from ``seed`` (:class:`numpy.random.SeedSequence`).

    The same ``seed`` and ``n`` always give the same list, so tasks seeded from it reproduce on any backend.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative int, got {seed!r}.")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ConfigError(f"n must be a non-negative int, got {n!r}.")
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(int(n), dtype=np.uint32)]


def default_workers() -> int:
    """CPUs this process may use (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1
