"""The event-bus contract, run on every implementation: ack, ordering, groups, redelivery, dead letters.

Timing: tests use ``claim_idle_ms=150``; a "crash" is a consumer that stops without acknowledging, and the
tests wait a little longer than the claim interval before expecting a redelivery.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import pytest

from alphaloom.data.bus import (
    SCHEMA_VERSION,
    BackpressureError,
    BusConfig,
    BusError,
    EventBus,
    InProcessBus,
    Message,
    RedisStreamsBus,
)

from .conftest import REDIS_URL, redis_available

IDLE_S = 0.2  # a little more than claim_idle_ms


async def drain(bus: EventBus, topic: str, group: str, consumer: str, *, rounds: int = 3) -> list[Message]:
    """Everything the consumer can fetch now (a few short fetches), unacknowledged."""
    out: list[Message] = []
    for _ in range(rounds):
        got = await bus.fetch(topic, group, consumer, count=500, block_ms=20)
        out.extend(got)
        if not got:
            break
    return out


def test_both_implement_the_protocol() -> None:
    assert isinstance(InProcessBus(), EventBus)
    assert isinstance(RedisStreamsBus(REDIS_URL, prefix="alphaloom-test:protocol:"), EventBus)


def test_publish_fetch_ack(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        msg_id = await bus.publish("bars", {"symbol": "SPY", "close": 1.5})
        (msg,) = await bus.fetch("bars", "g", "c1")
        assert (msg.id, msg.event, msg.deliveries) == (msg_id, {"symbol": "SPY", "close": 1.5}, 1)
        assert (msg.topic, msg.group, msg.consumer, msg.schema_version) == ("bars", "g", "c1", SCHEMA_VERSION)
        assert [p.id for p in await bus.pending("bars", "g")] == [msg_id]
        assert await bus.ack(msg) is True
        assert await bus.ack(msg) is False  # acknowledging twice is harmless and says so
        assert await bus.pending("bars", "g") == []
        await asyncio.sleep(IDLE_S)
        assert await drain(bus, "bars", "g", "c1") == []  # acknowledged: never redelivered

    run_bus(scenario)


def test_ack_many_acknowledges_in_one_go(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        await bus.publish_many("t", [{"k": k} for k in range(20)])
        got = await drain(bus, "t", "g", "c")
        assert await bus.ack_many(got[:15]) == 15
        assert await bus.ack_many(got[:15]) == 0  # already acknowledged
        assert await bus.ack_many([]) == 0
        assert [p.id for p in await bus.pending("t", "g")] == [m.id for m in got[15:]]

    run_bus(scenario)


def test_ordering_and_ids_per_stream(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        ids = [await bus.publish("t", {"seq": k}) for k in range(5)]
        ids += await bus.publish_many("t", [{"seq": k} for k in range(5, 300)])
        assert len(set(ids)) == 300
        got = await drain(bus, "t", "g", "c", rounds=5)
        assert [m.event["seq"] for m in got] == list(range(300))
        assert [m.id for m in got] == ids
        keys = [tuple(int(p) for p in i.split("-")) for i in ids]
        assert keys == sorted(keys)  # ids increase within a topic
        for m in got:
            assert await bus.ack(m)

    run_bus(scenario)


def test_a_group_shares_messages_and_groups_are_independent(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        await bus.ensure_group("t", "a")
        await bus.ensure_group("t", "b")
        await bus.publish_many("t", [{"k": k} for k in range(10)])
        first = await bus.fetch("t", "a", "c1", count=4)
        second = await drain(bus, "t", "a", "c2")
        assert [m.event["k"] for m in first + second] == list(range(10))  # each message to one consumer
        everything = await drain(bus, "t", "b", "c1")
        assert [m.event["k"] for m in everything] == list(range(10))  # another group gets all of them
        for m in first + second + everything:
            assert await bus.ack(m)

    run_bus(scenario)


def test_group_start_new_only_or_from_the_oldest(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        await bus.ensure_group("t", "early")  # the topic is retained for it
        await bus.publish_many("t", [{"k": 0}, {"k": 1}])
        await bus.ensure_group("t", "late_all", start="0")
        await bus.ensure_group("t", "late_new", start="$")
        await bus.publish("t", {"k": 2})
        assert [m.event["k"] for m in await drain(bus, "t", "late_all", "c")] == [0, 1, 2]
        assert [m.event["k"] for m in await drain(bus, "t", "late_new", "c")] == [2]

    run_bus(scenario)


def test_redelivery_after_a_consumer_crash(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        await bus.publish_many("t", [{"k": k} for k in range(3)])
        crashed = await bus.fetch("t", "g", "worker-1", count=3)
        assert await bus.ack(crashed[0])
        # worker-1 dies holding k=1 and k=2. Before claim_idle_ms nobody else gets them ...
        assert await bus.fetch("t", "g", "worker-2", block_ms=0) == []
        await asyncio.sleep(0.55)
        # ... afterwards worker-2 does, same ids and events, delivery counted.
        again = await drain(bus, "t", "g", "worker-2")
        assert [(m.id, m.event, m.deliveries) for m in again] == [
            (crashed[1].id, {"k": 1}, 2),
            (crashed[2].id, {"k": 2}, 2),
        ]
        assert {p.consumer for p in await bus.pending("t", "g")} == {"worker-2"}
        for m in again:
            assert await bus.ack(m)
        assert await bus.pending("t", "g") == []

    run_bus(scenario, claim_idle_ms=500)  # long enough that "not yet" holds on a busy machine


def test_a_subscriber_that_stops_without_ack_gets_its_messages_redelivered(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        await bus.publish_many("t", [{"k": k} for k in range(4)])
        seen = []
        async for msg in bus.subscribe("t", "g", "c1"):
            seen.append(msg)
            if len(seen) == 2:
                await bus.ack(msg)
                break  # stops: the first message (and any fetched but not yielded) stays pending
        assert [m.event["k"] for m in seen] == [0, 1]
        await asyncio.sleep(IDLE_S)
        rest = []
        async for msg in bus.subscribe("t", "g", "c2"):
            rest.append(msg)
            await bus.ack(msg)
            if len(rest) == 3:
                break
        assert sorted(m.event["k"] for m in rest) == [0, 2, 3]
        assert {m.event["k"]: m.deliveries for m in rest}[0] == 2

    run_bus(scenario)


def test_nack_redelivers_at_once_and_dead_letters_after_max_deliveries(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        msg_id = await bus.publish("t", {"k": "poison"})
        deliveries = []
        for attempt in range(1, 4):
            (msg,) = await drain(bus, "t", "g", "c")
            deliveries.append(msg.deliveries)
            assert await bus.nack(msg, f"handler failed, attempt {attempt}")
        assert deliveries == [1, 2, 3]
        assert await drain(bus, "t", "g", "c") == []
        assert await bus.pending("t", "g") == []
        (dead,) = await bus.dead_letters("t")
        assert (dead.id, dead.group, dead.event, dead.deliveries) == (msg_id, "g", {"k": "poison"}, 3)
        assert "handler failed, attempt 3" in dead.reason
        assert await bus.nack(msg, "again") is False  # no longer pending

    run_bus(scenario, max_deliveries=3)


def test_unacknowledged_deliveries_count_as_failures(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        await bus.publish("t", {"k": 1})
        (first,) = await drain(bus, "t", "g", "c")
        await asyncio.sleep(IDLE_S)
        (second,) = await drain(bus, "t", "g", "c")
        assert second.deliveries == 2
        await asyncio.sleep(IDLE_S)
        assert await drain(bus, "t", "g", "c") == []  # a third delivery would exceed max_deliveries
        (dead,) = await bus.dead_letters("t")
        assert dead.deliveries == 2
        assert "not acknowledged within 150 ms" in dead.reason
        assert await bus.ack(first) is False

    run_bus(scenario, max_deliveries=2)


def test_nack_reason_is_kept_when_the_last_attempt_times_out(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        await bus.publish("t", {"k": 1})
        (msg,) = await drain(bus, "t", "g", "c")
        await bus.nack(msg, "downstream timeout")
        (again,) = await drain(bus, "t", "g", "c")
        assert again.deliveries == 2
        await asyncio.sleep(IDLE_S)  # the second delivery is never acknowledged
        assert await drain(bus, "t", "g", "c") == []
        (dead,) = await bus.dead_letters("t")
        assert "downstream timeout" in dead.reason

    run_bus(scenario, max_deliveries=2)


def test_events_are_json_with_a_schema_version(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        ts = datetime(2024, 8, 8, 23, 54, tzinfo=UTC)
        await bus.publish("t", {"ts": ts, "values": (1, 2), "none": None})
        (msg,) = await drain(bus, "t", "g", "c")
        assert msg.event == {"ts": "2024-08-08T23:54:00+00:00", "values": [1, 2], "none": None}
        with pytest.raises(BusError, match="None instead of NaN"):
            await bus.publish("t", {"volume": math.nan})
        with pytest.raises(BusError, match="JSON"):
            await bus.publish("t", {"obj": object()})
        with pytest.raises(BusError, match="must be a dict"):
            await bus.publish("t", ["not", "a", "dict"])  # type: ignore[arg-type]

    run_bus(scenario)


def test_bad_names_are_refused(run_bus) -> None:
    async def scenario(bus: EventBus) -> None:
        with pytest.raises(Exception, match="topic 'bad topic' is not valid"):
            await bus.publish("bad topic", {})
        with pytest.raises(Exception, match="group '' is not valid"):
            await bus.fetch("t", "", "c")

    run_bus(scenario)


# ---------------------------------------------------------------------- in-process specifics


def test_in_process_back_pressure_waits_for_acks() -> None:
    async def scenario() -> None:
        bus = InProcessBus(BusConfig(maxsize=3, claim_idle_ms=10_000, block_ms=10))
        await bus.ensure_group("t", "g")
        await bus.publish_many("t", [{"k": k} for k in range(3)])
        blocked = asyncio.create_task(bus.publish("t", {"k": 3}))
        await asyncio.sleep(0.05)
        assert not blocked.done()  # full: the publisher waits
        (msg,) = await bus.fetch("t", "g", "c", count=1)
        assert bus.retained("t") == 3
        await bus.ack(msg)
        await asyncio.wait_for(blocked, 1.0)
        assert bus.retained("t") == 3

    asyncio.run(scenario())


def test_in_process_back_pressure_times_out_with_a_clear_error() -> None:
    async def scenario() -> None:
        bus = InProcessBus(BusConfig(maxsize=2, publish_timeout_s=0.05))
        await bus.ensure_group("t", "g")
        await bus.publish_many("t", [{}, {}])
        with pytest.raises(BackpressureError, match=r"stayed full .* consumers are not keeping up"):
            await bus.publish("t", {})

    asyncio.run(scenario())


def test_in_process_topic_without_groups_keeps_the_newest_messages() -> None:
    async def scenario() -> None:
        bus = InProcessBus(BusConfig(maxsize=3))
        await bus.publish_many("t", [{"k": k} for k in range(5)])  # nobody listens: never blocks
        got = await bus.fetch("t", "g", "c", block_ms=0)
        assert [m.event["k"] for m in got] == [2, 3, 4]
        for m in got:
            await bus.ack(m)
        assert bus.retained("t") == 0  # acknowledged by every group: dropped
        await bus.aclose()
        with pytest.raises(BusError, match="closed"):
            await bus.publish("t", {})

    asyncio.run(scenario())


# ---------------------------------------------------------------------- redis specifics

needs_redis = pytest.mark.skipif(not redis_available(), reason=f"no Redis server at {REDIS_URL}")


@needs_redis
def test_redis_dead_letters_a_newer_schema_and_keeps_its_keys_under_the_prefix() -> None:
    async def scenario() -> None:
        bus = RedisStreamsBus(REDIS_URL, prefix="alphaloom-test:schema:", config=BusConfig(block_ms=10))
        try:
            await bus.purge()
            await bus.ensure_group("t", "g")
            await bus._client.xadd("alphaloom-test:schema:t", {"v": SCHEMA_VERSION + 1, "e": "{}"})
            assert await bus.fetch("t", "g", "c", block_ms=10) == []
            (dead,) = await bus.dead_letters("t")
            assert f"schema version {SCHEMA_VERSION + 1} is newer" in dead.reason
            keys = [k async for k in bus._client.scan_iter(match="alphaloom-test:schema:*")]
            assert keys
            assert all(k.startswith("alphaloom-test:schema:") for k in keys)
        finally:
            assert await bus.purge() >= 1
            await bus.aclose()

    asyncio.run(scenario())


def test_redis_errors_are_translated_and_hide_the_password() -> None:
    async def scenario() -> None:
        bus = RedisStreamsBus("redis://user:s3cret@127.0.0.1:1/0", prefix="alphaloom-test:down:")
        with pytest.raises(
            BusError, match=r"publishing to 'bars' failed on Redis at redis://127\.0\.0\.1:1/0"
        ) as err:
            await bus.publish("bars", {"k": 1})
        assert "s3cret" not in str(err.value)
        await bus.aclose()

    asyncio.run(scenario())
