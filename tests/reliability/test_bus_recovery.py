"""The Redis Streams consumer resumes from its last acknowledged message after Redis or the consumer dies.

A private ``redis-server`` writes an append-only file with ``appendfsync always``; it is killed with SIGKILL
and restarted on the same directory, so what it acknowledged survives, as on a production server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alphaloom.core.exceptions import BusError
from alphaloom.data.bus import BusConfig, RedisStreamsBus
from alphaloom.jobs.chaos import BusSink, PrivateRedis


def _event(i: int) -> dict[str, object]:
    return {"type": "bar", "id": f"SPY|1d|{i:04d}", "close": 100.0 + i}


async def _take(sub, n: int, timeout_s: float = 20.0) -> list:
    return [await asyncio.wait_for(anext(sub), timeout_s) for _ in range(n)]


def test_a_subscriber_rides_through_a_redis_crash_and_resumes_after_its_last_ack(
    private_redis: PrivateRedis,
) -> None:
    async def scenario() -> None:
        config = BusConfig(claim_idle_ms=300, block_ms=50, batch_size=5)
        bus = RedisStreamsBus(private_redis.url, prefix="t:", config=config)
        try:
            await bus.publish_many("bars", [_event(i) for i in range(30)])
            sub = bus.subscribe("bars", "g", "c1", reconnect_s=30)
            first = await _take(sub, 25)  # delivered in batches of five
            await bus.ack_many(first[:20])  # 20..24 are in hand, not acknowledged, when Redis dies

            private_redis.kill()
            pending_next = asyncio.ensure_future(anext(sub))  # retries while the server is down
            await asyncio.sleep(0.6)
            assert not pending_next.done()
            await asyncio.to_thread(private_redis.start)  # same directory: the AOF is loaded
            rest = [await asyncio.wait_for(pending_next, 20)] + await _take(sub, 9)
            await bus.publish_many("bars", [_event(i) for i in range(30, 40)])
            rest += await _take(sub, 10)
            await bus.ack_many(rest)
            await sub.aclose()

            by_event: dict[str, list[int]] = {}
            for msg in first + rest:
                by_event.setdefault(str(msg.event["id"]), []).append(msg.deliveries)
            assert sorted(by_event) == sorted(str(_event(i)["id"]) for i in range(40))
            # Acknowledged before the crash: never again. In hand but unacknowledged: redelivered once.
            assert all(by_event[str(_event(i)["id"])] == [1] for i in range(20))
            assert all(by_event[str(_event(i)["id"])] == [1, 2] for i in range(20, 25))
            assert all(len(by_event[str(_event(i)["id"])]) == 1 for i in range(25, 40))
            assert await bus.pending("bars", "g") == []
        finally:
            await bus.aclose()

    asyncio.run(scenario())


def test_an_outage_longer_than_reconnect_s_raises_a_clear_error(private_redis: PrivateRedis) -> None:
    async def scenario() -> None:
        bus = RedisStreamsBus(private_redis.url, prefix="t:", config=BusConfig(block_ms=20))
        try:
            await bus.ensure_group("bars", "g")
            private_redis.kill()
            with pytest.raises(BusError, match=r"stayed unreachable.*resumes from its last acknowledged"):
                await asyncio.wait_for(anext(bus.subscribe("bars", "g", "c", reconnect_s=0.5)), 20)
        finally:
            await bus.aclose()

    asyncio.run(scenario())


def _consumer(redis: PrivateRedis, sink: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alphaloom.jobs.chaos",
            "consume",
            "--redis-url",
            redis.url,
            "--prefix",
            "t:",
            "--group",
            "g",
            "--consumer",
            name,
            "--sink",
            str(sink),
            "--claim-idle-ms",
            "300",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(sink: Path, n: int, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sink.exists():
            store = BusSink(sink)
            try:
                if store.count() >= n:
                    return
            finally:
                store.close()
        assert proc.poll() is None, (proc.stderr.read() if proc.stderr else b"").decode()[-2000:]
        time.sleep(0.05)
    raise AssertionError(f"the consumer did not store {n} events in {timeout_s} s")


def test_killed_consumers_and_a_killed_redis_lose_nothing_and_redeliver_only_unacknowledged(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    sink = tmp_path / "sink.sqlite"

    async def publish(lo: int, hi: int) -> None:
        async with RedisStreamsBus(private_redis.url, prefix="t:") as bus:
            for i in range(lo, hi, 10):  # a steady producer, ten at a time
                await bus.publish_many("bars", [_event(k) for k in range(i, min(i + 10, hi))])
                await asyncio.sleep(0.01)

    consumer = _consumer(private_redis, sink, "c1")
    try:
        asyncio.run(publish(0, 200))
        _wait_for(sink, 60, consumer)
        consumer.send_signal(signal.SIGKILL)  # mid-stream: messages in hand are not acknowledged
        consumer.wait(30)
        private_redis.restart(down_s=0.3)  # SIGKILL, then start on the same append-only file

        consumer = _consumer(private_redis, sink, "c1")
        _wait_for(sink, 150, consumer)
        private_redis.kill()  # under the running consumer this time
        time.sleep(0.5)
        private_redis.start()
        asyncio.run(publish(200, 260))
        _wait_for(sink, 260, consumer)
    finally:
        if consumer.poll() is None:
            os.kill(consumer.pid, signal.SIGTERM)
            consumer.wait(30)

    store = BusSink(sink)
    try:
        assert store.event_ids() == {str(_event(i)["id"]) for i in range(260)}
        # Messages in hand but unacknowledged when a consumer or Redis died come again; acknowledged ones
        # never do.
        assert store.redelivered_after_ack() == 0
    finally:
        store.close()

    async def pending() -> list:
        async with RedisStreamsBus(private_redis.url, prefix="t:") as bus:
            return await bus.pending("bars", "g")

    assert asyncio.run(pending()) == []
