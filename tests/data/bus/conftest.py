"""One bus fixture for every implementation: the in-process bus and Redis Streams (skipped without a server).

Redis tests use a fresh key prefix per test and delete exactly those keys afterwards; the rest of the
database is never touched. ``ALPHALOOM_TEST_REDIS_URL`` overrides the server (default 127.0.0.1:6379).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from alphaloom.data.bus import BusConfig, InProcessBus, RedisStreamsBus

REDIS_URL = os.environ.get("ALPHALOOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
KINDS = ("memory", "redis")

T = TypeVar("T")
RunBus = Callable[..., Any]


def redis_available(url: str = REDIS_URL) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=0.5):
            return True
    except OSError:
        return False


def make_bus(kind: str, config: BusConfig) -> InProcessBus | RedisStreamsBus:
    if kind == "memory":
        return InProcessBus(config)
    return RedisStreamsBus(REDIS_URL, prefix=f"alphaloom-test:{uuid.uuid4().hex}:", config=config)


async def close_bus(bus: InProcessBus | RedisStreamsBus) -> None:
    if isinstance(bus, RedisStreamsBus):
        await bus.purge()
    await bus.aclose()


@pytest.fixture(params=KINDS)
def bus_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "redis" and not redis_available():
        pytest.skip(f"no Redis server at {REDIS_URL} (set ALPHALOOM_TEST_REDIS_URL to test RedisStreamsBus)")
    return request.param


@pytest.fixture
def run_bus(bus_kind: str) -> RunBus:
    """``run_bus(scenario, **config)``: run ``async scenario(bus)`` on a fresh bus in a fresh event loop."""

    def run(scenario: Callable[[Any], Awaitable[T]], **settings: Any) -> T:
        config = BusConfig(**{"claim_idle_ms": 150, "block_ms": 50, **settings})

        async def main() -> T:
            bus = make_bus(bus_kind, config)
            try:
                return await scenario(bus)
            finally:
                await close_bus(bus)

        return asyncio.run(main())

    return run
