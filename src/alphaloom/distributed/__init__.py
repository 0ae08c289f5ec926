"""Run independent work (walk-forward folds, seeds, agent training, tuning trials) serially or on Ray.

An :class:`Executor` maps a module-level function over picklable tasks and returns the results in task
order. :class:`SerialExecutor` (the default) runs them in this process; :class:`RayExecutor` runs them as
Ray tasks on a local Ray started with the machine's cores, or on an existing cluster (``address``). Each
task carries its own seed and runs single-threaded, so a Ray run returns exactly what the serial run
returns. Inputs every task reads go to Ray's object store once (``map(..., shared=...)``).

::

    from alphaloom.distributed import ExecutorConfig, open_executor

    with open_executor(ExecutorConfig(backend="ray", workers=2)) as ex:
        results = ex.map(fit_fold, tasks, shared=frames)  # == [fit_fold(t, frames) for t in tasks]

Only :mod:`alphaloom.core` is imported here, and Ray only when a Ray executor is opened.
"""

from alphaloom.distributed._base import (
    Executor,
    ExecutorConfig,
    OnResult,
    SerialExecutor,
    default_workers,
    open_executor,
    task_seeds,
)

__all__ = [
    "Executor",
    "ExecutorConfig",
    "OnResult",
    "RayExecutor",
    "SerialExecutor",
    "default_workers",
    "open_executor",
    "task_seeds",
]


def __getattr__(name: str) -> object:
    # RayExecutor is loaded on first use so importing the package never imports ray.
    if name == "RayExecutor":
        from alphaloom.distributed._ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
