"""The executor contract without Ray running: serial semantics, settings, seeds and the errors that teach."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from alphaloom.core.exceptions import ConfigError, EmptyRangeError
from alphaloom.distributed import ExecutorConfig, SerialExecutor, open_executor, task_seeds


def square_plus(task: int, shared: int = 0) -> int:
    return task * task + shared


def fail_on_three(task: int) -> int:
    if task == 3:
        raise EmptyRangeError("task 3 has no rows")
    return task


def test_serial_map_keeps_task_order_and_passes_the_shared_input() -> None:
    seen: list[tuple[int, int]] = []
    with SerialExecutor() as ex:
        assert ex.map(square_plus, [3, 1, 2]) == [9, 1, 4]
        assert ex.map(square_plus, [3, 1, 2], shared=10, on_result=lambda i, r: seen.append((i, r))) == [
            19,
            11,
            14,
        ]
        assert ex.map(square_plus, []) == []
        assert ex.n_workers == 1
    assert seen == [(0, 19), (1, 11), (2, 14)]
    assert ex.closed


def test_serial_map_raises_the_task_error_and_rejects_bad_arguments() -> None:
    ex = SerialExecutor()
    with pytest.raises(EmptyRangeError, match="task 3"):
        ex.map(fail_on_three, [1, 2, 3])
    with pytest.raises(ConfigError, match="sequence"):
        ex.map(square_plus, (i for i in range(3)))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="callable"):
        ex.map(42, [1])  # type: ignore[arg-type]
    ex.close()
    with pytest.raises(ConfigError, match="closed"):
        ex.map(square_plus, [1])


def test_config_rejects_an_address_without_ray_and_defaults_to_serial() -> None:
    with pytest.raises(ConfigError, match="backend='ray'"):
        ExecutorConfig.from_dict({"address": "10.0.0.5:6379"})
    with pytest.raises(ConfigError, match="object_store_mb"):
        ExecutorConfig.from_dict({"backend": "ray", "object_store_mb": 10})
    with pytest.raises(ConfigError, match="workers"):
        ExecutorConfig.from_dict({"backend": "ray", "workers": 0})
    assert isinstance(open_executor(), SerialExecutor)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_cluster_is_a_config_error_in_seconds() -> None:
    port = _closed_port()
    with pytest.raises(ConfigError, match=f"no Ray cluster answers at 127.0.0.1:{port}") as info:
        open_executor(ExecutorConfig(backend="ray", address=f"127.0.0.1:{port}"))
    assert "ray start --head" in str(info.value)
    with pytest.raises(ConfigError, match="no Ray cluster answers"):
        open_executor(ExecutorConfig(backend="ray", address=f"ray://127.0.0.1:{port}"))
    with pytest.raises(ConfigError, match="not HOST:PORT"):
        open_executor(ExecutorConfig(backend="ray", address="head-node"))


def test_task_seeds_are_reproducible_and_distinct() -> None:
    seeds = task_seeds(7, 5)
    assert seeds == task_seeds(7, 5)
    assert len(set(seeds)) == 5
    assert task_seeds(7, 3) == seeds[:3]
    assert seeds != task_seeds(8, 5)
    with pytest.raises(ConfigError):
        task_seeds(-1, 2)


def test_importing_the_package_imports_neither_ray_nor_torch() -> None:
    code = (
        "import sys\n"
        "import alphaloom.distributed\n"
        "from alphaloom.distributed import ExecutorConfig, SerialExecutor\n"
        "assert 'ray' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
