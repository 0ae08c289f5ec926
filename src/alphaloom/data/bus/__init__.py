"""The event bus: an in-process default and Redis Streams in production, with one contract.

::

    from alphaloom.data.bus import BusConfig, InProcessBus, RedisStreamsBus

    bus = InProcessBus(BusConfig(claim_idle_ms=5_000, max_deliveries=5))
    await bus.publish("bars.1m", {"symbol": "BTCUSD", ...})
    async for msg in bus.subscribe("bars.1m", group="writers", consumer="w1"):
        handle(msg.event)
        await bus.ack(msg)          # or: await bus.nack(msg, "why it failed")

See :mod:`alphaloom.data.bus.base` for the delivery semantics both implementations share.
"""

from alphaloom.data.bus.base import (
    SCHEMA_VERSION,
    BackpressureError,
    BusConfig,
    BusError,
    DeadLetter,
    EventBus,
    Message,
    PendingInfo,
    decode_event,
    encode_event,
)
from alphaloom.data.bus.memory import InProcessBus
from alphaloom.data.bus.redis_streams import RedisStreamsBus

__all__ = [
    "SCHEMA_VERSION",
    "BackpressureError",
    "BusConfig",
    "BusError",
    "DeadLetter",
    "EventBus",
    "InProcessBus",
    "Message",
    "PendingInfo",
    "RedisStreamsBus",
    "decode_event",
    "encode_event",
]
