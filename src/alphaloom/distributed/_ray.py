"""The Ray executor: tasks on a local Ray or on an existing cluster, results in task order."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alphaloom.core.exceptions import AlphaloomError, ConfigError, ModelError
from alphaloom.distributed._base import Executor, ExecutorConfig, OnResult, default_workers

__all__ = ["RayExecutor"]

R = TypeVar("R")

_PROBE_TIMEOUT_S = 5.0
# Ray puts unix sockets under <temp_dir>/session_<date>_<pid>/sockets/; their paths may not exceed 107 bytes.
_MAX_TEMP_DIR_CHARS = 44
# No usage statistics leave the machine, whatever the environment says.
_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_PROMPT_ENABLED": "0"}


def _apply(fn: Callable[..., Any], task: Any, shared: Any, has_shared: bool) -> Any:
    # Runs in a Ray worker; Ray has already resolved fn and shared from the object store.
    return fn(task, shared) if has_shared else fn(task)


def _probe(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``HOST:PORT`` (ray.init retries for long)."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(
            f"Ray address {address!r} is not HOST:PORT; pass the head node's GCS address (e.g. "
            "10.0.0.5:6379), ray://HOST:10001 for Ray Client, or 'auto' for a cluster started on this "
            "machine."
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}). Start one with `ray start --head "
            "--port=6379` on the head node and `ray start --address=HEAD:6379` on the others, check the host "
            "and port (the GCS port, 6379 by default; 10001 for ray://), or drop --ray-address to use a "
            "local Ray."
        ) from exc


def _temp_dir(log_dir: str) -> str:
    """``log_dir`` made absolute; through a short symlink when it is too long for Ray's socket paths."""
    target = Path(log_dir).expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)
    if len(str(target)) <= _MAX_TEMP_DIR_CHARS:
        return str(target)
    digest = hashlib.sha1(str(target).encode()).hexdigest()[:12]
    link = Path(tempfile.gettempdir()) / f"alphaloom-ray-{digest}"
    if link.is_symlink() and Path(os.readlink(link)) != target:
        link.unlink()
    if not link.exists():
        link.symlink_to(target, target_is_directory=True)
    return str(link)


class RayExecutor(Executor):
    """Runs tasks as Ray tasks, on a local Ray (started here, stopped by :meth:`close`) or on a cluster.

    Each task reserves ``cpus_per_task`` CPUs, so Ray runs at most ``workers`` at once and sets
    ``OMP_NUM_THREADS`` to match in the worker; at most ``workers`` tasks are in flight. The shared input
    and ``fn`` are put in the object store once per :meth:`map`. Results are collected as tasks finish
    (``on_result`` sees completion order) and returned in task order.

    A task that raises an alphaloom error raises the same error here (Ray's wrapper is chained as its
    cause), so serial and Ray runs fail alike. A Ray already initialised in this process (by the caller)
    is used as it is and left running.

    Parameters
    ----------
    config
        ``backend="ray"`` settings; see :class:`ExecutorConfig`.

    Raises
    ------
    ConfigError
        If Ray is not installed, the cluster address does not answer, or Ray cannot start.
    """

    backend = "ray"

    def __init__(self, config: ExecutorConfig) -> None:
        super().__init__()
        if config.backend != "ray":
            raise ConfigError(f"RayExecutor needs backend='ray', got {config.backend!r}.")
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray is a dependency
            raise ConfigError("the Ray backend needs the ray package: pip install 'ray>=2.40'.") from exc
        self.config = config
        self._ray = ray
        os.environ.update(_RAY_ENV)
        if config.address is not None:
            _probe(config.address)
        self._owns = not ray.is_initialized()
        self.temp_dir: str | None = None
        if self._owns:
            self._start()
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        slots = max(1, int(cpus // config.cpus_per_task))
        self._workers = min(config.workers, slots) if config.workers else slots
        self._remote = ray.remote(num_cpus=config.cpus_per_task)(_apply)

    def _start(self) -> None:
        ray, config = self._ray, self.config
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "namespace": "alphaloom",
        }
        if config.address is not None:
            kwargs["address"] = config.address
        else:
            kwargs["num_cpus"] = config.workers or default_workers()
            kwargs["object_store_memory"] = config.object_store_mb * 2**20
            if config.log_dir is not None:
                self.temp_dir = _temp_dir(config.log_dir)
                kwargs["_temp_dir"] = self.temp_dir
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
            where = f"the Ray cluster at {config.address}" if config.address else "a local Ray"
            raise ConfigError(
                f"could not start or join {where}: {exc}. Check --ray-address (HEAD:6379, ray://HEAD:10001 "
                "or auto), that the cluster runs the same Ray and Python versions, or run without --ray."
            ) from exc

    @property
    def n_workers(self) -> int:
        """Tasks that run at once: ``workers``, or the cluster's CPUs over ``cpus_per_task``."""
        return self._workers

    def info(self) -> dict[str, Any]:
        """Backend, workers, address (``None`` for a local Ray) and the local session's log directory."""
        return {
            **super().info(),
            "address": self.config.address,
            "cpus_per_task": self.config.cpus_per_task,
            "log_dir": self.temp_dir,
        }

    def _map(
        self, fn: Callable[..., R], tasks: list[Any], shared: Any, on_result: OnResult | None
    ) -> list[R]:
        ray = self._ray
        fn_ref = ray.put(fn)
        shared_ref = ray.put(shared) if shared is not None else None
        results: list[Any] = [None] * len(tasks)
        index: dict[Any, int] = {}
        queue = iter(enumerate(tasks))
        pending: list[Any] = []

        def submit() -> None:
            for i, task in queue:
                ref = self._remote.remote(fn_ref, task, shared_ref, shared is not None)
                index[ref] = i
                pending.append(ref)
                if len(pending) >= self._workers:
                    return

        submit()
        try:
            while pending:
                ready, rest = ray.wait(pending, num_returns=1)
                pending[:] = rest
                ref = ready[0]
                results[index[ref]] = value = self._get(ref)
                if on_result is not None:
                    on_result(index[ref], value)
                submit()
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return results

    def _get(self, ref: Any) -> Any:
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, AlphaloomError):
                raise cause from exc
            raise
        except exceptions.RayError as exc:
            raise ModelError(
                f"a Ray worker or node died before finishing its task ({type(exc).__name__}: {exc}). A "
                "worker killed for memory also ends here: use fewer --workers, smaller tasks, or a machine "
                "with more memory."
            ) from exc

    def _close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
